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

TEST_CASE("event query: every parameter read, anything else refused by name") {
    using params = std::vector<std::pair<std::string, std::string>>;
    const auto q = parse_event_query(params{{"since", "41"}, {"type", "migration_completed"}, {"slave", "s0-g2"},
                                            {"shard", "7"}, {"limit", "1000"}});
    REQUIRE(std::holds_alternative<event_query>(q));
    const auto& query = std::get<event_query>(q);
    CHECK(query.since == 41u);
    CHECK(query.filter.type == "migration_completed");
    CHECK(query.filter.slave == "s0-g2");
    CHECK(query.filter.shard == 7u);
    CHECK(query.limit == 1000);
    const auto plain = std::get<event_query>(parse_event_query(params{}));
    CHECK_FALSE(plain.since);
    CHECK(plain.limit == 100);

    auto refusal = [](params p) {
        auto r = parse_event_query(p);
        REQUIRE(std::holds_alternative<std::string>(r));
        return std::get<std::string>(r);
    };
    CHECK(refusal({{"type", "shard_startd"}}) == "type 'shard_startd' is not an event name (docs/events.md lists them)");
    CHECK(refusal({{"since", "-1"}}) == "since must be an event's seq (a whole number), not '-1'");
    CHECK(refusal({{"since", "18446744073709551616"}}).starts_with("since must be"));  // past u64
    CHECK(refusal({{"shard", "4294967296"}}).starts_with("shard must be a shard number"));
    CHECK(refusal({{"limit", "0"}}) == "limit must be 1 to 1000, not '0'");
    CHECK(refusal({{"limit", "1001"}}) == "limit must be 1 to 1000, not '1001'");
    CHECK(refusal({{"limit", "5"}, {"limit", "6"}}) == "'limit' is given twice");
    CHECK(refusal({{"slave", ""}}) == "slave must be a slave id of 1 to 256 bytes");
    CHECK(refusal({{"colour", "red"}}) == "unknown parameter 'colour' (since, type, slave, shard, limit)");
    // What the client sent is quoted printable and short, whatever it was.
    CHECK(refusal({{"type", std::string("\x01\xff") + std::string(40, 'a')}}) ==
          "type '??" + std::string(30, 'a') + "...' is not an event name (docs/events.md lists them)");
}

TEST_CASE("event feed as served: an SSE message per record, and a page's JSON with the records' own lines") {
    event_feed feed;
    add(feed, 8, {.event = "restart_started", .slave = "s0-g1"});
    add(feed, 9, {.event = "restart_completed", .slave = "s0-g1"});
    const auto p = feed.after(7, {}, 100);
    CHECK(sse_message(*p.entries.at(0)) ==
          "id: 8\nevent: restart_started\ndata: {\"seq\":8,\"event\":\"restart_started\",\"slave\":\"s0-g1\"}\n\n");
    CHECK(events_json(p, feed.last_seq()) ==
          R"({"events":[{"seq":8,"event":"restart_started","slave":"s0-g1"},{"seq":9,"event":"restart_completed","slave":"s0-g1"}],)"
          R"("next_since":9,"gap":false,"first_kept":8,"last_seq":9})");
    CHECK(events_json(feed.after(9, {}, 100), feed.last_seq()) == R"({"events":[],"next_since":9,"gap":false,"first_kept":8,"last_seq":9})");
}
