// The seeded simulation of the supervisor (sim_world): thousands of random fault schedules over
// the fleet shapes, each slave the slave library's own core. MESHMASTER_SIM_RUNS sets how many,
// MESHMASTER_SIM_SEED replays one (with MESHMASTER_SIM_TRACE=1 to print it).
#include "sim_world.hpp"

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <cstdlib>
#include <map>
#include <string>
#include <vector>

using namespace meshmaster::master;
using namespace meshmaster::master::test;

TEST_CASE("seeded simulation: random interleavings of hellos, acks, timeouts, deaths, restarts, master crashes, "
          "duplicated frames and fenced zombies") {
    const char* only = std::getenv("MESHMASTER_SIM_SEED");
    const char* runs_env = std::getenv("MESHMASTER_SIM_RUNS");
    const std::uint64_t runs = runs_env ? std::strtoull(runs_env, nullptr, 10) : 1500;
    std::uint64_t failures = 0;
    std::map<std::string, std::uint64_t> seen;  // how often each event happened over all runs
    const std::vector<sim_options> shapes{
        {.shards = 12, .slaves = 3, .concurrency = 3, .surge = 1},
        {.shards = 16, .slaves = 4, .concurrency = 1, .surge = 2},
        {.shards = 7, .slaves = 3, .concurrency = 5, .surge = 3, .spares = 2},
        {.shards = 9, .slaves = 3, .spawn = false, .concurrency = 2},
        {.shards = 12, .slaves = 3, .concurrency = 3, .master_restarts = true, .duplicates = true},
        {.shards = 7, .slaves = 3, .concurrency = 5, .surge = 2, .spares = 2, .master_restarts = true},
        {.shards = 9, .slaves = 3, .spawn = false, .concurrency = 2, .duplicates = true, .fencing = true},
        {.shards = 8, .slaves = 4, .spawn = false, .concurrency = 3, .master_restarts = true, .fencing = true},
    };
    std::uint64_t slave_pauses = 0;
    std::uint64_t duplicates = 0, master_restarts = 0, wakes = 0, events = 0, replayed = 0, refused = 0;
    for (std::uint64_t run = 0; run < runs; ++run) {
        const std::uint64_t seed = only ? std::strtoull(only, nullptr, 10) : run + 1;
        const sim_options& shape = shapes[seed % shapes.size()];
        sim_world w(seed, shape);
        if (auto problem = w.run()) {
            ++failures;
            FAIL_CHECK(fmt::format("seed {} (replay: MESHMASTER_SIM_SEED={} MESHMASTER_SIM_RUNS=1): {}", seed,
                                   seed, *problem));
            if (failures >= 5) break;
        }
        for (const auto& r : w.records()) {
            ++seen[std::string(r.event)];
            if (r.slave_pause_ms) ++slave_pauses;  // protocol 1.3: checked against the stops in sim_world
        }
        duplicates += w.duplicates_delivered();
        events += w.events_processed();
        replayed += w.events_replayed();
        refused += w.events_refused();
        master_restarts += w.master_restarts();
        wakes += w.wakes();
        if (only) break;
    }
    CHECK(failures == 0);
    MESSAGE(fmt::format("{} runs: {} restarts completed, {} failed; migrations {} completed, {} rolled back, {} failed; "
                        "{} slaves killed, {} lost, {} shards fenced, {} orphaned, {} recovered from a checkpoint; "
                        "{} master crashes, {} migrations and {} restarts abandoned by them, {} duplicated frames, "
                        "{} hung slaves woken; {} shard events processed, {} of them again after a recovery, "
                        "{} refused from fenced zombies",
                        runs, seen["restart_completed"], seen["restart_failed"], seen["migration_completed"],
                        seen["migration_rolled_back"], seen["migration_failed"], seen["slave_killed"], seen["slave_lost"],
                        seen["shard_fenced"], seen["shard_orphaned"], seen["shard_recovered"], master_restarts,
                        seen["migration_abandoned"], seen["restart_abandoned"], duplicates, wakes, events, replayed, refused));
    if (!only && runs >= 100) {
        // The schedules must actually reach the paths under test, or passing means nothing.
        for (const char* event : {"restart_completed", "restart_failed", "migration_completed", "migration_rolled_back",
                                  "migration_failed", "slave_killed", "shard_orphaned", "restart_queued",
                                  "shard_recovered", "recovery_failed", "spare_promoted", "migration_abandoned",
                                  "slave_adopted", "shard_adopted", "fence_acknowledged", "stale_ack_ignored",
                                  "master_detached", "restart_abandoned"}) {
            CHECK_MESSAGE(seen[event] > 0, "no simulated run reached " << event);
        }
        CHECK(master_restarts > 0);
        CHECK(slave_pauses > 0);
        CHECK(duplicates > 0);
        CHECK(wakes > 0);
        CHECK(events > 0);
        CHECK(replayed > 0);
    }
}
