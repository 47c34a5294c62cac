// Failure handling (failure_handling.hpp): a hung slave is lost and killed before its shards are
// granted again; a slave whose states still arrive is slow, not hung; a reconnected slave is judged
// from its reconnect; and the rules that say what a passed deadline or a failure means.
#include "supervisor_fixtures.hpp"

#include <meshmaster/master/supervisor.hpp>

#include <doctest/doctest.h>

#include "failure_handling.hpp"

#include <set>
#include <string>
#include <variant>
#include <vector>

using namespace meshmaster::master;
using namespace meshmaster::master::test;
using namespace std::chrono_literals;

namespace {

const supervisor_config two_shards_one_slave{.shard_count = 2, .slave_count = 1};

// Brings up one slave (connection 7) running both shards, its progress counter at 5. The default
// heartbeat settings: silent or stuck for 250 ms x 8 = 2 s is lost.
void run_one_slave(supervisor& core) {
    core.start(0ns);
    core.on_spawned("s0-g1", 42, 1ms);
    core.on_slave_connected(7, {.id = "s0-g1", .pid = 42, .generation = 1}, 2ms);
    core.on_shard_started(7, 0, 1, 3ms);
    core.on_shard_started(7, 1, 1, 3ms);
    core.on_heartbeat(7, 5, 10ms);
    (void)core.take_actions();
}

// The reasons of the slave_lost records among the actions taken since the last call.
std::vector<std::string> lost_since(supervisor& core) {
    std::vector<std::string> reasons;
    for (const auto& a : core.take_actions()) {
        if (const auto* l = std::get_if<actions::log_event>(&a); l && l->record.event == "slave_lost") {
            reasons.push_back(l->record.reason);
        }
    }
    return reasons;
}

}  // namespace

TEST_CASE("a hung slave misses heartbeats, is killed, and only then are its shards granted again") {
    sim_world w = settled_world();
    w.hang("s2-g1");
    for (int i = 0; i < 30; ++i) {  // 3 s: well past 5 missed heartbeats of 200 ms
        w.advance(100ms);
        w.step_deliver_all();
    }
    REQUIRE(w.settle());
    REQUIRE_FALSE(w.violation());
    bool lost = false;
    for (const auto& r : w.records()) lost = lost || (r.event == "slave_lost" && r.reason == "heartbeat_timeout");
    CHECK(lost);
    CHECK(ids_of(w.holdings()).contains("s2-g1.1"));
}

TEST_CASE("states still arriving are progress: a slave whose heartbeats wait behind them is slow, not hung") {
    SUBCASE("heartbeats that keep coming with the counter standing still") {
        supervisor core(two_shards_one_slave);
        run_one_slave(core);
        // 10 s of a slave working through large states: its progress counter seems to stand still
        // (the heartbeats that would move it wait behind the states), but a state frame comes in
        // every 500 ms.
        mono_time t = 10ms;
        for (int i = 0; i < 40; ++i) {
            t += 250ms;
            core.on_heartbeat(7, 5, t);
            if (i % 2 == 1) core.on_state_received(7, t);
            core.on_tick(t);
            REQUIRE(lost_since(core).empty());
        }
        // The states stop as well: stuck, and lost once the silence has passed.
        const mono_time last_state = t;
        while (t - last_state <= 2s) {
            t += 250ms;
            core.on_heartbeat(7, 5, t);
            core.on_tick(t);
            if (const auto lost = lost_since(core); !lost.empty()) {
                CHECK(lost == std::vector<std::string>{"progress_stalled"});
                CHECK(t - last_state > 2s);
                return;
            }
        }
        FAIL("a slave whose counter and states stood still for longer than the silence was not lost");
    }
    SUBCASE("nothing but state frames") {
        supervisor core(two_shards_one_slave);
        run_one_slave(core);
        mono_time t = 10ms;
        for (int i = 0; i < 20; ++i) {
            t += 500ms;
            core.on_state_received(7, t);
            core.on_tick(t);
            REQUIRE(lost_since(core).empty());
        }
        // Then silence: a frozen process sends no state either.
        const mono_time last_state = t;
        while (t - last_state <= 2s) {
            t += 100ms;
            core.on_tick(t);
            if (const auto lost = lost_since(core); !lost.empty()) {
                CHECK(lost == std::vector<std::string>{"heartbeat_timeout"});
                CHECK(t - last_state > 2s);
                return;
            }
        }
        FAIL("a slave silent for longer than the silence was not lost");
    }
}

TEST_CASE("a slave that reconnects is not judged stuck by the progress it reported before it left") {
    // An external slave (launched elsewhere) whose connection drops is given external_grace to come
    // back with its shards; its progress counter then starts over from the reconnect.
    supervisor core({.shard_count = 2, .slave_count = 1, .spawn_slaves = false});
    core.start(0ns);
    core.on_slave_connected(7, {.id = "w1", .pid = 42}, 1ms);
    core.on_shard_started(7, 0, 1, 2ms);
    core.on_shard_started(7, 1, 1, 2ms);
    core.on_heartbeat(7, 5, 10ms);
    core.on_disconnected(7, 20ms);
    REQUIRE(lost_since(core) == std::vector<std::string>{"connection lost"});
    core.on_slave_connected(8, {.id = "w1", .pid = 42, .shards = {{0, 1}, {1, 1}}}, 1500ms);
    REQUIRE(lost_since(core).empty());
    // Past the 2 s silence counted from its last report before the reconnect, but well within it
    // counted from the reconnect, and before its first heartbeat on the new connection.
    core.on_tick(2100ms);
    CHECK(lost_since(core).empty());
    // Its counter then standing still for the whole silence is stuck, as before.
    mono_time t = 2100ms;
    for (; t <= 1500ms + 2s; t += 250ms) {
        core.on_heartbeat(8, 5, t);
        core.on_tick(t);
        REQUIRE(lost_since(core).empty());
    }
    std::vector<std::string> lost;
    for (; lost.empty() && t <= 10s; t += 250ms) {
        core.on_heartbeat(8, 5, t);
        core.on_tick(t);
        lost = lost_since(core);
    }
    CHECK(lost == std::vector<std::string>{"progress_stalled"});
}

TEST_CASE("a passed phase deadline fails a slave only while it spawns or soft-starts") {
    CHECK(phase_timeout(slave_phase::spawning) == "no hello before spawn_timeout");
    CHECK(phase_timeout(slave_phase::soft_starting) == "soft_start_timeout");
    // A retiring slave is killed at its deadline, a lost one presumed dead: neither is failed again.
    for (const slave_phase p : {slave_phase::ready, slave_phase::running, slave_phase::retiring, slave_phase::lost}) {
        CHECK_MESSAGE(phase_timeout(p).empty(), name(p));
    }
}

TEST_CASE("an external slave that stopped answering is fenced at once, one that disconnected gets its grace") {
    for (const char* reason : {"heartbeat_timeout", "progress_stalled", "stop_timeout", "resume_timeout", "start_timeout",
                               "soft_start_timeout", "no hello before spawn_timeout"}) {
        CHECK_MESSAGE(unresponsive(reason), reason);
    }
    CHECK_FALSE(unresponsive("connection lost"));
    CHECK_FALSE(unresponsive("master stopping"));
}

TEST_CASE("the silence after which a slave is lost is heartbeat_misses heartbeat intervals") {
    CHECK(silence_limit({.heartbeat_interval = 250ms, .heartbeat_misses = 8}) == 2s);
    CHECK(silence_limit({.heartbeat_interval = 200ms, .heartbeat_misses = 5}) == 1s);
}
