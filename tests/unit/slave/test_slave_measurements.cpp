// Protocol 1.3 on the slave side: the heartbeat echo (both ways) and the round trip it measures,
// and the handoff pause: a stop stamped with the wall clock, relayed by the master in resume, and
// answered by the new holder with the pause it measured. Clocks are the test's, not the system's.
#include "slave_harness.hpp"

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>

using namespace meshmaster;
using namespace meshmaster::slave::detail;
using namespace meshmaster::slave::test;
using namespace std::chrono_literals;
namespace p = meshmaster::protocol;

namespace {

// 2026-12-07T05:30:00Z, in Unix microseconds.
constexpr std::uint64_t base_wall_us = 1'796'621'400'000'000;

// A slave core whose monotonic and wall clocks move only when the test says so.
struct clocked {
    std::shared_ptr<std::chrono::microseconds> elapsed = std::make_shared<std::chrono::microseconds>(0);
    master_side m{config()};

    core_config config() {
        core_config c = test_config();
        c.steady_now = [t = elapsed] { return std::chrono::steady_clock::time_point(*t); };
        c.wall_now = [t = elapsed] {
            return std::chrono::system_clock::time_point(std::chrono::microseconds(base_wall_us) + *t);
        };
        return c;
    }
    void advance(std::chrono::microseconds d) { *elapsed += d; }
    [[nodiscard]] std::uint64_t wall_us() const { return base_wall_us + static_cast<std::uint64_t>(elapsed->count()); }
};

p::heartbeat only_heartbeat(master_side& m) {
    auto out = m.written();
    REQUIRE(out.size() == 1);
    return std::get<p::heartbeat>(out[0]);
}

// Starts `shard` under `epoch` on the slave and drops what it wrote.
void run_shard(master_side& m, std::uint32_t shard, std::uint64_t epoch) {
    m.deliver(p::start_shard{.shard = shard, .epoch = epoch});
    m.core.complete(m.core.take_requests().at(0).op, {});
    (void)m.written();
}

}  // namespace

