// Real mesh nodes on 127.0.0.1 (UDP, ephemeral ports), so that the Asio driver runs under ASan +
// UBSan in the sanitizer tree: requests and their one outcome, reliable and unreliable sends,
// sends to many, static discovery, going offline, destruction with work pending, and a lossy
// network (every n-th datagram dropped) repaired by retransmissions and retries. No timing
// asserts: each wait has a liveness limit far above what it needs.
#include <meshmaster/mesh/node.hpp>

#include <doctest/doctest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace mm = meshmaster::mesh;
namespace asio = boost::asio;
using namespace std::chrono_literals;

namespace {

constexpr auto liveness = 120s;  // every wait below needs a few seconds at most, under ASan on a busy machine
const std::string key = "unit-test-mesh-key-0123456789";

mm::bytes text(std::string_view s) {
    mm::bytes b(s.size());
    for (std::size_t i = 0; i < s.size(); ++i) b[i] = std::byte(static_cast<unsigned char>(s[i]));
    return b;
}
std::string str(std::span<const std::byte> b) { return {reinterpret_cast<const char*>(b.data()), b.size()}; }

// Runs the io_context until `done()` holds (true) or the liveness limit passes (false).
bool pump_until(asio::io_context& io, const std::function<bool()>& done) {
    const auto limit = std::chrono::steady_clock::now() + liveness;
    while (!done() && std::chrono::steady_clock::now() < limit) io.run_one_for(100ms);
    return done();
}

// Runs `task` on `io` to its end; its result.
template <class T>
T run(asio::io_context& io, asio::awaitable<T> task) {
    std::optional<T> result;
    std::exception_ptr error;
    asio::co_spawn(io, std::move(task), [&](std::exception_ptr e, T v) {
        error = e;
        result = std::move(v);
    });
    REQUIRE(pump_until(io, [&] { return result.has_value() || error; }));
    if (error) std::rethrow_exception(error);
    return std::move(*result);
}

struct cluster {
    asio::io_context io;
    std::vector<std::unique_ptr<mm::node>> nodes;
    std::vector<mm::membership_event> events;

    mm::node& add(std::string id, std::size_t drop_every = 0, std::vector<std::string> static_peers = {}) {
        auto n = std::make_unique<mm::node>(io.get_executor(),
                                            mm::node_options{.id = std::move(id), .type = "test", .secret = key,
                                                             .keepalive = 100ms, .offline_after = 1000ms, .drain_timeout = 2000ms,
                                                             .static_peers = std::move(static_peers),
                                                             .test_drop_every = drop_every});
        REQUIRE_FALSE(n->start());
        n->on_membership([this](const mm::membership_event& e) { events.push_back(e); });
        nodes.push_back(std::move(n));
        return *nodes.back();
    }
    // Every node learns every other, as discovery would report them.
    void introduce() {
        for (auto& a : nodes) {
            for (auto& b : nodes) {
                if (a != b) a->peer_up(b->self());
            }
        }
    }
};

void serve_echo(mm::node& n) {
    n.command(1, [](const mm::incoming& in) { return mm::reply::respond(in.payload); });
    n.command(2, [](const mm::incoming& in) { return mm::reply::fail("refused: " + str(in.payload)); });
    n.command(3, [](const mm::incoming&) { return mm::reply::nothing(); });
}

// Sends 0..n-1 reliably from `from` to `to` on command 10, checks every send was accepted, and
// that `got` (filled by `to`'s handler) then holds them all, once each, in order.
void send_in_order(cluster& c, mm::node& from, const std::string& to, int n, const std::vector<int>& got) {
    auto sender = [&]() -> asio::awaitable<bool> {
        for (int i = 0; i < n; ++i) {
            if (!co_await from.send(to, 10, text(std::to_string(i)))) co_return false;
        }
        co_return true;
    };
    CHECK(run(c.io, sender()));
    REQUIRE(pump_until(c.io, [&] { return got.size() >= static_cast<std::size_t>(n); }));
    for (int i = 0; i < n; ++i) REQUIRE(got[static_cast<std::size_t>(i)] == i);
}

}  // namespace

TEST_CASE("requests between real nodes: response, error, no handler, unknown node, timeout") {
    cluster c;
    auto& a = c.add("a");
    auto& b = c.add("b");
    c.introduce();
    serve_echo(b);
    b.command(4, [&](mm::incoming in) -> asio::awaitable<mm::reply> {
        co_await asio::post(c.io, asio::use_awaitable);  // an async handler: answers later
        co_return mm::reply::respond(text("later:" + str(in.payload)));
    });

    auto o = run(c.io, a.request("b", 1, text("hello")));
    CHECK(o.ok());
    CHECK(str(o.body) == "hello");
    o = run(c.io, a.request("b", 2, text("x")));
    CHECK(o.what == mm::outcome::kind::error);
    CHECK(o.message == "refused: x");
    o = run(c.io, a.request("b", 4, text("y")));
    CHECK(str(o.body) == "later:y");
    o = run(c.io, a.request("b", 99, {}));
    CHECK(o.what == mm::outcome::kind::error);
    CHECK(o.message == "no handler for command 99");
    o = run(c.io, a.request("nobody", 1, {}));
    CHECK(o.what == mm::outcome::kind::stopped);
    o = run(c.io, a.request("b", 3, {}, 100ms, 1));  // left unanswered: a timeout, after one retry
    CHECK(o.what == mm::outcome::kind::timeout);

    // The status command, answered by the node itself.
    o = run(c.io, a.request("b", mm::node::status_command, {}));
    REQUIRE(o.ok());
    CHECK(str(o.body).find("\"id\":\"a\"") != std::string::npos);
    CHECK(b.status().size() == 1);
    CHECK(a.is_online("b"));
    CHECK(a.nodes_by_type("test").size() == 1);
}

