// The slave library's network shell (slave_shell.cpp) against a scripted master, over the test
// stream: in 1-byte reads and writes, with an error injected at each read and write in turn, and
// with the connection cut after each byte. What a worker relies on: the library neither crashes nor
// leaks (ASan, UBSan), it reconnects after any fault and finishes the conversation on the next
// connection, and every grant reaches the worker exactly once, in the order the master sent them.
#include "frames.hpp"
#include "slave_shell.hpp"
#include "test_stream.hpp"

#include <meshmaster/protocol/auth.hpp>
#include <meshmaster/protocol/version.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <optional>
#include <span>
#include <set>
#include <string>
#include <vector>

namespace p = meshmaster::protocol;
namespace asio = boost::asio;
using namespace meshmaster;
using namespace meshmaster::shell::testing;

namespace {

const std::string secret = "a secret for the shell tests";
constexpr std::uint32_t shard_count = 4;
constexpr std::uint64_t epoch_of(std::uint32_t shard) { return 10 + shard; }

// One run: a slave whose first connection suffers `first`, and a master that, on each connection,
// authenticates it, grants the shards its hello does not report, waits for them to start, and asks
// it to shut down.
struct run {
    asio::io_context io{1};
    std::vector<std::unique_ptr<test_stream>> peers;  // the master's ends, one per connection
    std::vector<p::shard_epoch> started;              // start_shard calls, in order
    std::vector<std::string> warnings;
    std::size_t handshakes = 0;
    std::vector<bool> shutdown_sent;  // per connection: the master got as far as its shutdown
    std::shared_ptr<slave::slave::impl> client;
    std::optional<std::vector<std::byte>> to_checkpoint;  // shard 0's, once it started
    std::vector<std::vector<std::byte>> checkpoints;       // the checkpoint states the master read

    explicit run(faults first) {
        slave::options o;
        o.slave_id = "s0-g1";
        o.secret = secret;
        o.generation = 1;
        o.reconnect_min = std::chrono::milliseconds(2);
        o.reconnect_max = std::chrono::milliseconds(4);
        o.log = [this](std::string_view level, std::string_view text) {
            if (level != "info") warnings.emplace_back(text);
        };
        slave::handlers h;
        h.start_shard = [this](slave::shard_grant g, slave::completion<> done) {
            started.push_back({g.shard, g.epoch});
            done();
            if (g.shard == 0 && to_checkpoint) client->checkpoint(0, *std::exchange(to_checkpoint, std::nullopt));
        };
        h.shutdown = [](slave::completion<> done) { done(); };
        auto connect = [this, first](asio::any_io_executor ex,
                                     std::chrono::milliseconds timeout) -> asio::awaitable<slave::link_attempt> {
            test_link link = make_link(ex, peers.empty() ? first : faults{});
            peers.push_back(std::move(link.peer));
            shutdown_sent.push_back(false);
            asio::co_spawn(io, master(*peers.back(), peers.size() - 1), asio::detached);
            co_return slave::link_attempt{.link = std::move(link.shell),
                                          .handshake_deadline = std::chrono::steady_clock::now() + timeout};
        };
        client = std::make_shared<slave::slave::impl>(io, std::move(o), std::move(h), connect);
    }

    asio::awaitable<void> master(test_stream& s, std::size_t index) {
        frame_reader in(s);
        const p::nonce nonce = p::random_nonce();
        if (!co_await send(s, p::auth_challenge{.version_major = p::current_version.major,
                                                .version_minor = p::current_version.minor,
                                                .master_id = "scripted",
                                                .nonce = p::bytes_view(nonce)})) {
            co_return;
        }
        auto hello_frame = co_await in.next();
        auto proof_frame = co_await in.next();
        if (!hello_frame || !proof_frame) co_return;
        const auto hello_message = hello_frame->message();
        const auto proof_message = proof_frame->message();
        REQUIRE(hello_message);
        REQUIRE(proof_message);
        const auto& hello = std::get<p::slave_hello>(*hello_message);
        const auto& proof = std::get<p::auth_proof>(*proof_message);
        REQUIRE(p::proofs_equal(p::slave_proof(secret, p::bytes_view(nonce), hello.nonce, hello.slave_id), proof.mac));
        const p::proof mine = p::master_proof(secret, p::bytes_view(nonce), hello.nonce, hello.slave_id);
        if (!co_await send(s, p::welcome{.mac = p::bytes_view(mine), .heartbeat_interval_ms = 5})) co_return;
        ++handshakes;
        std::set<std::uint32_t> waiting;
        for (std::uint32_t shard = 0; shard < shard_count; ++shard) {
            const bool runs = std::any_of(hello.shards.begin(), hello.shards.end(), [&](const p::shard_epoch& e) {
                return e.shard == shard && e.epoch == epoch_of(shard);
            });
            if (runs) continue;
            if (!co_await send(s, p::start_shard{.shard = shard, .epoch = epoch_of(shard), .shard_count = shard_count})) {
                co_return;
            }
            waiting.insert(shard);
        }
        std::uint64_t last_heartbeat = 0;
        while (!waiting.empty()) {
            auto f = co_await in.next();
            if (!f) co_return;
            const auto m = f->message();
            REQUIRE(m);
            if (const auto* started_ack = std::get_if<p::shard_started>(&*m)) {
                CHECK(waiting.erase(started_ack->shard) == 1);  // each acknowledged once
            } else if (const auto* beat = std::get_if<p::heartbeat>(&*m)) {
                CHECK(beat->seq > last_heartbeat);  // in order, none twice
                last_heartbeat = beat->seq;
            } else if (const auto* cp = std::get_if<p::checkpoint>(&*m)) {
                checkpoints.emplace_back(cp->state.begin(), cp->state.end());
            }
        }
        shutdown_sent[index] = true;
        if (!co_await send(s, p::shutdown{.reason = "the test is over"})) co_return;
        while (true) {
            auto f = co_await in.next();
            if (!f) co_return;
            const auto m = f->message();
            REQUIRE(m);
            if (std::holds_alternative<p::shutdown_complete>(*m)) break;
            if (const auto* cp = std::get_if<p::checkpoint>(&*m)) checkpoints.emplace_back(cp->state.begin(), cp->state.end());
        }
        s.close();
    }

