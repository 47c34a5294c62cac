// Slaves that cannot start: the start limit itself, the supervisor giving a slot (or the spares) up
// after it, the retry, and the health verdict `meshmaster status` exits on. No clock, no sockets.
#include "sim_world.hpp"
#include "start_limit.hpp"

#include <meshmaster/master/status.hpp>
#include <meshmaster/master/supervisor.hpp>

#include <doctest/doctest.h>

#include <algorithm>

using namespace meshmaster::master;
using namespace meshmaster::master::test;
using namespace std::chrono_literals;

TEST_CASE("start limit: burst failures within the interval exhaust it, older ones fall out of the window") {
    start_limit limit;
    CHECK_FALSE(limit.failed(0s, 3, 10s));
    CHECK_FALSE(limit.failed(1s, 3, 10s));
    CHECK(limit.recent(1s, 10s) == 2);
    CHECK(limit.failed(2s, 3, 10s));

    start_limit sliding;
    CHECK_FALSE(sliding.failed(0s, 3, 10s));
    CHECK_FALSE(sliding.failed(6s, 3, 10s));
    CHECK_FALSE(sliding.failed(10s, 3, 10s));  // the one at 0 s is exactly 10 s old: out of the window
    CHECK(sliding.recent(10s, 10s) == 2);
    CHECK(sliding.recent(16s, 10s) == 1);
    CHECK(sliding.failed(12s, 3, 10s));  // 6, 10 and 12 s
}

TEST_CASE("start limit: a reset starts the count over; burst 0 never gives up") {
    start_limit limit;
    CHECK_FALSE(limit.failed(0s, 2, 10s));
    limit.reset();
    CHECK(limit.recent(0s, 10s) == 0);
    CHECK_FALSE(limit.failed(1s, 2, 10s));
    CHECK(limit.failed(2s, 2, 10s));

    start_limit unlimited;
    for (int i = 0; i < 1000; ++i) CHECK_FALSE(unlimited.failed(std::chrono::milliseconds(i), 0, 10s));
    CHECK(unlimited.recent(1s, 10s) == 0);
}

namespace {

std::vector<event_record> records(const std::vector<action>& acts) {
    std::vector<event_record> out;
    for (const auto& a : acts) {
        if (const auto* l = std::get_if<actions::log_event>(&a)) out.push_back(l->record);
    }
    return out;
}

std::vector<std::string> spawned(const std::vector<action>& acts) {
    std::vector<std::string> out;
    for (const auto& a : acts) {
        if (const auto* s = std::get_if<actions::spawn_slave>(&a)) out.push_back(s->slave);
    }
    return out;
}

std::size_t count(const std::vector<event_record>& rs, std::string_view event) {
    return static_cast<std::size_t>(std::count_if(rs.begin(), rs.end(), [&](const auto& r) { return r.event == event; }));
}

bool mentions(const std::vector<std::string>& problems, std::string_view text) {
    return std::any_of(problems.begin(), problems.end(), [&](const auto& p) { return p.find(text) != std::string::npos; });
}

// Drives a core by hand: keeps every action, answers for the slaves it is told about (heartbeats),
// and moves time to the core's next deadline.
struct driver {
    supervisor_config config{.shard_count = 4, .slave_count = 2, .respawn_backoff_min = 100ms,
                             .respawn_backoff_max = 1s, .start_limit_burst = 3, .start_limit_interval = 10s};
    std::unique_ptr<supervisor> core;
    std::vector<action> all;
    mono_time now{0};
    std::vector<connection_id> connections;  // slaves that answer heartbeats

    void take() {
        auto acts = core->take_actions();
        all.insert(all.end(), acts.begin(), acts.end());
    }
    // The id of the latest spawn for `slot` (a spare: no slot).
    std::string latest_spawn(std::optional<std::uint32_t> slot) const {
        std::string id;
        for (const auto& a : all) {
            if (const auto* s = std::get_if<actions::spawn_slave>(&a); s && s->slot == slot) id = s->slave;
        }
        return id;
    }
    // Moves time from deadline to deadline until the core spawns again for `slot`; false if it
    // does not within a minute.
    bool until_next_spawn(std::optional<std::uint32_t> slot) {
        const std::string last = latest_spawn(slot);
        const mono_time limit = now + 60s;
        while (latest_spawn(slot) == last) {
            auto next = core->next_deadline();
            if (!next || *next > limit) return false;
            now = std::max(now, *next);
            for (connection_id c : connections) core->on_heartbeat(c, 0, now);
            core->on_tick(now);
            take();
        }
        return true;
    }
    // Slot 0's slave up with its shards; slot 1's first spawn pending.
    void start() {
        core = std::make_unique<supervisor>(config);
        core->start(now);
        take();
        core->on_spawned("s0-g1", 100, now);
        core->on_slave_connected(1, {.id = "s0-g1", .pid = 100, .generation = 1}, now);
        connections.push_back(1);
        core->on_shard_started(1, 0, 1, now);
        core->on_shard_started(1, 1, 1, now);
        take();
    }
    // Every start of slot 1 fails at once (spawn failure, or an exit before the hello), `n` times.
    void fail_slot_1(int n, bool exit_instead = false) {
        for (int i = 0; i < n; ++i) {
            if (i > 0) REQUIRE(until_next_spawn(1));
            const std::string id = latest_spawn(1);
            if (exit_instead) {
                core->on_spawned(id, 500 + i, now);
                core->on_process_exited(id, "exited with code 1", now);
            } else {
                core->on_spawn_failed(id, "cannot start /nonexistent/bot: No such file or directory", now);
            }
            take();
        }
    }
};

}  // namespace

