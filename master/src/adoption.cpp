// Start-up and adoption (adoption.hpp says what it owns): the master's start, a slave's hello, and
// the end of the adoption window. Members of supervisor::state (supervisor_state.hpp).
#include "adoption.hpp"

#include "supervisor_state.hpp"

#include <fmt/format.h>
#include <utility>

namespace meshmaster::master {

// A slave whose hello has been accepted starts its work.
void supervisor::state::activate(slave_rec& s, bool reported_anything, bool soft_started) {
    std::size_t index = 0;
    if (s.restart_target) {
        pair_rec* p = pair_of(s.id, &index);
        if (p && p->to == s.id && !p->target_failed) {
            s.phase = slave_phase::soft_starting;
            s.deadline = now + ms(config.soft_start_timeout);
            arm(s);
            p->phase = pair_phase::soft_starting;
            p->soft_start_sent = now;
            send(s, protocol::soft_start{.restart_id = restart->id});
            return;
        }
    }
    if (s.spare && shards_of(s.id).empty()) {
        // Warm it up (connect upstream, fill caches) so it can take shards the moment it must.
        s.phase = slave_phase::soft_starting;
        s.deadline = now + ms(config.soft_start_timeout);
        arm(s);
        send(s, protocol::soft_start{});
        return;
    }
    s.phase = slave_phase::running;
    s.deadline.reset();
    if (!s.slot) {
        // Neither a slot holder nor a spare we want: one we (or a previous master) spawned is
        // surplus, shut it down.
        if ((s.ours || s.watched) && shards_of(s.id).empty()) retire(s, "surplus slave");
        return;
    }
    if (!reported_anything && !soft_started) send(s, protocol::full_start{});
    grant_orphans();
}

void supervisor::state::end_adoption() {
    adopting_until.reset();
    log({.event = event_kind::adoption_finished});
    // A slave of a previous master that did not come back may be frozen or cut off while still
    // believing it holds shards: kill it (by the pid the log gave) and wait for the exit.
    for (const auto& [id, pid] : std::exchange(expected, {})) {
        out.emplace_back(actions::watch_process{id, pid});
        out.emplace_back(actions::kill_slave{id, pid});
        log({.event = event_kind::slave_killed, .slave = id, .pid = pid,
             .reason = "it did not come back after the master restarted and may still hold shards"});
        awaiting_exit[id] = now + ms(config.stop_timeout);
    }
    // The previous master's unfinished moves end here, with where each shard is now.
    for (const auto& m : std::exchange(abandoned, {})) {
        const shard_rec& sh = m.shard < shards.size() ? shards[m.shard] : shard_rec{};
        log({.event = event_kind::migration_abandoned, .slave = sh.owner, .peer = m.from, .shard = m.shard, .epoch = sh.epoch,
             .migration = m.id,
             .reason = fmt::format("the master restarted mid-move ({} → {}); the shard is {}", m.from, m.to,
                                   sh.owner.empty() ? std::string("being recovered") : "with " + sh.owner)});
    }
    for (std::uint32_t i = 0; i < slots.size(); ++i) {
        if (slots[i].active.empty() && config.spawn_slaves && !promote_spare(i)) respawn(i);
    }
    grant_orphans();
    ensure_spares();
}

void supervisor::start(mono_time now, std::chrono::milliseconds adopt_window) {
    auto& s = *s_;
    s.now = now;
    if (s.started) return;
    s.started = true;
    s.log({.event = event_kind::master_started, .generation = s.generation, .count = s.config.shard_count});
    // A restart its predecessor was killed in the middle of ends here, before anything else happens:
    // this master does not carry on the old plan (see adopt_open_restarts).
    for (const std::uint64_t id : std::exchange(s.abandoned_restarts, {})) {
        s.log({.event = event_kind::restart_abandoned, .restart = id,
               .reason = "the master running it was killed mid-restart; this one does not carry it on: it adopts "
                         "the slaves of both generations and converges the fleet"});
    }
    if (adopt_window.count() > 0) {
        s.adopting_until = now + s.ms(adopt_window);
        s.log({.event = event_kind::adoption_started, .duration_ms = static_cast<double>(adopt_window.count())});
        return;
    }
    s.end_adoption();
}

void supervisor::on_slave_connected(connection_id connection, const slave_hello_info& hello, mono_time now) {
    auto& s = *s_;
    s.now = now;
    if (s.exited) return;
    if (s.awaiting_exit.contains(hello.id)) {
        s.out.emplace_back(actions::close_connection{connection, "slave_lost", "it came back too late and is being killed"});
        return;
    }
    s.expected.erase(hello.id);
    slave_rec* r = s.find(hello.id);
    if (r && !r->alive) r = nullptr;
    if (r) {
        if (r->connection && *r->connection != connection) {
            s.out.emplace_back(actions::close_connection{*r->connection, "replaced", "the slave connected again"});
            s.by_connection.erase(*r->connection);
        }
        if (r->phase == slave_phase::lost && (r->ours || r->watched)) {
            // We already decided it is gone and are killing it; do not let it back in.
            s.out.emplace_back(actions::close_connection{connection, "slave_lost", "this slave is being replaced"});
            return;
        }
    } else {
        slave_rec fresh{.id = hello.id, .generation = hello.generation, .pid = hello.pid, .spawned_at = now};
        const auto slot = slot_of_spawned_id(hello.id);
        fresh.spare = is_spare_id(hello.id);
        fresh.watched = (slot.has_value() || fresh.spare) && hello.pid > 0;  // spawned by a previous master
        if (fresh.spare && !hello.shards.empty() && s.config.slave_count) {
            // A spare the previous master promoted: it runs its shards for their home slot.
            const std::uint32_t home = s.home_slot(hello.shards.front().shard % s.config.shard_count);
            if (s.slots[home].active.empty()) {
                fresh.spare = false;
                fresh.slot = home;
            }
        } else if (slot && *slot < s.slots.size() && s.slots[*slot].active.empty()) {
            fresh.slot = slot;
        } else if (!slot && !s.config.spawn_slaves) {
            for (std::uint32_t i = 0; i < s.slots.size(); ++i) {
                if (s.slots[i].active.empty()) {
                    fresh.slot = i;
                    break;
                }
            }
        }
        if (fresh.slot) s.slots[*fresh.slot].active = fresh.id;
        r = &s.add_slave(std::move(fresh));
        if (r->watched) s.out.emplace_back(actions::watch_process{r->id, r->pid});
        s.log({.event = r->watched ? event_kind::slave_adopted : event_kind::slave_joined,
               .slave = r->id, .generation = hello.generation, .slot = r->slot, .pid = hello.pid,
               .count = hello.shards.size()});
    }
    if (hello.pid > 0) r->pid = hello.pid;
    if (!r->started) {
        // It started: the start limit of its slot (or of the spares) counts afresh.
        r->started = true;
        if (r->slot && *r->slot < s.slots.size() && s.slots[*r->slot].active == r->id) s.slots[*r->slot].starts.reset();
        if (r->spare) {
            s.spare_starts.reset();
            s.spare_failures = 0;
        }
    }
    r->minor = hello.version_minor;
    r->connection = connection;
    r->address = hello.address;
    // Heartbeats are echoed per connection: nothing from the last one is measured against this one.
    r->received_heartbeat.reset();
    r->sent_heartbeats = {};
    r->heartbeat_rtt_ms.reset();
    // Its mesh node joins (or changed, or is gone); either way it gets the list now, since it may
    // have missed changes while it was away.
    const std::optional<mesh_node_info> mesh = hello.version_minor >= 2 ? hello.mesh : std::nullopt;
    const bool mesh_changed_now = r->mesh != mesh;
    r->mesh = mesh;
    r->last_seen = now;
    // Stuck is judged from this connection on: a slave back from a cut (an external one within
    // external_grace) must not be lost for the progress it last reported before it left.
    r->progress_at = now;
    r->next_heartbeat = now + s.ms(s.config.heartbeat_interval);
    s.by_connection[connection] = r;
    s.log({.event = event_kind::slave_connected, .slave = r->id, .generation = r->generation, .slot = r->slot, .pid = r->pid,
           .count = hello.shards.size()});

    if (mesh_changed_now) {
        s.mesh_changed();
    } else {
        s.send_mesh_members(*r);
    }
    s.reconcile_reported_shards(*r, hello.shards, hello.stopped);
    s.reconcile_stopped_shards(*r, hello.stopped);
    switch (r->phase) {
        case slave_phase::spawning:
            s.activate(*r, !hello.shards.empty(), hello.soft_started);
            break;
        case slave_phase::retiring:
            s.retire(*r, "shutdown requested before the reconnect");
            break;
        case slave_phase::soft_starting:
            // The soft_start may have been lost with the old connection.
            if (s.restart) s.send(*r, protocol::soft_start{.restart_id = s.restart->id});
            break;
        case slave_phase::lost:  // an external slave back within its grace
            r->phase = slave_phase::running;
            r->deadline.reset();
            s.grant_orphans();
            break;
        case slave_phase::ready:
        case slave_phase::running:
            s.grant_orphans();
            break;
    }
    // Connected, heard from, perhaps back from lost: its deadlines and those waiting for it.
    s.arm_around(*r);
    if (s.adopting()) {
        // Over as soon as everyone is accounted for: every slot and shard has its slave again, or
        // every slave the log says was running is back (what nobody reports is nobody's).
        bool complete = true;
        for (const auto& slot : s.slots) complete = complete && !slot.active.empty();
        for (const auto& sh : s.shards) complete = complete && sh.phase != shard_phase::unowned;
        if (complete || (s.expecting && s.expected.empty())) s.end_adoption();
    }
    s.pump_restart();
}

void supervisor::adopt_open_migrations(std::vector<abandoned_migration> open) {
    s_->abandoned = std::move(open);
}

void supervisor::adopt_open_restarts(std::vector<std::uint64_t> restarts) {
    s_->abandoned_restarts = std::move(restarts);
}

void supervisor::seed_ids(std::uint64_t generation, std::set<std::string> used_ids) {
    auto& s = *s_;
    s.generation = std::max(s.generation, generation);
    s.used_ids = std::move(used_ids);
}

void supervisor::expect_slaves(std::vector<previous_slave> slaves) {
    auto& s = *s_;
    for (auto& p : slaves) {
        if (p.pid > 0) s.expected[p.id] = p.pid;
    }
    s.expecting = !s.expected.empty();
}

}  // namespace meshmaster::master
