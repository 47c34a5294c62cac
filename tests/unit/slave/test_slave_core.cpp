// The slave side of the protocol, driven frame by frame as the master would: the handshake both
// ways, epoch checks, state handoff in chunks, and what survives a lost connection.
#include "slave_harness.hpp"

#include <meshmaster/protocol/state_transfer.hpp>

#include <memory>
#include <optional>
#include <string>

using namespace meshmaster;
using namespace meshmaster::slave::detail;
using namespace meshmaster::slave::test;
using meshmaster::slave::outcome;
namespace p = meshmaster::protocol;


TEST_CASE("the handshake proves the secret both ways and the hello carries identity and version") {
    master_side m;
    const auto hello = m.connect();
    CHECK(hello.slave_id == "s0-g1");
    CHECK(hello.version_major == 1);
    CHECK(hello.pid == 77);
    CHECK(hello.generation == 1);
    CHECK(hello.nonce.size() == p::nonce_size);
    CHECK(m.core.heartbeat_interval() == std::chrono::milliseconds(100));
}

TEST_CASE("a master that cannot prove the secret is refused") {
    master_side m;
    m.core.on_connected();
    m.deliver(p::auth_challenge{.version_major = 1, .nonce = p::bytes_view(m.master_nonce)});
    (void)m.written();
    const p::proof forged{};
    m.deliver(p::welcome{.mac = p::bytes_view(forged)});
    CHECK_FALSE(m.core.authenticated());
    REQUIRE(m.core.close_reason().has_value());
    auto out = m.written();
    REQUIRE(out.size() == 1);
    CHECK(std::get<p::error_message>(out[0]).code == "auth_failed");
}

TEST_CASE("a challenge whose nonce is not 32 bytes is refused before anything is signed") {
    for (const std::size_t size : {std::size_t{0}, std::size_t{16}, std::size_t{31}, std::size_t{33}}) {
        CAPTURE(size);
        master_side m;
        m.core.on_connected();
        const std::vector<std::byte> nonce(size, std::byte{7});
        m.deliver(p::auth_challenge{.version_major = 1, .version_minor = 2, .nonce = p::bytes_view(nonce)});
        auto out = m.written();
        REQUIRE(out.size() == 1);  // no hello, no proof: only the refusal
        CHECK(std::get<p::error_message>(out[0]).code == "auth_failed");
        CHECK(m.core.close_reason().has_value());
    }
}

TEST_CASE("a master of another major version is refused by name") {
    master_side m;
    m.core.on_connected();
    m.deliver(p::auth_challenge{.version_major = 2, .nonce = p::bytes_view(m.master_nonce)});
    auto out = m.written();
    REQUIRE(out.size() == 1);
    CHECK(std::get<p::error_message>(out[0]).code == "unsupported_version:version_major");
    CHECK(m.core.close_reason().has_value());
}

TEST_CASE("frames before the handshake close the connection") {
    master_side m;
    m.core.on_connected();
    m.deliver(p::start_shard{.shard = 1, .epoch = 1});
    CHECK(m.core.take_requests().empty());
    CHECK(m.core.close_reason().has_value());
}

TEST_CASE("grants and stops with stale epochs never reach the worker") {
    master_side m;
    m.connect();
    m.deliver(p::start_shard{.shard = 3, .epoch = 5});
    auto requests = m.core.take_requests();
    REQUIRE(requests.size() == 1);
    CHECK(requests[0].kind == op_kind::start_shard);
    m.core.complete(requests[0].op, {});
    auto out = m.written();
    REQUIRE(out.size() == 1);
    CHECK(std::get<p::shard_started>(out[0]) == p::shard_started{.shard = 3, .epoch = 5});

    m.deliver(p::start_shard{.shard = 3, .epoch = 4});   // older grant
    m.deliver(p::stop_shard{.shard = 3, .epoch = 4, .migration_id = 9});  // stop of a superseded epoch
    m.deliver(p::stop_shard{.shard = 8, .epoch = 5, .migration_id = 9});  // not held here
    m.deliver(p::resume{.shard = 3, .epoch = 5, .migration_id = 9});     // not newer than held
    CHECK(m.core.take_requests().empty());
    out = m.written();
    REQUIRE(out.size() == 4);
    for (const auto& e : out) CHECK(std::get<p::error_message>(e).code == "stale_epoch");
    CHECK(m.core.shards() == std::vector<p::shard_epoch>{{3, 5}});
}

