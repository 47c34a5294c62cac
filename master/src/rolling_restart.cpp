// The rolling-restart planner's behaviour (the records and what it owns: rolling_restart.hpp):
// starting pairs within the surge, queueing their moves within the concurrency, moving each pair
// along (soft start, moves, retiring the old slave) and ending the restart in one terminal record.
#include "supervisor_state.hpp"

#include <fmt/format.h>
#include <algorithm>
#include <utility>

namespace meshmaster::master {

pair_rec* supervisor::state::pair_of(const std::string& id, std::size_t* index) {
    if (!restart) return nullptr;
    for (std::size_t i = restart->first_open; i < restart->next_pair; ++i) {
        pair_rec& p = restart->pairs[i];
        if (p.phase == pair_phase::waiting || p.phase == pair_phase::done) continue;
        if (p.from == id || p.to == id) {
            if (index) *index = i;
            return &p;
        }
    }
    return nullptr;
}

// The queue of moves changes only through these two (and pump_restart's pop), so that each pair's
// count of queued moves stays right.
void supervisor::state::queue_move(std::size_t pair_index, std::uint32_t shard) {
    restart->queue.emplace_back(pair_index, shard);
    ++restart->pairs[pair_index].queued;
}

void supervisor::state::unqueue_pair(std::size_t pair_index) {
    std::erase_if(restart->queue, [&](const auto& q) { return q.first == pair_index; });
    restart->pairs[pair_index].queued = 0;
}

void supervisor::state::begin_restart(std::string reason, std::optional<std::uint32_t> only_slot) {
    ++generation;
    restart_rec r{.id = next_id++, .started = now, .reason = std::move(reason)};
    for (std::uint32_t slot = 0; slot < slots.size(); ++slot) {
        if (only_slot && slot != *only_slot) continue;
        slave_rec* s = find(slots[slot].active);
        if (!s || !s->alive || !s->connection || s->phase != slave_phase::running) {
            log({.event = event_kind::restart_slot_skipped, .slave = slots[slot].active, .slot = slot,
                 .reason = s ? "slave not running" : "no slave in slot"});
            continue;
        }
        if (!s->ours && !s->watched) {
            log({.event = event_kind::restart_slot_skipped, .slave = s->id, .slot = slot,
                 .reason = "external slave: the master cannot replace it"});
            continue;
        }
        r.pairs.push_back({.slot = slot, .from = s->id});
    }
    restart = std::move(r);
    log({.event = event_kind::restart_started, .restart = restart->id, .generation = generation,
         .count = restart->pairs.size(), .reason = restart->reason});
    pump_restart();
}

void supervisor::state::start_pair(std::size_t index) {
    pair_rec& p = restart->pairs[index];
    slave_rec* from = find(p.from);
    if (!from || !from->alive || slots[p.slot].active != p.from) {
        p.phase = pair_phase::done;
        return;
    }
    p.to = fresh_id(p.slot);
    slave_rec& t = spawn(p.slot, p.to);
    t.restart_target = true;
    p.phase = pair_phase::spawning;
}

void supervisor::state::start_migration(std::size_t pair_index, std::uint32_t shard) {
    const pair_rec& p = restart->pairs[pair_index];
    start_move(shard, p.from, p.to, pair_index);
}

// Pairs using the surge: a retiring one has handed all its shards over, so the next pair may
// start while the old slave exits.
std::size_t supervisor::state::preparing_pairs() const {
    std::size_t n = 0;
    for (std::size_t i = restart->first_open; i < restart->next_pair; ++i) {
        const pair_phase phase = restart->pairs[i].phase;
        if (phase == pair_phase::spawning || phase == pair_phase::soft_starting || phase == pair_phase::migrating) ++n;
    }
    return n;
}

std::size_t supervisor::state::unfinished_pairs() const {
    std::size_t n = 0;
    for (std::size_t i = restart->first_open; i < restart->next_pair; ++i) {
        const pair_phase phase = restart->pairs[i].phase;
        if (phase != pair_phase::waiting && phase != pair_phase::done) ++n;
    }
    return n;
}

void supervisor::state::pump_restart() {
    if (!restart) return drain_surplus();
    while (restart->first_open < restart->next_pair && restart->pairs[restart->first_open].phase == pair_phase::done) {
        ++restart->first_open;
    }
    const std::size_t surge = std::max<std::uint32_t>(1, config.restart_surge);
    while (!restart->failing && !stopping && restart->next_pair < restart->pairs.size() && preparing_pairs() < surge) {
        start_pair(restart->next_pair++);
    }
    while (!stopping && in_flight < std::max<std::uint32_t>(1, config.migration_concurrency) && !restart->queue.empty()) {
        auto [pair_index, shard] = restart->queue.front();
        restart->queue.pop_front();
        --restart->pairs[pair_index].queued;
        if (restart->pairs[pair_index].target_failed) continue;
        start_migration(pair_index, shard);
    }
    for (std::size_t i = restart->first_open; restart && i < restart->next_pair; ++i) check_pair(i);
    if (!restart) return;
    const bool all_started = restart->failing || stopping || restart->next_pair == restart->pairs.size();
    if (all_started && unfinished_pairs() == 0 && in_flight == 0) finish_restart();
}

void supervisor::state::finish_restart() {
    restart_rec r = std::move(*restart);
    restart.reset();
    if (r.failing || stopping) {
        ++restarts_failed;
        log({.event = event_kind::restart_failed, .restart = r.id, .generation = generation,
             .duration_ms = ms_between(r.started, now), .reason = r.failing ? r.failure : "master stopping"});
    } else {
        ++restarts_completed;
        std::uint64_t moved = 0;
        for (const pair_rec& p : r.pairs) moved += p.moved;
        log({.event = event_kind::restart_completed, .restart = r.id, .generation = generation,
             .duration_ms = ms_between(r.started, now), .count = moved});
        ensure_spares();  // spares of the new generation replace the old ones
    }
    if (restart_queued && !stopping) {
        restart_queued = false;
        begin_restart(std::move(queued_reason));
    }
}

void supervisor::state::on_target_ready(std::size_t index) {
    pair_rec& p = restart->pairs[index];
    slave_rec* from = find(p.from);
    slave_rec* to = find(p.to);
    p.phase = pair_phase::migrating;
    std::vector<std::uint32_t> moving;
    if (from && from->alive) {
        for (std::uint32_t s : shards_of(p.from)) {
            if (shards[s].phase == shard_phase::running) moving.push_back(s);
        }
    }
    p.total = static_cast<std::uint32_t>(moving.size());
    log({.event = event_kind::soft_start_completed, .slave = p.to, .restart = restart->id,
         .duration_ms = ms_between(p.soft_start_sent, now)});
    if (from && from->connection) {
        send(*from, protocol::shard_migration_start{.restart_id = restart->id, .role = protocol::migration_role::source,
                                                    .peer = p.to, .shard_count = p.total});
    }
    if (to) {
        send(*to, protocol::shard_migration_start{.restart_id = restart->id, .role = protocol::migration_role::target,
                                                  .peer = p.from, .shard_count = p.total});
    }
    for (std::uint32_t s : moving) queue_move(index, s);
    if (p.source_dead) grant_orphans();
}

// Moves a pair forward when its moves are done: retire the source, or finish.
void supervisor::state::check_pair(std::size_t index) {
    if (!restart || index >= restart->pairs.size()) return;
    pair_rec& p = restart->pairs[index];
    if (p.phase == pair_phase::waiting || p.phase == pair_phase::done) return;
    if (p.queued > 0 || p.moving > 0) return;
    slave_rec* from = find(p.from);
    slave_rec* to = find(p.to);
    if (p.target_failed) {
        // Rolled back: done once the target is gone (its shards are back on the source or orphaned).
        if (!to) {
            p.phase = pair_phase::done;
            log({.event = event_kind::restart_pair_rolled_back, .slave = p.from, .peer = p.to, .restart = restart->id,
                 .slot = p.slot, .count = p.moved});
        }
        return;
    }
    if (p.phase == pair_phase::migrating) {
        if (!from || !from->alive) {
            p.phase = pair_phase::done;
            slots[p.slot].active = p.to;
            log({.event = event_kind::restart_pair_completed, .slave = p.to, .peer = p.from, .restart = restart->id,
                 .slot = p.slot, .count = p.moved, .reason = "source died during the restart"});
            return;
        }
        if (!shards_of(p.from).empty()) {
            // Shards the source picked up meanwhile (or whose move was cancelled): move them too.
            for (std::uint32_t s : shards_of(p.from)) {
                if (shards[s].phase == shard_phase::running) queue_move(index, s);
            }
            return;
        }
        slots[p.slot].active = p.to;
        retire(*from, "rolling restart");
        p.phase = pair_phase::retiring;
    }
}

// The restart's new slave failed (timed out, disconnected or died): stop the restart and send
// everything that has not settled on it back to its source.
void supervisor::state::fail_target(std::size_t index, const std::string& reason) {
    pair_rec& p = restart->pairs[index];
    if (p.target_failed) return;
    p.target_failed = true;
    if (!restart->failing) {
        restart->failing = true;
        restart->failure = fmt::format("new slave {} failed: {}", p.to, reason);
    }
    unqueue_pair(index);
    for (auto& [id, m] : migrations) {
        if (m.pair == index && m.phase == migration_phase::stopping) m.back_to_source = true;
    }
}

void supervisor::on_soft_start_complete(connection_id connection, mono_time now) {
    auto& s = *s_;
    slave_rec* r = s.heard_from(connection, now);
    if (!r) return;
    if (r->phase != slave_phase::soft_starting) {
        s.log({.event = event_kind::stale_ack_ignored, .slave = r->id, .reason = "soft_start_complete without soft_start"});
        return;
    }
    r->phase = slave_phase::ready;
    r->deadline.reset();
    if (r->spare) s.log({.event = event_kind::spare_ready, .slave = r->id});
    std::size_t index = 0;
    pair_rec* p = s.pair_of(r->id, &index);
    if (p && p->to == r->id && !p->target_failed) s.on_target_ready(index);
    s.pump_restart();
}

supervisor::restart_request supervisor::request_restart(mono_time now, std::string reason) {
    auto& s = *s_;
    s.now = now;
    restart_request result;
    if (s.stopping || s.exited) {
        result.result = restart_request::outcome::refused;
        result.refusal = s.detaching ? "the master is detaching (stop --leave-slaves): it exits, leaving the slaves running"
                                     : "the master is stopping";
        s.log({.event = event_kind::restart_refused, .reason = result.refusal});
        return result;
    }
    if (s.restart) {
        result.restart = s.restart->id;
        if (s.restart_queued) {
            result.result = restart_request::outcome::already_queued;
            s.log({.event = event_kind::restart_already_queued, .restart = s.restart->id, .reason = reason});
        } else {
            result.result = restart_request::outcome::queued;
            s.restart_queued = true;
            s.queued_reason = reason;
            s.log({.event = event_kind::restart_queued, .restart = s.restart->id, .reason = reason});
        }
    } else {
        result.restart = s.next_id;  // the id begin_restart gives it
        s.begin_restart(std::move(reason));
    }
    // After begin_restart: slots started again now belong to the new generation.
    result.retried = s.retry_failed_starts("restart requested");
    return result;
}

supervisor::drain_request supervisor::request_drain(mono_time now, const std::string& slave, std::string reason) {
    auto& s = *s_;
    s.now = now;
    drain_request result;
    const slave_rec* r = s.find(slave);
    if (!r) {
        result.result = drain_request::outcome::unknown_slave;
        result.refusal = fmt::format("no slave '{}' in this fleet", slave);
        return result;
    }
    auto refuse = [&](std::string why) {
        result.result = drain_request::outcome::refused;
        result.refusal = std::move(why);
        s.log({.event = event_kind::restart_refused, .slave = slave, .reason = fmt::format("drain: {}", result.refusal)});
        return result;
    };
    if (s.stopping || s.exited) {
        return refuse(s.detaching ? "the master is detaching (stop --leave-slaves): it exits, leaving the slaves running"
                                  : "the master is stopping");
    }
    if (s.restart) {
        return refuse(fmt::format("restart {} is running{}: drain once it has ended", s.restart->id,
                                  s.restart_queued ? " and another waits behind it" : ""));
    }
    if (!r->slot || s.slots[*r->slot].active != r->id) {
        return refuse(r->spare ? fmt::format("'{}' is a spare: it runs no shards", slave)
                               : fmt::format("'{}' serves no slot: its shards go back to their slots by themselves", slave));
    }
    if (!r->alive || !r->connection || r->phase != slave_phase::running) {
        return refuse(fmt::format("'{}' is not running (it is {})", slave, name(r->phase)));
    }
    if (!r->ours && !r->watched) {
        return refuse(fmt::format("'{}' was not started by this master, which cannot start its replacement", slave));
    }
    result.restart = s.next_id;  // the id begin_restart gives it
    s.begin_restart(std::move(reason), *r->slot);
    return result;
}

}  // namespace meshmaster::master
