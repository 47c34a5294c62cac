// The supervisor core, driven without sockets or clocks: scripted scenarios for each behaviour the
// operator relies on, then a seeded random simulation of thousands of fault schedules.
#include "sim_world.hpp"

#include <meshmaster/master/supervisor.hpp>
#include <meshmaster/protocol/codec.hpp>
#include <meshmaster/protocol/frame_decoder.hpp>

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>

using namespace meshmaster::master;
using namespace meshmaster::master::test;
using namespace std::chrono_literals;

namespace {

std::set<std::string> ids_of(const std::map<std::string, std::map<std::uint32_t, std::uint64_t>>& held) {
    std::set<std::string> ids;
    for (const auto& [id, shards] : held) ids.insert(id);
    return ids;
}

sim_world settled_world(sim_options options = {}) {
    options.faults = false;
    sim_world w(1, options);
    REQUIRE(w.settle());
    REQUIRE_FALSE(w.violation());
    return w;
}

std::string generation_of(const std::string& id) { return id.substr(id.find('-') + 1); }

}  // namespace

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

TEST_CASE("rolling restart: every shard moves to a new slave with its state, epochs bumped, old slaves retired") {
    sim_world w = settled_world({.shards = 12, .slaves = 3, .concurrency = 2});
    w.request_restart();
    w.step_deliver_all();
    REQUIRE(w.settle());
    REQUIRE_FALSE(w.violation());
    const auto held = w.holdings();
    CHECK(ids_of(held) == std::set<std::string>{"s0-g2", "s1-g2", "s2-g2"});
    for (const auto& [id, shards] : held) {
        for (const auto& [shard, epoch] : shards) CHECK(epoch == 2);
    }
    CHECK(w.count("migration_started") == 12);
    CHECK(w.count("migration_completed") == 12);
    CHECK(w.count("slave_retired") == 3);
    CHECK(w.count("restart_completed") == 1);
    CHECK(w.count("migration_failed") == 0);

    // Pipelined, never more than the configured number of moves in flight.
    int in_flight = 0, peak = 0;
    for (const auto& r : w.records()) {
        if (r.event == "migration_started") peak = std::max(peak, ++in_flight);
        if (r.event == "migration_completed") --in_flight;
    }
    CHECK(peak == 2);
}

TEST_CASE("a restart requested during a restart is queued once, a third request is not") {
    sim_world w = settled_world();
    w.request_restart("first");
    w.request_restart("second");
    w.request_restart("third");
    w.step_deliver_all();
    REQUIRE(w.settle());
    CHECK(w.count("restart_queued") == 1);
    CHECK(w.count("restart_already_queued") == 1);
    CHECK(w.count("restart_completed") == 2);
    for (const auto& id : w.live_slaves()) CHECK(generation_of(id) == "g3");
}

TEST_CASE("the new slave dies mid-restart: its shards go back to the old slave under new epochs") {
    sim_world w = settled_world({.shards = 12, .slaves = 3, .concurrency = 2});
    w.request_restart();
    // Let the first pair move some shards, then kill its new slave while moves are in flight.
    REQUIRE(w.run_until([&] { return w.count("migration_completed") >= 1 && w.count("migration_started") >= 3; }));
    w.kill("s0-g2");
    REQUIRE(w.settle());
    REQUIRE_FALSE(w.violation());
    const auto held = w.holdings();
    CHECK(ids_of(held).contains("s0-g1"));
    CHECK(held.at("s0-g1").size() == 4);  // all of slot 0 is back home
    CHECK_FALSE(ids_of(held).contains("s0-g2"));
    CHECK(w.count("restart_failed") == 1);
    CHECK(w.count("migration_rolled_back") + w.count("migration_failed") >= 1);
    // Pairs not yet started are not touched.
    CHECK(ids_of(held).contains("s1-g1"));
    CHECK(ids_of(held).contains("s2-g1"));
}

TEST_CASE("the old slave dies mid-restart: its remaining shards start fresh on the new slave, state loss logged") {
    sim_world w = settled_world({.shards = 12, .slaves = 3, .concurrency = 1});
    w.request_restart();
    REQUIRE(w.run_until([&] { return w.count("migration_completed") >= 1; }));
    w.kill("s0-g1");
    REQUIRE(w.settle());
    REQUIRE_FALSE(w.violation());
    const auto held = w.holdings();
    CHECK(held.at("s0-g2").size() == 4);
    CHECK(w.count("restart_completed") == 1);
    bool lost_logged = false;
    for (const auto& r : w.records()) lost_logged = lost_logged || (r.event == "shard_orphaned" && r.state_lost == true);
    CHECK(lost_logged);
}