TEST_CASE("a stop returns the worker's state, in chunks when it is large, byte for byte") {
    master_side m;
    m.connect();
    m.deliver(p::start_shard{.shard = 2, .epoch = 1});
    m.core.complete(m.core.take_requests()[0].op, {});
    (void)m.written();
    m.deliver(p::stop_shard{.shard = 2, .epoch = 1, .migration_id = 44});
    auto requests = m.core.take_requests();
    REQUIRE(requests.size() == 1);
    CHECK(requests[0].kind == op_kind::stop_shard);
    std::string state(200, 'x');
    for (std::size_t i = 0; i < state.size(); ++i) state[i] = static_cast<char>('a' + i % 26);
    m.core.complete(requests[0].op, {.state = bytes_of(state)});
    auto out = m.written();
    REQUIRE(out.size() == 4);  // 3 chunks of 64 bytes, then the closing frame with the last 8
    p::state_assembler assembler(1 << 20);
    for (int i = 0; i < 3; ++i) REQUIRE(assembler.add(std::get<p::state_chunk>(out[i])).has_value());
    const auto stopped = std::get<p::shard_stopped>(out[3]);
    CHECK(stopped.migration_id == 44);
    auto whole = assembler.finish(44, 2, stopped.state, stopped.state_size).value();
    CHECK(whole == bytes_of(state));
    CHECK(m.core.shards().empty());
}

TEST_CASE("a resume hands the worker the whole reassembled state") {
    master_side m;
    m.connect();
    const std::string state(150, 's');
    std::vector<std::byte> wire;
    REQUIRE(p::encode_with_state(p::resume{.shard = 6, .epoch = 9, .migration_id = 3}, p::bytes_view::of(state), wire, 64)
                .has_value());
    p::frame_decoder d;
    d.feed(wire);
    std::vector<callback_request> requests;
    while (auto f = d.next().value()) {
        m.core.on_frame(*f);
        for (auto& r : m.core.take_requests()) {
            // The view is valid during this turn only, as documented: check it now.
            CHECK(std::string(reinterpret_cast<const char*>(r.state.data()), r.state.size()) == state);
            requests.push_back(r);
        }
    }
    REQUIRE(requests.size() == 1);
    CHECK(requests[0].kind == op_kind::resume_shard);
    m.core.complete(requests[0].op, {});
    auto out = m.written();
    REQUIRE(out.size() == 1);
    CHECK(std::get<p::resumed>(out[0]) == p::resumed{.shard = 6, .epoch = 9, .migration_id = 3});
}

TEST_CASE("a stop arriving while the shard is still starting runs once the start is done") {
    master_side m;
    m.connect();
    m.deliver(p::start_shard{.shard = 1, .epoch = 2});
    const auto start = m.core.take_requests().at(0);
    m.deliver(p::stop_shard{.shard = 1, .epoch = 2, .migration_id = 5});
    CHECK(m.core.take_requests().empty());
    m.core.complete(start.op, {});
    auto requests = m.core.take_requests();
    REQUIRE(requests.size() == 1);
    CHECK(requests[0].kind == op_kind::stop_shard);
}

