#include "event_feed.hpp"

#include <algorithm>

namespace meshmaster::master {

bool feed_entry::matches(const event_filter& f) const {
    if (!f.type.empty() && f.type != event) return false;
    if (!f.slave.empty() && f.slave != slave && f.slave != peer) return false;
    if (f.shard && shard != f.shard) return false;
    return true;
}

void event_feed::append(std::uint64_t seq, const event_record& r, std::string line) {
    bytes_ += line.size();
    entries_.push_back({.seq = seq, .event = r.event.name(), .slave = r.slave, .peer = r.peer, .shard = r.shard,
                        .line = std::move(line)});
    // The newest entry always stays, even alone over the byte limit: a reader must see every
    // record at least until the next one arrives.
    while (entries_.size() > 1 && (entries_.size() > limits_.entries || bytes_ > limits_.bytes)) {
        bytes_ -= entries_.front().line.size();
        last_dropped_ = entries_.front().seq;
        entries_.pop_front();
    }
}

event_feed::page event_feed::after(std::uint64_t since, const event_filter& filter, std::size_t limit) const {
    page p{.next_since = std::max(since, last_seq()), .first_kept = first_seq()};
    // Sequence numbers grow: the first entry past `since` is found by bisection.
    auto it = std::upper_bound(entries_.begin(), entries_.end(), since,
                               [](std::uint64_t s, const feed_entry& e) { return s < e.seq; });
    // Something after `since` is gone when the oldest held is not its successor (and a record
    // was ever dropped: a fresh master's first seq may be far past 1 after a restart).
    p.gap = last_dropped_ > since;
    for (; it != entries_.end(); ++it) {
        if (!it->matches(filter)) continue;
        if (p.entries.size() == limit) {
            p.next_since = p.entries.empty() ? since : p.entries.back()->seq;
            return p;
        }
        p.entries.push_back(&*it);
    }
    return p;
}

event_feed::page event_feed::latest(const event_filter& filter, std::size_t limit) const {
    page p{.next_since = last_seq(), .first_kept = first_seq()};
    for (auto it = entries_.rbegin(); it != entries_.rend() && p.entries.size() < limit; ++it) {
        if (it->matches(filter)) p.entries.push_back(&*it);
    }
    std::reverse(p.entries.begin(), p.entries.end());
    return p;
}

}  // namespace meshmaster::master
