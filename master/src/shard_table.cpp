// The shard table's behaviour (the records and what it owns: shard_table.hpp): grants under a new
// epoch, fencing a holder under a superseded one, refusing stale acknowledgements, keeping the
// checkpoint to resume a shard from, and reconciling what a slave's hello reports with the table.
#include "supervisor_state.hpp"

#include <fmt/format.h>
#include <set>
#include <string>
#include <utility>

namespace meshmaster::master {

using protocol::shard_epoch;

// The state to resume `shard` from, kept here and (through the driver) where a restarted
// master finds it.
void supervisor::state::set_checkpoint(std::uint32_t shard, shared_bytes state) {
    if (checkpoints[shard] == state) return;
    checkpoints[shard] = state;
    out.emplace_back(actions::store_checkpoint{shard, shards[shard].epoch, std::move(state)});
}

// The one place a shard changes hands in the table: the holder's index (slave_rec::held) follows.
void supervisor::state::set_owner(std::uint32_t shard, slave_rec* holder) {
    shard_rec& sh = shards[shard];
    if (holder && sh.holder == holder) return;
    if (sh.holder) sh.holder->held.erase(shard);
    sh.holder = holder;
    if (holder) {
        sh.owner = holder->id;
        holder->held.insert(shard);
    } else {
        sh.owner.clear();
    }
}

void supervisor::state::grant(std::uint32_t shard, slave_rec& s) {
    if (checkpoints[shard] && s.minor >= 1) {
        // Its last known state exists: resume from it rather than start over.
        const std::uint64_t id = next_id++;
        migration_rec& m = migrations[id] = migration_rec{.id = id, .shard = shard, .to = s.id,
                                                          .state = checkpoints[shard], .started = now,
                                                          .phase_started = now, .pair = no_pair, .recovery = true,
                                                          .from_epoch = shards[shard].epoch};
        shards[shard].migration = id;
        resume_on(m, s);
        return;
    }
    set_checkpoint(shard, nullptr);  // a fresh start makes any older state meaningless
    shard_rec& sh = shards[shard];
    ++sh.epoch;
    set_owner(shard, &s);
    sh.phase = shard_phase::starting;
    sh.migration = 0;
    sh.since = now;
    arm_shard(shard);
    if (s.phase == slave_phase::ready) s.phase = slave_phase::running;
    log({.event = event_kind::shard_granted, .slave = s.id, .shard = shard, .epoch = sh.epoch});  // before it leaves
    send(s, protocol::start_shard{.shard = shard, .epoch = sh.epoch, .shard_count = config.shard_count});
}

// An acknowledgement about a grant that is not current: it changes nothing; log it and tell
// the slave why.
void supervisor::state::refuse_stale(slave_rec& s, std::string_view what, std::uint32_t shard, std::uint64_t epoch,
                                     std::uint64_t migration) {
    const std::string why =
        shard < shards.size()
            ? fmt::format("{} for shard {} at epoch {}: the shard is at epoch {} ({}{})", what, shard, epoch,
                          shards[shard].epoch, shards[shard].owner.empty() ? "unowned" : "held by " + shards[shard].owner,
                          shards[shard].owner == s.id ? ", " + std::string(name(shards[shard].phase)) : "")
            : fmt::format("{} for shard {}: no such shard", what, shard);
    log({.event = event_kind::stale_ack_ignored, .slave = s.id, .shard = shard, .epoch = epoch,
         .migration = migration ? std::optional(migration) : std::nullopt, .reason = why});
    send(s, protocol::error_message{.code = "stale_epoch", .message = why, .shard = shard, .epoch = epoch});
}

void supervisor::state::fence(slave_rec& s, std::uint32_t shard, std::uint64_t stale_epoch, std::string reason) {
    send(s, protocol::stop_shard{.shard = shard, .epoch = stale_epoch, .migration_id = 0});
    log({.event = event_kind::shard_fenced, .slave = s.id, .shard = shard, .epoch = stale_epoch, .reason = std::move(reason)});
}

// Grants every shard nobody holds to the slave of its home slot, if that slave can take it.
void supervisor::state::grant_orphans() {
    // While a slave that may still hold shards is being killed, nothing is granted: its exit
    // makes the grants safe.
    if (adopting() || stopping || !awaiting_exit.empty()) return;
    // In shard order, as a walk of the table would go; a shard orphaned by a grant joins the walk
    // if it comes later, as it did then.
    for (auto it = orphans.begin(); it != orphans.end();) {
        const std::uint32_t s = *it;
        shard_rec& sh = shards[s];
        if (sh.phase != shard_phase::unowned || sh.migration != 0) {
            it = orphans.erase(it);  // taken meanwhile
            continue;
        }
        slave_rec* holder = config.slave_count ? find(slots[home_slot(s)].active) : nullptr;
        if (holder && holder->usable()) {
            grant(s, *holder);
            it = orphans.erase(it);
            continue;
        }
        ++it;  // still waiting for its slot's slave
    }
}

void supervisor::state::reconcile_reported_shards(slave_rec& s, const std::vector<shard_epoch>& reported,
                                                  const std::vector<shard_epoch>& kept) {
    std::set<std::uint32_t> seen;
    // Shards the table gives this slave under a newer epoch than the one it reports (running or
    // kept): the newer grant went out on a connection that is gone (one the master replaced by an
    // older connection whose hello it read late, say), so it does not run here under it.
    std::set<std::uint32_t> outdated;
    std::set<std::uint32_t> running_here;
    for (const shard_epoch& r : reported) running_here.insert(r.shard);
    for (const shard_epoch& k : kept) {
        seen.insert(k.shard);  // stopped, state kept: see below
        if (k.shard < shards.size() && !running_here.contains(k.shard) && shards[k.shard].owner == s.id &&
            k.epoch < shards[k.shard].epoch) {
            outdated.insert(k.shard);
        }
    }
    for (const shard_epoch& r : reported) {
        if (r.shard >= shards.size() || !seen.insert(r.shard).second) {
            log({.event = event_kind::shard_report_ignored, .slave = s.id, .shard = r.shard, .epoch = r.epoch,
                 .reason = r.shard >= shards.size() ? "no such shard" : "reported twice"});
            continue;
        }
        shard_rec& sh = shards[r.shard];
        if (sh.owner == s.id) {
            if (r.epoch == sh.epoch) {
                // It still holds what we think it holds: an acknowledgement may have been lost
                // with the old connection.
                if (sh.phase == shard_phase::starting) {
                    sh.phase = shard_phase::running;
                    log({.event = event_kind::shard_started, .slave = s.id, .shard = r.shard, .epoch = r.epoch,
                         .duration_ms = ms_between(sh.since, now), .reason = "confirmed by the slave's hello"});
                    sh.since = now;
                }
                if (sh.phase == shard_phase::resuming && sh.migration) {
                    sh.phase = shard_phase::running;
                    auto m = migrations.find(sh.migration);
                    if (m != migrations.end()) {
                        end_migration(m->first,
                                      m->second.back_to_source ? event_kind::migration_rolled_back
                                                               : event_kind::migration_completed,
                                      "acknowledged by the slave's hello", false);
                    }
                }
                if (sh.phase == shard_phase::stopping) {
                    send(s, protocol::stop_shard{.shard = r.shard, .epoch = sh.epoch, .migration_id = sh.migration});
                }
            } else if (r.epoch < sh.epoch) {
                fence(s, r.shard, r.epoch, "a newer epoch is already granted");
                outdated.insert(r.shard);
            } else {
                sh.epoch = r.epoch;
            }
            continue;
        }
        if (sh.owner.empty() && sh.phase == shard_phase::unowned && sh.migration == 0 && r.epoch >= sh.epoch) {
            set_owner(r.shard, &s);
            sh.epoch = r.epoch;
            sh.phase = shard_phase::running;
            sh.since = now;
            log({.event = event_kind::shard_adopted, .slave = s.id, .shard = r.shard, .epoch = r.epoch});
            continue;
        }
        fence(s, r.shard, r.epoch,
              sh.owner.empty() ? "the shard is being moved" : fmt::format("held by {} under epoch {}", sh.owner, sh.epoch));
    }
    // The hello is the truth about what the slave runs: what the table gives it but it did not
    // report is not running there (a restarted process, or frames lost with the old connection).
    for (std::uint32_t shard : shards_of(s.id)) {
        if (seen.contains(shard) && !outdated.contains(shard)) continue;
        shard_rec& sh = shards[shard];
        auto mig = sh.migration ? migrations.find(sh.migration) : migrations.end();
        if (sh.phase == shard_phase::resuming && mig != migrations.end()) {
            resume_on(mig->second, s);  // the state is still here: send it again
            continue;
        }
        const bool was_stopping = sh.phase == shard_phase::stopping;
        if (mig != migrations.end() && mig->second.state) set_checkpoint(shard, mig->second.state);
        set_owner(shard, nullptr);
        sh.phase = shard_phase::unowned;
        orphaned(shard);
        if (mig != migrations.end()) {
            end_migration(mig->first, event_kind::migration_failed,
                          was_stopping ? "the old slave lost the shard before handing back its state"
                                       : "the slave lost the shard",
                          !checkpoints[shard]);
        }
        log({.event = event_kind::shard_orphaned, .slave = s.id, .shard = shard, .epoch = sh.epoch,
             .state_lost = !checkpoints[shard], .reason = "not reported in the slave's hello"});
    }
}

// States a slave stopped and still keeps (it handed them back, or could not): take them up.
void supervisor::state::reconcile_stopped_shards(slave_rec& s, const std::vector<shard_epoch>& kept) {
    for (const shard_epoch& k : kept) {
        if (k.shard >= shards.size()) continue;
        shard_rec& sh = shards[k.shard];
        if (sh.owner == s.id && sh.phase == shard_phase::stopping && sh.epoch == k.epoch && sh.migration) {
            // Our stop's answer was lost with the old connection: ask again.
            send(s, protocol::stop_shard{.shard = k.shard, .epoch = k.epoch, .migration_id = sh.migration});
            continue;
        }
        if (sh.epoch > k.epoch && (!sh.owner.empty() || sh.migration != 0)) {
            // It runs (or is being resumed) elsewhere under a newer epoch: the copy is not needed.
            if (s.minor >= 1) send(s, protocol::handoff_complete{.shard = k.shard, .epoch = k.epoch});
            continue;
        }
        if (sh.phase != shard_phase::unowned || sh.migration != 0) continue;
        // Nobody runs it (a master that crashed mid-move, or one just restarted): collect the
        // state from the slave that kept it, then resume it on the shard's home slot.
        sh.epoch = std::max(sh.epoch, k.epoch);
        if (sh.epoch != k.epoch) continue;
        const std::uint64_t id = next_id++;
        migrations[id] = migration_rec{.id = id, .shard = k.shard, .from = s.id, .started = now,
                                       .phase_started = now, .pair = no_pair, .recovery = true,
                                       .from_epoch = k.epoch};
        set_owner(k.shard, &s);
        sh.phase = shard_phase::stopping;
        sh.migration = id;
        sh.since = now;
        arm(migrations[id]);
        send(s, protocol::stop_shard{.shard = k.shard, .epoch = k.epoch, .migration_id = id});
        log({.event = event_kind::shard_state_collecting, .slave = s.id, .shard = k.shard, .epoch = k.epoch, .migration = id});
    }
}

void supervisor::on_shard_started(connection_id connection, std::uint32_t shard, std::uint64_t epoch, mono_time now) {
    auto& s = *s_;
    slave_rec* r = s.heard_from(connection, now);
    if (!r) return;
    if (shard >= s.shards.size() || s.shards[shard].owner != r->id || s.shards[shard].epoch != epoch ||
        s.shards[shard].phase != shard_phase::starting) {
        s.refuse_stale(*r, "shard_started", shard, epoch);
        return;
    }
    shard_rec& sh = s.shards[shard];
    sh.phase = shard_phase::running;
    s.log({.event = event_kind::shard_started, .slave = r->id, .shard = shard, .epoch = epoch,
           .duration_ms = ms_between(sh.since, now)});
    sh.since = now;
}

void supervisor::seed_checkpoints(std::vector<shared_bytes> states) {
    auto& s = *s_;
    for (std::size_t i = 0; i < states.size() && i < s.checkpoints.size(); ++i) {
        if (states[i]) s.checkpoints[i] = std::move(states[i]);
    }
}

void supervisor::seed_epochs(const std::vector<std::uint64_t>& epochs) {
    auto& s = *s_;
    for (std::size_t i = 0; i < epochs.size() && i < s.shards.size(); ++i) {
        s.shards[i].epoch = std::max(s.shards[i].epoch, epochs[i]);
    }
}

void supervisor::on_checkpoint(connection_id connection, std::uint32_t shard, std::uint64_t epoch, shared_bytes state,
                               mono_time now) {
    auto& s = *s_;
    s.now = now;
    if (s.exited) return;
    slave_rec* r = s.by_conn(connection);
    if (!r || !state) return;
    r->last_seen = now;
    // Only the current holder's state, under the current epoch, of a shard at rest is worth keeping.
    if (shard < s.shards.size() && s.shards[shard].owner == r->id && s.shards[shard].epoch == epoch &&
        s.shards[shard].phase == shard_phase::running) {
        s.set_checkpoint(shard, std::move(state));
        ++s.checkpoints_taken;
    } else {
        ++s.checkpoints_refused;
    }
}

}  // namespace meshmaster::master