TEST_CASE("a newer grant arriving while the shard is being stopped follows the stop instead of being refused") {
    // Found by the supervisor's simulation: a master that fences an old epoch and grants a newer
    // one right behind it must not get `busy` (it would wait for its start timeout).
    master_side m;
    m.connect();
    m.deliver(p::start_shard{.shard = 1, .epoch = 2});
    m.core.complete(m.core.take_requests().at(0).op, {});
    (void)m.written();
    m.deliver(p::stop_shard{.shard = 1, .epoch = 2, .migration_id = 0});
    const auto stop = m.core.take_requests().at(0);
    REQUIRE(stop.kind == op_kind::stop_shard);
    m.deliver(p::start_shard{.shard = 1, .epoch = 3});
    CHECK(m.core.take_requests().empty());
    CHECK(m.written().empty());  // no error: it waits
    m.core.complete(stop.op, {.state = bytes_of("old state")});
    auto out = m.written();
    REQUIRE(out.size() == 1);
    CHECK(std::get<p::shard_stopped>(out[0]).epoch == 2u);
    auto requests = m.core.take_requests();
    REQUIRE(requests.size() == 1);
    CHECK(requests[0].kind == op_kind::start_shard);
    CHECK(requests[0].epoch == 3u);
    m.core.complete(requests[0].op, {});
    out = m.written();
    REQUIRE(out.size() == 1);
    CHECK(std::get<p::shard_started>(out[0]).epoch == 3u);

    // A resume waits the same way, with its state intact, and only the newest waiting grant counts.
    m.deliver(p::stop_shard{.shard = 1, .epoch = 3, .migration_id = 0});
    const auto stop2 = m.core.take_requests().at(0);
    const auto state = bytes_of("the state to resume from");
    m.deliver(p::start_shard{.shard = 1, .epoch = 4});
    m.deliver(p::resume{.shard = 1, .epoch = 5, .migration_id = 9, .state = p::bytes_view(state)});
    m.deliver(p::start_shard{.shard = 1, .epoch = 4});  // older than the one waiting: refused
    out = m.written();
    REQUIRE(out.size() == 1);
    CHECK(std::get<p::error_message>(out[0]).code == "stale_epoch");
    m.core.complete(stop2.op, {.state = bytes_of("older state")});
    requests = m.core.take_requests();
    REQUIRE(requests.size() == 1);
    CHECK(requests[0].kind == op_kind::resume_shard);
    CHECK(requests[0].epoch == 5u);
    CHECK(std::vector<std::byte>(requests[0].state.begin(), requests[0].state.end()) == state);
}

TEST_CASE("shards keep running without the master and are reported with their epochs on reconnect") {
    master_side m;
    m.connect();
    m.deliver(p::start_shard{.shard = 4, .epoch = 7});
    m.core.complete(m.core.take_requests()[0].op, {});
    m.deliver(p::start_shard{.shard = 5, .epoch = 7});
    m.core.complete(m.core.take_requests()[0].op, {});
    m.deliver(p::stop_shard{.shard = 5, .epoch = 7, .migration_id = 12});
    const auto stop = m.core.take_requests().at(0);
    (void)m.written();

    m.core.on_disconnected();
    // The stop finishes while the master is away: the state waits.
    m.core.complete(stop.op, {.state = bytes_of("kept")});
    CHECK(m.core.take_output().empty());

    const auto hello = m.connect();
    CHECK(hello.shards == std::vector<p::shard_epoch>{{4, 7}});
    CHECK(hello.stopped == std::vector<p::shard_epoch>{{5, 7}});
    (void)m.written();
    // The master asks again for the stopped shard: the kept state goes out.
    m.deliver(p::stop_shard{.shard = 5, .epoch = 7, .migration_id = 12});
    auto out = m.written();
    REQUIRE(out.size() == 1);
    const auto stopped = std::get<p::shard_stopped>(out[0]);
    CHECK(stopped.state == p::bytes_view::of("kept"));
    CHECK(m.core.shards() == std::vector<p::shard_epoch>{{4, 7}});
}