TEST_CASE("reliable sends arrive once and in order; sends to many are acknowledged") {
    cluster c;
    auto& a = c.add("a");
    auto& b = c.add("b");
    auto& d = c.add("d");
    c.introduce();
    std::vector<int> got_b, got_d;
    b.command(10, [&](const mm::incoming& in) {
        got_b.push_back(std::stoi(str(in.payload)));
        return mm::reply::nothing();
    });
    d.command(10, [&](const mm::incoming& in) {
        got_d.push_back(std::stoi(str(in.payload)));
        return mm::reply::nothing();
    });
    send_in_order(c, a, "b", 2000, got_b);
    CHECK(a.try_send("nobody", 10, text("x")) == mm::node::send_result::no_peer);

    got_b.clear();
    CHECK(run(c.io, a.send_many({"b", "d", "nobody"}, 10, text("7"), 1)) == 2);
    CHECK(got_b == std::vector<int>{7});
    CHECK(got_d == std::vector<int>{7});
    // Unreliable sends: accepted and sent; on loopback they normally arrive, but may not.
    CHECK(a.usend("b", 10, text("8")));
    CHECK(run(c.io, a.usend_many({"b", "d"}, 10, text("9"), 1)) == 2);
}

TEST_CASE("a lossy network: every 3rd datagram dropped, every message still arrives once, in order") {
    cluster c;
    auto& a = c.add("a", 3);
    auto& b = c.add("b", 5);
    c.introduce();
    serve_echo(b);
    std::vector<int> got;
    int runs = 0;
    b.command(10, [&](const mm::incoming& in) {
        got.push_back(std::stoi(str(in.payload)));
        return mm::reply::nothing();
    });
    b.command(11, [&](const mm::incoming& in) {
        ++runs;  // a retried request runs its handler once
        return mm::reply::respond(in.payload);
    });
    send_in_order(c, a, "b", 100, got);
    for (int i = 0; i < 10; ++i) {
        const auto o = run(c.io, a.request("b", 11, text(std::to_string(i)), 2000ms, 5));
        REQUIRE(o.ok());
        CHECK(str(o.body) == std::to_string(i));
    }
    CHECK(runs == 10);
    CHECK(a.status().front().retransmitted > 0);
}

TEST_CASE("static discovery: knowing one address is enough for both sides to become members") {
    cluster c;
    auto& a = c.add("a");
    auto& s = c.add("s", 0, {"127.0.0.1:" + std::to_string(a.port()), "not-an-address"});
    REQUIRE(pump_until(c.io, [&] { return a.is_online("s") && s.is_online("a"); }));
    CHECK(a.nodes().size() == 1);
    CHECK(s.nodes().size() == 1);
}

TEST_CASE("going offline: peers see it, requests to it stop, and it ends with nothing pending") {
    cluster c;
    auto& a = c.add("a");
    auto& b = c.add("b");
    c.introduce();
    serve_echo(a);
    serve_echo(b);
    REQUIRE(run(c.io, a.request("b", 1, text("x"))).ok());
    bool offline_done = false;
    asio::co_spawn(c.io, b.go_offline(), [&](std::exception_ptr) { offline_done = true; });
    REQUIRE(pump_until(c.io, [&] { return offline_done; }));
    CHECK_FALSE(b.is_self_online());
    REQUIRE(pump_until(c.io, [&] { return !a.is_online("b"); }));
    const auto o = run(c.io, a.request("b", 1, text("x")));
    CHECK(o.what == mm::outcome::kind::stopped);
    CHECK(run(c.io, b.request("a", 1, text("x"))).what == mm::outcome::kind::stopped);
    CHECK_FALSE(run(c.io, a.send("b", 1, text("x"))));
    bool saw_offline = false;
    for (const auto& e : c.events) saw_offline |= e.node == "b" && e.what == mm::membership_event::kind::offline;
    CHECK(saw_offline);
    // A peer discovery reports gone leaves.
    a.peer_down("b");
    CHECK(a.nodes().empty());
}

TEST_CASE("destroying a node with requests and sends waiting completes them as stopped") {
    cluster c;
    auto& a = c.add("a");
    auto& b = c.add("b");
    c.introduce();
    serve_echo(b);
    std::optional<mm::outcome> pending;
    asio::co_spawn(c.io, a.request("b", 3, {}, 30s), [&](std::exception_ptr, mm::outcome o) { pending = std::move(o); });
    // Let the request leave, then destroy its node while it waits.
    REQUIRE(run(c.io, b.request("a", mm::node::status_command, {})).ok());
    c.nodes.front().reset();
    REQUIRE(pump_until(c.io, [&] { return pending.has_value(); }));
    CHECK(pending->what == mm::outcome::kind::stopped);
    CHECK(pending->message == "the node was destroyed");
}