TEST_CASE("a killed slave is replaced and its shards re-granted under higher epochs") {
    sim_world w = settled_world();
    w.kill("s1-g1");
    REQUIRE(w.settle());
    REQUIRE_FALSE(w.violation());
    const auto held = w.holdings();
    CHECK(ids_of(held) == std::set<std::string>{"s0-g1", "s1-g1.1", "s2-g1"});
    for (const auto& [shard, epoch] : held.at("s1-g1.1")) CHECK(epoch == 2);
    CHECK(w.count("respawn_scheduled") == 1);
}

TEST_CASE("a crash loop backs off exponentially, capped") {
    sim_world w = settled_world({.shards = 4, .slaves = 1});
    std::vector<double> delays;
    std::string victim = "s0-g1";
    for (int i = 0; i < 7; ++i) {
        w.kill(victim);
        w.step_deliver_all();
        for (const auto& r : w.records()) {
            if (r.event == "respawn_scheduled" && r.slave == victim) delays.push_back(*r.duration_ms);
        }
        REQUIRE(w.settle());
        victim = w.live_slaves().front();
    }
    // The first death of a slave is replaced at once; quick deaths after that back off.
    CHECK(delays == std::vector<double>{0, 100, 200, 400, 800, 1600, 2000});
}

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

TEST_CASE("graceful stop shuts slaves down one at a time in slot order, then exits") {
    sim_world w = settled_world();
    w.request_stop(false);
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
}

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

namespace {

// The frames a core sent on `connection`, decoded and kept as (event name, shard, epoch, migration).
struct sent_frame {
    std::string event;
    std::uint32_t shard = 0;
    std::uint64_t epoch = 0;
    std::uint64_t migration = 0;
};
// Calls f(event id, message) for each frame the core sent on `connection`, decoded.
template <class F>
void for_each_message_to(const std::vector<action>& acts, connection_id connection, F f) {
    for (const auto& a : acts) {
        const auto* send = std::get_if<actions::send_frame>(&a);
        if (!send || send->connection != connection) continue;
        meshmaster::protocol::frame_decoder d;
        d.feed(send->frames);
        while (true) {
            auto next = d.next();
            if (!next || !*next) break;
            auto m = meshmaster::protocol::decode(**next);
            if (m) f(static_cast<meshmaster::protocol::event_id>((**next).event), *m);
        }
    }
}

std::vector<sent_frame> frames_to(const std::vector<action>& acts, connection_id connection) {
    std::vector<sent_frame> out;
    for_each_message_to(acts, connection, [&](meshmaster::protocol::event_id event, const meshmaster::protocol::message& m) {
        sent_frame f{.event = std::string(meshmaster::protocol::to_string(event))};
        if (const auto* x = std::get_if<meshmaster::protocol::stop_shard>(&m)) f = {f.event, x->shard, x->epoch, x->migration_id};
        if (const auto* x = std::get_if<meshmaster::protocol::resume>(&m)) f = {f.event, x->shard, x->epoch, x->migration_id};
        if (const auto* x = std::get_if<meshmaster::protocol::start_shard>(&m)) f = {f.event, x->shard, x->epoch, 0};
        out.push_back(f);
    });
    return out;
}

}  // namespace

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

namespace {
std::vector<event_record> records_in(const std::vector<action>& acts) {
    std::vector<event_record> out;
    for (const auto& a : acts) {
        if (const auto* l = std::get_if<actions::log_event>(&a)) out.push_back(l->record);
    }
    return out;
}
std::vector<std::string> names_of(const std::vector<event_record>& records) {
    std::vector<std::string> out;
    for (const auto& r : records) out.emplace_back(r.event);
    return out;
}
}  // namespace

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

TEST_CASE("a master stopped at once mid-restart ends the restart before its last record") {
    sim_world w = settled_world({.shards = 6, .slaves = 2});
    w.request_restart();
    w.request_stop(true);
    const auto names = names_of(w.records());
    const auto started = std::find(names.begin(), names.end(), "restart_started");
    REQUIRE(started != names.end());
    const auto failed = std::find(started, names.end(), "restart_failed");
    REQUIRE(failed != names.end());
    CHECK(names.back() == "master_stopped");
    CHECK(w.records()[static_cast<std::size_t>(failed - names.begin())].reason == "master stopping immediately");
}

