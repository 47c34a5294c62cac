// Protocol 1.3 in the supervisor core: the heartbeat round trip measured from a slave's echo of the
// master's heartbeats (and the master's echo of the slave's), the slave-measured handoff pause
// relayed from the old holder's shard_stopped to the new holder's resume and logged from its
// resumed, and the address of each slave's connection in status. The core reads no clock: the
// master's times are the mono_time passed in, the slaves' wall clocks only travel through it.
#include "supervisor_fixtures.hpp"

#include <meshmaster/master/supervisor.hpp>

#include <doctest/doctest.h>

#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

using namespace meshmaster::master;
using namespace meshmaster::master::test;
using namespace std::chrono_literals;
namespace p = meshmaster::protocol;

namespace {

// The heartbeats the core sent on `connection` among `acts`.
std::vector<p::heartbeat> heartbeats_to(const std::vector<action>& acts, connection_id connection) {
    std::vector<p::heartbeat> out;
    for_each_message_to(acts, connection, [&](p::event_id, const p::message& m) {
        if (const auto* h = std::get_if<p::heartbeat>(&m)) out.push_back(*h);
    });
    return out;
}

// One slave (connection 7, protocol 1.`minor`) running the one shard; heartbeat every 250 ms.
std::unique_ptr<supervisor> one_slave(std::uint32_t minor) {
    auto core = std::make_unique<supervisor>(supervisor_config{.shard_count = 1, .slave_count = 1});
    core->start(0ns);
    core->on_spawned("s0-g1", 42, 1ms);
    core->on_slave_connected(7, {.id = "s0-g1", .pid = 42, .generation = 1, .version_minor = minor, .address = "10.0.0.7:51234"},
                             2ms);
    core->on_shard_started(7, 0, 1, 3ms);
    (void)core->take_actions();
    return core;
}

const slave_status& only_slave(const supervisor_status& st) {
    REQUIRE(st.slaves.size() == 1);
    return st.slaves.front();
}

}  // namespace

