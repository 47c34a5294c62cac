// The HTTP server (http_server.cpp) on loopback, with a host played by the test: keep-alive, the
// connection limit, a Content-Length past the body limit, the header deadline, and a streaming
// response (what Server-Sent Events are built on) that ends when its handler returns or when the
// server closes. Under ASan + UBSan: sessions end and are forgotten however they end.
#include "http_server.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <doctest/doctest.h>

#include <string>
#include <vector>

namespace asio = boost::asio;
using asio::ip::tcp;
using namespace meshmaster::master;
using namespace std::chrono_literals;

namespace {

constexpr auto tuple_awaitable = asio::as_tuple(asio::use_awaitable);

struct host final : http::server_host {
    asio::io_context& io;
    http::limits lim{.max_header = 1024, .max_body = 1024, .max_connections = 4, .header_timeout = 200ms, .idle_timeout = 300ms};
    std::vector<std::string> refusals;
    int streamed_writes = 0;
    bool stream_saw_stop = false;
    explicit host(asio::io_context& io) : io(io) {}

    asio::awaitable<http::response> handle(const http::request& req, const std::string&) override {
        if (req.target() == "/stream") {
            http::response r{.content_type = "text/event-stream"};
            r.stream = [this](http::stream_writer& w) -> asio::awaitable<void> {
                for (int i = 0; i < 3; ++i) {
                    if (!co_await w.write("id: " + std::to_string(i) + "\ndata: {}\n\n")) co_return;
                    ++streamed_writes;
                }
            };
            co_return r;
        }
        if (req.target() == "/forever") {
            http::response r{.content_type = "text/event-stream"};
            r.stream = [this](http::stream_writer& w) -> asio::awaitable<void> {
                asio::steady_timer t(io);
                while (!w.stopping()) {
                    if (!co_await w.write(": keep-alive\n\n")) break;
                    t.expires_after(10ms);
                    co_await t.async_wait(tuple_awaitable);
                }
                stream_saw_stop = true;
            };
            co_return r;
        }
        co_return http::response{.body = "{\"echo\":\"" + std::string(req.target()) + "\"}"};
    }
    void refused(std::string_view reason, const std::string&, std::string_view) override { refusals.emplace_back(reason); }
    http::limits http_limits() const override { return lim; }
};

struct fixture {
    asio::io_context io{1};
    host h{io};
    http::server server{io.get_executor(), h};
    tcp::acceptor acceptor{io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)};
    fixture() { asio::co_spawn(io, server.accept(acceptor, nullptr), asio::detached); }

    // Sends `request` (in pieces, `pause` apart when given) and reads until the server closes.
    asio::awaitable<std::string> exchange(std::vector<std::string> pieces, std::chrono::milliseconds pause = 0ms) {
        tcp::socket s(io);
        co_await s.async_connect(acceptor.local_endpoint(), tuple_awaitable);
        asio::steady_timer t(io);
        for (const auto& piece : pieces) {
            auto [ec, n] = co_await asio::async_write(s, asio::buffer(piece), tuple_awaitable);
            if (ec) break;
            if (pause > 0ms) {
                t.expires_after(pause);
                co_await t.async_wait(tuple_awaitable);
            }
        }
        std::string all;
        char buf[4096];
        while (true) {
            auto [ec, n] = co_await s.async_read_some(asio::buffer(buf), tuple_awaitable);
            all.append(buf, n);
            if (ec) break;
        }
        co_return all;
    }

    std::string run_one(std::vector<std::string> pieces, std::chrono::milliseconds pause = 0ms) {
        std::string out;
        asio::co_spawn(io, [&]() -> asio::awaitable<void> {
            out = co_await exchange(std::move(pieces), pause);
            acceptor.close();
            server.close_all();
        }, asio::detached);
        io.run();
        return out;
    }
};

std::size_t count(const std::string& text, std::string_view what) {
    std::size_t n = 0;
    for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
    return n;
}

}  // namespace

TEST_CASE("keep-alive: two requests on one connection, each answered with its length") {
    fixture f;
    const auto out = f.run_one({std::string("GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")});
    CHECK(count(out, "HTTP/1.1 200 OK") == 2);
    CHECK(out.find("{\"echo\":\"/a\"}") != std::string::npos);
    CHECK(out.find("{\"echo\":\"/b\"}") != std::string::npos);
    CHECK(f.h.refusals.empty());
    CHECK(f.server.connections() == 0);
}

