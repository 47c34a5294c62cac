// The events' one table (event_kind.hpp): every event has one name, and the log writes that name.
#include "event_log.hpp"

#include <meshmaster/master/event_kind.hpp>

#include <doctest/doctest.h>

#include <set>
#include <string>

using namespace meshmaster::master;

TEST_CASE("every event has its own name in the table, the enumerator's own") {
    std::set<std::string_view> names;
    for (const auto& [kind, n] : event_table) {
        CHECK(name(kind) == n);
        CHECK(names.insert(n).second);
    }
    CHECK(names.size() == event_table.size());
    CHECK(name(event_kind::migration_completed) == "migration_completed");
    CHECK(name(event_kind::restart_abandoned) == "restart_abandoned");
}

TEST_CASE("an event built from its enumerator or from its name is the same, and compares with either") {
    constexpr event_id by_name = "shard_granted";
    constexpr event_id by_kind = event_kind::shard_granted;
    static_assert(by_name.kind() == event_kind::shard_granted);
    CHECK(by_name == by_kind);
    CHECK(by_kind == "shard_granted");
    CHECK(by_kind == event_kind::shard_granted);
    CHECK_FALSE(by_kind == event_kind::shard_started);
    CHECK_FALSE(by_kind == std::string_view("shard_started"));
}

TEST_CASE("the log line's `event` is the table's name: the log's format does not depend on the enum") {
    for (const auto& [kind, n] : event_table) {
        const auto line = event_log::to_json(event_record{.event = kind});
        REQUIRE(line.contains("event"));
        CHECK(line.at("event").as_string() == n);
    }
}
