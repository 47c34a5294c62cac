// The status projection (status_projection.hpp): what `meshmaster status` shows of a slot and of a
// running restart, projected from the records alone; and the whole projection read from a core.
#include "status_projection.hpp"
#include "supervisor_fixtures.hpp"

#include <meshmaster/master/supervisor.hpp>

#include <doctest/doctest.h>

#include <string>

using namespace meshmaster::master;
using namespace meshmaster::master::test;
using namespace std::chrono_literals;

TEST_CASE("a slot shows its slave, its failed starts within the interval, and when it respawns") {
    slot_rec slot{.active = "s1-g2", .respawn_at = mono_time{10s}};
    (void)slot.starts.failed(1s, 5, 60s);
    (void)slot.starts.failed(8s, 5, 60s);
    slot.failed = true;
    slot.failure = "exited with status 127 before its hello";
    const slot_status st = project_slot(1, slot, 9s, 5s);
    CHECK(st.slot == 1);
    CHECK(st.slave == "s1-g2");
    CHECK(st.failed_starts == 1);  // the one at 1 s is older than the 5 s interval
    CHECK(st.failed);
    CHECK(st.failure == slot.failure);
    REQUIRE(st.respawn_in_ms.has_value());
    CHECK(*st.respawn_in_ms == doctest::Approx(1000));
    // A respawn already due shows as due now, never as a negative wait.
    CHECK(*project_slot(1, slot, 12s, 5s).respawn_in_ms == 0);
    CHECK_FALSE(project_slot(0, slot_rec{}, 9s, 5s).respawn_in_ms.has_value());
}

TEST_CASE("a restart shows the slaves and moves done of the total, in flight, and its time so far") {
    restart_rec r{.id = 7, .started = mono_time{2s}};
    r.pairs.push_back({.slot = 0, .phase = pair_phase::done, .total = 4, .moved = 4});
    r.pairs.push_back({.slot = 1, .phase = pair_phase::migrating, .total = 4, .moved = 1});
    r.pairs.push_back({.slot = 2, .phase = pair_phase::waiting});
    r.failing = true;
    const restart_status st = project_restart(r, 2, mono_time{3500ms});
    CHECK(st.id == 7);
    CHECK(st.slaves_total == 3);
    CHECK(st.slaves_done == 1);
    CHECK(st.migrations_done == 5);
    CHECK(st.migrations_total == 8);  // the waiting pair's shards are not known yet
    CHECK(st.in_flight == 2);
    CHECK(st.elapsed_ms == doctest::Approx(1500));
    CHECK(st.failing);
}

TEST_CASE("status during a rolling restart shows the restart and each slot's shard range") {
    sim_world w = settled_world({.shards = 12, .slaves = 3, .concurrency = 2});
    w.request_restart();
    REQUIRE(w.run_until([&] { return w.count("migration_completed") >= 1; }));
    const supervisor_status st = w.core().status(w.now());
    REQUIRE(st.restart.has_value());
    CHECK(st.restart->slaves_total == 3);
    CHECK(st.restart->migrations_done >= 1);
    REQUIRE(st.slots.size() == 3);
    CHECK(st.slots[1].first_shard == 4);
    CHECK(st.slots[1].last_shard == 7);
    CHECK(st.shards.size() == 12);
}