TEST_CASE("a streaming response: headers without a length, every piece the handler writes, then the close") {
    fixture f;
    const auto out = f.run_one({std::string("GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")});
    CHECK(out.find("HTTP/1.1 200 OK") == 0);
    CHECK(out.find("Content-Type: text/event-stream") != std::string::npos);
    CHECK(out.find("Connection: close") != std::string::npos);
    CHECK(out.find("Content-Length") == std::string::npos);
    CHECK(out.find("id: 0\ndata: {}\n\nid: 1\ndata: {}\n\nid: 2\ndata: {}\n\n") != std::string::npos);
    CHECK(f.h.streamed_writes == 3);
}

TEST_CASE("a stream that never ends sees the server stop, and its session is forgotten") {
    fixture f;
    std::string out;
    asio::co_spawn(f.io, [&]() -> asio::awaitable<void> {
        asio::steady_timer t(f.io);
        t.expires_after(100ms);
        co_await t.async_wait(tuple_awaitable);
        CHECK(f.server.connections() == 1);
        f.acceptor.close();
        f.server.close_all();
    }, asio::detached);
    const std::vector<std::string> forever{"GET /forever HTTP/1.1\r\nHost: x\r\n\r\n"};
    asio::co_spawn(f.io, [&]() -> asio::awaitable<void> { out = co_await f.exchange(forever); }, asio::detached);
    f.io.run();
    CHECK(count(out, ": keep-alive\n\n") >= 1);
    CHECK(f.h.stream_saw_stop);
    CHECK(f.server.connections() == 0);
}

TEST_CASE("a Content-Length past the body limit is 413 from the headers, the body never awaited") {
    fixture f;
    const auto out = f.run_one({std::string("POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 1073741824\r\n\r\n")});
    CHECK(out.find("HTTP/1.1 413") == 0);
    CHECK(out.find("http.max_body") != std::string::npos);
    CHECK(f.h.refusals == std::vector<std::string>{"http_body_too_large"});
}

TEST_CASE("headers past the header limit are 431; a request that is not HTTP is 400") {
    fixture f;
    CHECK(f.run_one({"GET / HTTP/1.1\r\nX: " + std::string(4000, 'a') + "\r\n\r\n"}).find("HTTP/1.1 431") == 0);
    fixture g;
    CHECK(g.run_one({std::string("NOT HTTP\r\n\r\n")}).find("HTTP/1.1 400") == 0);
    CHECK(g.h.refusals == std::vector<std::string>{"http_bad_request"});
}

TEST_CASE("slowloris: headers still incomplete at the header deadline cut the connection") {
    fixture f;
    std::vector<std::string> bytes;
    for (char c : std::string("GET / HTTP/1.1\r\nHost: slow\r\n\r\n")) bytes.emplace_back(1, c);
    const auto out = f.run_one(bytes, 40ms);  // about 1.2 s to send, the deadline is 200 ms
    CHECK(out.find("HTTP/1.1 200") == std::string::npos);
    CHECK(f.h.refusals == std::vector<std::string>{"http_timeout"});
}

TEST_CASE("past max_connections a connection is answered 503 and closed, without a session") {
    fixture f;
    f.h.lim.max_connections = 1;
    std::string held, refused;
    const std::string req = "GET /forever HTTP/1.1\r\nHost: x\r\n\r\n";
    const std::vector<std::string> second{"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"};
    asio::co_spawn(f.io, [&]() -> asio::awaitable<void> {
        // The first one holds its slot by streaming; the second is refused meanwhile.
        tcp::socket first(f.io);
        co_await first.async_connect(f.acceptor.local_endpoint(), tuple_awaitable);
        co_await asio::async_write(first, asio::buffer(req), tuple_awaitable);
        char buf[256];
        auto [ec, n] = co_await first.async_read_some(asio::buffer(buf), tuple_awaitable);
        held.assign(buf, n);
        refused = co_await f.exchange(second);
        f.acceptor.close();
        f.server.close_all();
    }, asio::detached);
    f.io.run();
    CHECK(held.find("HTTP/1.1 200") == 0);
    CHECK(refused.find("HTTP/1.1 503") == 0);
    CHECK(refused.find("http.max_connections") != std::string::npos);
    CHECK(f.h.refusals == std::vector<std::string>{"http_too_many_connections"});
    CHECK(f.server.connections() == 0);
}
