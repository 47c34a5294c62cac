// The slave pool's behaviour (the records and what it owns: slave_pool.hpp): ids, spawns, respawn
// backoff and the start limit, spares, retiring a slave, and retrying what gave up.
#include "supervisor_state.hpp"

#include <fmt/format.h>
#include <algorithm>
#include <charconv>

namespace meshmaster::master {

std::string spawned_slave_id(std::uint32_t slot, std::uint64_t generation) {
    return fmt::format("s{}-g{}", slot, generation);
}

namespace {
// "<kind><number>-g<generation>...": the number, if `id` has that shape.
std::optional<std::uint32_t> number_of_spawned_id(std::string_view id, char kind) {
    if (id.size() < 4 || id[0] != kind) return std::nullopt;
    std::uint32_t slot = 0;
    const auto [end, ec] = std::from_chars(id.data() + 1, id.data() + id.size(), slot);
    if (ec != std::errc{} || end == id.data() + 1 || end == id.data() + id.size() || *end != '-' ||
        end + 1 == id.data() + id.size() || end[1] != 'g') {
        return std::nullopt;
    }
    return slot;
}
}  // namespace

std::optional<std::uint32_t> slot_of_spawned_id(std::string_view id) { return number_of_spawned_id(id, 's'); }

std::string spare_slave_id(std::uint32_t n, std::uint64_t generation) { return fmt::format("p{}-g{}", n, generation); }

bool is_spare_id(std::string_view id) { return number_of_spawned_id(id, 'p').has_value(); }

// Ids are never reused, so the event log tells every process apart: "s0-g2" is slot 0's first
// slave of generation 2, "s0-g2.1" the one after it in the same generation.
// Ids a previous master gave out count as used too: their slaves may still be running.
std::string supervisor::state::fresh_id(std::uint32_t slot_index) {
    slot_rec& slot = slots[slot_index];
    std::string id;
    do {
        if (slot.spawn_generation != generation) {
            slot.spawn_generation = generation;
            slot.spawn_serial = 0;
            id = spawned_slave_id(slot_index, generation);
        } else {
            id = fmt::format("{}.{}", spawned_slave_id(slot_index, generation), ++slot.spawn_serial);
        }
    } while (used_ids.contains(id));
    return id;
}

std::string supervisor::state::fresh_spare_id() {
    std::string id;
    do id = spare_slave_id(spare_serial++, generation);
    while (used_ids.contains(id));
    return id;
}

// Every slave record enters and leaves through these two, which keep the indexes (by id, by key,
// by connection) with the map.
slave_rec& supervisor::state::add_slave(slave_rec r) {
    auto [it, fresh] = slaves.try_emplace(r.id);
    slave_rec& s = it->second;
    if (!fresh) {
        // A record written over (as `slaves[id] = ...` always did): what the table says it holds
        // stays with it.
        slave_by_key.erase(s.key);
        r.held = std::move(s.held);
    }
    s = std::move(r);
    s.key = ++slave_serial;
    s.armed.reset();
    slave_by_key[s.key] = &s;
    slave_index[s.id] = &s;
    return s;
}

void supervisor::state::erase_slave(const std::string& id) {
    auto it = slaves.find(id);
    if (it == slaves.end()) return;
    slave_rec* s = &it->second;
    std::erase_if(by_connection, [&](const auto& entry) { return entry.second == s; });
    slave_by_key.erase(s->key);
    slave_index.erase(id);
    slaves.erase(it);
}

slave_rec& supervisor::state::spawn(std::optional<std::uint32_t> slot, std::string id) {
    slave_rec& s = add_slave(slave_rec{.id = id, .slot = slot, .generation = generation, .ours = true,
                                       .phase = slave_phase::spawning, .deadline = now + ms(config.spawn_timeout),
                                       .spawned_at = now, .last_seen = now, .spare = !slot.has_value()});
    arm(s);
    out.emplace_back(actions::spawn_slave{.slave = id, .slot = slot, .generation = generation});
    log({.event = s.spare ? event_kind::spare_spawned : event_kind::slave_spawned, .slave = id,
         .restart = restart ? std::optional(restart->id) : std::nullopt, .generation = generation, .slot = slot});
    return s;
}

// Keeps config.spares idle slaves of the current generation ready.
void supervisor::state::ensure_spares() {
    if (stopping || adopting() || !config.spawn_slaves) return;
    std::uint32_t have = 0;
    std::vector<slave_rec*> idle;
    for (auto& [id, r] : slaves) {
        if (!r.spare || !r.alive || r.phase == slave_phase::lost || r.phase == slave_phase::retiring) continue;
        if (r.generation < generation && !restart) {
            retire(r, "spare of an older generation");
            continue;
        }
        ++have;
        if (r.phase == slave_phase::ready && r.connection) idle.push_back(&r);
    }
    // Fewer spares wanted (a reload lowered slaves.spares): the extra ready ones go.
    for (; have > config.spares && !idle.empty(); --have, idle.pop_back()) {
        retire(*idle.back(), "more spares than slaves.spares");
    }
    // Spares that keep failing to start back off, and give up at the start limit.
    if (spares_failed || (spare_respawn_at && now < *spare_respawn_at)) return;
    spare_respawn_at.reset();
    while (have++ < config.spares) spawn(std::nullopt, fresh_spare_id());
}

// A slot lost its slave: a ready spare takes it over at once, and its shards resume there. With
// external slaves, an idle one without a slot serves as the spare.
bool supervisor::state::promote_spare(std::uint32_t slot_index) {
    for (auto& [id, r] : slaves) {
        const bool idle_external = !config.spawn_slaves && !r.ours && !r.watched && !r.slot &&
                                   r.phase == slave_phase::running && shards_of(r.id).empty();
        const bool ready_spare = r.spare && r.phase == slave_phase::ready;
        if (!(ready_spare || idle_external) || !r.alive || !r.connection) continue;
        r.spare = false;
        r.slot = slot_index;
        slots[slot_index].active = r.id;
        log({.event = event_kind::spare_promoted, .slave = r.id, .slot = slot_index});
        return true;
    }
    return false;
}

void supervisor::state::retire(slave_rec& s, std::string reason) {
    failpoint("master.retire.before_shutdown");
    s.phase = slave_phase::retiring;
    s.deadline = now + ms(config.shutdown_timeout);
    arm(s);
    send(s, protocol::shutdown{.reason = reason, .deadline_ms = static_cast<std::uint32_t>(config.shutdown_timeout.count())});
    log({.event = event_kind::slave_retiring, .slave = s.id, .restart = restart ? std::optional(restart->id) : std::nullopt,
         .reason = std::move(reason)});
}

void supervisor::state::respawn(std::uint32_t slot_index) {
    slot_rec& slot = slots[slot_index];
    slot.respawn_at.reset();
    if (!slot.active.empty() || stopping || slot.failed) return;
    std::string id = fresh_id(slot_index);
    slot.active = id;
    spawn(slot_index, id);
}

// The delay before the next start after `failures` quick deaths in a row: none after the first,
// then doubling from respawn_backoff_min up to respawn_backoff_max.
milliseconds supervisor::state::backoff(std::uint32_t failures) const {
    if (failures == 0) return milliseconds(0);
    const auto factor = std::uint64_t{1} << std::min<std::uint32_t>(failures - 1, 20);
    return std::min(config.respawn_backoff_max,
                    milliseconds(config.respawn_backoff_min.count() * static_cast<std::int64_t>(factor)));
}

std::string supervisor::state::start_limit_failure(std::uint32_t failed_starts, const std::string& last) const {
    return fmt::format("{} starts failed within {} ms (respawn.limit_burst, respawn.limit_interval); the last: {}",
                       failed_starts, config.start_limit_interval.count(), last);
}

void supervisor::state::schedule_respawn(std::uint32_t slot_index, const slave_rec& dead, const std::string& reason) {
    if (stopping || !config.spawn_slaves) return;
    slot_rec& slot = slots[slot_index];
    if (dead.ours && !dead.started && slot.starts.failed(now, config.start_limit_burst, config.start_limit_interval)) {
        // The command cannot start: retrying forever would only hide it. The slot's shards stay
        // unassigned (status says so) until a reload or `meshmaster restart` retries.
        slot.failed = true;
        slot.respawn_at.reset();
        const std::uint32_t failed_starts = slot.starts.recent(now, config.start_limit_interval);
        slot.failure = start_limit_failure(failed_starts, reason);
        log({.event = event_kind::slot_failed, .slave = dead.id, .slot = slot_index,
             .duration_ms = static_cast<double>(config.start_limit_interval.count()), .count = failed_starts,
             .reason = reason});
        return;
    }
    const bool quick_death = now - dead.spawned_at < ms(config.stable_after);
    if (!quick_death) slot.failures = 0;
    const milliseconds delay = backoff(slot.failures);
    if (quick_death) ++slot.failures;
    slot.respawn_at = now + ms(delay);
    arm_slot(slot_index);
    log({.event = event_kind::respawn_scheduled, .slave = dead.id, .slot = slot_index,
         .duration_ms = static_cast<double>(delay.count()), .count = slot.failures});
}

// A spare that never came up: back off before the next, and give up at the start limit.
void supervisor::state::spare_start_failed(const std::string& id, const std::string& reason) {
    if (spare_starts.failed(now, config.start_limit_burst, config.start_limit_interval)) {
        spares_failed = true;
        spare_respawn_at.reset();
        const std::uint32_t failed_starts = spare_starts.recent(now, config.start_limit_interval);
        spares_failure = start_limit_failure(failed_starts, reason);
        log({.event = event_kind::spares_failed, .slave = id,
             .duration_ms = static_cast<double>(config.start_limit_interval.count()), .count = failed_starts,
             .reason = reason});
        return;
    }
    spare_respawn_at = now + ms(backoff(spare_failures++));
}

// Slots and spares given up after failed starts get a fresh start limit and start again now.
supervisor::retried_starts supervisor::state::retry_failed_starts(const std::string& reason) {
    supervisor::retried_starts done;
    if (stopping || exited || adopting()) return done;
    for (std::uint32_t i = 0; i < slots.size(); ++i) {
        slot_rec& slot = slots[i];
        if (!slot.failed) continue;
        slot.failed = false;
        slot.failure.clear();
        slot.starts.reset();
        slot.failures = 0;
        log({.event = event_kind::slot_retried, .slot = i, .reason = reason});
        done.slots.push_back(i);
        if (slot.active.empty() && !promote_spare(i)) respawn(i);
    }
    if (spares_failed) {
        spares_failed = false;
        spares_failure.clear();
        spare_starts.reset();
        spare_failures = 0;
        log({.event = event_kind::spares_retried, .reason = reason});
        done.spares = true;
        ensure_spares();
    }
    grant_orphans();
    return done;
}

void supervisor::on_spawned(const std::string& slave, std::int64_t pid, mono_time now) {
    auto& s = *s_;
    s.now = now;
    if (s.exited) return;
    slave_rec* r = s.find(slave);
    if (!r) return;
    r->pid = pid;
    s.log({.event = event_kind::slave_process_started, .slave = slave, .pid = pid});
    // Killed while the spawn was in flight (e.g. the master is stopping): finish the job.
    if (r->phase == slave_phase::lost && r->alive) s.out.emplace_back(actions::kill_slave{r->id, pid});
}

void supervisor::on_spawn_failed(const std::string& slave, std::string reason, mono_time now) {
    auto& s = *s_;
    s.now = now;
    if (s.exited) return;
    s.log({.event = event_kind::spawn_failed, .slave = slave, .reason = reason});
    s.slave_dead(slave, "spawn failed: " + reason);
}

supervisor::retried_starts supervisor::retry_failed_starts(mono_time now, std::string reason) {
    auto& s = *s_;
    s.now = now;
    return s.retry_failed_starts(reason);
}

}  // namespace meshmaster::master
