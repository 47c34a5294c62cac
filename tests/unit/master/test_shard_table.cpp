// The shard table (shard_table.hpp): each slot's even, contiguous share granted once at start, and
// acknowledgements under a superseded epoch that change nothing.
#include "supervisor_fixtures.hpp"

#include <meshmaster/master/supervisor.hpp>

#include <doctest/doctest.h>

#include <meshmaster/protocol/codec.hpp>

#include <map>
#include <set>
#include <string>
#include <variant>

using namespace meshmaster::master;
using namespace meshmaster::master::test;
using namespace std::chrono_literals;

TEST_CASE("cold start: one slave per slot, each granted its even, contiguous share") {
    sim_world w = settled_world({.shards = 12, .slaves = 3});
    const auto held = w.holdings();
    REQUIRE(ids_of(held) == std::set<std::string>{"s0-g1", "s1-g1", "s2-g1"});
    CHECK(held.at("s0-g1") == std::map<std::uint32_t, std::uint64_t>{{0, 1}, {1, 1}, {2, 1}, {3, 1}});
    CHECK(held.at("s2-g1").begin()->first == 8);
    CHECK(w.count("slave_spawned") == 3);
    CHECK(w.count("shard_granted") == 12);
    CHECK(w.count("shard_started") == 12);
    CHECK(w.core().status(w.now()).shards_running == 12);
}

TEST_CASE("acknowledgements with a stale epoch change nothing") {
    supervisor_config c{.shard_count = 2, .slave_count = 1};
    supervisor core(c);
    core.start(0ns);
    (void)core.take_actions();
    core.on_spawned("s0-g1", 42, 1ms);
    core.on_slave_connected(7, {.id = "s0-g1", .pid = 42, .generation = 1}, 2ms);
    (void)core.take_actions();
    core.on_shard_started(7, 0, 99, 3ms);  // granted at epoch 1, not 99
    auto acts = core.take_actions();
    REQUIRE(acts.size() == 2);
    const auto& r = std::get<actions::log_event>(acts[0]).record;
    CHECK(r.event == "stale_ack_ignored");
    CHECK(r.reason == "shard_started for shard 0 at epoch 99: the shard is at epoch 1 (held by s0-g1, starting)");
    // The slave is told why, with the shard and epoch concerned.
    const auto& reply = std::get<actions::send_frame>(acts[1]);
    CHECK(reply.connection == 7);
    auto decoded = meshmaster::protocol::decode_body<meshmaster::protocol::error_message>(
        meshmaster::protocol::bytes_view(reply.frames).subspan(meshmaster::protocol::frame_header_size));
    REQUIRE(decoded.has_value());
    CHECK(decoded->code == "stale_epoch");
    CHECK(decoded->shard == 0u);
    CHECK(decoded->epoch == 99u);
    CHECK(core.status(3ms).shards[0].phase == "starting");
    core.on_shard_started(7, 0, 1, 4ms);
    CHECK(core.status(4ms).shards[0].phase == "running");
}
