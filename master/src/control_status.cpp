// The control socket's status projection: see control_status.hpp.
#include "control_status.hpp"

#include <meshmaster/master/status.hpp>

#include <boost/json/array.hpp>

namespace meshmaster::master {

namespace json = boost::json;

namespace {

// "moving" only when true: a planned handoff is rare beside 16,384 running shards, and the flag on
// every entry would grow the full answer by a quarter.
json::object shard_json(const shard_status& s) {
    json::object o{{"shard", s.shard}, {"owner", s.owner}, {"epoch", s.epoch}, {"phase", s.phase}};
    if (s.moving) o["moving"] = true;
    return o;
}

// Counts per phase, the shards in a planned handoff, and the first shards that do not run: what an
// operator reads first, and all the summary form says about shards. One pass over the table.
void shard_summary(const supervisor_status& st, json::object& o) {
    // Per phase: every shard, and those not running (a stopping or resuming shard outside a planned
    // move: its holder died, or the master is stopping).
    struct counts {
        std::uint32_t unowned = 0, starting = 0, running = 0, stopping = 0, resuming = 0;
        void add(std::string_view phase) {
            if (phase == "unowned") ++unowned;
            else if (phase == "starting") ++starting;
            else if (phase == "running") ++running;
            else if (phase == "stopping") ++stopping;
            else if (phase == "resuming") ++resuming;
        }
        json::object to_json(bool with_running) const {
            json::object o{{"unowned", unowned}, {"starting", starting}, {"stopping", stopping}, {"resuming", resuming}};
            if (with_running) o["running"] = running;
            return o;
        }
    } all, down;
    std::uint32_t moving = 0, not_running = 0;
    json::array first;
    for (const auto& sh : st.shards) {
        all.add(sh.phase);
        if (sh.moving) ++moving;
        // fleet_problems' test: a shard runs when it is running or moving.
        if (sh.phase == "running" || sh.moving) continue;
        down.add(sh.phase);
        if (not_running++ < not_running_named) first.push_back(shard_json(sh));
    }
    o["shard_states"] = all.to_json(true);
    o["shards_moving"] = moving;
    o["shards_not_running"] = not_running;
    o["shards_not_running_states"] = down.to_json(false);
    o["shards_not_running_first"] = std::move(first);
}

json::value last_restart_json(const event_record* r) {
    if (!r) return nullptr;
    return json::object{{"id", r->restart.value_or(0)},
                        {"result", r->event == event_kind::restart_completed ? "completed" : "failed"},
                        {"duration_ms", r->duration_ms.value_or(0)},
                        {"shards_moved", r->count.value_or(0)},
                        {"reason", r->reason}};
}

}  // namespace

json::object restart_json(const restart_status& r) {
    return json::object{{"id", r.id},
                        {"slaves_total", r.slaves_total},
                        {"slaves_done", r.slaves_done},
                        {"migrations_done", r.migrations_done},
                        {"migrations_total", r.migrations_total},
                        {"in_flight", r.in_flight},
                        {"elapsed_ms", r.elapsed_ms},
                        {"failing", r.failing}};
}

json::object status_json(const supervisor_status& st, const daemon_facts& daemon, status_detail detail) {
    json::object o;
    o["detail"] = detail == status_detail::full ? "full" : "summary";
    o["master"] = json::object{{"id", daemon.master_id}, {"pid", daemon.pid}, {"uptime_ms", daemon.uptime_ms}};
    o["listen"] = daemon.slave_address;
    o["event_log"] = daemon.event_log;
    o["generation"] = st.generation;
    o["shard_count"] = daemon.shard_count;
    o["shards_running"] = st.shards_running;
    o["shards_checkpointed"] = st.shards_checkpointed;
    o["restarts_completed"] = st.restarts_completed;
    o["restarts_failed"] = st.restarts_failed;
    o["restart_queued"] = st.restart_queued;
    o["stopping"] = st.stopping;
    o["detaching"] = st.detaching;
    o["adopting"] = st.adopting_ms.has_value();
    // The verdict `meshmaster status` exits on: every configured shard runs, or why not.
    const std::vector<std::string> problems = fleet_problems(st);
    o["healthy"] = problems.empty();
    json::array reasons;
    for (const auto& p : problems) reasons.push_back(json::string(p));
    o["problems"] = std::move(reasons);
    shard_summary(st, o);
    if (detail == status_detail::full) {
        json::array unassigned;
        for (const auto& sh : st.shards) {
            if (sh.owner.empty()) unassigned.push_back(sh.shard);
        }
        o["unassigned_shards"] = std::move(unassigned);
    }
    json::array slots;
    for (const auto& sl : st.slots) {
        json::object so{{"slot", sl.slot}, {"first_shard", sl.first_shard}, {"last_shard", sl.last_shard},
                        {"slave", sl.slave.empty() ? json::value(nullptr) : json::value(sl.slave)},
                        {"failed", sl.failed}, {"failed_starts", sl.failed_starts}};
        so["failure"] = sl.failed ? json::value(sl.failure) : json::value(nullptr);
        so["respawn_in_ms"] = sl.respawn_in_ms ? json::value(*sl.respawn_in_ms) : json::value(nullptr);
        slots.push_back(std::move(so));
    }
    o["slots"] = std::move(slots);
    o["spares_failed"] = st.spares_failed;
    o["restart"] = st.restart ? json::value(restart_json(*st.restart)) : json::value(nullptr);
    o["last_restart"] = last_restart_json(daemon.last_restart);
    json::array slaves;
    for (const auto& s : st.slaves) {
        json::object so{{"id", s.id}, {"generation", s.generation}, {"pid", s.pid}, {"phase", s.phase},
                        {"connected", s.connected}, {"spawned_here", s.spawned_here}, {"shards", s.shards}};
        if (s.slot) so["slot"] = *s.slot; else so["slot"] = nullptr;
        so["mesh"] = s.mesh.empty() ? json::value(nullptr) : json::value(s.mesh);
        so["address"] = s.address.empty() ? json::value(nullptr) : json::value(s.address);
        so["heartbeat_rtt_ms"] = s.heartbeat_rtt_ms ? json::value(*s.heartbeat_rtt_ms) : json::value(nullptr);
        slaves.push_back(std::move(so));
    }
    o["slaves"] = std::move(slaves);
    if (detail == status_detail::full) {
        json::array shards;
        shards.reserve(st.shards.size());
        for (const auto& s : st.shards) shards.push_back(shard_json(s));
        o["shards"] = std::move(shards);
    }
    return o;
}

json::object retried_json(const supervisor::retried_starts& r) {
    json::array slots;
    for (std::uint32_t slot : r.slots) slots.push_back(slot);
    return json::object{{"retried_slots", std::move(slots)}, {"retried_spares", r.spares}};
}

}  // namespace meshmaster::master
