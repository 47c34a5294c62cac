#include "sim_world.hpp"

#include "event_log.hpp"
#include "event_replay.hpp"

#include <meshmaster/protocol/codec.hpp>
#include <meshmaster/protocol/frame_decoder.hpp>
#include <meshmaster/protocol/state_transfer.hpp>

#include <fmt/format.h>

#include <boost/json/serialize.hpp>

#include <algorithm>
#include <cstdlib>

namespace meshmaster::master::test {

using namespace std::chrono_literals;

namespace {
// MESHMASTER_SIM_TRACE=1 prints every record and fault of a run (use with MESHMASTER_SIM_SEED).
const bool tracing = std::getenv("MESHMASTER_SIM_TRACE") != nullptr;
}  // namespace

void sim_world::trace(std::string_view what) const {
    if (tracing) fmt::print("  [{:>8.1f} ms] {}\n", std::chrono::duration<double, std::milli>(now_).count(), what);
}
namespace p = meshmaster::protocol;

sim_world::sim_world(std::uint64_t seed, sim_options options) : rng_(seed), options_(options) {
    supervisor_config c;
    c.shard_count = options.shards;
    c.slave_count = options.slaves;
    c.spawn_slaves = options.spawn;
    c.migration_concurrency = options.concurrency;
    c.restart_surge = options.surge;
    c.spares = options.spares;
    c.state_chunk_size = 16;  // states here are ~35 bytes: every resume arrives in chunks
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
    if (!options.spawn) {
        for (std::uint32_t i = 0; i < options.slaves; ++i) {
            process p{.id = fmt::format("ext-{}", i), .pid = next_pid_++, .external = true};
            auto& stored = processes_[p.id] = p;
            os_events_.push_back([this, id = stored.id] {
                if (auto it = processes_.find(id); it != processes_.end() && it->second.alive) connect(it->second);
            });
        }
    }
    core_->start(now_);
    apply(core_->take_actions());
}

void sim_world::fail(std::string what) {
    if (!violation_) violation_ = std::move(what);
}

std::string sim_world::state_for(std::uint32_t shard, std::uint64_t epoch, std::uint64_t serial) {
    return fmt::format("state of shard {} at epoch {} #{}", shard, epoch, serial);
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
        it->second.to_slave.push_back(std::move(send->frames));
    } else if (auto* spawn = std::get_if<actions::spawn_slave>(&a)) {
        process proc{.id = spawn->slave, .pid = next_pid_++, .generation = spawn->generation};
        if (processes_.contains(proc.id) && processes_[proc.id].alive) fail("spawned a slave id that is still alive: " + proc.id);
        processes_[proc.id] = proc;
        os_events_.push_back([this, id = proc.id, pid = proc.pid] {
            core_->on_spawned(id, pid, now_);
            apply(core_->take_actions());
        });
        os_events_.push_back([this, id = proc.id] {
            if (auto it = processes_.find(id); it != processes_.end() && it->second.alive && !it->second.link) {
                connect(it->second);
            }
        });
    } else if (auto* kill = std::get_if<actions::kill_slave>(&a)) {
        auto it = processes_.find(kill->slave);
        if (it == processes_.end()) return;
        if (it->second.external) fail("the core tried to kill an external slave");
        if (it->second.alive) die(it->second);
    } else if (auto* close = std::get_if<actions::close_connection>(&a)) {
        auto it = links_.find(close->connection);
        if (it == links_.end() || !it->second.open) return;
        link& l = it->second;
        l.open = false;
        l.to_master.clear();  // the master closed its end: nothing more is read
        os_events_.push_back(eof_to_slave(l.id));
    } else if (auto* log = std::get_if<actions::log_event>(&a)) {
        const event_record& r = log->record;
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
        } else if (r.event == "restart_started") {
            if (restart_terminals_.contains(*r.restart)) fail("restart id reused");
            restart_terminals_[*r.restart] = 0;
        } else if (r.event == "restart_completed" || r.event == "restart_failed" || r.event == "restart_abandoned") {
            auto it = restart_terminals_.find(r.restart.value_or(0));
            if (it == restart_terminals_.end()) fail(fmt::format("{} for an unknown restart", r.event));
            else if (++it->second > 1) fail(fmt::format("restart {} ended twice", it->first));
        }
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

// The slave sees EOF after the frames already sent; a live slave then reconnects. A hung one does
// all that when it wakes.
std::function<void()> sim_world::eof_to_slave(std::uint64_t link_id) {
    return [this, link_id] {
        auto lit = links_.find(link_id);
        if (lit == links_.end()) return;
        link& l = lit->second;
        auto pit = processes_.find(l.slave);
        if (pit == processes_.end()) return;
        process& proc = pit->second;
        if (!proc.alive || proc.hung) return;
        while (!l.to_slave.empty() && proc.alive && !proc.hung) deliver_to_slave(l);
        if (!proc.alive || proc.hung || proc.link != link_id) return;
        proc.link.reset();
        if (proc.reconnects < 200) {
            ++proc.reconnects;
            connect(proc);
        }
    };
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

// --- slaves ------------------------------------------------------------------------------------

void sim_world::connect(process& proc) {
    link l{.id = next_link_++, .slave = proc.id};
    if (tracing) {
        std::string shards;
        for (const auto& [shard, epoch] : proc.held) shards += fmt::format(" {}@{}", shard, epoch);
        trace(fmt::format("{} connects (link {}), holding{}", proc.id, l.id, shards));
    }
    proc.link = l.id;
    auto& stored = links_[l.id] = std::move(l);
    slave_hello_info hello{.id = proc.id, .pid = proc.pid, .generation = proc.generation,
                           .soft_started = proc.soft_started, .version_minor = 1};
    for (const auto& [shard, epoch] : proc.held) hello.shards.push_back({shard, epoch});
    for (const auto& [shard, k] : proc.kept) hello.stopped.push_back({shard, k.first});
    core_->on_slave_connected(stored.id, hello, now_);
    apply(core_->take_actions());
}

void sim_world::reply(link& l, std::function<void()> input) {
    if (l.open) l.to_master.push_back(std::move(input));
}

void sim_world::hold(process& proc, std::uint32_t shard, std::uint64_t epoch) {
    for (const auto& [id, other] : processes_) {
        if (id != proc.id && other.alive && other.held.contains(shard)) {
            // An external slave the master fenced (it cannot kill it) may still believe it holds
            // the shard, under an epoch the new grant supersedes.
            if (other.external && other.held.at(shard) < epoch) continue;
            // The same, the other way round: a woken external zombie reads a grant sent to it
            // before it froze, long superseded.
            if (proc.external && epoch < other.held.at(shard)) continue;
            fail(fmt::format("shard {} granted to {} at epoch {} while {} still holds it at epoch {}", shard, proc.id,
                             epoch, id, other.held.at(shard)));
        }
    }
    if (epoch <= max_epoch_held_[shard] && !proc.external) {
        // (An external zombie may read a stale grant late: the master never reused the epoch —
        // that is checked when grants are sent — and an upstream checking epochs refuses it.)
        fail(fmt::format("shard {} granted at epoch {} after epoch {} was held", shard, epoch, max_epoch_held_[shard]));
    }
    max_epoch_held_[shard] = std::max(max_epoch_held_[shard], epoch);
    proc.held[shard] = epoch;
}

void sim_world::slave_receives(process& proc, link& l, const p::message& m) {
    const std::uint64_t c = l.id;
    if (tracing) {
        std::string what;
        if (const auto* x = std::get_if<p::start_shard>(&m)) what = fmt::format("start_shard {}@{}", x->shard, x->epoch);
        else if (const auto* x = std::get_if<p::stop_shard>(&m)) what = fmt::format("stop_shard {}@{} m{}", x->shard, x->epoch, x->migration_id);
        else if (const auto* x = std::get_if<p::resume>(&m)) what = fmt::format("resume {}@{} m{}", x->shard, x->epoch, x->migration_id);
        if (!what.empty()) trace(fmt::format("{} (link {}) reads {}", proc.id, c, what));
    }
    if (std::holds_alternative<p::soft_start>(m)) {
        proc.soft_started = true;
        reply(l, [this, c] { core_->on_soft_start_complete(c, now_); });
    } else if (const auto* start = std::get_if<p::start_shard>(&m)) {
        auto it = proc.held.find(start->shard);
        if (it != proc.held.end() && it->second >= start->epoch) {
            reply(l, [this, c] { core_->on_slave_error(c, "stale_epoch", "start_shard", now_); });
            return;
        }
        if (auto k = proc.kept.find(start->shard); k != proc.kept.end() && k->second.first < start->epoch) proc.kept.erase(k);
        hold(proc, start->shard, start->epoch);
        reply(l, [this, c, s = start->shard, e = start->epoch] { core_->on_shard_started(c, s, e, now_); });
    } else if (const auto* stop = std::get_if<p::stop_shard>(&m)) {
        auto it = proc.held.find(stop->shard);
        std::string text;
        if (it != proc.held.end() && it->second == stop->epoch) {
            proc.held.erase(it);
            text = state_for(stop->shard, stop->epoch, ++state_serial_);
            produced_[stop->shard].insert(text);
            if (stop->migration_id != 0) proc.kept[stop->shard] = {stop->epoch, text};
        } else if (auto k = proc.kept.find(stop->shard); k != proc.kept.end() && k->second.first == stop->epoch) {
            text = k->second.second;  // asked again for a state already handed back
        } else {
            reply(l, [this, c] { core_->on_slave_error(c, "stale_epoch", "stop_shard", now_); });
            return;
        }
        if (stop->migration_id != 0) handed_[stop->migration_id] = text;
        auto state = std::make_shared<std::vector<std::byte>>();
        for (char ch : text) state->push_back(static_cast<std::byte>(ch));
        reply(l, [this, c, s = stop->shard, e = stop->epoch, mig = stop->migration_id, state] {
            core_->on_shard_stopped(c, s, e, mig, state, now_);
        });
    } else if (const auto* done = std::get_if<p::handoff_complete>(&m)) {
        if (auto k = proc.kept.find(done->shard); k != proc.kept.end() && k->second.first == done->epoch) proc.kept.erase(k);
    } else if (const auto* res = std::get_if<p::resume>(&m)) {
        auto it = proc.held.find(res->shard);
        if (it != proc.held.end() && it->second >= res->epoch) {
            reply(l, [this, c] { core_->on_slave_error(c, "stale_epoch", "resume", now_); });
            return;
        }
        const std::string got(reinterpret_cast<const char*>(res->state.data()), res->state.size());
        if (auto h = handed_.find(res->migration_id); h != handed_.end()) {
            if (got != h->second) {
                fail(fmt::format("shard {} resumed with state '{}', but '{}' was handed back for migration {}",
                                 res->shard, got, h->second, res->migration_id));
            }
        } else if (!produced_[res->shard].contains(got)) {
            fail(fmt::format("shard {} recovered from state '{}', which no holder ever produced", res->shard, got));
        }
        if (auto k = proc.kept.find(res->shard); k != proc.kept.end() && k->second.first < res->epoch) proc.kept.erase(k);
        hold(proc, res->shard, res->epoch);
        reply(l, [this, c, s = res->shard, e = res->epoch, mig = res->migration_id] { core_->on_resumed(c, s, e, mig, now_); });
    } else if (std::holds_alternative<p::shutdown>(m)) {
        reply(l, [this, c] { core_->on_shutdown_complete(c, now_); });
        os_events_.push_back([this, id = proc.id] {
            if (auto it = processes_.find(id); it != processes_.end() && it->second.alive) die(it->second);
        });
    }
    // full_start, shard_migration_start, heartbeat, error: nothing to do for a simulated slave.
}

bool sim_world::can_deliver(const link& l) const {
    if (l.to_slave.empty()) return false;
    auto pit = processes_.find(l.slave);
    return pit == processes_.end() || !pit->second.alive || !pit->second.hung;  // a hung slave reads nothing
}

void sim_world::deliver_to_slave(link& l) {
    auto pit = processes_.find(l.slave);
    if (pit != processes_.end() && pit->second.alive && pit->second.hung) return;
    std::vector<std::byte> bytes = std::move(l.to_slave.front());
    l.to_slave.pop_front();
    if (pit == processes_.end() || !pit->second.alive) return;
    // One send may carry several frames (state chunks, then the resume closing them).
    p::frame_decoder decoder;
    p::state_assembler assembler(std::uint64_t{1} << 30);
    decoder.feed(bytes);
    while (true) {
        auto next = decoder.next();
        if (!next) return fail("the core sent a broken frame stream: " + next.error().to_string());
        if (!*next) break;
        auto m = p::decode(**next);
        if (!m) return fail("a frame from the core does not decode: " + m.error().to_string());
        if (const auto* chunk = std::get_if<p::state_chunk>(&*m)) {
            if (!assembler.add(*chunk)) return fail("a state chunk out of order");
            continue;
        }
        if (auto* res = std::get_if<p::resume>(&*m)) {
            auto whole = assembler.finish(res->migration_id, res->shard, res->state, res->state_size);
            if (!whole) return fail("a chunked state does not reassemble: " + whole.error().to_string());
            const std::vector<std::byte> state = std::move(*whole);
            p::resume full = *res;
            full.state = p::bytes_view(state);
            slave_receives(pit->second, l, full);
            continue;
        }
        slave_receives(pit->second, l, *m);
    }
    if (!decoder.finish()) fail("the core sent a truncated frame");
}

void sim_world::die(process& proc) {
    proc.alive = false;
    proc.held.clear();
    proc.kept.clear();
    if (proc.link) {
        auto it = links_.find(*proc.link);
        if (it != links_.end()) {
            link& l = it->second;
            l.to_slave.clear();
            if (l.open) {
                l.open = false;
                // Frames the slave sent before dying arrive first, then EOF.
                l.to_master.push_back([this, c = l.id] { core_->on_disconnected(c, now_); });
            }
        }
    }
    if (!proc.external) {
        os_events_.push_back([this, id = proc.id] {
            core_->on_process_exited(id, "killed by signal 9", now_);
            apply(core_->take_actions());
        });
    }
}

void sim_world::request_restart(std::string reason) {
    core_->request_restart(now_, std::move(reason));
    apply(core_->take_actions());
}

void sim_world::request_stop(bool immediate) {
    core_->request_stop(now_, immediate);
    apply(core_->take_actions());
}

void sim_world::kill(const std::string& slave) {
    trace("FAULT kill " + slave);
    auto it = processes_.find(slave);
    if (it != processes_.end() && it->second.alive) die(it->second);
}

void sim_world::hang(const std::string& slave) {
    trace("FAULT hang " + slave);
    auto it = processes_.find(slave);
    if (it != processes_.end()) it->second.hung = true;
}

void sim_world::wake(const std::string& slave) {
    auto it = processes_.find(slave);
    if (it == processes_.end() || !it->second.alive || !it->second.hung) return;
    process& proc = it->second;
    proc.hung = false;
    ++wakes_;
    trace("FAULT wake " + slave);
    if (!proc.link) {
        connect(proc);
    } else if (auto lit = links_.find(*proc.link); lit != links_.end() && !lit->second.open) {
        os_events_.push_back(eof_to_slave(lit->first));  // it reads what piled up, then the EOF
    }
}

void sim_world::drop_connection(const std::string& slave) {
    trace("FAULT drop connection of " + slave);
    auto it = processes_.find(slave);
    if (it == processes_.end() || !it->second.link) return;
    auto lit = links_.find(*it->second.link);
    if (lit == links_.end() || !lit->second.open) return;
    link& l = lit->second;
    l.open = false;
    l.to_slave.clear();
    it->second.link.reset();
    // The master sees the connection end; the slave library reconnects promptly on its own (the
    // two may reach the master in either order), still holding its shards.
    l.to_master.push_back([this, c = l.id] {
        core_->on_disconnected(c, now_);
        take_and_apply();
    });
    os_events_.push_back([this, id = slave] {
        auto pit = processes_.find(id);
        if (pit != processes_.end() && pit->second.alive && !pit->second.hung && !pit->second.link) connect(pit->second);
    });
}

std::vector<std::string> sim_world::live_slaves() const {
    std::vector<std::string> ids;
    for (const auto& [id, proc] : processes_) {
        if (proc.alive) ids.push_back(id);
    }
    return ids;
}

std::map<std::string, std::map<std::uint32_t, std::uint64_t>> sim_world::holdings() const {
    std::map<std::string, std::map<std::uint32_t, std::uint64_t>> out;
    for (const auto& [id, proc] : processes_) {
        if (proc.alive) out[id] = proc.held;
    }
    return out;
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
    // had not read is gone. Its children keep running: a dead parent does not take them along.
    for (auto& [id, l] : links_) {
        if (!l.open) continue;
        l.open = false;
        l.to_master.clear();
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
    for (auto& [id, proc] : processes_) {
        if (!proc.alive || proc.hung || !proc.link) continue;
        auto it = links_.find(*proc.link);
        if (it != links_.end() && it->second.open) {
            core_->on_heartbeat(it->first, ++proc.progress, now_);
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

void sim_world::deliver_to_master(link& l) {
    auto input = std::move(l.to_master.front());
    l.to_master.pop_front();
    input();
    take_and_apply();
}

// A master that detached and exited is followed by the next one.
void sim_world::successor_if_detached() {
    if (detaching_ && exited_) restart_master();
}

void sim_world::random_step() {
    successor_if_detached();
    std::vector<std::uint64_t> to_slave, to_master;
    for (auto& [id, l] : links_) {
        if (can_deliver(l)) to_slave.push_back(id);
        if (!l.to_master.empty()) to_master.push_back(id);
    }
    const int choice = std::uniform_int_distribution<int>(0, 99)(rng_);
    const bool twice = options_.duplicates && std::uniform_int_distribution<int>(0, 99)(rng_) < 8;
    if (choice < 30 && !to_slave.empty()) {
        link& l = links_[to_slave[rng_() % to_slave.size()]];
        if (!twice) return deliver_to_slave(l);
        // The master sent it twice (as after a reconnect): the slave answers both.
        auto copy = l.to_slave.front();
        deliver_to_slave(l);
        if (l.open && can_deliver(l)) ++duplicates_delivered_;
        l.to_slave.push_front(std::move(copy));
        deliver_to_slave(l);
    } else if (choice < 60 && !to_master.empty()) {
        link& l = links_[to_master[rng_() % to_master.size()]];
        if (!twice) return deliver_to_master(l);
        auto input = l.to_master.front();
        deliver_to_master(l);
        if (!l.open) return;  // the first one closed the connection: the copy is never read
        // The same frame again: it must change nothing but draw a complaint.
        const auto before = core_->status(now_);
        input();
        ++duplicates_delivered_;
        std::vector<action> actions = core_->take_actions();
        const auto after = core_->status(now_);
        for (std::size_t i = 0; i < before.shards.size(); ++i) {
            const auto& b = before.shards[i];
            const auto& a = after.shards[i];
            if (b.owner != a.owner || b.epoch != a.epoch || b.phase != a.phase) {
                fail(fmt::format("a duplicated frame changed shard {}: {}@{} {} -> {}@{} {}", b.shard, b.owner, b.epoch,
                                 b.phase, a.owner, a.epoch, a.phase));
            }
        }
        for (const action& a : actions) {
            if (const auto* send = std::get_if<actions::send_frame>(&a)) {
                p::frame_decoder decoder;
                decoder.feed(send->frames);
                while (auto next = decoder.next()) {
                    if (!*next) break;
                    auto m = p::decode(**next);
                    if (m && !std::holds_alternative<p::error_message>(*m) && !std::holds_alternative<p::heartbeat>(*m)) {
                        fail(fmt::format("a duplicated frame made the master send {}",
                                         p::to_string(static_cast<p::event_id>((**next).event))));
                    }
                }
            } else if (!std::holds_alternative<actions::log_event>(a)) {
                fail(fmt::format("a duplicated frame made the master act (action #{})", a.index()));
            }
        }
        apply(std::move(actions));
    } else if (choice < 75 && !os_events_.empty()) {
        // OS events of different processes may complete in any order.
        const std::size_t i = rng_() % std::min<std::size_t>(os_events_.size(), 3);
        auto e = std::move(os_events_[i]);
        os_events_.erase(os_events_.begin() + static_cast<std::ptrdiff_t>(i));
        e();
    } else if (choice < 80) {
        send_checkpoint();
    } else if (choice < 94) {
        advance(std::chrono::milliseconds(std::uniform_int_distribution<int>(1, 100)(rng_)));
    } else if (options_.faults) {
        fault_step();
    }
}

// A live slave hands the master a copy of one of its shards' state, as the worker would from time to
// time. The master keeps it only if it is the current holder under the current epoch.
void sim_world::send_checkpoint() {
    std::vector<std::pair<process*, std::uint32_t>> candidates;
    for (auto& [id, proc] : processes_) {
        if (!proc.alive || proc.hung || !proc.link) continue;
        for (const auto& [shard, epoch] : proc.held) candidates.emplace_back(&proc, shard);
    }
    if (candidates.empty()) return;
    auto [proc, shard] = candidates[rng_() % candidates.size()];
    auto lit = links_.find(*proc->link);
    if (lit == links_.end() || !lit->second.open) return;
    const std::uint64_t epoch = proc->held.at(shard);
    const std::string text = state_for(shard, epoch, ++state_serial_);
    produced_[shard].insert(text);
    auto state = std::make_shared<std::vector<std::byte>>();
    for (char ch : text) state->push_back(static_cast<std::byte>(ch));
    ++checkpoints_sent_;
    reply(lit->second, [this, c = lit->first, shard, epoch, state] { core_->on_checkpoint(c, shard, epoch, state, now_); });
}

void sim_world::fault_step() {
    auto live = live_slaves();
    const int choice = std::uniform_int_distribution<int>(0, 99)(rng_);
    if (choice < 35) {
        request_restart("simulation");
    } else if (choice < 55 && !live.empty()) {
        kill(live[rng_() % live.size()]);
    } else if (choice < 65 && !live.empty() && (options_.spawn || options_.fencing)) {
        hang(live[rng_() % live.size()]);
    } else if (choice < 80 && !live.empty()) {
        drop_connection(live[rng_() % live.size()]);
    } else if (choice < 85 && options_.master_restarts) {
        const auto how = rng_() % 4;
        if (how == 0) {
            // An operator replaces the master on purpose, leaving the slaves running; the next
            // master starts once this one has exited.
            trace("FAULT master detaching");
            detaching_ = true;
            core_->request_detach(now_);
            return take_and_apply();
        }
        // Else it is killed; half of those times between two of the actions it decided on.
        const bool midway = how == 1;
        if (!midway) return restart_master();
        // Deliver one frame to it, then let it die after carrying out part of the consequences.
        std::vector<std::uint64_t> to_master;
        for (auto& [id, l] : links_) {
            if (!l.to_master.empty()) to_master.push_back(id);
        }
        if (to_master.empty()) return restart_master();
        link& l = links_[to_master[rng_() % to_master.size()]];
        auto input = std::move(l.to_master.front());
        l.to_master.pop_front();
        input();
        restart_master(rng_() % 6);
    } else if (choice < 90 && !live.empty()) {
        wake(live[rng_() % live.size()]);
    } else if (choice < 95 && !options_.spawn) {
        // An external slave restarted by its own supervisor (systemd): a new process, same id.
        std::vector<std::string> dead;
        for (const auto& [id, proc] : processes_) {
            if (!proc.alive && proc.external) dead.push_back(id);
        }
        if (!dead.empty()) {
            process& proc = processes_[dead[rng_() % dead.size()]];
            proc = process{.id = proc.id, .pid = next_pid_++, .external = true};
            os_events_.push_back([this, id = proc.id] {
                if (auto it = processes_.find(id); it != processes_.end() && it->second.alive && !it->second.link) {
                    connect(it->second);
                }
            });
        }
    }
}

bool sim_world::settled() {
    if (!os_events_.empty() || adopting_) return false;
    for (const auto& [id, l] : links_) {
        if (!l.to_slave.empty() || !l.to_master.empty()) return false;
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
    // Per shard, the live holders: at most one, except for fenced external zombies, which hold it
    // under a lower epoch than the current holder.
    std::map<std::uint32_t, std::vector<std::pair<std::uint64_t, const process*>>> holders;
    for (const auto& [id, proc] : processes_) {
        if (!proc.alive) continue;
        for (const auto& [shard, epoch] : proc.held) holders[shard].emplace_back(epoch, &proc);
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

std::optional<std::string> sim_world::run() {
    for (std::uint32_t i = 0; i < options_.steps && !violation_; ++i) {
        random_step();
        check_invariants();
    }
    // Let everything settle: no more faults; hung spawned slaves stay hung until the master kills
    // them, hung external ones wake up (and must learn they were fenced), and external slaves that
    // died are restarted by their own supervisor (systemd, say).
    for (auto& [id, proc] : processes_) {
        if (proc.external && proc.alive && proc.hung) wake(id);
    }
    for (auto& [id, proc] : processes_) {
        if (proc.external && !proc.alive) {
            proc = process{.id = proc.id, .pid = next_pid_++, .external = true};
            os_events_.push_back([this, id = proc.id] {
                if (auto it = processes_.find(id); it != processes_.end() && it->second.alive && !it->second.link) {
                    connect(it->second);
                }
            });
        }
    }
    for (int round = 0; round < 3000 && !violation_; ++round) {
        successor_if_detached();
        // Slots given up after failed starts (kills landing before hellos) wait for the operator,
        // who reloads the configuration.
        if (!exited_ && !core_->retry_failed_starts(now_, "simulation: operator reload").empty()) take_and_apply();
        step_deliver_all();
        if (settled()) break;
        advance(100ms);
    }
    if (violation_) return violation_;
    if (!settled()) {
        const auto st = core_->status(now_);
        std::string phases;
        for (const auto& sh : st.shards) phases += fmt::format(" {}:{}:{}", sh.shard, sh.owner, sh.phase);
        std::string pending;
        for (const auto& [id, l] : links_) {
            if (!l.to_slave.empty() || !l.to_master.empty()) {
                const auto& proc = processes_.at(l.slave);
                pending += fmt::format(" link {} of {} ({}{}): {} to it, {} from it;", id, l.slave, proc.alive ? "alive" : "dead",
                                       proc.hung ? ", hung" : "", l.to_slave.size(), l.to_master.size());
            }
        }
        return fmt::format("did not settle: restart {}, queued {}, adopting {}, {} OS events pending,{} shards{}",
                           st.restart.has_value(), st.restart_queued, adopting_, os_events_.size(), pending, phases);
    }
    // Settled: exactly one live holder per shard, the one the master names, at the master's epoch.
    const auto st = core_->status(now_);
    const auto held = holdings();
    for (const auto& sh : st.shards) {
        int holders = 0;
        for (const auto& [id, shards] : held) {
            auto it = shards.find(sh.shard);
            if (it == shards.end()) continue;
            ++holders;
            if (id != sh.owner || it->second != sh.epoch) {
                return fmt::format("shard {} is held by {} at epoch {}, the master says {} at {}", sh.shard, id,
                                   it->second, sh.owner, sh.epoch);
            }
        }
        if (holders != 1) return fmt::format("shard {} has {} holders after settling", sh.shard, holders);
    }
    for (const auto& [id, count] : migration_terminals_) {
        if (count != 1) return fmt::format("migration {} ended {} times", id, count);
    }
    for (const auto& [id, count] : restart_terminals_) {
        if (count != 1) return fmt::format("restart {} ended {} times", id, count);
    }
    return std::nullopt;
}

}  // namespace meshmaster::master::test
