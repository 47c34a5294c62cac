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
