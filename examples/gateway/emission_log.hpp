// The resume window: when each recently emitted event was emitted, for every shard at once.
//
// Every shard whose stream has started emits the same number of events on a tick (the rate is the
// same for all of them), so one log of ticks describes every shard's history. Events are numbered
// by a global emission index: a shard whose stream started when the index stood at `base` gives
// its event `seq` the index `base + seq`. A tick entry covers the indexes it added and holds the
// tick's time, which is the emit time of each of those events.
//
// Compared with a ring of emit times per shard this keeps one entry per tick instead of one per
// event (30 000 entries for a 30 s window at 1 ms ticks, not 256 × 30 000), and emitting costs the
// same whatever the number of shards. Payloads are never stored: they are recomputable.
//
// Thread safety: none; a plain value.
#pragma once

#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

namespace meshmaster::gateway {

class emission_log {
public:
    /// The highest index handed out so far (0 before the first tick that emitted).
    [[nodiscard]] std::uint64_t last_index() const noexcept { return last_index_; }

    /// Records a tick at `time_ns` that emitted `count` events per started shard.
    void append(std::uint64_t count, std::int64_t time_ns) {
        if (count == 0) return;
        if (size_ == ring_.size()) grow();
        last_index_ += count;
        ring_[(head_ + size_) & (ring_.size() - 1)] = {last_index_, count, time_ns};
        ++size_;
    }

    /// Forgets ticks older than `cutoff_ns`.
    void forget_before(std::int64_t cutoff_ns) noexcept {
        while (size_ != 0 && ring_[head_].time_ns < cutoff_ns) {
            head_ = (head_ + 1) & (ring_.size() - 1);
            --size_;
        }
    }

    /// The lowest index still retained; last_index() + 1 when nothing is.
    [[nodiscard]] std::uint64_t oldest_index() const noexcept {
        return size_ == 0 ? last_index_ + 1 : first_of(at(0));
    }

    /// The emit time of `index`, if it is still retained.
    [[nodiscard]] std::optional<std::int64_t> time_of(std::uint64_t index) const noexcept {
        if (index < oldest_index() || index > last_index_) return std::nullopt;
        return at(find(index)).time_ns;
    }

    /// Calls `f(first, last, time_ns)` for each tick's part of from..to, in order. Requires
    /// oldest_index() <= from and to <= last_index().
    template <class F>
    void for_each(std::uint64_t from, std::uint64_t to, F&& f) const {
        if (from > to) return;
        for (std::size_t i = find(from); i < size_; ++i) {
            const tick& t = at(i);
            const std::uint64_t first = first_of(t);
            if (first > to) break;
            f(first < from ? from : first, t.last < to ? t.last : to, t.time_ns);
        }
    }

private:
    struct tick {
        std::uint64_t last = 0;   // the highest index this tick handed out
        std::uint64_t count = 0;  // how many indexes it handed out (> 0)
        std::int64_t time_ns = 0;
    };

    static std::uint64_t first_of(const tick& t) noexcept { return t.last - t.count + 1; }
    const tick& at(std::size_t i) const noexcept { return ring_[(head_ + i) & (ring_.size() - 1)]; }

    // The position of the tick holding `index`, by binary search (ticks are in index order).
    std::size_t find(std::uint64_t index) const noexcept {
        std::size_t lo = 0;
        std::size_t hi = size_;
        while (lo < hi) {
            const std::size_t mid = lo + (hi - lo) / 2;
            if (at(mid).last < index) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        return lo;
    }

    // Doubles the ring (a power of two, so positions wrap with a mask), unrolling it to the front.
    void grow() {
        std::vector<tick> bigger(ring_.empty() ? 1024 : ring_.size() * 2);
        for (std::size_t i = 0; i < size_; ++i) bigger[i] = at(i);
        ring_ = std::move(bigger);
        head_ = 0;
    }

    std::vector<tick> ring_;
    std::size_t head_ = 0;
    std::size_t size_ = 0;
    std::uint64_t last_index_ = 0;
};

}  // namespace meshmaster::gateway