    void go() {
        client->start();
        io.run_for(std::chrono::seconds(60));  // generous: a run takes milliseconds
    }

    /// What must hold after any run.
    void check(const std::string& what) {
        INFO(what);
        CHECK(client->finished());  // the conversation was finished, on some connection
        // Every grant reached the worker exactly once, in the order the master sent them.
        std::vector<p::shard_epoch> expected;
        for (std::uint32_t shard = 0; shard < shard_count; ++shard) expected.push_back({shard, epoch_of(shard)});
        CHECK(started == expected);
        REQUIRE_FALSE(peers.empty());
        if (peers.front()->fault_struck() && !shutdown_sent.front()) {
            // A fault on the first connection before its end: logged, and the slave came back on a
            // second one.
            CHECK(peers.size() >= 2);
            CHECK_FALSE(warnings.empty());
        }
    }
};

}  // namespace

TEST_CASE("slave client: the whole conversation in one-byte reads and writes") {
    run r(faults{.read_size = 1, .write_size = 1});
    r.go();
    r.check("1-byte reads and writes");
    CHECK(r.peers.size() == 1);  // no fault: one connection
    CHECK(r.handshakes == 1);
}

TEST_CASE("slave client: an error at each read and write in turn, then a reconnect that finishes") {
    std::size_t operations = 0;
    {
        run clean(faults{.read_size = 1, .write_size = 1});
        clean.go();
        operations = clean.peers.front()->shell_operations();
    }
    REQUIRE(operations > 10);
    for (std::size_t at = 0; at <= operations; ++at) {
        run r(faults{.read_size = 1, .write_size = 1, .fail_at = at});
        r.go();
        r.check("error injected at operation " + std::to_string(at));
        if (at < operations / 2) CHECK(r.peers.front()->fault_struck());
    }
}

TEST_CASE("slave client: the connection cut after each byte, then a reconnect that finishes") {
    std::size_t bytes = 0;
    {
        run clean(faults{.read_size = 7, .write_size = 5});
        clean.go();
        bytes = clean.peers.front()->shell_bytes();
    }
    REQUIRE(bytes > 100);
    for (std::size_t cut = 1; cut <= bytes; ++cut) {
        run r(faults{.read_size = 7, .write_size = 5, .cut_after = cut});
        r.go();
        r.check("cut after byte " + std::to_string(cut));
        if (cut < bytes / 2) CHECK(r.peers.front()->fault_struck());
    }
}

TEST_CASE("slave client: a checkpoint's state goes to the stream from the worker's buffer, not a copy") {
    // 5000 bytes, a checkpoint of a typical bot: the library moves the vector along and writes it
    // behind its separately encoded header (a gathered write), so the stream sees that very memory.
    run r(faults{});
    std::vector<std::byte> state(5000);
    for (std::size_t i = 0; i < state.size(); ++i) state[i] = static_cast<std::byte>(i * 13);
    const std::vector<std::byte> expected = state;
    const std::byte* where = state.data();
    r.to_checkpoint = std::move(state);
    r.go();
    r.check("a checkpoint");
    REQUIRE(r.checkpoints.size() == 1);
    CHECK(r.checkpoints[0] == expected);
    const auto& pieces = r.peers.front()->shell_gathered();
    CHECK(std::any_of(pieces.begin(), pieces.end(), [&](std::span<const std::byte> piece) {
        return piece.data() == where && piece.size() == expected.size();
    }));
}

TEST_CASE("slave client: a master that never finishes the handshake is given up at the deadline, and retried") {
    // The first master sends its challenge and then nothing: the handshake deadline (awaited, not
    // polled) ends that connection and the slave connects again.
    run r(faults{});
    auto silent = r.client->connect;
    bool first = true;
    r.client->connect = [&](asio::any_io_executor ex, std::chrono::milliseconds) -> asio::awaitable<slave::link_attempt> {
        if (!first) co_return co_await silent(ex, std::chrono::milliseconds(5000));
        first = false;
        test_link link = make_link(ex);
        r.peers.push_back(std::move(link.peer));
        co_return slave::link_attempt{.link = std::move(link.shell),
                                      .handshake_deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(20)};
    };
    r.go();
    CHECK(r.client->finished());
    REQUIRE(r.peers.size() >= 2);
    CHECK(std::count(r.warnings.begin(), r.warnings.end(), "the master did not complete the handshake in time") == 1);
    CHECK(r.peers.front()->peer_ended());  // the slave closed the silent connection
}
