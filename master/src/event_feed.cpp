#include "event_feed.hpp"

#include <algorithm>
#include <charconv>

#include <fmt/format.h>

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

namespace {

// What a refusal quotes of the client's input: printable ASCII, cut short.
std::string quoted(std::string_view text) {
    std::string out;
    for (char c : text.substr(0, 32)) out.push_back(c >= 0x20 && c < 0x7f ? c : '?');
    if (text.size() > 32) out += "...";
    return out;
}

template <class T>
std::optional<T> whole_number(std::string_view text) {
    T value{};
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (text.empty() || ec != std::errc{} || end != text.data() + text.size()) return std::nullopt;
    return value;
}

}  // namespace

std::variant<event_query, std::string> parse_event_query(const std::vector<std::pair<std::string, std::string>>& params) {
    event_query q;
    std::vector<std::string_view> seen;
    for (const auto& [name, value] : params) {
        if (std::find(seen.begin(), seen.end(), name) != seen.end()) return fmt::format("'{}' is given twice", quoted(name));
        seen.push_back(name);
        if (name == "since") {
            q.since = whole_number<std::uint64_t>(value);
            if (!q.since) return fmt::format("since must be an event's seq (a whole number), not '{}'", quoted(value));
        } else if (name == "type") {
            if (std::none_of(event_table.begin(), event_table.end(), [&](const auto& e) { return e.second == value; })) {
                return fmt::format("type '{}' is not an event name (docs/events.md lists them)", quoted(value));
            }
            q.filter.type = value;
        } else if (name == "slave") {
            if (value.empty() || value.size() > 256) return "slave must be a slave id of 1 to 256 bytes";
            q.filter.slave = value;
        } else if (name == "shard") {
            q.filter.shard = whole_number<std::uint32_t>(value);
            if (!q.filter.shard) return fmt::format("shard must be a shard number, not '{}'", quoted(value));
        } else if (name == "limit") {
            const auto limit = whole_number<std::size_t>(value);
            if (!limit || *limit == 0 || *limit > event_query::max_limit) {
                return fmt::format("limit must be 1 to {}, not '{}'", event_query::max_limit, quoted(value));
            }
            q.limit = *limit;
        } else {
            return fmt::format("unknown parameter '{}' (since, type, slave, shard, limit)", quoted(name));
        }
    }
    return q;
}

std::string sse_message(const feed_entry& e) {
    // The line is one JSON text without a newline, so one `data:` field carries it whole.
    return fmt::format("id: {}\nevent: {}\ndata: {}\n\n", e.seq, e.event, e.line);
}

std::string events_json(const event_feed::page& p, std::uint64_t last_seq) {
    std::string out = "{\"events\":[";
    for (std::size_t i = 0; i < p.entries.size(); ++i) {
        if (i) out.push_back(',');
        out += p.entries[i]->line;
    }
    out += fmt::format("],\"next_since\":{},\"gap\":{},\"first_kept\":{},\"last_seq\":{}}}", p.next_since,
                       p.gap ? "true" : "false", p.first_kept, last_seq);
    return out;
}

}  // namespace meshmaster::master
