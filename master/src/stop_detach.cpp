// Stop and detach (stop_detach.hpp says what it owns): a graceful stop, an immediate one, and a
// detach. Members of supervisor::state (supervisor_state.hpp).
#include "stop_detach.hpp"

#include "supervisor_state.hpp"

#include <cstdint>
#include <string>
#include <string_view>

namespace meshmaster::master {

// A graceful stop or a detach: nothing new starts (no restart, respawn, grant or spare), a
// running restart stops queueing moves, and advance_stop() takes it from there.
namespace {
// "graceful" or "graceful (SIGTERM)": what kind of stop, then who asked for it.
std::string stop_reason(std::string_view kind, const std::string& requested_by) {
    return requested_by.empty() ? std::string(kind) : std::string(kind) + " (" + requested_by + ")";
}
}  // namespace

void supervisor::state::begin_stop(bool detach, const std::string& requested_by) {
    if (stopping) return;
    stopping = true;
    detaching = detach;
    restart_queued = false;
    for (auto& slot : slots) slot.respawn_at.reset();
    spare_respawn_at.reset();
    if (restart) {
        restart->queue.clear();
        for (pair_rec& p : restart->pairs) p.queued = 0;
        restart->failing = true;
        if (restart->failure.empty()) restart->failure = detach ? "master detaching" : "master stopping";
    }
    log({.event = event_kind::master_stopping,
         .reason = stop_reason(detach ? "detaching: the slaves keep running" : "graceful", requested_by)});
    pump_restart();
    advance_stop();
}

void supervisor::state::advance_stop() {
    if (!stopping || exited || in_flight > 0) return;
    if (detaching) {
        // Moves are over: every shard has one holder. A restart ends here, half done (the next
        // master adopts old and new slaves alike and converges). Let go of the slaves; they
        // keep running their shards and reconnect to the next master, which adopts them.
        if (restart) finish_restart();
        std::uint64_t left = 0;
        for (auto& [id, s] : slaves) {
            if (!s.alive) continue;
            ++left;
            if (s.connection) {
                out.emplace_back(actions::close_connection{*s.connection, "master_detaching",
                                                           "the master is going away; the next one adopts you"});
            }
        }
        exited = true;
        log({.event = event_kind::master_detached, .count = left});
        out.emplace_back(actions::exit_daemon{0});
        return;
    }
    for (const auto& [id, s] : slaves) {
        if (s.phase == slave_phase::retiring || (s.alive && s.phase == slave_phase::lost && s.killable())) return;
    }
    // Next slave to shut down: slot order, then spares.
    slave_rec* next = nullptr;
    for (auto& [id, s] : slaves) {
        if (!s.alive || (!s.ours && !s.watched)) continue;
        if (s.phase == slave_phase::spawning && !s.connection) {
            if (s.killable()) {
                out.emplace_back(actions::kill_slave{s.id, s.pid});
                s.phase = slave_phase::lost;
                log({.event = event_kind::slave_killed, .slave = s.id, .pid = s.pid, .reason = "master stopping"});
                return;
            }
            continue;
        }
        if (!next || (s.slot.value_or(UINT32_MAX) < next->slot.value_or(UINT32_MAX))) next = &s;
    }
    if (next) {
        if (next->connection) {
            retire(*next, "master stopping");
        } else {
            fail_slave(*next, "master stopping");
        }
        return;
    }
    for (auto& [id, s] : slaves) {
        if (s.connection) {
            out.emplace_back(actions::close_connection{*s.connection, "master_stopping", "the master is stopping"});
        }
    }
    exited = true;
    log({.event = event_kind::master_stopped});
    out.emplace_back(actions::exit_daemon{0});
}

void supervisor::request_stop(mono_time now, bool immediate, std::string requested_by) {
    auto& s = *s_;
    s.now = now;
    if (s.exited) return;
    if (immediate) {
        s.log({.event = event_kind::master_stopping, .reason = stop_reason("immediate", requested_by)});
        for (auto& [id, r] : s.slaves) {
            if (r.killable()) {
                s.out.emplace_back(actions::kill_slave{r.id, r.pid});
                s.log({.event = event_kind::slave_killed, .slave = r.id, .pid = r.pid, .reason = "master stopping immediately"});
            }
        }
        if (s.restart) {
            // Its slaves are being killed: the restart ends here, before the log does.
            s.stopping = true;
            s.restart->failure = s.restart->failing ? s.restart->failure + "; then the master stopped immediately"
                                                    : "master stopping immediately";
            s.restart->failing = true;
            s.finish_restart();
        }
        s.exited = true;
        s.log({.event = event_kind::master_stopped, .reason = "immediate"});
        s.out.emplace_back(actions::exit_daemon{0});
        return;
    }
    s.begin_stop(false, requested_by);
}

void supervisor::request_detach(mono_time now, std::string requested_by) {
    auto& s = *s_;
    s.now = now;
    if (s.exited) return;
    s.begin_stop(true, requested_by);
}

}  // namespace meshmaster::master