namespace {
// The mesh_members lists the core sent on `connection`, in order: (version, member ids).
std::vector<std::pair<std::uint64_t, std::vector<std::string>>> mesh_lists_to(const std::vector<action>& acts,
                                                                                connection_id connection) {
    std::vector<std::pair<std::uint64_t, std::vector<std::string>>> out;
    for_each_message_to(acts, connection, [&](meshmaster::protocol::event_id, const meshmaster::protocol::message& m) {
        if (const auto* x = std::get_if<meshmaster::protocol::mesh_members>(&m)) {
            std::vector<std::string> ids;
            for (const auto& member : x->members) ids.emplace_back(member.id);
            out.emplace_back(x->version, std::move(ids));
        }
    });
    return out;
}

mesh_node_info mesh_node(std::uint16_t port, std::string type = "bot") {
    return {.host = "127.0.0.1", .port = port, .incarnation = 1000u + port, .type = std::move(type), .values = {}};
}
}  // namespace

TEST_CASE("embedded discovery: every slave with a mesh node gets the whole list, again on each change") {
    supervisor_config c{.shard_count = 4, .slave_count = 2, .spawn_slaves = false};
    supervisor core(c, 1000);
    core.start(0ns, 0ms);
    (void)core.take_actions();
    core.on_slave_connected(1, {.id = "a", .pid = 11, .version_minor = 2, .mesh = mesh_node(7001)}, 1ms);
    auto acts = core.take_actions();
    REQUIRE(mesh_lists_to(acts, 1).size() == 1);
    CHECK(mesh_lists_to(acts, 1)[0].second == std::vector<std::string>{"a"});

    // A second node joins: both hear of it, with a newer version.
    core.on_slave_connected(2, {.id = "b", .pid = 12, .version_minor = 2, .mesh = mesh_node(7002)}, 2ms);
    acts = core.take_actions();
    const auto to_a = mesh_lists_to(acts, 1), to_b = mesh_lists_to(acts, 2);
    REQUIRE(to_a.size() == 1);
    REQUIRE(to_b.size() == 1);
    CHECK(to_a[0].second == std::vector<std::string>{"a", "b"});
    CHECK(to_b[0] == to_a[0]);
    const std::uint64_t v2 = to_a[0].first;

    // A slave without a mesh node, or speaking 1.1, neither gets lists nor appears in them.
    core.on_slave_connected(3, {.id = "old", .pid = 13, .version_minor = 1, .mesh = mesh_node(7003)}, 3ms);
    acts = core.take_actions();
    CHECK(mesh_lists_to(acts, 3).empty());
    CHECK(mesh_lists_to(acts, 1).empty());

    // Values change at runtime: everyone gets the new list.
    core.on_mesh_update(2, std::string("room"), {{"zone", "eu"}}, 4ms);
    acts = core.take_actions();
    REQUIRE(mesh_lists_to(acts, 1).size() == 1);
    CHECK(mesh_lists_to(acts, 1)[0].first > v2);

    // A slave the master loses (its connection dropped: it is fenced) leaves the list.
    core.on_disconnected(2, 5ms);
    acts = core.take_actions();
    REQUIRE(mesh_lists_to(acts, 1).size() == 1);
    CHECK(mesh_lists_to(acts, 1)[0].second == std::vector<std::string>{"a"});

    // After a master restart the list is rebuilt from the hellos of the slaves that reconnect.
    supervisor next(c, 2000);
    next.start(10ms, 0ms);
    (void)next.take_actions();
    next.on_slave_connected(7, {.id = "a", .pid = 11, .version_minor = 2, .mesh = mesh_node(7001)}, 11ms);
    next.on_slave_connected(8, {.id = "c", .pid = 14, .version_minor = 2, .mesh = mesh_node(7004)}, 12ms);
    acts = next.take_actions();
    const auto rebuilt = mesh_lists_to(acts, 7);
    REQUIRE(rebuilt.size() == 2);
    CHECK(rebuilt[1].second == std::vector<std::string>{"a", "c"});
    CHECK(mesh_lists_to(acts, 8).back() == rebuilt[1]);
    CHECK(rebuilt[0].first > v2);  // versions keep growing across masters: slaves outlive them

    // A slave that dies leaves the list at once.
    next.on_process_exited("a", "killed by signal 9", 13ms);
    acts = next.take_actions();
    const auto after = mesh_lists_to(acts, 8);
    REQUIRE(after.size() == 1);
    CHECK(after[0].second == std::vector<std::string>{"c"});
}
