// The supervisor's timers: one min-heap of (time, kind, key) instead of a walk over every slave,
// migration, shard and slot each time the driver asks for the next deadline (after every input)
// and each time one fires. At 16,384 shards that walk was most of the master's work per move.
//
// The entries are hints with lazy invalidation. Each record keeps `armed`: the time of its one
// valid entry, at or before its earliest deadline. A deadline that moves later (a heartbeat pushes
// the silence limit on, on every frame) costs nothing: the entry fires early, the record is looked
// at afresh and armed again. One that moves earlier (or appears) is armed with a new entry and the
// old one goes stale (its time is no longer the record's `armed`); stale entries and entries of
// records that are gone are dropped when they reach the top, or, when they pile up (a migration's
// entry outlives it by its timeout: thousands in a big restart), by a sweep once the queue has
// doubled since the last one — amortised O(1) per entry, and the queue stays within twice what is
// live.
//
// The queue does not know the records: the caller resolves a (kind, key) to the record's `armed`
// and its earliest deadline now (deadline_slot).
//
// Thread safety: none (the supervisor's driver thread only).
#pragma once

#include <meshmaster/master/supervisor.hpp>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <optional>
#include <vector>

namespace meshmaster::master {

enum class deadline_kind : std::uint8_t { slot, slave, migration, shard };

struct deadline_entry {
    mono_time at{};
    deadline_kind kind = deadline_kind::slot;
    std::uint64_t key = 0;
    bool operator>(const deadline_entry& o) const { return at > o.at; }
};

/// A record as the queue sees it: its entry's time (null when the record is gone) and its
/// earliest deadline now (none when nothing about it can fall due).
struct deadline_slot {
    std::optional<mono_time>* armed = nullptr;
    std::optional<mono_time> due;
};

class deadline_queue {
public:
    /// The record's deadline may have moved earlier (or appeared): give it an entry at `due` unless
    /// its entry is already at or before it.
    void arm(std::optional<mono_time>& armed, std::optional<mono_time> due, deadline_kind kind, std::uint64_t key) {
        if (!due || (armed && *armed <= *due)) return;
        armed = due;
        heap_.push_back({*due, kind, key});
        std::push_heap(heap_.begin(), heap_.end(), std::greater<>{});
    }

    /// The earliest deadline of all records, exactly: stale entries on top are dropped, and an
    /// entry whose record's deadline moved later is moved with it, until the top is a record's
    /// true deadline. `resolve(kind, key)` gives the record's deadline_slot.
    template <class Resolve>
    std::optional<mono_time> front(Resolve&& resolve) {
        if (heap_.size() > sweep_at_) sweep(resolve);
        while (!heap_.empty()) {
            const deadline_entry e = heap_.front();
            const deadline_slot r = resolve(e.kind, e.key);
            if (!r.armed || *r.armed != e.at) {
                pop();  // stale, or its record is gone
                continue;
            }
            if (r.due == e.at) return e.at;
            pop();
            r.armed->reset();
            arm(*r.armed, r.due, e.kind, e.key);
        }
        return std::nullopt;
    }

    /// Takes every valid entry at or before `now` off the queue, calling `taken(kind, key)` for
    /// each: the caller looks at those records (and only those) and arms them again afterwards.
    /// A taken record has no entry until then.
    template <class Resolve, class Taken>
    void take_due(mono_time now, Resolve&& resolve, Taken&& taken) {
        while (!heap_.empty() && heap_.front().at <= now) {
            const deadline_entry e = heap_.front();
            pop();
            const deadline_slot r = resolve(e.kind, e.key);
            if (!r.armed || *r.armed != e.at) continue;
            r.armed->reset();
            taken(e.kind, e.key);
        }
    }

    /// Entries, stale ones included.
    [[nodiscard]] std::size_t size() const { return heap_.size(); }

private:
    static constexpr std::size_t min_sweep = 1024;

    void pop() {
        std::pop_heap(heap_.begin(), heap_.end(), std::greater<>{});
        heap_.pop_back();
    }

    // Drops every stale entry at once (their records only say which entry is theirs).
    template <class Resolve>
    void sweep(Resolve& resolve) {
        std::erase_if(heap_, [&](const deadline_entry& e) {
            const deadline_slot r = resolve(e.kind, e.key);
            return !r.armed || *r.armed != e.at;
        });
        std::make_heap(heap_.begin(), heap_.end(), std::greater<>{});
        sweep_at_ = std::max(min_sweep, 2 * heap_.size());
    }

    std::vector<deadline_entry> heap_;  // a min-heap on `at` (std::push_heap with greater)
    std::size_t sweep_at_ = min_sweep;
};

}  // namespace meshmaster::master