TEST_CASE("a slot whose command cannot start backs off, is marked failed at the start limit, and a retry starts it again") {
    driver f;
    f.start();
    f.fail_slot_1(3);
    auto rs = records(f.all);
    CHECK(count(rs, "spawn_failed") == 3);
    CHECK(count(rs, "respawn_scheduled") == 2);  // the third failure gives up instead
    REQUIRE(count(rs, "slot_failed") == 1);
    const auto failed = *std::find_if(rs.begin(), rs.end(), [](const auto& r) { return r.event == "slot_failed"; });
    CHECK(failed.slot == 1u);
    CHECK(failed.count == 3u);
    CHECK(failed.reason.find("No such file or directory") != std::string::npos);
    auto st = f.core->status(f.now);
    REQUIRE(st.slots.size() == 2);
    CHECK(st.slots[1].failed);
    CHECK(st.slots[1].failed_starts == 3);
    CHECK((st.slots[1].first_shard == 2 && st.slots[1].last_shard == 3));
    CHECK(st.shards[2].owner.empty());
    auto problems = fleet_problems(st);
    CHECK(mentions(problems, "2 of 4 shards running"));
    CHECK(mentions(problems, "2 shards unassigned (2..3): slot 1 failed: 3 starts failed within 10000 ms"));

    // It stays failed: time passes, nothing is spawned.
    CHECK_FALSE(f.until_next_spawn(1));
    CHECK(f.core->status(f.now).slots[1].failed);

    // The operator fixed the command and reloaded: the slot starts again, with a fresh limit.
    const auto retried = f.core->retry_failed_starts(f.now, "configuration reloaded");
    CHECK(retried.slots == std::vector<std::uint32_t>{1});
    auto acts = f.core->take_actions();
    CHECK(count(records(acts), "slot_retried") == 1);
    const auto again = spawned(acts);
    REQUIRE(again.size() == 1);
    CHECK_FALSE(f.core->status(f.now).slots[1].failed);
    f.core->on_spawned(again[0], 200, f.now);
    f.core->on_slave_connected(2, {.id = again[0], .pid = 200, .generation = 1}, f.now);
    f.core->on_shard_started(2, 2, 1, f.now);
    f.core->on_shard_started(2, 3, 1, f.now);
    (void)f.core->take_actions();
    CHECK(fleet_problems(f.core->status(f.now)).empty());
    // Nothing left to retry.
    CHECK(f.core->retry_failed_starts(f.now, "again").empty());
}

TEST_CASE("a slave that exits before its hello is a failed start; one whose hello was accepted is a crash") {
    driver f;
    f.start();
    f.fail_slot_1(3, true);
    CHECK(count(records(f.all), "slot_failed") == 1);

    // A slave that came up and then keeps dying young is a crash loop: backoff, never given up.
    driver g;
    g.start();
    for (int i = 0; i < 6; ++i) {
        if (i > 0) REQUIRE(g.until_next_spawn(1));
        const std::string id = g.latest_spawn(1);
        g.core->on_spawned(id, 600 + i, g.now);
        g.core->on_slave_connected(10 + i, {.id = id, .pid = 600 + i, .generation = 1}, g.now);
        g.core->on_process_exited(id, "killed by signal 9 (SIGKILL)", g.now);
        g.take();
    }
    CHECK(count(records(g.all), "slot_failed") == 0);
    CHECK(count(records(g.all), "respawn_scheduled") == 6);
}

TEST_CASE("failed starts spread wider than the interval never exhaust the limit") {
    driver f;
    // Two failures at once (the first death is replaced at once), then at least 100 ms apart.
    f.config.start_limit_interval = 100ms;
    f.start();
    f.fail_slot_1(6);
    auto rs = records(f.all);
    CHECK(count(rs, "slot_failed") == 0);
    CHECK(count(rs, "spawn_failed") == 6);
}

