// The event feed: the newest event-log records kept in memory, for the HTTP API's `/v1/events`
// (a page of them, filtered) and `/v1/events/stream` (Server-Sent Events, resumed from a sequence
// number). The event log on disk stays the record of everything; the feed holds the last few
// thousand lines so that a dashboard or a poller reads them without touching the file.
//
// Each entry is the event log's own line (the same JSON text, `seq` included), with the fields a
// filter looks at. Sequence numbers are the log's: they increase by one per record, continue
// across master restarts, and are what a client passes back as `since` or `Last-Event-ID`.
// When a client asks for records the feed no longer holds, the page says so (`gap`) and names the
// oldest it has: the rest is in the event log.
//
// Bounded twice: by entries and by bytes (an `epochs_snapshot` line at 16,384 shards is ~100 KiB;
// ten thousand of them must not be kept).
//
// No Asio, no clock: a plain container, unit-tested. Thread safety: none; the daemon appends and
// reads on its one thread. The pointers in a page are valid until the next append.
#pragma once

#include <meshmaster/master/event_record.hpp>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace meshmaster::master {

/// Which records a reader wants. Empty fields match everything.
struct event_filter {
    std::string type;                    ///< an event name (event_table)
    std::string slave;                   ///< the record's `slave` or `peer`
    std::optional<std::uint32_t> shard;  ///< the record's `shard`
};

struct feed_entry {
    std::uint64_t seq = 0;
    std::string_view event;  ///< a name from event_table (static storage)
    std::string slave;
    std::string peer;
    std::optional<std::uint32_t> shard;
    std::string line;  ///< the event log's JSON line, without the newline

    [[nodiscard]] bool matches(const event_filter& f) const;
};

class event_feed {
public:
    struct limits {
        std::size_t entries = 10'000;
        std::size_t bytes = 8u << 20;  ///< of `line`s, summed
    };

    event_feed() : event_feed(limits{}) {}
    explicit event_feed(limits l) : limits_(l) {}

    /// Keeps a record the event log has just written as `line` with sequence number `seq` (greater
    /// than any before), dropping the oldest entries beyond the limits.
    void append(std::uint64_t seq, const event_record& r, std::string line);

    struct page {
        std::vector<const feed_entry*> entries;  ///< oldest first; valid until the next append
        /// What to pass as `since` next time: the last record looked at, matched or not, so a
        /// filtered reader moves on past what it does not want.
        std::uint64_t next_since = 0;
        /// Records after `since` were dropped before this read: the event log has them.
        bool gap = false;
        std::uint64_t first_kept = 0;  ///< the oldest sequence number held (0: none)
    };

    /// Records after `since` that match, oldest first, at most `limit`.
    [[nodiscard]] page after(std::uint64_t since, const event_filter& filter, std::size_t limit) const;
    /// The newest `limit` records that match, oldest first (a reader with no `since` yet).
    [[nodiscard]] page latest(const event_filter& filter, std::size_t limit) const;

    [[nodiscard]] std::uint64_t last_seq() const noexcept { return entries_.empty() ? last_dropped_ : entries_.back().seq; }
    [[nodiscard]] std::uint64_t first_seq() const noexcept { return entries_.empty() ? 0 : entries_.front().seq; }
    [[nodiscard]] std::size_t size() const noexcept { return entries_.size(); }
    [[nodiscard]] std::size_t bytes() const noexcept { return bytes_; }

private:
    limits limits_;
    std::deque<feed_entry> entries_;
    std::size_t bytes_ = 0;
    std::uint64_t last_dropped_ = 0;  // the newest sequence number no longer held
};

/// What a reader of /v1/events or its stream asked for, read from the query string.
struct event_query {
    std::optional<std::uint64_t> since;  ///< absent: the newest records (a page) or from now on (a stream)
    event_filter filter;
    std::size_t limit = 100;  ///< records per page, 1..max_limit
    static constexpr std::size_t max_limit = 1000;
};

/// Reads `since`, `type` (an event name), `slave`, `shard` and `limit` from decoded query
/// parameters; any other name, a repeated one or a bad value is the message that refuses the
/// request (it quotes at most 32 printable characters of what it got).
std::variant<event_query, std::string> parse_event_query(const std::vector<std::pair<std::string, std::string>>& params);

/// One record as a Server-Sent Events message: `id: <seq>`, `event: <name>`, `data: <line>`, a blank line.
std::string sse_message(const feed_entry& e);

/// A page as the JSON text of GET /v1/events: the records' own lines spliced in, not re-encoded.
std::string events_json(const event_feed::page& p, std::uint64_t last_seq);

}  // namespace meshmaster::master