TEST_CASE("to a 1.3 master heartbeats echo its newest one, and its echo of ours measures the round trip") {
    clocked c;
    c.m.connect(3);
    CHECK_FALSE(c.m.core.heartbeat_rtt().has_value());

    c.m.core.tick(1);  // nothing received yet: no echo
    CHECK(only_heartbeat(c.m) == p::heartbeat{.seq = 1, .progress = 1});

    // Our heartbeat 1 comes back 5 ms after it left, held 2 ms by the master: 3 ms on the wire.
    c.advance(5ms);
    c.m.deliver(p::heartbeat{.seq = 10, .echo_seq = 1, .echo_delay_us = 2000});
    CHECK(c.m.core.heartbeat_rtt() == std::optional(3000us));

    // The next heartbeat echoes the master's 10, held here for 7 ms.
    c.advance(7ms);
    c.m.core.tick(2);
    CHECK(only_heartbeat(c.m) == p::heartbeat{.seq = 2, .progress = 2, .echo_seq = 10, .echo_delay_us = 7000});

    // An echo of a heartbeat never sent, or one that claims to have been held longer than the
    // whole trip, cannot give a round trip below zero: the first measures nothing, the second 0.
    c.m.deliver(p::heartbeat{.seq = 11, .echo_seq = 99, .echo_delay_us = 0});
    CHECK(c.m.core.heartbeat_rtt() == std::optional(3000us));
    c.advance(1ms);
    c.m.deliver(p::heartbeat{.seq = 12, .echo_seq = 2, .echo_delay_us = 50'000});
    CHECK(c.m.core.heartbeat_rtt() == std::optional(0us));

    // A new connection starts over: no round trip until the new master echoes one.
    c.m.core.on_disconnected();
    c.m.connect(3);
    CHECK_FALSE(c.m.core.heartbeat_rtt().has_value());
    c.m.core.tick(3);
    CHECK_FALSE(only_heartbeat(c.m).echo_seq.has_value());
}

TEST_CASE("to a 1.2 master heartbeats carry no echo, and its echo fields are not read") {
    clocked c;
    c.m.connect(2);
    c.m.core.tick(1);
    CHECK(only_heartbeat(c.m) == p::heartbeat{.seq = 1, .progress = 1});
    c.m.deliver(p::heartbeat{.seq = 10, .echo_seq = 1, .echo_delay_us = 0});
    c.advance(5ms);
    c.m.core.tick(2);
    CHECK(only_heartbeat(c.m) == p::heartbeat{.seq = 2, .progress = 2});
    CHECK_FALSE(c.m.core.heartbeat_rtt().has_value());
}

TEST_CASE("a stop is stamped with the wall clock when the worker is told to stop, kept with the state") {
    clocked c;
    c.m.connect(3);
    run_shard(c.m, 9, 3);
    c.advance(1s);
    const std::uint64_t told = c.wall_us();
    c.m.deliver(p::stop_shard{.shard = 9, .epoch = 3, .migration_id = 70});
    c.advance(40ms);  // the worker takes 40 ms to hand its state back: part of the pause
    c.m.core.complete(c.m.core.take_requests().at(0).op, {.state = bytes_of("nine")});
    auto out = c.m.written();
    REQUIRE(out.size() == 1);
    CHECK(std::get<p::shard_stopped>(out[0]).stopped_at_us == std::optional(told));

    // Asked again by a restarted master, the kept state goes out with the stop's own time.
    c.m.core.on_disconnected();
    c.advance(3s);
    c.m.connect(3);
    c.m.deliver(p::stop_shard{.shard = 9, .epoch = 3, .migration_id = 71});
    out = c.m.written();
    REQUIRE(out.size() == 1);
    CHECK(std::get<p::shard_stopped>(out[0]).stopped_at_us == std::optional(told));

    // A 1.2 master does not know the field: it is left out.
    c.m.core.on_disconnected();
    c.m.connect(2);
    c.m.deliver(p::stop_shard{.shard = 9, .epoch = 3, .migration_id = 72});
    out = c.m.written();
    REQUIRE(out.size() == 1);
    CHECK_FALSE(std::get<p::shard_stopped>(out[0]).stopped_at_us.has_value());
}

TEST_CASE("the new holder answers resumed with the pause from the relayed stop time to its shard running") {
    clocked c;
    c.m.connect(3);
    const std::uint64_t stopped_at = c.wall_us();
    c.advance(25ms);
    const auto state = bytes_of("state");
    c.m.deliver(p::resume{.shard = 4, .epoch = 8, .migration_id = 5, .state = p::bytes_view(state), .stopped_at_us = stopped_at});
    c.advance(5ms);  // the worker's resume callback: the shard runs when it completes
    c.m.core.complete(c.m.core.take_requests().at(0).op, {});
    auto out = c.m.written();
    REQUIRE(out.size() == 1);
    CHECK(std::get<p::resumed>(out[0]) == p::resumed{.shard = 4, .epoch = 8, .migration_id = 5, .pause_us = 30'000});

    SUBCASE("a stop stamped by a clock ahead of this one is no pause, not a negative one") {
        c.m.deliver(p::resume{.shard = 5, .epoch = 2, .migration_id = 6, .state = p::bytes_view(state),
                              .stopped_at_us = c.wall_us() + 2'000'000});
        c.m.core.complete(c.m.core.take_requests().at(0).op, {});
        out = c.m.written();
        REQUIRE(out.size() == 1);
        CHECK(std::get<p::resumed>(out[0]).pause_us == std::optional<std::uint64_t>(0));
    }
    SUBCASE("a resume without a stop time (a 1.2 source) is answered without a pause") {
        c.m.deliver(p::resume{.shard = 5, .epoch = 2, .migration_id = 6, .state = p::bytes_view(state)});
        c.m.core.complete(c.m.core.take_requests().at(0).op, {});
        out = c.m.written();
        REQUIRE(out.size() == 1);
        CHECK(std::get<p::resumed>(out[0]) == p::resumed{.shard = 5, .epoch = 2, .migration_id = 6});
    }
}