TEST_CASE("a 1.3 slave's echo of the master's heartbeat gives its round trip, less the time it held the echo") {
    auto owned = one_slave(3);
    supervisor& core = *owned;
    CHECK_FALSE(only_slave(core.status(5ms)).heartbeat_rtt_ms.has_value());  // nothing echoed yet
    CHECK(only_slave(core.status(5ms)).address == "10.0.0.7:51234");

    // The slave's heartbeat 3 arrives at 100 ms; the master's first heartbeat (at 252 ms: 250 after
    // the hello) echoes it, held 152 ms.
    core.on_heartbeat(7, 5, 100ms, {.seq = 3});
    core.on_tick(252ms);
    auto sent = heartbeats_to(core.take_actions(), 7);
    REQUIRE(sent.size() == 1);
    CHECK(sent[0] == p::heartbeat{.seq = 1, .echo_seq = 3, .echo_delay_us = 152'000});

    // Heartbeat 1 comes back at 262 ms, held 4 ms by the slave: 6 ms on the wire.
    core.on_heartbeat(7, 6, 262ms, {.seq = 4, .echo_seq = 1, .echo_delay_us = 4'000});
    CHECK(only_slave(core.status(263ms)).heartbeat_rtt_ms == std::optional(6.0));

    // An echo of a heartbeat the master never sent measures nothing; one held longer than the
    // whole trip (a clock running fast) is 0, not negative.
    core.on_heartbeat(7, 7, 300ms, {.seq = 5, .echo_seq = 77, .echo_delay_us = 0});
    CHECK(only_slave(core.status(301ms)).heartbeat_rtt_ms == std::optional(6.0));
    core.on_heartbeat(7, 8, 310ms, {.seq = 6, .echo_seq = 1, .echo_delay_us = 900'000});
    CHECK(only_slave(core.status(311ms)).heartbeat_rtt_ms == std::optional(0.0));

    // The next heartbeat echoes the slave's newest (6, received at 310 ms).
    core.on_tick(502ms);
    sent = heartbeats_to(core.take_actions(), 7);
    REQUIRE(sent.size() == 1);
    CHECK(sent[0] == p::heartbeat{.seq = 2, .echo_seq = 6, .echo_delay_us = 192'000});

    // Gone: no address and no round trip. Back on a new connection: the address is the new
    // one's, and the round trip waits for an echo on it.
    core.on_disconnected(7, 520ms);
    CHECK(only_slave(core.status(521ms)).address.empty());
    CHECK_FALSE(only_slave(core.status(521ms)).heartbeat_rtt_ms.has_value());
}

TEST_CASE("a 1.2 slave gets heartbeats without the echo, and an echo from it is not read") {
    auto owned = one_slave(2);
    supervisor& core = *owned;
    core.on_heartbeat(7, 5, 100ms, {.seq = 3, .echo_seq = 1, .echo_delay_us = 0});
    core.on_tick(252ms);
    const auto sent = heartbeats_to(core.take_actions(), 7);
    REQUIRE(sent.size() == 1);
    CHECK(sent[0] == p::heartbeat{.seq = 1});
    core.on_heartbeat(7, 6, 262ms, {.seq = 4, .echo_seq = 1, .echo_delay_us = 0});
    CHECK_FALSE(only_slave(core.status(263ms)).heartbeat_rtt_ms.has_value());
    CHECK(only_slave(core.status(263ms)).address == "10.0.0.7:51234");  // known whatever the version
}

TEST_CASE("the stop time of the old holder goes to a 1.3 new holder in resume, and its pause is logged") {
    for (const std::uint32_t target_minor : {3u, 2u}) {
        CAPTURE(target_minor);
        auto owned = one_slave(3);
        supervisor& core = *owned;
        REQUIRE(core.request_restart(10ms, "test").result == supervisor::restart_request::outcome::started);
        std::string target;
        for (const auto& a : core.take_actions()) {
            if (const auto* s = std::get_if<actions::spawn_slave>(&a)) target = s->slave;
        }
        REQUIRE_FALSE(target.empty());
        core.on_spawned(target, 43, 11ms);
        core.on_slave_connected(8, {.id = target, .pid = 43, .generation = 2, .version_minor = target_minor}, 12ms);
        core.on_soft_start_complete(8, 13ms);
        auto acts = core.take_actions();
        std::vector<sent_frame> stops;
        for (const auto& f : frames_to(acts, 7)) {
            if (f.event == "stop_shard") stops.push_back(f);
        }
        REQUIRE(stops.size() == 1);
        const std::uint64_t migration = stops[0].migration;

        constexpr std::uint64_t stopped_at = 1'796'621'400'123'456;
        core.on_shard_stopped(7, 0, 1, migration, std::make_shared<const std::vector<std::byte>>(), 20ms, stopped_at);
        std::optional<p::resume> resume;
        for_each_message_to(core.take_actions(), 8, [&](p::event_id, const p::message& m) {
            if (const auto* r = std::get_if<p::resume>(&m)) resume = *r;  // its state view is not read
        });
        REQUIRE(resume.has_value());
        CHECK(resume->migration_id == migration);
        if (target_minor >= 3) {
            CHECK(resume->stopped_at_us == std::optional(stopped_at));
        } else {
            CHECK_FALSE(resume->stopped_at_us.has_value());  // a 1.2 slave is not sent what it does not know
        }

        const std::optional<std::uint64_t> pause_us = target_minor >= 3 ? std::optional<std::uint64_t>(8'250) : std::nullopt;
        core.on_resumed(8, 0, 2, migration, 30ms, pause_us);
        std::optional<event_record> completed;
        for (const auto& r : records_in(core.take_actions())) {
            if (r.event == "migration_completed") completed = r;
        }
        REQUIRE(completed.has_value());
        CHECK(completed->pause_ms == std::optional(17.0));  // the master's: from stop_shard, sent at 13 ms
        if (target_minor >= 3) {
            CHECK(completed->slave_pause_ms == std::optional(8.25));
        } else {
            CHECK_FALSE(completed->slave_pause_ms.has_value());
        }
    }
}

TEST_CASE("in the simulated fleet every slave shows its address and round trip, and moves their slaves' pause") {
    sim_world w = settled_world();
    for (int i = 0; i < 10; ++i) {  // a second of heartbeats both ways, and echoes of them
        w.advance(100ms);
        w.step_deliver_all();
    }
    const supervisor_status st = w.core().status(w.now());
    REQUIRE_FALSE(st.slaves.empty());
    for (const auto& s : st.slaves) {
        CAPTURE(s.id);
        if (!s.connected) continue;
        CHECK(s.address.starts_with("192.0.2."));
        REQUIRE(s.heartbeat_rtt_ms.has_value());
        CHECK(*s.heartbeat_rtt_ms >= 0.0);
    }
    w.request_restart();
    REQUIRE(w.settle());
    REQUIRE_FALSE(w.violation());
    std::size_t completed = 0;
    for (const auto& r : w.records()) {
        if (r.event != "migration_completed") continue;
        ++completed;
        CAPTURE(r.migration);
        REQUIRE(r.slave_pause_ms.has_value());
        CHECK(*r.slave_pause_ms >= 0.0);
        CHECK(*r.slave_pause_ms <= *r.pause_ms);
    }
    CHECK(completed == 12);  // every shard moved once
}
