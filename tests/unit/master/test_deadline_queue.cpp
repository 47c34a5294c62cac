// The deadline queue (deadline_queue.hpp) and the indexes the supervisor keeps instead of walking
// its tables: a deadline added, moved later, moved earlier and cancelled gives the next deadline a
// walk of every record would; what is due is taken once; the supervisor's next deadline follows a
// slave's frames exactly; each slave's shards stay right through grants, moves and deaths.
#include "supervisor_fixtures.hpp"

#include <meshmaster/master/supervisor.hpp>

#include <doctest/doctest.h>

#include "deadline_queue.hpp"

#include <algorithm>
#include <map>
#include <optional>
#include <vector>

using namespace meshmaster::master;
using namespace meshmaster::master::test;
using namespace std::chrono_literals;

namespace {

// Records as the supervisor keeps them: a deadline each (or none), and the queue's bookkeeping.
struct fake_record {
    std::optional<mono_time> due;
    std::optional<mono_time> armed;
};

struct fake_table {
    std::map<std::uint64_t, fake_record> records;
    deadline_queue queue;

    void set(std::uint64_t key, std::optional<mono_time> due) {
        fake_record& r = records[key];
        r.due = due;
        queue.arm(r.armed, r.due, deadline_kind::slave, key);
    }
    void erase(std::uint64_t key) { records.erase(key); }
    deadline_slot resolve(deadline_kind, std::uint64_t key) {
        auto it = records.find(key);
        if (it == records.end()) return {};
        return {&it->second.armed, it->second.due};
    }
    std::optional<mono_time> front() {
        return queue.front([this](deadline_kind k, std::uint64_t key) { return resolve(k, key); });
    }
    std::vector<std::uint64_t> take(mono_time now) {
        std::vector<std::uint64_t> taken;
        queue.take_due(
            now, [this](deadline_kind k, std::uint64_t key) { return resolve(k, key); },
            [&](deadline_kind, std::uint64_t key) { taken.push_back(key); });
        return taken;
    }
};

}  // namespace

TEST_CASE("deadline queue: a deadline added, moved later, moved earlier and cancelled gives the walk's next deadline") {
    fake_table t;
    CHECK(t.front() == std::nullopt);
    t.set(1, 100ms);
    t.set(2, 300ms);
    CHECK(t.front() == mono_time(100ms));

    // Later (a heartbeat pushes a silence limit on): no new entry, the front follows it.
    t.records[1].due = 200ms;
    CHECK(t.front() == mono_time(200ms));
    t.records[1].due = 400ms;
    CHECK(t.front() == mono_time(300ms));

    // Earlier: armed again, the old entry goes stale.
    t.set(2, 50ms);
    CHECK(t.front() == mono_time(50ms));

    // Cancelled: no deadline any more, or the record gone.
    t.set(2, std::nullopt);
    t.records[2].due.reset();
    CHECK(t.front() == mono_time(400ms));
    t.erase(1);
    CHECK(t.front() == std::nullopt);
}

TEST_CASE("deadline queue: what is due is taken once, stale entries never, and a taken record is armed afresh") {
    fake_table t;
    t.set(1, 100ms);
    t.set(2, 100ms);
    t.set(3, 500ms);
    t.set(4, 120ms);
    t.set(4, 90ms);  // moved earlier: its 120 ms entry is stale
    t.erase(2);      // gone: its entry is never taken

    std::vector<std::uint64_t> taken = t.take(150ms);
    std::sort(taken.begin(), taken.end());
    CHECK(taken == std::vector<std::uint64_t>{1, 4});
    CHECK(t.take(150ms).empty());
    CHECK(t.front() == mono_time(500ms));  // the taken ones have no entry until armed again

    t.records[1].due = 200ms;  // what the caller found after looking at it
    t.queue.arm(t.records[1].armed, t.records[1].due, deadline_kind::slave, 1);
    CHECK(t.front() == mono_time(200ms));
    CHECK(t.take(200ms) == std::vector<std::uint64_t>{1});
}

TEST_CASE("the next deadline is a slave's silence limit, exactly, as its frames push it on") {
    supervisor core(supervisor_config{.shard_count = 2, .slave_count = 1});
    core.start(0ns);
    core.on_spawned("s0-g1", 42, 1ms);
    core.on_slave_connected(7, {.id = "s0-g1", .pid = 42, .generation = 1}, 2ms);
    core.on_shard_started(7, 0, 1, 3ms);
    core.on_shard_started(7, 1, 1, 3ms);
    (void)core.take_actions();
    const mono_time interval = core.config().heartbeat_interval;
    const mono_time silence = interval * core.config().heartbeat_misses;

    // Heartbeats go out at the interval; the answers keep the slave alive; the next deadline is
    // always the next heartbeat or the silence limit, whichever comes first.
    mono_time now = 2ms;
    for (int i = 0; i < 5; ++i) {
        const auto next = core.next_deadline();
        REQUIRE(next);
        CHECK(*next == now + interval);
        now = *next;
        core.on_tick(now);
        core.on_heartbeat(7, 0, now);
        CHECK(core.self_check() == "");
    }
    (void)core.take_actions();

    // Silent from now on: heartbeats still go out, and it is lost as soon as the silence is longer
    // than the limit (a deadline that has come is asked for again, as a clock that moves on would).
    const mono_time last_seen = now;
    while (true) {
        const auto next = core.next_deadline();
        REQUIRE(next);
        REQUIRE(*next <= last_seen + silence);
        now = std::max(*next, now + 1ns);
        core.on_tick(now);
        CHECK(core.self_check() == "");
        bool lost = false;
        for (const auto& r : records_in(core.take_actions())) lost = lost || r.event == "slave_lost";
        if (lost) break;
    }
    CHECK(now == last_seen + silence + 1ns);
}

TEST_CASE("each slave's shards stay right through grants, a rolling restart, a death and a respawn") {
    sim_world w = settled_world({.shards = 12, .slaves = 3, .concurrency = 3});
    CHECK(w.core().self_check() == "");
    w.request_restart();
    REQUIRE(w.settle());
    CHECK(w.core().self_check() == "");
    const auto status = w.core().status(w.now());
    std::map<std::string, std::size_t> held;
    for (const auto& sh : status.shards) ++held[sh.owner];
    CHECK(held.size() == 3);
    const std::string victim = held.begin()->first;
    w.kill(victim);
    REQUIRE(w.settle());
    CHECK(w.core().self_check() == "");
    CHECK_FALSE(w.violation());
    for (const auto& sh : w.core().status(w.now()).shards) CHECK(sh.owner != victim);
}

TEST_CASE("deadline queue: entries of records long gone do not pile up") {
    // A big restart: each move's migration arms a timeout and ends long before it (the records go,
    // their entries stay until they reach the top, or the queue sweeps them).
    fake_table t;
    t.set(0, 1h);  // one record that stays
    std::size_t wrong_fronts = 0;
    std::size_t largest = 0;
    for (std::uint64_t key = 1; key <= 100'000; ++key) {
        t.set(key, 10s + std::chrono::milliseconds(key));
        t.erase(key);
        if (t.front() != mono_time(1h)) ++wrong_fronts;
        largest = std::max(largest, t.queue.size());
    }
    CHECK(wrong_fronts == 0);
    CHECK(largest <= 2048);
}
