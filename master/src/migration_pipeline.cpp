// The migration pipeline's behaviour (the records and what it owns: migration_pipeline.hpp): a move
// starts by stopping the shard on its holder, the handed-back state is resumed on the target (or
// back on the source), and end_migration writes the move's one terminal record.
#include "supervisor_state.hpp"

#include <meshmaster/protocol/state_transfer.hpp>

#include <algorithm>
#include <utility>

namespace meshmaster::master {

void supervisor::state::resume_on(migration_rec& m, slave_rec& target) {
    shard_rec& sh = shards[m.shard];
    ++sh.epoch;
    set_owner(m.shard, &target);
    sh.phase = shard_phase::resuming;
    sh.since = now;
    m.phase = migration_phase::resuming;
    m.phase_started = now;
    arm(m);
    if (target.phase == slave_phase::ready) target.phase = slave_phase::running;
    const std::size_t size = m.state ? m.state->size() : 0;
    const protocol::bytes_view view = m.state ? protocol::bytes_view(*m.state) : protocol::bytes_view{};
    // Logged before it is sent: a master that dies right after sending still leaves the new
    // epoch in its log, and its successor never grants that epoch again.
    log({.event = m.recovery         ? event_kind::shard_recovering
                  : m.back_to_source ? event_kind::shard_resuming_on_source
                                     : event_kind::shard_resuming,
         .slave = target.id,
         .peer = m.back_to_source ? std::string() : m.from,
         .shard = m.shard,
         .epoch = sh.epoch,
         .migration = m.id,
         .state_bytes = size});
    if (target.connection) {
        actions::send_frame a{*target.connection, {}};
        protocol::resume frame{.shard = m.shard, .epoch = sh.epoch, .migration_id = m.id};
        if (target.minor >= 3) frame.stopped_at_us = m.stopped_at_us;  // older slaves do not know it
        if (protocol::encode_with_state(frame, view, a.frames, config.state_chunk_size)) {
            out.emplace_back(std::move(a));
        }
    }
    failpoint(m.recovery ? "master.recovery.after_resume_sent" : "master.migrate.after_resume_sent");
}

void supervisor::state::end_migration(std::uint64_t id, event_kind outcome, std::string reason, bool state_lost) {
    auto it = migrations.find(id);
    if (it == migrations.end()) return;
    migration_rec m = std::move(it->second);
    migrations.erase(it);
    if (!m.recovery) --in_flight;
    shard_rec& sh = shards[m.shard];
    if (sh.migration == id) sh.migration = 0;
    if (sh.phase == shard_phase::unowned) orphaned(m.shard);
    const bool completed = outcome == event_kind::migration_completed || outcome == event_kind::migration_rolled_back;
    if (completed && m.state) set_checkpoint(m.shard, m.state);  // the newest known state
    if (completed && !m.from.empty()) {
        // The old holder kept a copy of what it handed back; it may let go of it now.
        if (slave_rec* old = find(m.from); old && old->connection && old->minor >= 1 && m.from != sh.owner) {
            send(*old, protocol::handoff_complete{.shard = m.shard, .epoch = m.from_epoch, .migration_id = m.id});
        }
    }
    // The record names the shard's holder now as `slave`: the target, or the source it went
    // back to (a recovery whose collected state went back where it came from included).
    const bool back_to_source = outcome == event_kind::migration_rolled_back;
    if (m.recovery) {
        outcome = completed ? event_kind::shard_recovered : event_kind::recovery_failed;
    }
    const bool forward = outcome == event_kind::migration_completed ||
                         (outcome == event_kind::shard_recovered && !back_to_source);
    event_record r{.event = outcome,
                   .slave = forward ? m.to : m.from,
                   .peer = forward ? m.from : m.to,
                   .shard = m.shard,
                   .epoch = sh.epoch,
                   .migration = m.id,
                   .restart = restart ? std::optional(restart->id) : std::nullopt,
                   .duration_ms = ms_between(m.started, now),
                   .reason = std::move(reason)};
    if (outcome != event_kind::migration_failed && outcome != event_kind::recovery_failed) {
        r.pause_ms = ms_between(m.started, now);
    }
    // The slaves' own measure of the pause (1.3), next to the master's: stop to resume on their
    // wall clocks, without the master's queueing and the network on either side.
    if (outcome == event_kind::migration_completed && m.slave_pause_us) {
        r.slave_pause_ms = static_cast<double>(*m.slave_pause_us) / 1000.0;
    }
    if (state_lost) r.state_lost = true;
    log(std::move(r));
    if (!m.recovery && restart && m.pair < restart->pairs.size()) {
        pair_rec& p = restart->pairs[m.pair];
        --p.moving;
        if (outcome == event_kind::migration_completed) ++p.moved;
        check_pair(m.pair);
    }
}

// A move of a running shard from one live slave to another (`pair`: the restart pair it
// belongs to, or no_pair).
void supervisor::state::start_move(std::uint32_t shard, const std::string& from, const std::string& to, std::size_t pair_index) {
    shard_rec& sh = shards[shard];
    slave_rec* src = find(from);
    if (!src || !src->alive || sh.owner != from || sh.phase != shard_phase::running) return;
    const std::uint64_t id = next_id++;
    migration_rec m{.id = id, .shard = shard, .from = from, .to = to, .started = now, .phase_started = now,
                    .pair = pair_index, .from_epoch = sh.epoch};
    sh.phase = shard_phase::stopping;
    sh.migration = id;
    sh.since = now;
    ++in_flight;
    if (restart && pair_index < restart->pairs.size()) ++restart->pairs[pair_index].moving;
    arm(migrations.emplace(id, std::move(m)).first->second);
    log({.event = event_kind::migration_started, .slave = from, .peer = to, .shard = shard, .epoch = sh.epoch,
         .migration = id, .restart = restart ? std::optional(restart->id) : std::nullopt});
    failpoint("master.migrate.before_stop");
    send(*src, protocol::stop_shard{.shard = shard, .epoch = sh.epoch, .migration_id = id});
    failpoint("master.migrate.after_stop_sent");
}

// Slaves a previous master left beside the slot holders (it crashed in the middle of a
// restart, say) hand their shards to the shards' home slots, a move at a time within the
// concurrency, and then retire: the fleet converges to slaves.count.
void supervisor::state::drain_surplus() {
    if (restart || stopping || adopting() || !awaiting_exit.empty()) return;
    const std::uint32_t concurrency = std::max<std::uint32_t>(1, config.migration_concurrency);
    for (auto& [id, s] : slaves) {
        if (s.slot || !(s.ours || s.watched) || !s.usable() || s.restart_target) continue;
        const auto held = shards_of(id);
        if (held.empty()) {
            if (!s.spare) retire(s, "surplus slave");  // an idle spare stays one
            continue;
        }
        for (std::uint32_t shard : held) {
            if (in_flight >= concurrency) return;
            if (shards[shard].phase != shard_phase::running || shards[shard].migration) continue;
            const slave_rec* to = config.slave_count ? find(slots[home_slot(shard)].active) : nullptr;
            if (!to || !to->usable() || to->id == id) continue;
            start_move(shard, id, to->id, no_pair);
        }
    }
}

void supervisor::on_shard_stopped(connection_id connection, std::uint32_t shard, std::uint64_t epoch,
                                  std::uint64_t migration, shared_bytes state, mono_time now,
                                  std::optional<std::uint64_t> stopped_at_us) {
    auto& s = *s_;
    slave_rec* r = s.heard_from(connection, now);
    if (!r) return;
    const bool current = shard < s.shards.size() && s.shards[shard].owner == r->id && s.shards[shard].epoch == epoch &&
                         s.shards[shard].phase == shard_phase::stopping && migration != 0 &&
                         s.shards[shard].migration == migration && s.migrations.contains(migration);
    if (!current) {
        if (migration == 0) {
            s.log({.event = event_kind::fence_acknowledged, .slave = r->id, .shard = shard, .epoch = epoch});
        } else {
            s.refuse_stale(*r, "shard_stopped", shard, epoch, migration);
        }
        if (shard < s.shards.size() && s.shards[shard].owner == r->id && s.shards[shard].epoch == epoch &&
            s.shards[shard].phase == shard_phase::running && s.shards[shard].migration == 0) {
            // The holder stopped it on an earlier request (a previous master's, whose stop it was
            // still carrying out when its hello reported the shard as held): it runs no more
            // there. Its state is the newest there is: keep it, and grant the shard again.
            shard_rec& sh = s.shards[shard];
            if (state) s.set_checkpoint(shard, std::move(state));
            s.set_owner(shard, nullptr);
            sh.phase = shard_phase::unowned;
            s.orphaned(shard);
            s.log({.event = event_kind::shard_orphaned, .slave = r->id, .shard = shard, .epoch = epoch,
                   .state_lost = !s.checkpoints[shard], .reason = "the slave stopped it on an earlier request"});
            s.grant_orphans();
        }
        return;
    }
    shard_rec& sh = s.shards[shard];
    migration_rec& m = s.migrations.at(migration);
    m.state = state ? std::move(state) : std::make_shared<const std::vector<std::byte>>();
    m.stopped_at_us = stopped_at_us;
    s.failpoint("master.migrate.after_state_received");
    s.set_owner(shard, nullptr);
    s.log({.event = event_kind::shard_stopped, .slave = r->id, .shard = shard, .epoch = epoch, .migration = migration,
           .duration_ms = ms_between(m.phase_started, now), .state_bytes = m.state->size()});
    if (m.recovery && m.to.empty()) {
        // A collected state: it goes to the shard's home slot, or waits there as a checkpoint.
        slave_rec* home = s.config.slave_count ? s.find(s.slots[s.home_slot(shard)].active) : nullptr;
        if (home && home->usable() && home->minor >= 1) {
            m.to = home->id;
            s.resume_on(m, *home);
        } else {
            s.set_checkpoint(shard, m.state);
            sh.phase = shard_phase::unowned;
            s.orphaned(shard);
            s.end_migration(migration, event_kind::migration_failed, "no slave to resume the collected state on yet", false);
            s.grant_orphans();
        }
        return;
    }
    slave_rec* target = m.back_to_source ? nullptr : s.find(m.to);
    if (target && target->usable()) {
        s.resume_on(m, *target);
    } else {
        m.back_to_source = true;
        s.resume_on(m, *r);
    }
}

void supervisor::on_resumed(connection_id connection, std::uint32_t shard, std::uint64_t epoch,
                            std::uint64_t migration, mono_time now, std::optional<std::uint64_t> pause_us) {
    auto& s = *s_;
    slave_rec* r = s.heard_from(connection, now);
    if (!r) return;
    if (shard >= s.shards.size() || s.shards[shard].owner != r->id || s.shards[shard].epoch != epoch ||
        s.shards[shard].phase != shard_phase::resuming || s.shards[shard].migration != migration ||
        !s.migrations.contains(migration)) {
        s.refuse_stale(*r, "resumed", shard, epoch, migration);
        return;
    }
    shard_rec& sh = s.shards[shard];
    sh.phase = shard_phase::running;
    sh.since = now;
    migration_rec& m = s.migrations.at(migration);
    m.slave_pause_us = pause_us;
    const bool rollback = m.back_to_source;
    s.end_migration(migration, rollback ? event_kind::migration_rolled_back : event_kind::migration_completed,
                    rollback ? "the new slave failed" : "", false);
    s.failpoint("master.migrate.after_resumed");
    s.pump_restart();
    s.advance_stop();
}

}  // namespace meshmaster::master
