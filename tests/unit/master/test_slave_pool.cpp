// The slave pool (slave_pool.hpp): a dead slave replaced under a fresh id, and a crash loop that
// backs off exponentially up to its cap.
#include "supervisor_fixtures.hpp"

#include <meshmaster/master/supervisor.hpp>

#include <doctest/doctest.h>

#include <map>
#include <set>
#include <string>
#include <vector>

using namespace meshmaster::master;
using namespace meshmaster::master::test;
using namespace std::chrono_literals;

TEST_CASE("a killed slave is replaced and its shards re-granted under higher epochs") {
    sim_world w = settled_world();
    w.kill("s1-g1");
    REQUIRE(w.settle());
    REQUIRE_FALSE(w.violation());
    const auto held = w.holdings();
    CHECK(ids_of(held) == std::set<std::string>{"s0-g1", "s1-g1.1", "s2-g1"});
    for (const auto& [shard, epoch] : held.at("s1-g1.1")) CHECK(epoch == 2);
    CHECK(w.count("respawn_scheduled") == 1);
}

TEST_CASE("a crash loop backs off exponentially, capped") {
    sim_world w = settled_world({.shards = 4, .slaves = 1});
    std::vector<double> delays;
    std::string victim = "s0-g1";
    for (int i = 0; i < 7; ++i) {
        w.kill(victim);
        w.step_deliver_all();
        for (const auto& r : w.records()) {
            if (r.event == "respawn_scheduled" && r.slave == victim) delays.push_back(*r.duration_ms);
        }
        REQUIRE(w.settle());
        victim = w.live_slaves().front();
    }
    // The first death of a slave is replaced at once; quick deaths after that back off.
    CHECK(delays == std::vector<double>{0, 100, 200, 400, 800, 1600, 2000});
}
