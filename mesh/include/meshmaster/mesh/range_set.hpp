// A set of 64-bit sequence numbers kept as disjoint half-open ranges [first, last): what the
// channel knows of selective acknowledgements. Out-of-order arrivals and SACKs come in long runs,
// so work is per range, not per sequence number — walking sequence by sequence made every ack
// cost the whole window under loss.
//
// Thread safety: none (a plain value).
#pragma once

#include <cstdint>
#include <iterator>
#include <map>

namespace meshmaster::mesh {

class range_set {
public:
    /// Adds [first, last), merging with the ranges it touches.
    void insert(std::uint64_t first, std::uint64_t last);
    /// Calls f(a, b) for each part [a, b) of [first, last) not in the set yet, lowest first, then
    /// adds [first, last).
    template <class F>
    void insert_reporting_new(std::uint64_t first, std::uint64_t last, F&& f) {
        std::uint64_t at = first;
        auto it = ranges_.upper_bound(first);
        if (it != ranges_.begin() && std::prev(it)->second > at) at = std::prev(it)->second;
        for (; at < last && it != ranges_.end() && it->first < last; ++it) {
            if (it->first > at) f(at, it->first);
            if (it->second > at) at = it->second;
        }
        if (at < last) f(at, last);
        insert(first, last);
    }
    /// Drops every number below `x`.
    void erase_below(std::uint64_t x);
    [[nodiscard]] bool contains(std::uint64_t x) const;
    [[nodiscard]] bool empty() const noexcept { return ranges_.empty(); }
    void clear() noexcept { ranges_.clear(); }
    /// The ranges, lowest first: first → last.
    [[nodiscard]] const std::map<std::uint64_t, std::uint64_t>& ranges() const noexcept { return ranges_; }

private:
    std::map<std::uint64_t, std::uint64_t> ranges_;
};

}  // namespace meshmaster::mesh
