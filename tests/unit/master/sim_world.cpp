#include "sim_world.hpp"

#include <meshmaster/protocol/codec.hpp>
#include <meshmaster/protocol/frame_decoder.hpp>
#include <meshmaster/protocol/state_transfer.hpp>

#include <fmt/format.h>

#include <algorithm>

namespace meshmaster::master::test {

using namespace std::chrono_literals;
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
    if (!options.spawn) {
        // The master cannot kill an external slave, so a slave it merely believes dead keeps
        // running: only a lease (issue 5) makes re-granting safe then. Here external slaves are
        // slow only within generous timeouts, and a dropped connection comes back promptly.
        c.spawn_timeout = c.soft_start_timeout = c.start_timeout = c.stop_timeout = c.resume_timeout = 600s;
        c.heartbeat_misses = 3000;
    }
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

void sim_world::apply_one(action& a) {
    if (auto* send = std::get_if<actions::send_frame>(&a)) {
        auto it = links_.find(send->connection);
        if (it == links_.end() || !it->second.open) return;
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
        // The slave sees EOF after the frames already sent; a live slave reconnects later.
        os_events_.push_back([this, slave = l.slave, id = l.id] {
            auto pit = processes_.find(slave);
            if (pit == processes_.end()) return;
            process& proc = pit->second;
            auto lit = links_.find(id);
            if (lit != links_.end()) {
                while (!lit->second.to_slave.empty() && proc.alive && !proc.hung) deliver_to_slave(lit->second);
            }
            if (proc.link == id) proc.link.reset();
            if (proc.alive && !proc.hung && proc.reconnects < 20) {
                ++proc.reconnects;
                connect(proc);
            }
        });
    } else if (auto* log = std::get_if<actions::log_event>(&a)) {
        const event_record& r = log->record;
        records_.push_back(r);
        if (r.event == "migration_started") {
            if (migration_terminals_.contains(*r.migration)) fail("migration id reused");
            migration_terminals_[*r.migration] = 0;
        } else if (r.event == "migration_completed" || r.event == "migration_rolled_back" || r.event == "migration_failed") {
            auto it = migration_terminals_.find(r.migration.value_or(0));
            if (it == migration_terminals_.end()) fail(fmt::format("{} for an unknown migration", r.event));
            else if (++it->second > 1) fail(fmt::format("migration {} ended twice", it->first));
        }
    } else if (std::holds_alternative<actions::exit_daemon>(a)) {
        exited_ = true;
    }
    // watch_process: the simulated OS reports every exit anyway.
}

// --- slaves ------------------------------------------------------------------------------------

void sim_world::connect(process& proc) {
    link l{.id = next_link_++, .slave = proc.id};
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
            fail(fmt::format("shard {} granted to {} at epoch {} while {} still holds it at epoch {}", shard, proc.id,
                             epoch, id, other.held.at(shard)));
        }
    }
    if (epoch <= max_epoch_held_[shard]) {
        fail(fmt::format("shard {} granted at epoch {} after epoch {} was held", shard, epoch, max_epoch_held_[shard]));
    }
    max_epoch_held_[shard] = std::max(max_epoch_held_[shard], epoch);
    proc.held[shard] = epoch;
}

void sim_world::slave_receives(process& proc, link& l, const p::message& m) {
    const std::uint64_t c = l.id;
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

void sim_world::deliver_to_slave(link& l) {
    std::vector<std::byte> bytes = std::move(l.to_slave.front());
    l.to_slave.pop_front();
    auto pit = processes_.find(l.slave);
    if (pit == processes_.end() || !pit->second.alive || pit->second.hung) return;
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
    auto it = processes_.find(slave);
    if (it != processes_.end() && it->second.alive) die(it->second);
}

void sim_world::hang(const std::string& slave) {
    auto it = processes_.find(slave);
    if (it != processes_.end()) it->second.hung = true;
}

void sim_world::drop_connection(const std::string& slave) {
    auto it = processes_.find(slave);
    if (it == processes_.end() || !it->second.link) return;
    auto lit = links_.find(*it->second.link);
    if (lit == links_.end() || !lit->second.open) return;
    link& l = lit->second;
    l.open = false;
    l.to_slave.clear();
    it->second.link.reset();
    // The slave library reconnects promptly, still holding its shards.
    l.to_master.push_back([this, c = l.id, id = slave] {
        core_->on_disconnected(c, now_);
        apply(core_->take_actions());
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
            if (!l.to_slave.empty()) {
                deliver_to_slave(l);
                did = true;
            }
            if (!l.to_master.empty()) {
                auto input = std::move(l.to_master.front());
                l.to_master.pop_front();
                input();
                apply(core_->take_actions());
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
        if (!l.to_slave.empty()) {
            deliver_to_slave(l);
            check_invariants();
            return true;
        }
    }
    for (auto& [id, l] : links_) {
        if (!l.to_master.empty()) {
            auto input = std::move(l.to_master.front());
            l.to_master.pop_front();
            input();
            apply(core_->take_actions());
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

void sim_world::random_step() {
    std::vector<std::uint64_t> to_slave, to_master;
    for (auto& [id, l] : links_) {
        if (!l.to_slave.empty()) to_slave.push_back(id);
        if (!l.to_master.empty()) to_master.push_back(id);
    }
    const int choice = std::uniform_int_distribution<int>(0, 99)(rng_);
    if (choice < 30 && !to_slave.empty()) {
        deliver_to_slave(links_[to_slave[rng_() % to_slave.size()]]);
    } else if (choice < 60 && !to_master.empty()) {
        link& l = links_[to_master[rng_() % to_master.size()]];
        auto input = std::move(l.to_master.front());
        l.to_master.pop_front();
        input();
        apply(core_->take_actions());
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
    } else if (choice < 65 && !live.empty() && options_.spawn) {
        hang(live[rng_() % live.size()]);
    } else if (choice < 80 && !live.empty()) {
        drop_connection(live[rng_() % live.size()]);
    } else if (choice < 85 && !options_.spawn) {
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
    if (!os_events_.empty()) return false;
    for (const auto& [id, l] : links_) {
        if (!l.to_slave.empty() || !l.to_master.empty()) return false;
    }
    const supervisor_status st = core_->status(now_);
    if (st.restart || st.restart_queued) return false;
    for (const auto& sh : st.shards) {
        if (sh.phase != "running") return false;
    }
    return true;
}

void sim_world::check_invariants() {
    std::map<std::uint32_t, std::string> holder;
    for (const auto& [id, proc] : processes_) {
        if (!proc.alive) continue;
        for (const auto& [shard, epoch] : proc.held) {
            if (auto it = holder.find(shard); it != holder.end()) {
                fail(fmt::format("shard {} held by {} and {} at once", shard, it->second, id));
            }
            holder[shard] = id;
        }
    }
}

std::optional<std::string> sim_world::run() {
    for (std::uint32_t i = 0; i < options_.steps && !violation_; ++i) {
        random_step();
        check_invariants();
    }
    // Let everything settle: no more faults; hung slaves stay hung until the master kills them,
    // and external slaves that died are restarted by their own supervisor (systemd, say).
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
        step_deliver_all();
        if (settled()) break;
        advance(100ms);
    }
    if (violation_) return violation_;
    if (!settled()) {
        const auto st = core_->status(now_);
        std::string phases;
        for (const auto& sh : st.shards) phases += fmt::format(" {}:{}:{}", sh.shard, sh.owner, sh.phase);
        return fmt::format("did not settle: restart {}, queued {}, shards{}", st.restart.has_value(), st.restart_queued, phases);
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
    return std::nullopt;
}

}  // namespace meshmaster::master::test
