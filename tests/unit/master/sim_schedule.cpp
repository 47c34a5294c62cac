// The seeded schedule of sim_world: one random step (deliver, advance, or a fault: kills, hangs,
// dropped links, master crashes, operator requests), and a whole run — steps with the invariants
// checked after each, then the settling and the final checks. The world itself (the master's
// side) is sim_world.cpp; the slaves' side sim_slave.cpp.
#include "sim_world.hpp"

#include <meshmaster/protocol/codec.hpp>
#include <meshmaster/protocol/frame_decoder.hpp>

#include <fmt/format.h>

namespace meshmaster::master::test {

using namespace std::chrono_literals;
namespace p = meshmaster::protocol;

void sim_world::random_step() {
    successor_if_detached();
    std::vector<std::uint64_t> to_slave, to_master;
    for (auto& [id, l] : links_) {
        if (can_deliver(l)) to_slave.push_back(id);
        if (!l.to_master.empty()) to_master.push_back(id);
    }
    const int choice = std::uniform_int_distribution<int>(0, 99)(rng_);
    const bool twice = options_.duplicates && std::uniform_int_distribution<int>(0, 99)(rng_) < 8;
    if (choice < 26 && !to_slave.empty()) {
        link& l = links_[to_slave[rng_() % to_slave.size()]];
        if (!twice || !l.to_slave.front().duplicable) return deliver_to_slave(l);
        // The master sent it twice (as after a reconnect): the slave answers both.
        auto copy = l.to_slave.front();
        deliver_to_slave(l);
        if (l.open && can_deliver(l)) ++duplicates_delivered_;
        l.to_slave.push_front(std::move(copy));
        deliver_to_slave(l);
    } else if (choice < 52 && !to_master.empty()) {
        link& l = links_[to_master[rng_() % to_master.size()]];
        if (!twice || !l.to_master.front().duplicable) return deliver_to_master(l);
        deliver_twice_to_master(l);
    } else if (choice < 62) {
        // A worker completes one of the callbacks it was given.
        if (auto workers = workers_with_callbacks(); !workers.empty()) complete_callback(*workers[rng_() % workers.size()]);
    } else if (choice < 72 && !os_events_.empty()) {
        // OS events of different processes may complete in any order.
        const std::size_t i = rng_() % std::min<std::size_t>(os_events_.size(), 3);
        auto e = std::move(os_events_[i]);
        os_events_.erase(os_events_.begin() + static_cast<std::ptrdiff_t>(i));
        e();
    } else if (choice < 76) {
        send_checkpoint();
    } else if (choice < 82) {
        // An event for a shard: its owner's worker processes it (a hung one processes nothing).
        std::vector<process*> workers;
        for (auto& [id, proc] : processes_) {
            if (proc.alive && !proc.hung && !proc.shards.empty()) workers.push_back(&proc);
        }
        if (!workers.empty()) process_event(*workers[rng_() % workers.size()]);
    } else if (choice < 94) {
        advance(std::chrono::milliseconds(std::uniform_int_distribution<int>(1, 100)(rng_)));
    } else if (options_.faults) {
        fault_step();
    }
}

// The same message delivered twice: the copy must change nothing but draw a complaint.
void sim_world::deliver_twice_to_master(link& l) {
    const piece copy = l.to_master.front();
    deliver_to_master(l);
    if (!l.open) return;  // the first one closed the connection: the copy is never read
    const auto before = core_->status(now_);
    deferring_ = true;
    feed_master(l, copy);
    deferring_ = false;
    ++duplicates_delivered_;
    std::vector<action> actions = core_->take_actions();
    const auto after = core_->status(now_);
    for (std::size_t i = 0; i < before.shards.size(); ++i) {
        const auto& b = before.shards[i];
        const auto& a = after.shards[i];
        if (b.owner != a.owner || b.epoch != a.epoch || b.phase != a.phase) {
            fail(fmt::format("a duplicated frame changed shard {}: {}@{} {} -> {}@{} {}", b.shard, b.owner, b.epoch, b.phase,
                             a.owner, a.epoch, a.phase));
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
        } else if (const auto* store = std::get_if<actions::store_checkpoint>(&a)) {
            // A checkpoint frame read twice arrives as a second buffer: the supervisor's check for
            // an unchanged checkpoint compares buffers, not bytes, and stores it again. The disk
            // keeps the same bytes; anything else would be a change.
            const auto it = disk_.find(store->shard);
            if (it == disk_.end() || !it->second || !store->state || *it->second != *store->state) {
                fail(fmt::format("a duplicated frame changed the stored checkpoint of shard {}", store->shard));
            }
            ++restored_checkpoints_;
        } else if (!std::holds_alternative<actions::log_event>(a)) {
            fail(fmt::format("a duplicated frame made the master act (action #{})", a.index()));
        }
    }
    apply(std::move(actions));
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
        piece got = std::move(l.to_master.front());
        l.to_master.pop_front();
        deferring_ = true;
        feed_master(l, got);
        deferring_ = false;
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
            const process& proc = add_process(dead[rng_() % dead.size()], 0, true);
            os_events_.push_back(reconnect_later(proc.id));
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
    std::vector<std::string> dead;
    for (const auto& [id, proc] : processes_) {
        if (proc.external && !proc.alive) dead.push_back(id);
    }
    for (const auto& id : dead) {
        add_process(id, 0, true);
        os_events_.push_back(reconnect_later(id));
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