TEST_CASE("a handed-back state is kept until the master confirms the handoff") {
    master_side m;
    m.connect();
    m.deliver(p::start_shard{.shard = 9, .epoch = 3});
    m.core.complete(m.core.take_requests()[0].op, {});
    m.deliver(p::stop_shard{.shard = 9, .epoch = 3, .migration_id = 70});
    m.core.complete(m.core.take_requests()[0].op, {.state = bytes_of("nine")});
    auto out = m.written();
    REQUIRE(out.size() == 2);  // shard_started, then shard_stopped
    CHECK(std::get<p::shard_stopped>(out[1]).state == p::bytes_view::of("nine"));
    CHECK(m.core.retained() == std::vector<p::shard_epoch>{{9, 3}});

    // A master that restarted before the move finished sees it in the hello and asks again.
    m.core.on_disconnected();
    CHECK(m.connect().stopped == std::vector<p::shard_epoch>{{9, 3}});
    (void)m.written();
    m.deliver(p::stop_shard{.shard = 9, .epoch = 3, .migration_id = 71});
    out = m.written();
    REQUIRE(out.size() == 1);
    CHECK(std::get<p::shard_stopped>(out[0]) ==
          p::shard_stopped{.shard = 9, .epoch = 3, .migration_id = 71, .state = p::bytes_view::of("nine")});

    m.deliver(p::handoff_complete{.shard = 9, .epoch = 3, .migration_id = 71});
    CHECK(m.core.retained().empty());
}

TEST_CASE("checkpoints go out for running shards only, chunked like any state") {
    master_side m;
    CHECK_FALSE(m.core.checkpoint(1, bytes_of("x")));  // not connected
    m.connect();
    CHECK_FALSE(m.core.checkpoint(1, bytes_of("x")));  // not held
    m.deliver(p::start_shard{.shard = 1, .epoch = 2});
    const auto start = m.core.take_requests().at(0);
    CHECK_FALSE(m.core.checkpoint(1, bytes_of("x")));  // still starting
    m.core.complete(start.op, {});
    (void)m.written();
    const std::string state(100, 'c');
    CHECK(m.core.checkpoint(1, bytes_of(state)));
    auto out = m.written();
    REQUIRE(out.size() == 2);  // one 64-byte chunk, then the checkpoint with the rest
    const auto chunk = std::get<p::state_chunk>(out[0]);
    CHECK(chunk.migration_id == 0);
    const auto cp = std::get<p::checkpoint>(out[1]);
    CHECK(cp.shard == 1);
    CHECK(cp.epoch == 2);
    CHECK(cp.state_size == 100u);
}

TEST_CASE("a checkpoint still waiting for the writer is replaced by the shard's next one") {
    // On a slow link the writer falls behind the worker's checkpoints: only the newest of each
    // shard goes, so what waits (heartbeats and replies included) stays at one state per shard.
    master_side m;
    m.connect();
    for (std::uint32_t shard : {1u, 2u}) {
        m.deliver(p::start_shard{.shard = shard, .epoch = 2});
        m.core.complete(m.core.take_requests().at(0).op, {});
    }
    (void)m.written();
    CHECK(m.core.checkpoint(1, bytes_of("one, first")));
    CHECK(m.core.checkpoint(2, bytes_of("two")));
    m.core.tick(9);
    CHECK(m.core.checkpoint(1, bytes_of("one, second")));
    CHECK(m.core.has_output());
    auto out = m.written();
    REQUIRE(out.size() == 3);
    CHECK(std::get<p::heartbeat>(out[0]).progress == 9u);
    CHECK(std::get<p::checkpoint>(out[1]) == p::checkpoint{.shard = 1, .epoch = 2, .state = p::bytes_view::of("one, second")});
    CHECK(std::get<p::checkpoint>(out[2]) == p::checkpoint{.shard = 2, .epoch = 2, .state = p::bytes_view::of("two")});
    CHECK_FALSE(m.core.has_output());
}

TEST_CASE("a checkpoint still waiting when its shard begins to stop is not sent: the stop hands the state back") {
    master_side m;
    m.connect();
    m.deliver(p::start_shard{.shard = 1, .epoch = 2});
    m.core.complete(m.core.take_requests().at(0).op, {});
    (void)m.written();
    CHECK(m.core.checkpoint(1, bytes_of("old")));
    m.deliver(p::stop_shard{.shard = 1, .epoch = 2, .migration_id = 8});
    const auto stop = m.core.take_requests().at(0);
    CHECK(stop.kind == op_kind::stop_shard);
    CHECK(m.written().empty());
    m.core.complete(stop.op, outcome{.state = bytes_of("newest")});
    auto out = m.written();
    REQUIRE(out.size() == 1);
    const auto stopped = std::get<p::shard_stopped>(out[0]);
    CHECK(stopped.shard == 1u);
    CHECK(p::bytes_view(stopped.state) == p::bytes_view::of("newest"));
}

