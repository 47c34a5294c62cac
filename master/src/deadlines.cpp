// The timers of failure handling (deadline_queue.hpp says how they work): each record's earliest
// deadline, arming a record whose deadline may have moved earlier, and the next deadline of all.
// on_tick (failure_handling.cpp) fires them. Also the self-check of the indexes the hot paths use
// instead of walks (the deadline queue, each slave's shards, each pair's moves, the lookups), which
// the simulation runs after every step. Members of supervisor::state (supervisor_state.hpp).
#include "supervisor_state.hpp"

#include <fmt/format.h>

namespace meshmaster::master {

// A record's earliest deadline: what on_tick looks at for it, written once here so that the
// queue, next_deadline and the self-check agree.
std::optional<mono_time> supervisor::state::slave_due(const slave_rec& r) const {
    if (!r.alive) return std::nullopt;
    std::optional<mono_time> next = r.deadline;
    auto consider = [&](mono_time t) {
        if (!next || t < *next) next = t;
    };
    if (r.connection && r.phase != slave_phase::lost) {
        const mono_time silence = silence_limit(config);
        consider(r.last_seen + silence);
        consider(r.next_heartbeat);
        if (r.progress != 0) consider(r.progress_at + silence);
    }
    return next;
}

std::optional<mono_time> supervisor::state::migration_due(const migration_rec& m) const {
    if (!awaited(m)) return std::nullopt;
    return m.phase_started + ms(m.phase == migration_phase::stopping ? config.stop_timeout : config.resume_timeout);
}

std::optional<mono_time> supervisor::state::shard_due(std::uint32_t shard) const {
    const shard_rec& sh = shards[shard];
    if (!awaited(sh)) return std::nullopt;
    return sh.since + ms(config.start_timeout);
}

deadline_slot supervisor::state::timer_slot(deadline_kind kind, std::uint64_t key) {
    switch (kind) {
        case deadline_kind::slot:
            if (key < slots.size()) return {&slots[key].armed, slots[key].respawn_at};
            break;
        case deadline_kind::slave:
            if (auto it = slave_by_key.find(key); it != slave_by_key.end()) {
                return {&it->second->armed, slave_due(*it->second)};
            }
            break;
        case deadline_kind::migration:
            if (auto it = migrations.find(key); it != migrations.end()) return {&it->second.armed, migration_due(it->second)};
            break;
        case deadline_kind::shard:
            if (key < shards.size()) return {&shards[key].armed, shard_due(static_cast<std::uint32_t>(key))};
            break;
    }
    return {};
}

void supervisor::state::arm(slave_rec& r) { timers.arm(r.armed, slave_due(r), deadline_kind::slave, r.key); }

void supervisor::state::arm(migration_rec& m) { timers.arm(m.armed, migration_due(m), deadline_kind::migration, m.id); }

void supervisor::state::arm_shard(std::uint32_t shard) {
    timers.arm(shards[shard].armed, shard_due(shard), deadline_kind::shard, shard);
}

void supervisor::state::arm_slot(std::uint32_t slot) {
    timers.arm(slots[slot].armed, slots[slot].respawn_at, deadline_kind::slot, slot);
}

// A slave (re)connected: its own deadlines, and those of the shards and migrations that wait for
// it, may be back (a lost external slave returning is awaited again). A walk of the migrations in
// flight, once per connection, not per frame.
void supervisor::state::arm_around(slave_rec& r) {
    arm(r);
    for (const std::uint32_t shard : r.held) arm_shard(shard);
    for (auto& [id, m] : migrations) {
        if (m.from == r.id || shards[m.shard].owner == r.id) arm(m);
    }
}

// Settings changed (timeouts, the heartbeat): any deadline may have moved earlier.
void supervisor::state::arm_all() {
    for (std::uint32_t i = 0; i < slots.size(); ++i) arm_slot(i);
    for (auto& [id, r] : slaves) arm(r);
    for (auto& [id, m] : migrations) arm(m);
    for (std::uint32_t i = 0; i < shards.size(); ++i) arm_shard(i);
}

std::optional<mono_time> supervisor::state::next_deadline() {
    if (exited) return std::nullopt;
    std::optional<mono_time> next =
        timers.front([this](deadline_kind kind, std::uint64_t key) { return timer_slot(kind, key); });
    auto consider = [&](mono_time t) {
        if (!next || t < *next) next = t;
    };
    // Few, and not per shard: the adoption window, the kills awaited after it, the spares' backoff.
    if (adopting_until) consider(*adopting_until);
    for (const auto& [id, deadline] : awaiting_exit) consider(deadline);
    if (spare_respawn_at) consider(*spare_respawn_at);
    return next;
}

// The walk the queue replaces, kept to check it.
std::optional<mono_time> supervisor::state::scan_next_deadline() const {
    if (exited) return std::nullopt;
    std::optional<mono_time> next;
    auto consider = [&](std::optional<mono_time> t) {
        if (t && (!next || *t < *next)) next = t;
    };
    consider(adopting_until);
    for (const auto& [id, deadline] : awaiting_exit) consider(deadline);
    for (const auto& slot : slots) consider(slot.respawn_at);
    consider(spare_respawn_at);
    for (const auto& [id, r] : slaves) consider(slave_due(r));
    for (const auto& [id, m] : migrations) consider(migration_due(m));
    for (std::uint32_t i = 0; i < shards.size(); ++i) consider(shard_due(i));
    return next;
}

// The indexes against the tables they summarise; empty when they agree.
std::string supervisor::state::check_indexes() const {
    std::map<std::string, std::set<std::uint32_t>> held;
    for (std::uint32_t i = 0; i < shards.size(); ++i) {
        if (shards[i].holder != find(shards[i].owner)) return fmt::format("shard {}: its holder is not its owner's record", i);
        if (shards[i].owner.empty()) continue;
        if (!find(shards[i].owner)) return fmt::format("shard {} is owned by {}, who is not a known slave", i, shards[i].owner);
        held[shards[i].owner].insert(i);
    }
    if (slave_index.size() != slaves.size() || slave_by_key.size() != slaves.size()) {
        return fmt::format("{} slaves, but {} in the id index and {} in the key index", slaves.size(), slave_index.size(),
                           slave_by_key.size());
    }
    std::size_t connected = 0;
    for (const auto& [id, r] : slaves) {
        if (find(id) != &r) return fmt::format("slave {}: the id index points elsewhere", id);
        if (auto it = slave_by_key.find(r.key); it == slave_by_key.end() || it->second != &r) {
            return fmt::format("slave {}: the key index points elsewhere", id);
        }
        const auto it = held.find(id);
        if (r.held != (it == held.end() ? std::set<std::uint32_t>{} : it->second)) {
            return fmt::format("slave {}: its shard index has {} shards, the table gives it {}", id, r.held.size(),
                               it == held.end() ? 0 : it->second.size());
        }
        if (r.connection) {
            ++connected;
            auto c = by_connection.find(*r.connection);
            if (c == by_connection.end() || c->second != &r) return fmt::format("slave {}: its connection is not indexed", id);
        }
        if (const auto due = slave_due(r); due && (!r.armed || *r.armed > *due)) {
            return fmt::format("slave {}: a deadline without a timer at or before it", id);
        }
    }
    if (connected != by_connection.size()) {
        return fmt::format("{} connected slaves, {} connections indexed", connected, by_connection.size());
    }
    for (const auto& [id, m] : migrations) {
        if (const auto due = migration_due(m); due && (!m.armed || *m.armed > *due)) {
            return fmt::format("migration {}: a deadline without a timer at or before it", id);
        }
    }
    for (std::uint32_t i = 0; i < shards.size(); ++i) {
        if (const auto due = shard_due(i); due && (!shards[i].armed || *shards[i].armed > *due)) {
            return fmt::format("shard {}: a deadline without a timer at or before it", i);
        }
    }
    for (std::uint32_t i = 0; i < slots.size(); ++i) {
        if (slots[i].respawn_at && (!slots[i].armed || *slots[i].armed > *slots[i].respawn_at)) {
            return fmt::format("slot {}: a respawn without a timer at or before it", i);
        }
    }
    for (std::uint32_t i = 0; i < shards.size(); ++i) {
        if (shards[i].phase == shard_phase::unowned && shards[i].migration == 0 && !orphans.contains(i)) {
            return fmt::format("shard {} is free to grant but not on grant_orphans' list", i);
        }
    }
    if (restart) {
        for (std::size_t i = 0; i < restart->pairs.size(); ++i) {
            std::uint32_t queued = 0;
            std::uint32_t moving = 0;
            for (const auto& q : restart->queue) queued += q.first == i ? 1 : 0;
            for (const auto& [id, m] : migrations) moving += m.pair == i ? 1 : 0;
            const pair_rec& p = restart->pairs[i];
            if (p.queued != queued || p.moving != moving) {
                return fmt::format("pair {}: counted {} queued and {} moving, the queue and the migrations say {} and {}",
                                   i, p.queued, p.moving, queued, moving);
            }
        }
    }
    return {};
}

std::string supervisor::self_check() {
    auto& s = *s_;
    if (std::string wrong = s.check_indexes(); !wrong.empty()) return wrong;
    const auto scanned = s.scan_next_deadline();
    const auto queued = s.next_deadline();
    if (scanned != queued) {
        auto text = [](std::optional<mono_time> t) {
            return t ? fmt::format("{} ns", t->count()) : std::string("none");
        };
        return fmt::format("next deadline: {} from the queue, {} from a walk of every record", text(queued), text(scanned));
    }
    return {};
}

}  // namespace meshmaster::master
