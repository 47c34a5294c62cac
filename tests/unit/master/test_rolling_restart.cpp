// The rolling-restart planner (rolling_restart.hpp): every slave replaced by one of the next
// generation, its shards moved with their state within the concurrency, and a second request queued
// once.
#include "supervisor_fixtures.hpp"

#include <meshmaster/master/supervisor.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <map>
#include <set>
#include <string>

using namespace meshmaster::master;
using namespace meshmaster::master::test;
using namespace std::chrono_literals;

TEST_CASE("rolling restart: every shard moves to a new slave with its state, epochs bumped, old slaves retired") {
    sim_world w = settled_world({.shards = 12, .slaves = 3, .concurrency = 2});
    w.request_restart();
    w.step_deliver_all();
    REQUIRE(w.settle());
    REQUIRE_FALSE(w.violation());
    const auto held = w.holdings();
    CHECK(ids_of(held) == std::set<std::string>{"s0-g2", "s1-g2", "s2-g2"});
    for (const auto& [id, shards] : held) {
        for (const auto& [shard, epoch] : shards) CHECK(epoch == 2);
    }
    CHECK(w.count("migration_started") == 12);
    CHECK(w.count("migration_completed") == 12);
    CHECK(w.count("slave_retired") == 3);
    CHECK(w.count("restart_completed") == 1);
    CHECK(w.count("migration_failed") == 0);

    // Pipelined, never more than the configured number of moves in flight.
    int in_flight = 0, peak = 0;
    for (const auto& r : w.records()) {
        if (r.event == "migration_started") peak = std::max(peak, ++in_flight);
        if (r.event == "migration_completed") --in_flight;
    }
    CHECK(peak == 2);
}

TEST_CASE("a restart requested during a restart is queued once, a third request is not") {
    sim_world w = settled_world();
    w.request_restart("first");
    w.request_restart("second");
    w.request_restart("third");
    w.step_deliver_all();
    REQUIRE(w.settle());
    CHECK(w.count("restart_queued") == 1);
    CHECK(w.count("restart_already_queued") == 1);
    CHECK(w.count("restart_completed") == 2);
    for (const auto& id : w.live_slaves()) CHECK(generation_of(id) == "g3");
}

TEST_CASE("drain: one slave's shards move with their state to a new slave for its slot; the others are untouched") {
    sim_world w = settled_world({.shards = 12, .slaves = 3, .concurrency = 2});
    const auto before = w.holdings();
    REQUIRE(before.contains("s1-g1"));
    const auto drained = before.at("s1-g1");
    const auto d = w.request_drain("s1-g1");
    REQUIRE(d.result == supervisor::drain_request::outcome::started);
    CHECK(d.restart != 0);
    w.step_deliver_all();
    REQUIRE(w.settle());
    REQUIRE_FALSE(w.violation());
    const auto held = w.holdings();
    CHECK(ids_of(held) == std::set<std::string>{"s0-g1", "s1-g2", "s2-g1"});
    CHECK(held.at("s0-g1") == before.at("s0-g1"));  // same shards, same epochs: not moved
    CHECK(held.at("s2-g1") == before.at("s2-g1"));
    REQUIRE(held.at("s1-g2").size() == drained.size());
    for (const auto& [shard, epoch] : held.at("s1-g2")) CHECK(epoch == drained.at(shard) + 1);
    CHECK(w.count("migration_completed") == drained.size());
    CHECK(w.count("slave_retired") == 1);
    CHECK(w.count("restart_completed") == 1);
}

TEST_CASE("drain: refused, and said why, for an unknown slave, during a restart, for a spare and while stopping") {
    using outcome = supervisor::drain_request::outcome;
    sim_world w = settled_world({.shards = 12, .slaves = 3});
    const auto unknown = w.request_drain("nobody");
    CHECK(unknown.result == outcome::unknown_slave);
    CHECK(unknown.refusal == "no slave 'nobody' in this fleet");
    CHECK(w.count("restart_refused") == 0);  // a typo is not a fleet event

    w.request_restart();
    const auto busy = w.request_drain("s0-g1");
    CHECK(busy.result == outcome::refused);
    CHECK(busy.refusal.find("is running: drain once it has ended") != std::string::npos);
    CHECK(w.count("restart_refused") == 1);
    w.step_deliver_all();
    REQUIRE(w.settle());
    CHECK(w.count("restart_completed") == 1);  // the refused drain changed nothing

    w.request_stop(false);
    const auto stopping = w.request_drain("s0-g2");
    CHECK(stopping.result == outcome::refused);
    CHECK(stopping.refusal == "the master is stopping");
}
