// Start-up and adoption (adoption.hpp): slaves a previous master left running are adopted with their
// shards and epochs, a surplus one hands its shards over, one that does not come back is killed
// before its shards are granted again, and a restart the previous master left open is closed once.
#include "supervisor_fixtures.hpp"

#include <meshmaster/master/supervisor.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <memory>
#include <string>
#include <variant>
#include <vector>

using namespace meshmaster::master;
using namespace meshmaster::master::test;
using namespace std::chrono_literals;

TEST_CASE("slaves still running from a previous master are adopted with their shards and epochs") {
    supervisor_config c{.shard_count = 4, .slave_count = 2};
    supervisor core(c, 1000);
    core.start(0ns, 500ms);
    CHECK(core.take_actions().size() == 2);  // master_started, adoption_started: nothing spawned yet
    core.on_slave_connected(1, {.id = "s0-g3", .pid = 11, .generation = 3, .shards = {{0, 5}, {1, 5}}}, 10ms);
    core.on_slave_connected(2, {.id = "s1-g3", .pid = 12, .generation = 3, .shards = {{2, 6}, {3, 7}}}, 20ms);
    auto acts = core.take_actions();
    int watched = 0, spawned = 0;
    for (const auto& a : acts) {
        watched += std::holds_alternative<actions::watch_process>(a);
        spawned += std::holds_alternative<actions::spawn_slave>(a);
    }
    CHECK(watched == 2);
    CHECK(spawned == 0);
    const auto st = core.status(20ms);
    CHECK(st.shards[3].owner == "s1-g3");
    CHECK(st.shards[3].epoch == 7);
    CHECK(st.shards_running == 4);
}

TEST_CASE("after a master restart, a slave left beside its slot's holder hands its shards over and retires") {
    // The previous master died in the middle of a rolling restart of slot 0: s0-g1 still runs
    // shard 1, its replacement s0-g2 runs shard 0.
    supervisor_config c{.shard_count = 2, .slave_count = 1};
    supervisor core(c, 1000);
    core.seed_ids(2, {"s0-g1", "s0-g2"});
    core.expect_slaves({{"s0-g1", 11}, {"s0-g2", 12}});
    core.start(0ns, 2s);
    core.on_slave_connected(1, {.id = "s0-g2", .pid = 12, .generation = 2, .shards = {{0, 3}}, .version_minor = 1}, 10ms);
    core.on_slave_connected(2, {.id = "s0-g1", .pid = 11, .generation = 1, .shards = {{1, 2}}, .version_minor = 1}, 20ms);
    // Everyone is back: adoption ends at once, and the surplus slave's shard moves to the slot holder.
    auto acts = core.take_actions();
    auto to_old = frames_to(acts, 2);
    REQUIRE(to_old.size() == 1);
    CHECK(to_old[0].event == "stop_shard");
    CHECK(to_old[0].shard == 1);
    const std::uint64_t migration = to_old[0].migration;
    auto state = std::make_shared<const std::vector<std::byte>>(3, std::byte{1});
    core.on_shard_stopped(2, 1, 2, migration, state, 30ms);
    auto to_new = frames_to(core.take_actions(), 1);
    REQUIRE_FALSE(to_new.empty());
    CHECK(to_new.back().event == "resume");
    CHECK(to_new.back().epoch == 3);
    core.on_resumed(1, 1, 3, migration, 40ms);
    auto done = frames_to(core.take_actions(), 2);
    CHECK(std::any_of(done.begin(), done.end(), [](const sent_frame& f) { return f.event == "shutdown"; }));
    const auto st = core.status(40ms);
    CHECK(st.shards[0].owner == "s0-g2");
    CHECK(st.shards[1].owner == "s0-g2");
    CHECK(st.shards_running == 2);
}

TEST_CASE("after a master restart, a slave that does not come back is killed before its shards are granted again") {
    supervisor_config c{.shard_count = 2, .slave_count = 1};
    supervisor core(c, 1000);
    core.seed_ids(1, {"s0-g1"});
    core.seed_epochs({4, 4});
    core.expect_slaves({{"s0-g1", 11}});
    core.start(0ns, 500ms);
    (void)core.take_actions();
    core.on_tick(500ms);  // the adoption window closes: s0-g1 (frozen, say) never said hello
    auto acts = core.take_actions();
    bool killed = false, spawned = false;
    for (const auto& a : acts) {
        if (const auto* k = std::get_if<actions::kill_slave>(&a)) killed = k->slave == "s0-g1" && k->pid == 11;
        if (const auto* sp = std::get_if<actions::spawn_slave>(&a)) {
            spawned = true;
            CHECK(sp->slave != "s0-g1");  // never an id a previous master gave out
        }
    }
    CHECK(killed);
    CHECK(spawned);  // its replacement may start at once ...
    core.on_spawned("s0-g1.1", 21, 510ms);
    core.on_slave_connected(1, {.id = "s0-g1.1", .pid = 21, .generation = 1, .version_minor = 1}, 520ms);
    acts = core.take_actions();
    CHECK(frames_to(acts, 1).size() <= 1);  // ... but gets no shard (a full_start at most)
    CHECK(core.status(520ms).shards_running == 0);
    core.on_process_exited("s0-g1", "killed by signal 9", 530ms);  // ... until the old one is gone
    auto grants = frames_to(core.take_actions(), 1);
    REQUIRE(grants.size() == 2);
    CHECK(grants[0].event == "start_shard");
    CHECK(grants[0].epoch == 5);  // above every epoch the log showed
}

TEST_CASE("a restart a killed master left open ends with restart_abandoned as the next master starts, once") {
    // The previous master died mid-restart of slot 0 (restart 500), with shard 1 on its way from
    // s0-g1 to s0-g2 (migration 501).
    supervisor_config c{.shard_count = 2, .slave_count = 1};
    supervisor core(c, 1000);
    core.seed_ids(2, {"s0-g1", "s0-g2"});
    core.expect_slaves({{"s0-g1", 11}, {"s0-g2", 12}});
    core.adopt_open_migrations({{.id = 501, .shard = 1, .from = "s0-g1", .to = "s0-g2"}});
    core.adopt_open_restarts({500});
    core.start(0ns, 2s);
    auto records = records_in(core.take_actions());
    // Closed before anything else happens: a restart requested, or a stop, during the adoption
    // window comes after it.
    REQUIRE(names_of(records) == std::vector<std::string>{"master_started", "restart_abandoned", "adoption_started"});
    CHECK(records[1].restart == 500u);
    CHECK(records[1].reason.find("killed mid-restart") != std::string::npos);
    // Nothing closes it again: the moves end as before, when adoption is over, and the fleet
    // converges (shard 1 moves home, s0-g1 retires) on its own.
    core.on_slave_connected(1, {.id = "s0-g2", .pid = 12, .generation = 2, .shards = {{0, 3}}, .version_minor = 1}, 10ms);
    core.on_slave_connected(2, {.id = "s0-g1", .pid = 11, .generation = 1, .shards = {{1, 2}}, .version_minor = 1}, 20ms);
    core.on_tick(5s);
    const auto later = names_of(records_in(core.take_actions()));
    CHECK(std::count(later.begin(), later.end(), "migration_abandoned") == 1);
    CHECK(std::count(later.begin(), later.end(), "restart_abandoned") == 0);
}
