// The master side of sim_world: the supervisor core, one slave_session per connection (the
// master's real byte path), carrying out the core's actions, master crashes and successors,
// delivery, and the checks. The seeded schedule and a whole run are in sim_schedule.cpp; the slave
// side (slave_core and the worker) is in sim_slave.cpp.
#include "sim_world.hpp"

#include "event_log.hpp"
#include "event_replay.hpp"
#include "slave_core.hpp"

#include <meshmaster/protocol/codec.hpp>
#include <meshmaster/protocol/frame_decoder.hpp>

#include <fmt/format.h>

#include <boost/json/serialize.hpp>

#include <algorithm>
#include <cstdlib>
#include <cstring>

namespace meshmaster::master::test {

using namespace std::chrono_literals;

// MESHMASTER_SIM_TRACE=1 prints every record and fault of a run (use with MESHMASTER_SIM_SEED).
const bool sim_world::tracing = std::getenv("MESHMASTER_SIM_TRACE") != nullptr;

void sim_world::trace(std::string_view what) const {
    if (tracing) fmt::print("  [{:>8.1f} ms] {}\n", std::chrono::duration<double, std::milli>(now_).count(), what);
}
namespace p = meshmaster::protocol;

sim_world::~sim_world() = default;
sim_world::sim_world(sim_world&&) noexcept = default;

sim_world::sim_world(std::uint64_t seed, sim_options options) : rng_(seed), options_(options) {
    supervisor_config c;
    c.shard_count = options.shards;
    c.slave_count = options.slaves;
    c.spawn_slaves = options.spawn;
    c.migration_concurrency = options.concurrency;
    c.restart_surge = options.surge;
    c.spares = options.spares;
    c.state_chunk_size = 16;  // states here are ~45 bytes: every resume arrives in chunks
    c.spawn_timeout = 3s;
    c.soft_start_timeout = 3s;
    c.start_timeout = 3s;
    c.stop_timeout = 3s;
    c.resume_timeout = 3s;
    c.shutdown_timeout = 3s;
    c.heartbeat_interval = 200ms;
    c.heartbeat_misses = 5;
    c.respawn_backoff_min = 100ms;
    c.respawn_backoff_max = 2s;
    c.stable_after = 5s;
    c.external_grace = 4s;
    if (!options.spawn && !options.fencing) {
        // External slaves that are slow only within generous timeouts, whose dropped connections
        // come back promptly: the shape where nothing needs fencing. (options.fencing is the other.)
        c.spawn_timeout = c.soft_start_timeout = c.start_timeout = c.stop_timeout = c.resume_timeout = 600s;
        c.heartbeat_misses = 3000;
    }
    config_ = c;
    core_ = std::make_unique<supervisor>(c, 100);
    session_settings_ = {.master_id = "sim-master", .secret = "sim-secret-0123456789abcdef", .max_state_size = 1 << 20};
    if (!options.spawn) {
        for (std::uint32_t i = 0; i < options.slaves; ++i) {
            process& proc = add_process(fmt::format("ext-{}", i), 0, true);
            os_events_.push_back(reconnect_later(proc.id));
        }
    }
    core_->start(now_);
    apply(core_->take_actions());
}

void sim_world::fail(std::string what) {
    if (!violation_) violation_ = std::move(what);
}

// --- actions from the core -------------------------------------------------------------------

void sim_world::apply(std::vector<action> actions) {
    for (action& a : actions) apply_one(a);
}

void sim_world::take_and_apply() { apply(core_->take_actions()); }

void sim_world::apply_one(action& a) {
    if (auto* send = std::get_if<actions::send_frame>(&a)) {
        auto it = links_.find(send->connection);
        if (it == links_.end() || !it->second.open) return;
        check_grants(it->second.slave, send->frames);
        it->second.to_slave.push_back({.bytes = std::move(send->frames), .duplicable = true});
    } else if (auto* spawn = std::get_if<actions::spawn_slave>(&a)) {
        if (auto it = processes_.find(spawn->slave); it != processes_.end() && it->second.alive) {
            fail("spawned a slave id that is still alive: " + spawn->slave);
        }
        const process& proc = add_process(spawn->slave, spawn->generation, false);
        os_events_.push_back([this, id = proc.id, pid = proc.pid] {
            core_->on_spawned(id, pid, now_);
            apply(core_->take_actions());
        });
        os_events_.push_back(reconnect_later(proc.id));
    } else if (auto* kill = std::get_if<actions::kill_slave>(&a)) {
        auto it = processes_.find(kill->slave);
        if (it == processes_.end()) return;
        if (it->second.external) fail("the core tried to kill an external slave");
        if (it->second.alive) die(it->second);
    } else if (auto* close = std::get_if<actions::close_connection>(&a)) {
        // As the daemon does: the session sends the fatal error frame and asks to be closed once it
        // is out (close_after_write).
        auto it = links_.find(close->connection);
        if (it == links_.end() || !it->second.open) return;
        it->second.session->close(close->code, close->message);
    } else if (auto* log = std::get_if<actions::log_event>(&a)) {
        record(log->record);
    } else if (std::holds_alternative<actions::exit_daemon>(a)) {
        exited_ = true;
    } else if (auto* store = std::get_if<actions::store_checkpoint>(&a)) {
        disk_[store->shard] = store->state;  // what a restarted master finds
    } else if (auto* watch = std::get_if<actions::watch_process>(&a)) {
        // A process already gone is reported at once (pidfd_open fails); the simulated OS reports
        // every other exit anyway.
        auto it = processes_.find(watch->slave);
        if (it == processes_.end() || !it->second.alive || it->second.pid != watch->pid) {
            os_events_.push_back([this, id = watch->slave] {
                core_->on_process_exited(id, "exited before it could be watched", now_);
                take_and_apply();
            });
        }
    }
}

void sim_world::record(const event_record& r) {
    records_.push_back(r);
    if (r.event == "adoption_started") adopting_ = true;
    if (r.event == "adoption_finished") adopting_ = false;
    if (tracing) trace(boost::json::serialize(event_log::to_json(r)));
    if (r.event == "migration_started") {
        if (migration_terminals_.contains(*r.migration)) fail("migration id reused");
        migration_terminals_[*r.migration] = 0;
    } else if (r.event == "migration_completed" || r.event == "migration_rolled_back" || r.event == "migration_failed" ||
               r.event == "migration_abandoned") {
        auto it = migration_terminals_.find(r.migration.value_or(0));
        if (it == migration_terminals_.end()) fail(fmt::format("{} for an unknown migration", r.event));
        else if (++it->second > 1) fail(fmt::format("migration {} ended twice", it->first));
        // The slaves measure the pause from the stop callback of the state handed over to the
        // resume's completion, before the master hears of it: never longer than the time since a
        // worker was last told to stop the shard (which may be longer than the master's pause_ms:
        // a state stopped for a master that crashed is handed over to the next one's move). Every
        // simulated slave speaks 1.3, so every move the new holder acknowledged has it; one
        // completed by the holder's hello after a reconnect has none.
        if (r.event == "migration_completed") {
            const auto ms_since = [&](mono_time t) { return std::chrono::duration<double, std::milli>(now_ - t).count(); };
            const auto asked = r.shard ? stop_asked_.find(*r.shard) : stop_asked_.end();
            if (!r.slave_pause_ms) {
                if (r.reason.empty()) fail(fmt::format("migration {} completed without slave_pause_ms", r.migration.value_or(0)));
            } else if (asked == stop_asked_.end() || *r.slave_pause_ms < 0 ||
                       *r.slave_pause_ms > ms_since(asked->second) + 1e-6) {
                fail(fmt::format("migration {}: slave_pause_ms {}, but the shard's last stop was asked {} ms ago",
                                 r.migration.value_or(0), *r.slave_pause_ms,
                                 asked == stop_asked_.end() ? -1.0 : ms_since(asked->second)));
            }
        }
    } else if (r.event == "restart_started") {
        if (restart_terminals_.contains(*r.restart)) fail("restart id reused");
        restart_terminals_[*r.restart] = 0;
    } else if (r.event == "restart_completed" || r.event == "restart_failed" || r.event == "restart_abandoned") {
        auto it = restart_terminals_.find(r.restart.value_or(0));
        if (it == restart_terminals_.end()) fail(fmt::format("{} for an unknown restart", r.event));
        else if (++it->second > 1) fail(fmt::format("restart {} ended twice", it->first));
    }
}

// --- session_host ------------------------------------------------------------------------------

void sim_world::log(event_record r) { record(r); }

void sim_world::to_core(connection_id, const std::function<void(supervisor&, mono_time)>& input) {
    input(*core_, now_);
    if (!deferring_) take_and_apply();
}

void sim_world::write(connection_id connection, std::span<const std::byte> bytes) {
    auto it = links_.find(connection);
    if (it == links_.end() || !it->second.open) return;
    it->second.to_slave.push_back({.bytes = std::vector<std::byte>(bytes.begin(), bytes.end())});
}

// The master closes its end: it reads nothing more (its session hears the end at once, as the
// daemon's read loop stops), and the slave sees EOF after what was written.
void sim_world::close_after_write(connection_id connection) {
    auto it = links_.find(connection);
    if (it == links_.end() || !it->second.open) return;
    link& l = it->second;
    l.open = false;
    l.to_master.clear();
    l.to_master.push_back({.eof = true});
    os_events_.push_back(eof_to_slave(l.id));
}

// Every grant the master makes carries an epoch above every earlier grant of that shard, by this
// master or any before it; only the very same grant may be sent again, to the same slave.
void sim_world::check_grants(const std::string& slave, const std::vector<std::byte>& frames) {
    p::frame_decoder decoder;
    decoder.feed(frames);
    while (true) {
        auto next = decoder.next();
        if (!next || !*next) return;
        auto m = p::decode(**next);
        if (!m) return;
        std::optional<std::pair<std::uint32_t, std::uint64_t>> grant;
        if (const auto* x = std::get_if<p::start_shard>(&*m)) grant.emplace(x->shard, x->epoch);
        if (const auto* x = std::get_if<p::resume>(&*m)) grant.emplace(x->shard, x->epoch);
        if (const auto* x = std::get_if<p::resume>(&*m)) resume_migration_[{x->shard, x->epoch}] = x->migration_id;
        if (!grant) continue;
        auto [shard, epoch] = *grant;
        auto& last = granted_[shard];
        if (epoch < last.first || (epoch == last.first && slave != last.second)) {
            fail(fmt::format("shard {} granted to {} at epoch {}, after epoch {} was granted to {}", shard, slave, epoch,
                             last.first, last.second));
        }
        last = {epoch, slave};
    }
}

void sim_world::request_restart(std::string reason) {
    core_->request_restart(now_, std::move(reason));
    apply(core_->take_actions());
}

supervisor::drain_request sim_world::request_drain(const std::string& slave, std::string reason) {
    auto result = core_->request_drain(now_, slave, std::move(reason));
    apply(core_->take_actions());
    return result;
}

void sim_world::request_stop(bool immediate, std::string requested_by) {
    core_->request_stop(now_, immediate, std::move(requested_by));
    apply(core_->take_actions());
}

std::vector<std::string> sim_world::log_names() const {
    std::vector<std::string> names;
    for (const auto& r : records_) names.emplace_back(r.event);
    return names;
}

// --- the master itself ---------------------------------------------------------------------------

// What a master starting after a crash reads from the event log must be what the dead one knew:
// every running shard with its holder and epoch, and no epoch above the highest logged.
void sim_world::check_replay() {
    event_replayer replayer(options_.shards);
    for (const auto& r : records_) replayer.add(event_log::to_json(r));
    const event_replay history = replayer.result();
    const auto st = core_->status(now_);
    for (const auto& sh : st.shards) {
        if (sh.phase != "running") continue;
        const replayed_shard& logged = history.shards[sh.shard];
        if (logged.owner != sh.owner || logged.epoch != sh.epoch) {
            fail(fmt::format("the event log replays shard {} as {}@{}, the live table says {}@{}", sh.shard,
                             logged.owner, logged.epoch, sh.owner, sh.epoch));
        }
    }
}

void sim_world::restart_master(std::optional<std::size_t> carried_out) {
    // The old master dies, maybe halfway through carrying out what it decided.
    std::vector<action> pending = core_->take_actions();
    if (carried_out) pending.resize(std::min(pending.size(), *carried_out));
    apply(std::move(pending));
    if (!carried_out) check_replay();
    ++master_restarts_;
    detaching_ = false;
    exited_ = false;
    trace(carried_out ? fmt::format("FAULT master killed after {} of its actions", *carried_out) : "FAULT master killed");
    // Its sockets close: the frames it sent still arrive, then the EOF; what slaves sent it and it
    // had not read is gone, its sessions with it. Its children keep running: a dead parent does
    // not take them along.
    for (auto& [id, l] : links_) {
        l.to_master.clear();
        if (!l.open) continue;
        l.open = false;
        os_events_.push_back(eof_to_slave(l.id));
    }
    // The next master starts from the event log, as the daemon does.
    event_replayer replayer(options_.shards);
    for (const auto& r : records_) replayer.add(event_log::to_json(r));
    const event_replay history = replayer.result();
    for (const auto& u : history.unterminated_restarts) {
        fail(fmt::format("the replay finds restart {} without its terminal record: {}", u.restart, u.problem));
    }
    core_ = std::make_unique<supervisor>(config_, 100 + 10'000'000 * ++master_lives_);
    core_->seed_epochs(history.max_epochs);
    core_->seed_ids(history.generation, history.spawned_ids);
    std::vector<supervisor::previous_slave> running;
    for (const auto& [id, pid] : history.running_slaves) running.push_back({id, pid});
    core_->expect_slaves(std::move(running));
    std::vector<shared_bytes> stored(options_.shards);
    for (const auto& [shard, state] : disk_) {
        if (shard < stored.size()) stored[shard] = state;
    }
    core_->seed_checkpoints(std::move(stored));
    std::vector<supervisor::abandoned_migration> open;
    for (const auto& m : history.open) open.push_back({m.id, m.shard, m.from, m.to});
    core_->adopt_open_migrations(std::move(open));
    core_->adopt_open_restarts(history.open_restarts);
    core_->start(now_, history.clean_stop ? 0ms : 1500ms);
    take_and_apply();
}

// --- time --------------------------------------------------------------------------------------

void sim_world::advance(std::chrono::milliseconds dt) {
    now_ += dt;
    // Each slave's shell ticks its core every heartbeat interval (the welcome's), once authenticated.
    for (auto& [id, proc] : processes_) {
        if (!proc.alive || proc.hung || !proc.link || !proc.core->authenticated() || now_ < proc.next_heartbeat) continue;
        proc.core->tick(++proc.progress);
        proc.next_heartbeat = now_ + proc.core->heartbeat_interval();
        flush(proc);
    }
    // The daemon closes connections that have not authenticated within its handshake timeout (a
    // slave frozen mid-handshake, say).
    for (auto& [id, l] : links_) {
        if (l.open && l.session && !l.session->authenticated() && !l.session->closing() && now_ - l.opened >= 5s) {
            l.session->close("handshake_timeout", "authenticate within the handshake timeout");
        }
    }
    if (auto next = core_->next_deadline(); next && *next <= now_) core_->on_tick(now_);
    apply(core_->take_actions());
}

// --- scheduling --------------------------------------------------------------------------------

void sim_world::step_deliver_all(int max_rounds) {
    for (int round = 0; round < max_rounds; ++round) {
        bool did = false;
        if (!os_events_.empty()) {
            auto e = std::move(os_events_.front());
            os_events_.pop_front();
            e();
            did = true;
        }
        for (process* proc : workers_with_callbacks()) did = complete_callback(*proc) || did;
        for (auto& [id, l] : links_) {
            if (can_deliver(l)) {
                deliver_to_slave(l);
                did = true;
            }
            if (!l.to_master.empty()) {
                deliver_to_master(l);
                did = true;
            }
        }
        check_invariants();
        if (!did) return;
    }
}

bool sim_world::deliver_one() {
    if (!os_events_.empty()) {
        auto e = std::move(os_events_.front());
        os_events_.pop_front();
        e();
        check_invariants();
        return true;
    }
    if (auto workers = workers_with_callbacks(); !workers.empty()) {
        complete_callback(*workers.front());
        check_invariants();
        return true;
    }
    for (auto& [id, l] : links_) {
        if (can_deliver(l)) {
            deliver_to_slave(l);
            check_invariants();
            return true;
        }
    }
    for (auto& [id, l] : links_) {
        if (!l.to_master.empty()) {
            deliver_to_master(l);
            check_invariants();
            return true;
        }
    }
    return false;
}

bool sim_world::run_until(const std::function<bool()>& done, int max_steps) {
    for (int i = 0; i < max_steps; ++i) {
        if (done()) return true;
        if (!deliver_one()) return done();
    }
    return done();
}

bool sim_world::settle(std::chrono::milliseconds tick, std::chrono::milliseconds limit) {
    for (auto waited = std::chrono::milliseconds(0); waited <= limit && !violation_; waited += tick) {
        step_deliver_all();
        if (settled()) return true;
        advance(tick);
    }
    return false;
}

std::size_t sim_world::count(std::string_view event) const {
    return static_cast<std::size_t>(std::count_if(records_.begin(), records_.end(),
                                                  [&](const event_record& r) { return r.event == event; }));
}

// The daemon's read loop: the bytes into the session (in reads no larger than it asks for), or
// the end of the stream.
void sim_world::feed_master(link& l, const piece& got) {
    if (got.eof) return l.session->closed();
    std::span<const std::byte> bytes(got.bytes);
    while (!bytes.empty() && !l.session->closing()) {
        auto space = l.session->read_buffer();
        const std::size_t n = std::min(space.size(), bytes.size());
        std::memcpy(space.data(), bytes.data(), n);
        bytes = bytes.subspan(n);
        l.session->received(n);
    }
}

void sim_world::deliver_to_master(link& l) {
    piece got = std::move(l.to_master.front());
    l.to_master.pop_front();
    feed_master(l, got);
}

// A master that detached and exited is followed by the next one.
void sim_world::successor_if_detached() {
    if (detaching_ && exited_) restart_master();
}

bool sim_world::settled() {
    if (!os_events_.empty() || adopting_ || !workers_with_callbacks().empty()) return false;
    for (const auto& [id, l] : links_) {
        if (!l.to_master.empty()) return false;
        // (A frozen process the master closed the connection of may never read what is left.)
        if (!l.to_slave.empty() && (l.open || !processes_.at(l.slave).hung)) return false;
    }
    const supervisor_status st = core_->status(now_);
    if (st.restart || st.restart_queued) return false;
    for (const auto& sh : st.shards) {
        if (sh.phase != "running") return false;
    }
    // Converged: every shard is held by a slot's slave (slaves a crashed master left beside them
    // have handed their shards over).
    if (options_.spawn) {
        for (const auto& sl : st.slaves) {
            if (!sl.slot && sl.shards > 0) return false;
        }
    }
    return true;
}

void sim_world::check_invariants() {
    // The master's indexes (its deadline queue, each slave's shards, each restart pair's moves)
    // agree with the tables they stand in for, after every step.
    if (std::string wrong = core_->self_check(); !wrong.empty()) fail("the master's indexes disagree: " + wrong);
    // The counts the daemon's timers read agree with the full status they stand in for.
    {
        const supervisor_status st = core_->status(now_);
        const supervisor_counts c = core_->counts(now_);
        const auto moving = static_cast<std::uint32_t>(std::ranges::count_if(st.shards, [](const shard_status& s) { return s.moving; }));
        const bool gave_up = st.spares_failed || std::ranges::any_of(st.slots, [](const slot_status& s) { return s.failed; });
        if (c.shards_total != st.shards.size() || c.shards_running != st.shards_running || c.shards_moving != moving ||
            c.stopping != (st.stopping || st.detaching) || c.gave_up != gave_up ||
            c.restart.has_value() != st.restart.has_value() ||
            (c.restart && (c.restart->migrations_done != st.restart->migrations_done ||
                           c.restart->migrations_total != st.restart->migrations_total))) {
            fail(fmt::format("counts() says {}/{} running, {} moving; status() {}/{} running, {} moving",
                             c.shards_running, c.shards_total, c.shards_moving, st.shards_running, st.shards.size(), moving));
        }
    }
    // Per shard, the live holders: at most one, except for fenced external zombies, which hold it
    // under a lower epoch than the current holder.
    std::map<std::uint32_t, std::vector<std::pair<std::uint64_t, const process*>>> holders;
    for (const auto& [id, proc] : processes_) {
        if (!proc.alive) continue;
        for (const auto& se : proc.core->shards()) holders[se.shard].emplace_back(se.epoch, &proc);
    }
    for (auto& [shard, list] : holders) {
        if (list.size() < 2) continue;
        std::sort(list.begin(), list.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
        for (std::size_t i = 1; i < list.size(); ++i) {
            if (!list[i].second->external || list[i].first >= list[0].first) {
                fail(fmt::format("shard {} held by {} (epoch {}) and {} (epoch {}) at once", shard, list[0].second->id,
                                 list[0].first, list[i].second->id, list[i].first));
            }
        }
    }
}

}  // namespace meshmaster::master::test

