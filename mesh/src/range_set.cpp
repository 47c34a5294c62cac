#include <meshmaster/mesh/range_set.hpp>

#include <algorithm>
#include <iterator>

namespace meshmaster::mesh {

void range_set::insert(std::uint64_t first, std::uint64_t last) {
    if (first >= last) return;
    auto it = ranges_.upper_bound(first);
    if (it != ranges_.begin() && std::prev(it)->second >= first) {
        // The range before touches or overlaps: grow it in place (the common case, a run of
        // arrivals), then swallow what it reaches.
        auto grown = std::prev(it);
        if (grown->second >= last) return;
        grown->second = last;
        while (it != ranges_.end() && it->first <= grown->second) {
            grown->second = std::max(grown->second, it->second);
            it = ranges_.erase(it);
        }
        return;
    }
    // A range of its own, swallowing every range that starts within (or right at the end of) it.
    while (it != ranges_.end() && it->first <= last) {
        last = std::max(last, it->second);
        it = ranges_.erase(it);
    }
    ranges_.emplace_hint(it, first, last);
}

void range_set::erase_below(std::uint64_t x) {
    while (!ranges_.empty() && ranges_.begin()->first < x) {
        auto node = ranges_.extract(ranges_.begin());
        if (node.mapped() > x) {
            node.key() = x;
            ranges_.insert(std::move(node));
            return;
        }
    }
}

bool range_set::contains(std::uint64_t x) const {
    auto it = ranges_.upper_bound(x);
    return it != ranges_.begin() && std::prev(it)->second > x;
}

}  // namespace meshmaster::mesh
