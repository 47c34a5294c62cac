// Stop and detach (stop_detach.hpp): a graceful stop shuts the slaves down one at a time in slot
// order, and an immediate stop mid-restart ends the restart before the log's last record; both
// name who asked for them.
#include "supervisor_fixtures.hpp"

#include <meshmaster/master/supervisor.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <string>
#include <vector>

using namespace meshmaster::master;
using namespace meshmaster::master::test;
using namespace std::chrono_literals;

TEST_CASE("graceful stop shuts slaves down one at a time in slot order, then exits") {
    sim_world w = settled_world();
    w.request_stop(false, "SIGTERM");
    w.step_deliver_all();
    for (int i = 0; i < 100 && !w.exited(); ++i) {
        w.advance(50ms);
        w.step_deliver_all();
    }
    CHECK(w.exited());
    CHECK(w.live_slaves().empty());
    std::vector<std::string> order;
    for (const auto& r : w.records()) {
        if (r.event == "slave_retiring") order.push_back(r.slave);
    }
    CHECK(order == std::vector<std::string>{"s0-g1", "s1-g1", "s2-g1"});
    // Who asked is in the record, for the audit.
    const auto stopping = std::find_if(w.records().begin(), w.records().end(), [](const auto& r) { return r.event == "master_stopping"; });
    REQUIRE(stopping != w.records().end());
    CHECK(stopping->reason == "graceful (SIGTERM)");
}

TEST_CASE("a master stopped at once mid-restart ends the restart before its last record") {
    sim_world w = settled_world({.shards = 6, .slaves = 2});
    w.request_restart();
    w.request_stop(true, "second stop signal: SIGINT");
    const auto names = names_of(w.records());
    const auto started = std::find(names.begin(), names.end(), "restart_started");
    REQUIRE(started != names.end());
    const auto failed = std::find(started, names.end(), "restart_failed");
    REQUIRE(failed != names.end());
    CHECK(names.back() == "master_stopped");
    CHECK(w.records()[static_cast<std::size_t>(failed - names.begin())].reason == "master stopping immediately");
    const auto stopping = std::find(names.begin(), names.end(), "master_stopping");
    REQUIRE(stopping != names.end());
    CHECK(w.records()[static_cast<std::size_t>(stopping - names.begin())].reason == "immediate (second stop signal: SIGINT)");
}
