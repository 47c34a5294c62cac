// The migration pipeline (migration_pipeline.hpp): a move whose target dies goes back to its source
// (rolled back); a move whose source dies ends failed, the shard starting over on the target with its
// state loss logged.
#include "supervisor_fixtures.hpp"

#include <meshmaster/master/supervisor.hpp>

#include <doctest/doctest.h>

#include <set>
#include <string>

using namespace meshmaster::master;
using namespace meshmaster::master::test;
using namespace std::chrono_literals;

TEST_CASE("the new slave dies mid-restart: its shards go back to the old slave under new epochs") {
    sim_world w = settled_world({.shards = 12, .slaves = 3, .concurrency = 2});
    w.request_restart();
    // Let the first pair move some shards, then kill its new slave while moves are in flight.
    REQUIRE(w.run_until([&] { return w.count("migration_completed") >= 1 && w.count("migration_started") >= 3; }));
    w.kill("s0-g2");
    REQUIRE(w.settle());
    REQUIRE_FALSE(w.violation());
    const auto held = w.holdings();
    CHECK(ids_of(held).contains("s0-g1"));
    CHECK(held.at("s0-g1").size() == 4);  // all of slot 0 is back home
    CHECK_FALSE(ids_of(held).contains("s0-g2"));
    CHECK(w.count("restart_failed") == 1);
    CHECK(w.count("migration_rolled_back") + w.count("migration_failed") >= 1);
    // Pairs not yet started are not touched.
    CHECK(ids_of(held).contains("s1-g1"));
    CHECK(ids_of(held).contains("s2-g1"));
}

TEST_CASE("the old slave dies mid-restart: its remaining shards start fresh on the new slave, state loss logged") {
    sim_world w = settled_world({.shards = 12, .slaves = 3, .concurrency = 1});
    w.request_restart();
    REQUIRE(w.run_until([&] { return w.count("migration_completed") >= 1; }));
    w.kill("s0-g1");
    REQUIRE(w.settle());
    REQUIRE_FALSE(w.violation());
    const auto held = w.holdings();
    CHECK(held.at("s0-g2").size() == 4);
    CHECK(w.count("restart_completed") == 1);
    bool lost_logged = false;
    for (const auto& r : w.records()) lost_logged = lost_logged || (r.event == "shard_orphaned" && r.state_lost == true);
    CHECK(lost_logged);
}
