// The master's slave server (slave_server.cpp, slave_writes.cpp) against a scripted slave, over
// the test stream: in 1-byte reads and writes, with an error injected at each read and write in
// turn, and with the connection cut after each byte. What the operator relies on: the master neither
// crashes nor leaks (ASan, UBSan); a connection that fails is closed and forgotten, the supervisor
// hears of it exactly once (the slave is disconnected, its shards are the core's to handle), and
// the slave's frames reach the supervisor once each, in order.
#include "frames.hpp"
#include "slave_connection.hpp"
#include "slave_server.hpp"
#include "test_stream.hpp"

#include <meshmaster/master/supervisor.hpp>
#include <meshmaster/protocol/auth.hpp>
#include <meshmaster/protocol/version.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

namespace p = meshmaster::protocol;
namespace asio = boost::asio;
using namespace meshmaster;
using namespace meshmaster::master;
using namespace meshmaster::shell::testing;

namespace {

constexpr std::uint32_t shard_count = 2;
constexpr int heartbeats = 3;

// The daemon's part, played by the test: a real supervisor, its actions carried out on the server.
struct run final : slave_server_host {
    asio::io_context io{1};
    supervisor core{supervisor_config{.shard_count = shard_count, .slave_count = 1, .spawn_slaves = false}};
    session_settings session{.master_id = "master-under-test", .secret = "server-secret-0123456789"};
    limits limit{.max_connections = 4, .max_output = 1 << 20, .handshake_timeout = std::chrono::milliseconds(10'000)};
    slave_server server{io.get_executor(), *this};
    std::unique_ptr<test_stream> peer;
    std::vector<event_record> records;
    std::vector<p::start_shard> grants;  // as the scripted slave received them
    bool slave_done = false;              // the scripted slave got through its whole part

    explicit run(faults f, bool with_slave = true) {
        core.start(mono_time{}, std::chrono::milliseconds(0));
        carry_out();
        if (!with_slave) return;
        test_link link = make_link(io.get_executor(), f);
        peer = std::move(link.peer);
        server.serve(std::move(link.shell), "192.0.2.7:5000");
        asio::co_spawn(io, slave(*peer), asio::detached);
    }

    // Authenticates, starts what it is granted, sends heartbeats, and leaves.
    asio::awaitable<void> slave(test_stream& s) {
        frame_reader in(s);
        auto challenge_frame = co_await in.next();
        if (!challenge_frame) co_return;
        const auto challenge_message = challenge_frame->message();
        REQUIRE(challenge_message);
        const auto& challenge = std::get<p::auth_challenge>(*challenge_message);
        const p::nonce nonce = p::random_nonce();
        if (!co_await send(s, p::slave_hello{.version_major = p::current_version.major,
                                             .version_minor = p::current_version.minor,
                                             .slave_id = "w1",
                                             .pid = 4242,
                                             .nonce = p::bytes_view(nonce)})) {
            co_return;
        }
        const p::proof mac = p::slave_proof(session.secret, challenge.nonce, p::bytes_view(nonce), "w1");
        if (!co_await send(s, p::auth_proof{.mac = p::bytes_view(mac)})) co_return;
        std::uint32_t started = 0;
        while (started < shard_count) {
            auto f = co_await in.next();
            if (!f) co_return;
            const auto m = f->message();
            REQUIRE(m);
            if (const auto* g = std::get_if<p::start_shard>(&*m)) {
                grants.push_back(*g);
                if (!co_await send(s, p::shard_started{.shard = g->shard, .epoch = g->epoch})) co_return;
                ++started;
            }
        }
        for (int i = 1; i <= heartbeats; ++i) {
            if (!co_await send(s, p::heartbeat{.seq = static_cast<std::uint64_t>(i), .progress = static_cast<std::uint64_t>(i)})) {
                co_return;
            }
        }
        slave_done = true;
        s.shutdown();  // and leaves: the master reads the end
    }

    void carry_out() {
        for (action& a : core.take_actions()) {
            if (auto* log = std::get_if<actions::log_event>(&a)) {
                records.push_back(log->record);
            } else if (auto* frames = std::get_if<actions::send_frame>(&a)) {
                server.write(frames->connection, frames->frames);
            } else if (auto* close = std::get_if<actions::close_connection>(&a)) {
                server.close(close->connection, close->code, close->message);
            }
        }
    }

    // --- slave_server_host ---
    void to_core(const std::function<void(supervisor&, mono_time)>& input) override {
        input(core, mono_time{});
        carry_out();
    }
    const supervisor_config& core_config() const override { return core.config(); }
    void record_event(event_record r) override { records.push_back(std::move(r)); }
    void warn(std::string_view, std::string_view) override {}
    limits server_limits() const override { return limit; }
    const session_settings& settings() const override { return session; }

    std::size_t logged(std::string_view event) const {
        return static_cast<std::size_t>(
            std::count_if(records.begin(), records.end(), [&](const event_record& r) { return r.event == event; }));
    }

    void go() { io.run_for(std::chrono::seconds(60)); }  // generous: a run takes milliseconds

    /// What must hold after any run.
    void check(const std::string& what) {
        INFO(what);
        CHECK(server.size() == 0);  // the connection ended, closed and forgotten
        CHECK(peer->peer_ended());  // the master's side is closed
        const bool joined = logged("slave_connected") + logged("slave_joined") > 0;
        // The supervisor hears of the end exactly once, if it heard of the slave at all.
        CHECK(logged("slave_disconnected") + logged("slave_lost") == (joined ? 1u : 0u));
        // Each grant's acknowledgement reached it once: a shard started once, in the order granted.
        std::vector<std::uint32_t> granted, started;
        for (const auto& g : grants) granted.push_back(g.shard);
        for (const auto& r : records) {
            if (r.event == "shard_started" && r.shard) started.push_back(*r.shard);
        }
        CHECK(started.size() <= granted.size());
        CHECK(std::equal(started.begin(), started.end(), granted.begin()));
        CHECK(logged("stale_ack_ignored") == 0);
        CHECK(logged("frame_refused") == 0);  // faults lose bytes, they never garble them
        for (const auto& s : core.status(mono_time{}).slaves) CHECK_FALSE(s.connected);
    }
};

}  // namespace

TEST_CASE("slave server: a whole session in one-byte reads and writes") {
    run r(faults{.read_size = 1, .write_size = 1});
    r.go();
    r.check("1-byte reads and writes");
    CHECK(r.slave_done);
    CHECK(r.grants.size() == shard_count);
    CHECK(r.logged("shard_started") == shard_count);
}

TEST_CASE("slave server: an error at each read and write in turn closes the connection cleanly") {
    std::size_t operations = 0;
    {
        run clean(faults{.read_size = 1, .write_size = 1});
        clean.go();
        REQUIRE(clean.slave_done);
        operations = clean.peer->shell_operations();
    }
    REQUIRE(operations > 10);
    for (std::size_t at = 0; at <= operations; ++at) {
        run r(faults{.read_size = 1, .write_size = 1, .fail_at = at});
        r.go();
        r.check("error injected at operation " + std::to_string(at));
        if (at < operations) CHECK(r.peer->fault_struck());
    }
}

TEST_CASE("slave server: the connection cut after each byte closes it cleanly") {
    std::size_t bytes = 0;
    {
        run clean(faults{.read_size = 3, .write_size = 2});
        clean.go();
        REQUIRE(clean.slave_done);
        bytes = clean.peer->shell_bytes();
    }
    REQUIRE(bytes > 100);
    for (std::size_t cut = 1; cut <= bytes; ++cut) {
        run r(faults{.read_size = 3, .write_size = 2, .cut_after = cut});
        r.go();
        r.check("cut after byte " + std::to_string(cut));
        CHECK(r.peer->fault_struck());
    }
}

TEST_CASE("slave server: a peer that never authenticates is closed at the handshake deadline, with a reason") {
    run r(faults{}, false);
    r.limit.handshake_timeout = std::chrono::milliseconds(20);
    // A peer that says nothing: the deadline (awaited beside the read, not polled) ends it.
    test_link link = make_link(r.io.get_executor());
    auto silent = std::move(link.peer);
    r.server.serve(std::move(link.shell), "192.0.2.8:5000");
    r.go();
    CHECK(r.server.size() == 0);
    CHECK(r.logged("handshake_timeout") == 1);
    CHECK(silent->peer_ended());
    // It was told why before the close: the challenge, then a fatal handshake_timeout error frame.
    p::frame_decoder decoder;
    decoder.feed(silent->take());
    std::vector<std::string> codes;
    while (true) {
        auto f = decoder.next();
        REQUIRE(f.has_value());
        if (!*f) break;
        auto m = p::decode(**f);
        REQUIRE(m.has_value());
        if (const auto* e = std::get_if<p::error_message>(&*m)) codes.emplace_back(e->code);
    }
    CHECK(codes == std::vector<std::string>{"handshake_timeout"});
}
