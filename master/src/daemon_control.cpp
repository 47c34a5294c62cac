// The daemon's control actions — status, restart, reload, stop — as values, shared by the two
// interfaces that ask for them: the control socket (control_socket.cpp, the CLI's JSON lines) and
// the HTTP API (daemon_http.cpp). Each answers what it did in the control socket's JSON, which the
// CLI reads and whose shape must not change; the HTTP API maps the outcome to a status code.
// Thread safety: none; runs on the daemon's io_context thread.
#include "daemon_runtime.hpp"

#include <meshmaster/protocol/json_text.hpp>

#include <fmt/format.h>

#include <unistd.h>

namespace meshmaster::master {

namespace json = boost::json;

daemon_facts daemon_runtime::facts() const {
    return {.master_id = cfg_.master_id,
            .slave_address = slave_address_,
            .event_log = cfg_.event_log,
            .shard_count = cfg_.supervisor.shard_count,
            .pid = static_cast<std::int64_t>(::getpid()),
            .uptime_ms = std::chrono::duration<double, std::milli>(now()).count(),
            .last_restart = restart_outcomes_.empty() ? nullptr : &restart_outcomes_.back()};
}

json::object daemon_runtime::control_status(status_detail detail) const {
    return status_json(core_.status(now()), facts(), detail);
}

daemon_runtime::restart_answer daemon_runtime::control_restart(std::string_view trigger) {
    restart_answer out;
    out.outcomes_before = restarts_ended_;
    supervisor::restart_request request;
    drive([&] { request = core_.request_restart(now(), std::string(trigger)); });
    using outcome = supervisor::restart_request::outcome;
    if (request.result == outcome::refused) {
        out.answer = json::object{{"accepted", false}, {"refused", request.refusal}};
        log_line("warn", fmt::format("{}: restart refused: {}", trigger, request.refusal));
        return out;
    }
    out.accepted = true;
    out.busy = request.result != outcome::started;
    out.restart = request.restart;
    out.answer = retried_json(request.retried);
    out.answer["accepted"] = true;
    out.answer["queued"] = out.busy;
    out.answer["already_queued"] = request.result == outcome::already_queued;
    out.answer["restart"] = request.restart;
    return out;
}

daemon_runtime::reload_answer daemon_runtime::control_reload(std::string_view trigger) {
    const reload_outcome r = reload(trigger);
    reload_answer out;
    if (!r.errors.empty()) {
        json::array errors;
        for (const auto& e : r.errors) errors.push_back(json::string(e));
        out.answer["result"] = "rejected";
        out.answer["errors"] = std::move(errors);
        return out;
    }
    out.applied = true;
    out.answer = retried_json(r.retried);
    out.answer["result"] = "reloaded";
    json::array keys;
    for (const auto& k : r.not_applied) keys.push_back(json::string(k));
    out.answer["not_applied"] = std::move(keys);
    return out;
}

daemon_runtime::stop_answer daemon_runtime::control_stop(bool leave_slaves, std::string_view trigger) {
    stop_answer out;
    // leave_slaves: exit once moves in flight are over and let the slaves keep their shards; the
    // next master adopts them (an upgrade of the master itself).
    if (const auto st = core_.status(now()); st.stopping) {
        // A stop is under way: the same request again changes nothing; the other kind cannot be honoured.
        if (st.detaching == leave_slaves) {
            out.answer["result"] = leave_slaves ? "already_detaching" : "already_stopping";
            out.accepted = true;
        } else {
            const std::string why = leave_slaves ? "the master is already stopping gracefully: its slaves are being "
                                                   "shut down and cannot be left running"
                                                 : "the master is detaching (stop --leave-slaves): it exits leaving "
                                                   "the slaves running; stop them through the next master";
            out.answer["result"] = "refused";
            out.answer["refused"] = why;
            log_line("warn", std::string(trigger) + ": stop refused: " + why);
        }
        return out;
    }
    stop_requested_ = true;
    notify_.stopping();
    drive([&] {
        if (leave_slaves) {
            core_.request_detach(now(), std::string(trigger));
        } else {
            core_.request_stop(now(), false, std::string(trigger));
        }
    });
    out.accepted = true;
    out.answer["result"] = leave_slaves ? "detaching" : "stopping";
    return out;
}

daemon_runtime::drain_answer daemon_runtime::control_drain(const std::string& slave, std::string_view trigger) {
    drain_answer out;
    supervisor::drain_request request;
    drive([&] { request = core_.request_drain(now(), slave, fmt::format("drain {} ({})", slave, trigger)); });
    out.result = request.result;
    if (request.result != supervisor::drain_request::outcome::started) {
        out.answer = json::object{{"accepted", false}, {"slave", slave}, {"refused", request.refusal}};
        log_line("warn", fmt::format("{}: drain of {} refused: {}", trigger, slave, request.refusal));
        return out;
    }
    out.restart = request.restart;
    out.answer = json::object{{"accepted", true}, {"slave", slave}, {"restart", request.restart}};
    return out;
}

const event_record* daemon_runtime::restart_outcome(std::uint64_t restart) const {
    for (auto it = restart_outcomes_.rbegin(); it != restart_outcomes_.rend(); ++it) {
        if (it->restart == restart) return &*it;
    }
    return nullptr;
}

json::object daemon_runtime::outcome_json(const event_record& r) {
    json::object finished;
    finished["finished"] = r.event == event_kind::restart_completed ? "completed" : "failed";
    finished["restart"] = r.restart.value_or(0);
    finished["duration_ms"] = r.duration_ms.value_or(0);
    finished["shards_moved"] = r.count.value_or(0);
    finished["reason"] = r.reason;
    return finished;
}

}  // namespace meshmaster::master