TEST_CASE("shutdown: the worker's callback, then the acknowledgement, then finished") {
    master_side m;
    m.connect();
    m.deliver(p::shutdown{.reason = "rolling restart"});
    auto requests = m.core.take_requests();
    REQUIRE(requests.size() == 1);
    CHECK(requests[0].kind == op_kind::shutdown);
    CHECK_FALSE(m.core.finished());
    m.core.complete(requests[0].op, {});
    auto out = m.written();
    REQUIRE(out.size() == 1);
    CHECK(std::holds_alternative<p::shutdown_complete>(out[0]));
    CHECK(m.core.finished());
}

TEST_CASE("heartbeats carry a growing sequence and the progress counter") {
    master_side m;
    m.connect();
    m.core.tick(10);
    m.core.tick(11);
    auto out = m.written();
    REQUIRE(out.size() == 2);
    CHECK(std::get<p::heartbeat>(out[0]) == p::heartbeat{.seq = 1, .progress = 10});
    CHECK(std::get<p::heartbeat>(out[1]) == p::heartbeat{.seq = 2, .progress = 11});
}

TEST_CASE("a completion dropped without being called is reported, not lost") {
    outcome delivered;
    bool called = false;
    struct recorder final : slave::detail::completion_target {
        outcome* out;
        bool* flag;
        recorder(outcome* o, bool* f) : out(o), flag(f) {}
        void deliver(outcome r) override {
            *out = std::move(r);
            *flag = true;
        }
    };
    { slave::completion<> forgotten(std::make_shared<recorder>(&delivered, &called)); }
    CHECK(called);
    CHECK_FALSE(delivered.ok);
    CHECK(delivered.error.find("dropped") != std::string::npos);
}

TEST_CASE("a (restarted) master gets the last checkpoints again right after the handshake") {
    master_side m;
    m.connect();
    m.deliver(p::start_shard{.shard = 3, .epoch = 4});
    m.core.complete(m.core.take_requests()[0].op, {});
    CHECK(m.core.checkpoint(3, bytes_of("cp")));
    (void)m.written();
    m.core.on_disconnected();
    m.connect();  // reads the hello and the proof
    auto out = m.written();
    REQUIRE(out.size() == 1);
    CHECK(std::get<p::checkpoint>(out[0]) == p::checkpoint{.shard = 3, .epoch = 4, .state = p::bytes_view::of("cp")});
}

TEST_CASE("embedded discovery: the hello announces the mesh node, newer member lists reach the worker") {
    std::vector<std::vector<mesh::peer_record>> lists;
    core_config config = test_config();
    config.mesh = mesh::peer_record{.id = "s0-g1", .type = "bot", .host = "127.0.0.1", .port = 7400, .incarnation = 42,
                                    .values = {{"zone", "eu"}}};
    config.mesh_members = [&](std::vector<mesh::peer_record> others) { lists.push_back(std::move(others)); };
    master_side m(config);
    const auto hello = m.connect();
    REQUIRE(hello.has_mesh_node());
    CHECK(*hello.mesh_host == "127.0.0.1");
    CHECK(*hello.mesh_port == 7400);
    CHECK(*hello.mesh_incarnation == 42);
    CHECK(*hello.mesh_type == "bot");
    REQUIRE(hello.mesh_values);
    CHECK(*hello.mesh_values == p::string_map{{"zone", "eu"}});

    const p::string_map room{{"shards", "0-7"}};
    m.deliver(p::mesh_members{.version = 10,
                              .members = {{.id = "s0-g1", .type = "bot", .host = "127.0.0.1", .port = 7400, .incarnation = 42},
                                          {.id = "s1-g1", .type = "room", .host = "127.0.0.1", .port = 7401,
                                           .incarnation = 43, .values = room}}});
    REQUIRE(lists.size() == 1);
    REQUIRE(lists[0].size() == 1);  // itself left out
    CHECK(lists[0][0] == mesh::peer_record{.id = "s1-g1", .type = "room", .host = "127.0.0.1", .port = 7401,
                                           .incarnation = 43, .values = {{"shards", "0-7"}}});
    // An older list (one that crossed a newer one, say) changes nothing.
    m.deliver(p::mesh_members{.version = 9, .members = {}});
    CHECK(lists.size() == 1);
    m.deliver(p::mesh_members{.version = 11, .members = {}});
    REQUIRE(lists.size() == 2);
    CHECK(lists[1].empty());

    // New values go to the master at once, and into later hellos.
    (void)m.written();
    mesh::peer_record changed = *config.mesh;
    changed.values["load"] = "0.5";
    CHECK(m.core.update_mesh(changed));
    const auto out = m.written();
    REQUIRE(out.size() == 1);
    const auto& update = std::get<p::mesh_update>(out[0]);
    CHECK(update.mesh_values == p::string_map{{"load", "0.5"}, {"zone", "eu"}});
}