TEST_CASE("a restart retries failed slots; while the master stops it is refused and retries nothing") {
    driver f;
    f.start();
    f.fail_slot_1(3);
    auto r = f.core->request_restart(f.now, "test");
    CHECK(r.result == supervisor::restart_request::outcome::started);
    CHECK(r.retried.slots == std::vector<std::uint32_t>{1});
    auto acts = f.core->take_actions();
    auto rs = records(acts);
    CHECK(count(rs, "restart_started") == 1);
    CHECK(count(rs, "slot_retried") == 1);
    // The retried slot's new slave belongs to the restart's generation.
    const auto ids = spawned(acts);
    CHECK(std::find(ids.begin(), ids.end(), std::string("s1-g2")) != ids.end());

    driver g;
    g.start();
    g.fail_slot_1(3);
    g.core->request_stop(g.now, false);
    (void)g.core->take_actions();
    r = g.core->request_restart(g.now, "test");
    CHECK(r.result == supervisor::restart_request::outcome::refused);
    CHECK(r.refusal == "the master is stopping");
    CHECK(r.retried.empty());
    CHECK(count(records(g.core->take_actions()), "restart_refused") == 1);
    CHECK(g.core->retry_failed_starts(g.now, "reload").empty());
}

TEST_CASE("spares that cannot start back off and give up at the start limit instead of looping") {
    driver d;
    d.config = {.shard_count = 2, .slave_count = 1, .spares = 1, .respawn_backoff_min = 100ms,
                .respawn_backoff_max = 1s, .start_limit_burst = 4, .start_limit_interval = 10s};
    d.core = std::make_unique<supervisor>(d.config);
    d.core->start(d.now);
    d.take();
    d.core->on_spawned("s0-g1", 100, d.now);
    d.core->on_slave_connected(1, {.id = "s0-g1", .pid = 100, .generation = 1}, d.now);
    d.connections.push_back(1);
    d.core->on_shard_started(1, 0, 1, d.now);
    d.core->on_shard_started(1, 1, 1, d.now);
    d.take();
    std::string failed;
    for (int i = 0; i < 20; ++i) {
        // The next spare comes at once after the first failure, then after a backoff.
        if (d.latest_spawn(std::nullopt) == failed && !d.until_next_spawn(std::nullopt)) break;
        failed = d.latest_spawn(std::nullopt);
        d.core->on_spawn_failed(failed, "cannot start /nonexistent/bot: No such file or directory", d.now);
        d.take();
    }
    auto& core = *d.core;
    const auto all = d.all;
    const auto now = d.now;
    auto rs = records(all);
    CHECK(count(rs, "spare_spawned") == 4);
    CHECK(count(rs, "spares_failed") == 1);
    auto st = core.status(now);
    CHECK(st.spares_failed);
    CHECK(mentions(fleet_problems(st), "spares failed: 4 starts failed"));
    CHECK(core.retry_failed_starts(now, "reload").spares);
    CHECK(count(records(core.take_actions()), "spare_spawned") == 1);
}

TEST_CASE("health: a rolling restart in progress is healthy at every step; adoption and stopping are not") {
    sim_options options{.shards = 12, .slaves = 3, .concurrency = 2, .faults = false};
    sim_world w(1, options);
    REQUIRE(w.settle());
    CHECK(fleet_problems(w.core().status(w.now())).empty());
    w.request_restart();
    bool moved = false;
    REQUIRE(w.run_until([&] {
        const auto st = w.core().status(w.now());
        const auto problems = fleet_problems(st);
        if (!problems.empty()) FAIL_CHECK(problems.front());
        for (const auto& sh : st.shards) moved = moved || sh.moving;
        return w.count("restart_completed") == 1;
    }));
    CHECK(moved);

    // After a crash, shards the old slaves have not reported yet are not known to run.
    supervisor_config c{.shard_count = 4, .slave_count = 2};
    supervisor adopting(c, 1000);
    adopting.start(0ns, 500ms);
    adopting.on_slave_connected(1, {.id = "s0-g3", .pid = 11, .generation = 3, .shards = {{0, 5}, {1, 5}}}, 10ms);
    auto problems = fleet_problems(adopting.status(10ms));
    CHECK(mentions(problems, "adopting: waiting up to 0.5 s more"));
    CHECK(mentions(problems, "2 shards unassigned (2..3): slot 1 has no slave"));

    w.request_stop(false);
    CHECK(mentions(fleet_problems(w.core().status(w.now())), "the master is stopping"));
}

TEST_CASE("shard ranges") {
    CHECK(shard_ranges({}) == "");
    CHECK(shard_ranges({4}) == "4");
    CHECK(shard_ranges({0, 1, 2, 5, 7, 8}) == "0..2, 5, 7..8");
}
