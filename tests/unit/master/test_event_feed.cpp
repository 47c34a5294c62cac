// The event feed without a daemon: records in, pages out — what /v1/events and the SSE stream serve.
#include "event_feed.hpp"

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <string>
#include <vector>

using namespace meshmaster::master;

namespace {

std::string line_of(std::uint64_t seq, const event_record& r) {
    return fmt::format(R"({{"seq":{},"event":"{}","slave":"{}"}})", seq, r.event.name(), r.slave);
}

void add(event_feed& feed, std::uint64_t seq, event_record r) {
    feed.append(seq, r, line_of(seq, r));
}

std::vector<std::uint64_t> seqs(const event_feed::page& p) {
    std::vector<std::uint64_t> out;
    for (const feed_entry* e : p.entries) out.push_back(e->seq);
    return out;
}

}  // namespace

TEST_CASE("event feed: a reader gets what came after its last sequence number, in order, and where to go on") {
    event_feed feed;
    for (std::uint64_t s = 1; s <= 5; ++s) add(feed, s, {.event = "shard_started", .slave = "s0-g1", .shard = std::uint32_t(s)});
    const auto all = feed.after(0, {}, 100);
    CHECK(seqs(all) == std::vector<std::uint64_t>{1, 2, 3, 4, 5});
    CHECK(all.next_since == 5);
    CHECK_FALSE(all.gap);
    CHECK(all.entries.front()->line == R"({"seq":1,"event":"shard_started","slave":"s0-g1"})");

    const auto rest = feed.after(3, {}, 100);
    CHECK(seqs(rest) == std::vector<std::uint64_t>{4, 5});
    const auto none = feed.after(5, {}, 100);
    CHECK(none.entries.empty());
    CHECK(none.next_since == 5);  // nothing new: ask again from the same place

    // A page cut by its limit goes on right after its last entry: nothing is skipped.
    const auto first = feed.after(0, {}, 2);
    CHECK(seqs(first) == std::vector<std::uint64_t>{1, 2});
    CHECK(first.next_since == 2);
    CHECK(seqs(feed.after(first.next_since, {}, 2)) == std::vector<std::uint64_t>{3, 4});
}

TEST_CASE("event feed: filters by event, by slave as either side of a move, and by shard") {
    event_feed feed;
    add(feed, 10, {.event = "migration_started", .slave = "s0-g1", .peer = "s0-g2", .shard = 7u});
    add(feed, 11, {.event = "migration_completed", .slave = "s0-g2", .peer = "s0-g1", .shard = 7u});
    add(feed, 12, {.event = "migration_completed", .slave = "s1-g2", .peer = "s1-g1", .shard = 9u});
    add(feed, 13, {.event = "restart_completed"});

    CHECK(seqs(feed.after(0, {.type = "migration_completed"}, 100)) == std::vector<std::uint64_t>{11, 12});
    CHECK(seqs(feed.after(0, {.slave = "s0-g1"}, 100)) == std::vector<std::uint64_t>{10, 11});
    CHECK(seqs(feed.after(0, {.shard = 9u}, 100)) == std::vector<std::uint64_t>{12});
    CHECK(seqs(feed.after(0, {.type = "migration_completed", .shard = 7u}, 100)) == std::vector<std::uint64_t>{11});
    // A filtered reader moves past the records it does not want: asking again returns nothing old.
    const auto p = feed.after(0, {.type = "restart_failed"}, 100);
    CHECK(p.entries.empty());
    CHECK(p.next_since == 13);
}

TEST_CASE("event feed: the newest records, for a reader with no sequence number yet") {
    event_feed feed;
    for (std::uint64_t s = 1; s <= 6; ++s) add(feed, s, {.event = s % 2 ? event_kind::shard_started : event_kind::shard_granted});
    CHECK(seqs(feed.latest({}, 3)) == std::vector<std::uint64_t>{4, 5, 6});
    CHECK(seqs(feed.latest({.type = "shard_granted"}, 2)) == std::vector<std::uint64_t>{4, 6});
    CHECK(feed.latest({}, 3).next_since == 6);
}

TEST_CASE("event feed: bounded by entries and bytes; a reader behind the oldest kept record is told of the gap") {
    event_feed feed({.entries = 3, .bytes = 1 << 20});
    for (std::uint64_t s = 100; s < 110; ++s) add(feed, s, {.event = "shard_started", .slave = "s0-g1"});
    CHECK(feed.size() == 3);
    CHECK(feed.first_seq() == 107);
    CHECK(feed.last_seq() == 109);
    const auto late = feed.after(104, {}, 100);
    CHECK(late.gap);  // 105 and 106 are only in the event log now
    CHECK(late.first_kept == 107);
    CHECK(seqs(late) == std::vector<std::uint64_t>{107, 108, 109});
    CHECK_FALSE(feed.after(106, {}, 100).gap);

    event_feed small({.entries = 1000, .bytes = 100});
    const event_record big{.event = "epochs_snapshot", .reason = std::string(80, 'x')};
    small.append(1, big, std::string(60, 'a'));
    small.append(2, big, std::string(60, 'b'));
    CHECK(small.size() == 1);  // two would be 120 bytes
    CHECK(small.bytes() == 60);
    small.append(3, big, std::string(500, 'c'));  // alone over the limit: kept until the next one
    CHECK(small.size() == 1);
    CHECK(small.first_seq() == 3);
}
