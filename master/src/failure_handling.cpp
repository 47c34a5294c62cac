// Failure handling (failure_handling.hpp says what it owns): the deadlines and heartbeats that
// detect a failed slave, a slave declared lost, and a slave known dead. Its rules are free
// functions; the rest are members of supervisor::state (supervisor_state.hpp).
#include "failure_handling.hpp"

#include "supervisor_state.hpp"

#include <fmt/format.h>
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <utility>

namespace meshmaster::master {

mono_time silence_limit(const supervisor_config& config) {
    return std::chrono::duration_cast<mono_time>(config.heartbeat_interval) * config.heartbeat_misses;
}

std::string_view phase_timeout(slave_phase p) {
    switch (p) {
        case slave_phase::spawning: return "no hello before spawn_timeout";
        case slave_phase::soft_starting: return "soft_start_timeout";
        case slave_phase::ready:
        case slave_phase::running:
        case slave_phase::retiring:
        case slave_phase::lost: return {};
    }
    return {};
}

bool unresponsive(std::string_view reason) {
    return reason.find("timeout") != std::string_view::npos || reason == "progress_stalled";
}

// The slave whose answer a migration waits for, if it can still give one (a slave already
// declared lost is being killed: its timeout has done its job).
const slave_rec* supervisor::state::awaited(const migration_rec& m) const {
    const slave_rec* s = m.phase == migration_phase::stopping ? find(m.from) : shards[m.shard].holder;
    if (!s || !s->alive || s->phase == slave_phase::lost) return nullptr;
    return s;
}

const slave_rec* supervisor::state::awaited(const shard_rec& sh) const {
    if (sh.phase != shard_phase::starting) return nullptr;
    const slave_rec* s = sh.holder;
    if (!s || !s->alive || s->phase == slave_phase::lost) return nullptr;
    return s;
}

// Something is wrong with a live slave: make sure it is dead (kill it) before anything it holds
// is granted again. External slaves cannot be killed: they get a grace period to come back.
void supervisor::state::fail_slave(slave_rec& s, const std::string& reason) {
    if (s.phase == slave_phase::lost || !s.alive) return;
    log({.event = event_kind::slave_lost, .slave = s.id, .pid = s.pid, .reason = reason});
    mesh_leave(s);
    std::size_t index = 0;
    if (pair_rec* p = pair_of(s.id, &index); p && p->to == s.id) fail_target(index, reason);
    if (s.connection) {
        out.emplace_back(actions::close_connection{*s.connection, "slave_lost", reason});
        by_connection.erase(*s.connection);
        s.connection.reset();
    }
    s.phase = slave_phase::lost;
    if (s.killable()) {
        out.emplace_back(actions::kill_slave{s.id, s.pid});
        log({.event = event_kind::slave_killed, .slave = s.id, .pid = s.pid, .reason = reason});
        s.deadline.reset();  // now we wait for its exit
    } else if (s.ours) {
        // Spawned but no pid yet (spawn still in progress): the exit will follow the spawn.
        s.deadline.reset();
    } else {
        // An external slave cannot be killed. One that went silent or stuck is fenced now: its
        // epochs are superseded by the next grants, it refuses stale ones itself, and an
        // upstream that checks epochs refuses its work. One that merely disconnected gets
        // external_grace to come back first.
        s.deadline = now + (unresponsive(reason) ? mono_time{0} : ms(config.external_grace));
        arm(s);
    }
}

// The slave's process is gone (or, for an external slave, presumed gone after its grace):
// nothing it held runs any more, so its shards may be granted again.
void supervisor::state::slave_dead(const std::string& id, const std::string& reason) {
    slave_rec* sp = find(id);
    if (!sp) return;
    slave_rec& s = *sp;
    s.alive = false;
    mesh_leave(s);
    if (s.connection) {
        out.emplace_back(actions::close_connection{*s.connection, "slave_exited", reason});
        by_connection.erase(*s.connection);
        s.connection.reset();
    }
    log({.event = event_kind::slave_exited, .slave = s.id, .pid = s.pid, .reason = reason});

    std::size_t pair_index = 0;
    pair_rec* pair = pair_of(s.id, &pair_index);
    const bool is_target = pair && pair->to == s.id;
    const bool is_source = pair && pair->from == s.id;
    if (is_target) fail_target(pair_index, reason);
    if (is_source) {
        pair->source_dead = true;
        unqueue_pair(pair_index);
        if (!pair->target_failed) slots[pair->slot].active = pair->to;
    }

    for (std::uint32_t shard : shards_of(s.id)) {
        shard_rec& sh = shards[shard];
        auto mig = sh.migration ? migrations.find(sh.migration) : migrations.end();
        if (mig != migrations.end()) {
            migration_rec& m = mig->second;
            slave_rec* source = find(m.from);
            if (sh.phase == shard_phase::resuming && !m.back_to_source && source && source->usable()) {
                // The target died while resuming: the state is still here, give it back.
                m.back_to_source = true;
                resume_on(m, *source);
                continue;
            }
            const bool was_stopping = sh.phase == shard_phase::stopping;
            if (m.state) set_checkpoint(shard, m.state);  // a handed-back state outlives its target
            set_owner(shard, nullptr);
            sh.phase = shard_phase::unowned;
            orphaned(shard);
            end_migration(m.id, event_kind::migration_failed,
                          was_stopping ? "source died before handing back the state"
                                       : fmt::format("{} died: {}", s.id, reason),
                          !checkpoints[shard]);
            log({.event = event_kind::shard_orphaned, .slave = s.id, .shard = shard, .epoch = sh.epoch,
                 .state_lost = !checkpoints[shard]});
            continue;
        }
        set_owner(shard, nullptr);
        sh.phase = shard_phase::unowned;
        orphaned(shard);
        // With a checkpoint the shard resumes from it; without, it starts over.
        log({.event = event_kind::shard_orphaned, .slave = s.id, .shard = shard, .epoch = sh.epoch,
             .state_lost = !checkpoints[shard]});
    }

    // Migrations stopping on another slave but bound for this one go back to their source.
    for (auto& [mid, m] : migrations) {
        if (m.to == s.id && m.phase == migration_phase::stopping) m.back_to_source = true;
    }

    const bool retired = s.phase == slave_phase::retiring;
    const bool was_spare = s.spare;
    if (s.slot && slots[*s.slot].active == s.id) {
        slot_rec& slot = slots[*s.slot];
        slot.active.clear();
        if (!retired && !stopping && !promote_spare(*s.slot)) schedule_respawn(*s.slot, s, reason);
    }
    if (was_spare && s.ours && !s.started && !stopping) spare_start_failed(s.id, reason);
    if (pair) {
        // A retiring source is done however it went (it may have been killed at its deadline).
        if (is_source && pair->phase == pair_phase::retiring) {
            pair->phase = pair_phase::done;
            log({.event = event_kind::slave_retired, .slave = s.id, .restart = restart->id});
            log({.event = event_kind::restart_pair_completed, .slave = pair->to, .peer = pair->from,
                 .restart = restart->id, .slot = pair->slot, .count = pair->moved});
        }
    } else if (retired) {
        log({.event = event_kind::slave_retired, .slave = s.id});
    }
    erase_slave(id);
    if (pair) check_pair(pair_index);
    grant_orphans();
    if (was_spare || !retired) ensure_spares();
    pump_restart();
    advance_stop();
}

void supervisor::on_disconnected(connection_id connection, mono_time now) {
    auto& s = *s_;
    s.now = now;
    if (s.exited) return;
    slave_rec* r = s.by_conn(connection);
    if (!r) return;
    s.by_connection.erase(connection);
    r->connection.reset();
    if (r->phase == slave_phase::retiring) {
        s.log({.event = event_kind::slave_disconnected, .slave = r->id, .reason = "retiring"});
        return;  // it is exiting; its exit (or the shutdown deadline) finishes the job
    }
    s.fail_slave(*r, "connection lost");
}

void supervisor::on_process_exited(const std::string& slave, std::string status, mono_time now) {
    auto& s = *s_;
    s.now = now;
    if (s.exited) return;
    if (s.awaiting_exit.erase(slave) > 0) {
        s.log({.event = event_kind::slave_exited, .slave = slave, .reason = status});
        s.grant_orphans();
        return;
    }
    if (!s.find(slave)) return;
    s.slave_dead(slave, status);
}

void supervisor::on_heartbeat(connection_id connection, std::uint64_t progress, mono_time now, const heartbeat_info& info) {
    auto& s = *s_;
    slave_rec* r = s.heard_from(connection, now);
    if (!r) return;
    if (r->minor >= 3) s.heartbeat_echo(*r, info, now);
    if (progress != r->progress) {
        r->progress = progress;
        r->progress_at = now;
        s.arm(*r);  // a first progress brings the stall check in
    }
}

// Our heartbeat to `r`; to a 1.3 slave with the echo of the newest one it sent us, and its send
// time kept to measure the round trip when the slave echoes it.
void supervisor::state::send_heartbeat(slave_rec& r, mono_time at) {
    protocol::heartbeat hb{.seq = ++r.heartbeat_seq};
    if (r.minor >= 3) {
        r.sent_heartbeats[hb.seq % r.sent_heartbeats.size()] = {.seq = hb.seq, .at = at};
        if (r.received_heartbeat) {
            hb.echo_seq = r.received_heartbeat->first;
            hb.echo_delay_us = static_cast<std::uint64_t>(
                std::chrono::duration_cast<std::chrono::microseconds>(at - r.received_heartbeat->second).count());
        }
    }
    send(r, hb);
}

// A 1.3 slave's heartbeat: its seq is echoed back next time, and its echo of ours gives the
// round trip — unless that heartbeat has left the ring (a slave far behind) or the echo is garbage.
void supervisor::state::heartbeat_echo(slave_rec& r, const heartbeat_info& info, mono_time at) {
    if (!r.received_heartbeat || info.seq >= r.received_heartbeat->first) r.received_heartbeat.emplace(info.seq, at);
    if (!info.echo_seq || !info.echo_delay_us) return;
    const slave_rec::sent_heartbeat& sent = r.sent_heartbeats[*info.echo_seq % r.sent_heartbeats.size()];
    if (sent.seq != *info.echo_seq || sent.seq == 0) return;
    // In whole microseconds, the echo's resolution (and status shows 0.066, not 0.06600000000000001).
    // A delay longer than the whole round trip is impossible on one clock (the slave's ran fast):
    // clamped at zero rather than shown negative.
    const auto trip_us = static_cast<std::uint64_t>(std::max<std::int64_t>(
        0, std::chrono::duration_cast<std::chrono::microseconds>(at - sent.at).count()));
    r.heartbeat_rtt_ms = trip_us > *info.echo_delay_us ? static_cast<double>(trip_us - *info.echo_delay_us) / 1000.0 : 0.0;
}

void supervisor::on_state_received(connection_id connection, mono_time now) {
    auto& s = *s_;
    slave_rec* r = s.heard_from(connection, now);
    if (!r) return;
    // Its heartbeats may wait behind these bytes in its socket, for long on a busy machine: a slave
    // whose states still flow is slow, not hung. A frozen one sends no state either.
    r->progress_at = now;
}

// Only the records whose timer is due are looked at (deadline_queue.hpp), in the order a walk of
// every record would take them — slots by index, slaves by id, migrations by id, shards by index —
// so that which slave fails when, and why, and the log's order are what the walk gave.
void supervisor::on_tick(mono_time now) {
    auto& s = *s_;
    s.now = now;
    if (s.exited) return;
    if (s.adopting_until && now >= *s.adopting_until) s.end_adoption();
    if (std::erase_if(s.awaiting_exit, [&](const auto& entry) {
            if (now < entry.second) return false;
            s.log({.event = event_kind::slave_exited, .slave = entry.first,
                   .reason = "no exit seen within stop_timeout after the kill: presumed gone"});
            return true;
        }) > 0) {
        s.grant_orphans();
    }

    std::vector<std::uint64_t> due[4];  // by deadline_kind
    auto take_due = [&] {
        s.timers.take_due(
            now, [&](deadline_kind kind, std::uint64_t key) { return s.timer_slot(kind, key); },
            [&](deadline_kind kind, std::uint64_t key) { due[static_cast<std::size_t>(kind)].push_back(key); });
        for (auto& keys : due) {
            std::sort(keys.begin(), keys.end());
            keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
        }
    };
    take_due();
    for (const std::uint64_t i : due[static_cast<std::size_t>(deadline_kind::slot)]) {
        if (s.slots[i].respawn_at && now >= *s.slots[i].respawn_at) s.respawn(static_cast<std::uint32_t>(i));
    }
    if (s.spare_respawn_at && now >= *s.spare_respawn_at) {
        s.spare_respawn_at.reset();
        s.ensure_spares();
    }
    take_due();  // a slave just spawned may be due at once (a spawn_timeout of 0)

    std::vector<slave_rec*> slaves_due;
    for (const std::uint64_t key : due[static_cast<std::size_t>(deadline_kind::slave)]) {
        if (auto it = s.slave_by_key.find(key); it != s.slave_by_key.end()) slaves_due.push_back(it->second);
    }
    std::sort(slaves_due.begin(), slaves_due.end(), [](const slave_rec* a, const slave_rec* b) { return a->id < b->id; });

    // Collect first: failing a slave changes the maps being walked.
    std::vector<std::pair<std::string, std::string>> to_fail;
    std::vector<std::string> to_kill;
    std::vector<std::string> to_bury;
    const mono_time silence = silence_limit(s.config);
    for (slave_rec* rp : slaves_due) {
        slave_rec& r = *rp;
        const std::string& id = r.id;
        if (!r.alive) continue;
        if (r.deadline && now >= *r.deadline) {
            switch (r.phase) {
                case slave_phase::retiring: to_kill.push_back(id); break;
                case slave_phase::lost: to_bury.push_back(id); break;
                default:
                    if (const std::string_view why = phase_timeout(r.phase); !why.empty()) to_fail.emplace_back(id, why);
                    break;
            }
            continue;
        }
        if (r.connection && r.phase != slave_phase::lost) {
            if (now - r.last_seen > silence) {
                to_fail.emplace_back(id, "heartbeat_timeout");
                continue;
            }
            // Heartbeats that keep coming while the event loop stands still: stuck, not idle.
            if (r.progress != 0 && now - r.progress_at > silence) {
                to_fail.emplace_back(id, "progress_stalled");
                continue;
            }
            if (now >= r.next_heartbeat) {
                s.send_heartbeat(r, now);
                r.next_heartbeat = now + s.ms(s.config.heartbeat_interval);
            }
        }
    }
    for (const std::uint64_t key : due[static_cast<std::size_t>(deadline_kind::migration)]) {
        const auto it = s.migrations.find(key);
        if (it == s.migrations.end()) continue;
        const migration_rec& m = it->second;
        const bool stopping = m.phase == migration_phase::stopping;
        const milliseconds limit = stopping ? s.config.stop_timeout : s.config.resume_timeout;
        const slave_rec* who = s.awaited(m);
        if (who && now - m.phase_started >= s.ms(limit)) {
            to_fail.emplace_back(who->id, stopping ? "stop_timeout" : "resume_timeout");
        }
    }
    for (const std::uint64_t i : due[static_cast<std::size_t>(deadline_kind::shard)]) {
        const shard_rec& sh = s.shards[i];
        const slave_rec* who = s.awaited(sh);
        if (who && now - sh.since >= s.ms(s.config.start_timeout)) to_fail.emplace_back(who->id, "start_timeout");
    }
    for (const auto& id : to_kill) {
        if (slave_rec* r = s.find(id); r && r->alive && r->phase == slave_phase::retiring) {
            r->deadline.reset();
            if (r->killable()) {
                s.out.emplace_back(actions::kill_slave{r->id, r->pid});
                s.log({.event = event_kind::slave_killed, .slave = r->id, .pid = r->pid, .reason = "shutdown_timeout"});
            } else {
                s.slave_dead(id, "did not exit after shutdown");
            }
        }
    }
    for (const auto& [id, reason] : to_fail) {
        if (slave_rec* r = s.find(id)) s.fail_slave(*r, reason);
    }
    for (const auto& id : to_bury) {
        if (slave_rec* r = s.find(id); r && r->phase == slave_phase::lost && r->deadline && now >= *r->deadline) {
            s.slave_dead(id, "external slave did not come back within external_grace");
        }
    }
    s.pump_restart();
    s.advance_stop();

    // What was taken off the queue gets its next deadline (a heartbeat sent, a silence limit
    // pushed on by frames since it was armed, or the same deadline still to come).
    for (const std::uint64_t i : due[static_cast<std::size_t>(deadline_kind::slot)]) s.arm_slot(static_cast<std::uint32_t>(i));
    for (const std::uint64_t key : due[static_cast<std::size_t>(deadline_kind::slave)]) {
        if (auto it = s.slave_by_key.find(key); it != s.slave_by_key.end()) s.arm(*it->second);
    }
    for (const std::uint64_t key : due[static_cast<std::size_t>(deadline_kind::migration)]) {
        if (auto it = s.migrations.find(key); it != s.migrations.end()) s.arm(it->second);
    }
    for (const std::uint64_t i : due[static_cast<std::size_t>(deadline_kind::shard)]) s.arm_shard(static_cast<std::uint32_t>(i));
}

// Exact: the queue's front is the earliest deadline of every record (deadline_queue.hpp).
std::optional<mono_time> supervisor::next_deadline() const { return s_->next_deadline(); }

}  // namespace meshmaster::master