namespace {

// Whether `batch` writes exactly `size` state bytes, all from the `size` bytes at `where`, none of
// them copied into its encoded bytes.
bool writes_in_place(const write_batch& batch, const std::byte* where, std::size_t size) {
    std::size_t from_there = 0;
    for (const auto& piece : batch.frames.pieces) {
        if (piece.data.data() < where || piece.data.data() + piece.data.size() > where + size) return false;
        from_there += piece.data.size();
    }
    return from_there == size && batch.frames.size() == batch.frames.bytes.size() + size;
}

}  // namespace

TEST_CASE("states go to the writer from the worker's own buffers: checkpoints and stopped shards, never copied") {
    master_side m;  // 64-byte chunks: the 100-byte states below take a state_chunk and a closing frame
    m.connect();
    m.deliver(p::start_shard{.shard = 1, .epoch = 2});
    m.core.complete(m.core.take_requests().at(0).op, {});
    (void)m.written();

    SUBCASE("a checkpoint handed over as a vector") {
        std::vector<std::byte> state(100, std::byte{'v'});
        const std::byte* where = state.data();
        CHECK(m.core.checkpoint(1, std::move(state)));
        const write_batch batch = m.core.take_batch();
        CHECK(writes_in_place(batch, where, 100));
        // The same bytes on the wire as one buffer would carry (docs/protocol.md's vectors rely on it).
        std::vector<std::byte> expected;
        const std::vector<std::byte> same(100, std::byte{'v'});
        REQUIRE(p::encode_with_state(p::checkpoint{.shard = 1, .epoch = 2}, p::bytes_view(same), expected, 64).has_value());
        CHECK(batch.frames.flatten() == expected);
    }
    SUBCASE("a checkpoint shared with the worker: kept by reference while its batch is written") {
        const auto state = std::make_shared<const std::vector<std::byte>>(100, std::byte{'s'});
        const std::weak_ptr<const std::vector<std::byte>> watch = state;
        CHECK(m.core.checkpoint(1, state));
        std::optional<write_batch> batch = m.core.take_batch();
        CHECK(writes_in_place(*batch, state->data(), 100));
        // A newer checkpoint replaces it in the core; the batch being written still holds it.
        CHECK(m.core.checkpoint(1, bytes_of("newer")));
        CHECK(watch.use_count() == 2);  // the worker's reference and the batch's
        batch.reset();
        CHECK(watch.use_count() == 1);
    }
    SUBCASE("the state handed back by stop_shard") {
        m.deliver(p::stop_shard{.shard = 1, .epoch = 2, .migration_id = 5});
        const auto stop = m.core.take_requests().at(0);
        std::vector<std::byte> state(100, std::byte{'h'});
        const std::byte* where = state.data();
        m.core.complete(stop.op, outcome{.state = std::move(state)});
        CHECK(writes_in_place(m.core.take_batch(), where, 100));
        // Asked again (a master that lost the answer): the kept buffer goes out again, still in place.
        m.deliver(p::stop_shard{.shard = 1, .epoch = 2, .migration_id = 6});
        CHECK(writes_in_place(m.core.take_batch(), where, 100));
    }
}
