// The control socket's status projection: see control_status.hpp.
#include "control_status.hpp"

#include "daemon_config.hpp"

#include <meshmaster/master/status.hpp>

#include <boost/json/array.hpp>

namespace meshmaster::master {

namespace json = boost::json;

json::object status_json(const supervisor_status& st, const daemon_config& cfg, const std::string& slave_address) {
    json::object o;
    o["listen"] = slave_address;
    o["event_log"] = cfg.event_log;
    o["generation"] = st.generation;
    o["shard_count"] = cfg.supervisor.shard_count;
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
    json::array unassigned;
    for (const auto& sh : st.shards) {
        if (sh.owner.empty()) unassigned.push_back(sh.shard);
    }
    o["unassigned_shards"] = std::move(unassigned);
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
    if (st.restart) {
        o["restart"] = json::object{{"id", st.restart->id},
                                    {"slaves_total", st.restart->slaves_total},
                                    {"slaves_done", st.restart->slaves_done},
                                    {"migrations_done", st.restart->migrations_done},
                                    {"migrations_total", st.restart->migrations_total},
                                    {"in_flight", st.restart->in_flight},
                                    {"elapsed_ms", st.restart->elapsed_ms},
                                    {"failing", st.restart->failing}};
    } else {
        o["restart"] = nullptr;
    }
    json::array slaves;
    for (const auto& s : st.slaves) {
        json::object so{{"id", s.id}, {"generation", s.generation}, {"pid", s.pid}, {"phase", s.phase},
                        {"connected", s.connected}, {"spawned_here", s.spawned_here}, {"shards", s.shards}};
        if (s.slot) so["slot"] = *s.slot; else so["slot"] = nullptr;
        so["mesh"] = s.mesh.empty() ? json::value(nullptr) : json::value(s.mesh);
        slaves.push_back(std::move(so));
    }
    o["slaves"] = std::move(slaves);
    json::array shards;
    for (const auto& s : st.shards) {
        shards.push_back(json::object{{"shard", s.shard}, {"owner", s.owner}, {"epoch", s.epoch}, {"phase", s.phase}});
    }
    o["shards"] = std::move(shards);
    return o;
}

json::object retried_json(const supervisor::retried_starts& r) {
    json::array slots;
    for (std::uint32_t slot : r.slots) slots.push_back(slot);
    return json::object{{"retried_slots", std::move(slots)}, {"retried_spares", r.spares}};
}

}  // namespace meshmaster::master
