// The status projection (status_projection.hpp says what it owns): supervisor::status, composed of
// the projections of single records.
#include "status_projection.hpp"

#include "supervisor_state.hpp"

#include <fmt/format.h>
#include <algorithm>
#include <map>

namespace meshmaster::master {

slot_status project_slot(std::uint32_t index, const slot_rec& slot, mono_time now, milliseconds start_limit_interval) {
    slot_status ss{.slot = index, .slave = slot.active, .failed = slot.failed,
                   .failed_starts = slot.starts.recent(now, start_limit_interval), .failure = slot.failure};
    if (slot.respawn_at) ss.respawn_in_ms = std::max(0.0, ms_between(now, *slot.respawn_at));
    return ss;
}

restart_status project_restart(const restart_rec& restart, std::uint32_t in_flight, mono_time now) {
    restart_status rs{.id = restart.id, .in_flight = in_flight, .elapsed_ms = ms_between(restart.started, now),
                      .failing = restart.failing};
    for (const pair_rec& p : restart.pairs) {
        ++rs.slaves_total;
        if (p.phase == pair_phase::done) ++rs.slaves_done;
        rs.migrations_done += p.moved;
        rs.migrations_total += p.total;
    }
    return rs;
}

supervisor_status supervisor::status(mono_time now) const {
    const auto& s = *s_;
    supervisor_status st;
    st.generation = s.generation;
    st.restarts_completed = s.restarts_completed;
    st.restarts_failed = s.restarts_failed;
    st.restart_queued = s.restart_queued;
    st.stopping = s.stopping;
    st.detaching = s.detaching;
    if (s.adopting_until) st.adopting_ms = std::max(0.0, ms_between(now, *s.adopting_until));
    st.spares = s.config.spares;
    st.spares_failed = s.spares_failed;
    st.spares_failure = s.spares_failure;
    for (std::uint32_t i = 0; i < s.slots.size(); ++i) {
        st.slots.push_back(project_slot(i, s.slots[i], now, s.config.start_limit_interval));
    }
    std::vector<bool> seen_slot(s.slots.size(), false);
    std::map<std::string, std::uint32_t> counts;
    for (std::uint32_t i = 0; i < s.shards.size(); ++i) {
        const shard_rec& sh = s.shards[i];
        auto m = sh.migration ? s.migrations.find(sh.migration) : s.migrations.end();
        const bool moving = m != s.migrations.end() && !m->second.recovery &&
                            (sh.phase == shard_phase::stopping || sh.phase == shard_phase::resuming);
        st.shards.push_back({.shard = i, .owner = sh.owner, .epoch = sh.epoch, .phase = name(sh.phase), .moving = moving});
        if (!sh.owner.empty()) ++counts[sh.owner];
        if (sh.phase == shard_phase::running) ++st.shards_running;
        if (s.checkpoints[i]) ++st.shards_checkpointed;
        if (!s.slots.empty()) {
            const std::uint32_t home = s.home_slot(i);
            if (!seen_slot[home]) st.slots[home].first_shard = i;
            seen_slot[home] = true;
            st.slots[home].last_shard = i;
        }
    }
    for (const auto& [id, r] : s.slaves) {
        st.slaves.push_back({.id = id, .slot = r.slot, .generation = r.generation, .pid = r.pid, .phase = name(r.phase),
                             .connected = r.connection.has_value(), .spawned_here = r.ours, .shards = counts[id],
                             .mesh = r.mesh ? fmt::format("{}:{}", r.mesh->host, r.mesh->port) : std::string(),
                             // Both describe the current connection: a gone one has neither.
                             .address = r.connection ? r.address : std::string(),
                             .heartbeat_rtt_ms = r.connection ? r.heartbeat_rtt_ms : std::nullopt});
    }
    if (s.restart) st.restart = project_restart(*s.restart, s.in_flight, now);
    return st;
}

supervisor_counts supervisor::counts(mono_time now) const {
    const auto& s = *s_;
    supervisor_counts c{.shards_total = static_cast<std::uint32_t>(s.shards.size()),
                        .stopping = s.stopping || s.detaching,
                        .gave_up = s.spares_failed ||
                                   std::ranges::any_of(s.slots, [](const slot_rec& slot) { return slot.failed; })};
    for (const shard_rec& sh : s.shards) {
        if (sh.phase == shard_phase::running) {
            ++c.shards_running;
        } else if (sh.migration && (sh.phase == shard_phase::stopping || sh.phase == shard_phase::resuming)) {
            // As status() decides `moving`: a planned move, not a recovery.
            auto m = s.migrations.find(sh.migration);
            if (m != s.migrations.end() && !m->second.recovery) ++c.shards_moving;
        }
    }
    if (s.restart) c.restart = project_restart(*s.restart, s.in_flight, now);
    return c;
}

}  // namespace meshmaster::master
