// A set of sequence numbers stored as sorted, disjoint ranges: which events of one shard have been
// processed at least once.
//
// Bots acknowledge in order, so the set is almost always one range that grows at its end; that
// case costs O(1) and allocates nothing. Each event never processed (lost) leaves a gap, and only
// gaps cost memory, so a run of millions of events stays a handful of ranges.
//
// `add` reports how many of the added numbers were already in the set; summed, that is exactly the
// number of repeated processings (a seq processed three times adds 2), so no per-seq counters
// are needed.
//
// Thread safety: none; a plain value.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

namespace meshmaster::gateway {

class seq_ranges {
public:
    /// Adds first..last (inclusive; requires first <= last < UINT64_MAX). Returns how many of
    /// them were already present.
    std::uint64_t add(std::uint64_t first, std::uint64_t last) {
        const std::uint64_t length = last - first + 1;
        if (ranges_.empty() || first > ranges_.back().last + 1) {
            ranges_.push_back({first, last});
            size_ += length;
            return 0;
        }
        if (first == ranges_.back().last + 1) {  // the common case: continues the newest range
            ranges_.back().last = last;
            size_ += length;
            return 0;
        }
        // General case: merge with every range that overlaps or touches first..last.
        auto lo = std::lower_bound(ranges_.begin(), ranges_.end(), first,
                                   [](const range& r, std::uint64_t seq) { return r.last + 1 < seq; });
        auto hi = lo;
        std::uint64_t overlap = 0;
        range merged{first, last};
        for (; hi != ranges_.end() && hi->first <= last + 1; ++hi) {
            const std::uint64_t from = std::max(hi->first, first);
            const std::uint64_t to = std::min(hi->last, last);
            if (from <= to) overlap += to - from + 1;
            merged.first = std::min(merged.first, hi->first);
            merged.last = std::max(merged.last, hi->last);
        }
        if (lo == hi) {
            ranges_.insert(lo, merged);
        } else {
            *lo = merged;
            ranges_.erase(lo + 1, hi);
        }
        size_ += length - overlap;
        return overlap;
    }

    /// How many distinct numbers the set holds.
    [[nodiscard]] std::uint64_t size() const noexcept { return size_; }
    /// How many disjoint ranges hold them (1 + the number of gaps, for a set starting at 1).
    [[nodiscard]] std::size_t range_count() const noexcept { return ranges_.size(); }

private:
    struct range {
        std::uint64_t first;
        std::uint64_t last;
    };
    std::vector<range> ranges_;  // sorted; disjoint and never adjacent (touching ranges merge)
    std::uint64_t size_ = 0;
};

}  // namespace meshmaster::gateway
