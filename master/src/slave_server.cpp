// The slave server's accepting and reading side (slave_server.hpp): accepts slaves on the listening
// port (up to limits.max_connections), runs each connection's TLS handshake and its handshake
// deadline, and its read loop into the sans-I/O slave_session, until the connection ends (its write
// queue and closing: slave_writes.cpp). Thread safety: none; every coroutine runs on the server's
// executor, and a connection lives while one of them holds it.
#include "slave_connection.hpp"

#include <meshmaster/shell/asio_byte_stream.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <fmt/format.h>

namespace meshmaster::master {

namespace asio = boost::asio;
namespace ssl = asio::ssl;
using asio::use_awaitable;
using asio::ip::tcp;
using namespace asio::experimental::awaitable_operators;
using std::chrono::milliseconds;

namespace {

constexpr auto tuple_awaitable = asio::as_tuple(use_awaitable);

}  // namespace

slave_server::slave_server(asio::any_io_executor executor, slave_server_host& host)
    : executor_(std::move(executor)), host_(host) {}

slave_server::~slave_server() = default;

std::shared_ptr<connection> slave_server::find(connection_id id) {
    auto it = connections_.find(id);
    return it == connections_.end() ? nullptr : it->second;
}

void slave_server::close(connection_id id, const std::string& code, const std::string& message) {
    if (auto c = find(id)) c->session.close(code, message);
}

asio::awaitable<void> slave_server::accept(tcp::acceptor& acceptor, ssl::context* tls) {
    while (true) {
        auto [ec, socket] = co_await acceptor.async_accept(tuple_awaitable);
        if (ec) {
            if (ec == asio::error::operation_aborted) co_return;
            host_.warn("accept failed", ec.message());
            continue;
        }
        boost::system::error_code ignored;
        const auto remote = socket.remote_endpoint(ignored);
        const std::string peer = fmt::format("{}:{}", remote.address().to_string(), remote.port());
        const auto limits = host_.server_limits();
        if (connections_.size() >= limits.max_connections) {
            host_.record_event({.event = event_kind::connection_refused,
                             .reason = fmt::format("connection limit (limits.max_connections = {}) reached", limits.max_connections),
                             .address = peer});
            socket.close(ignored);
            continue;
        }
        socket.set_option(tcp::no_delay(true), ignored);
        std::unique_ptr<shell::byte_stream> link;
        if (tls) {
            link = std::make_unique<shell::tls_byte_stream>(std::move(socket), *tls, ssl::stream_base::server);
        } else {
            link = std::make_unique<shell::tcp_byte_stream>(std::move(socket));
        }
        serve(std::move(link), peer);
    }
}

void slave_server::serve(std::unique_ptr<shell::byte_stream> link, std::string peer) {
    auto c = std::make_shared<connection>(next_connection_++, std::move(link), std::move(peer), host_.settings(), *this);
    connections_[c->session.id()] = c;
    asio::co_spawn(executor_, session(c), asio::detached);
}

// Reads what is available and hands it to the session; false when the connection ended.
// Unauthenticated peers get small reads: a flood of them must not cost the master much memory.
asio::awaitable<bool> slave_server::read_some(const std::shared_ptr<connection>& c) {
    auto space = c->session.read_buffer();
    const shell::io_result r = co_await c->link->read_some(space);
    if (r.ec) co_return false;
    c->session.received(r.bytes);
    co_return true;
}

bool slave_server::reading(const std::shared_ptr<connection>& c) const {
    return !c->closing && !c->session.closing();
}

slave_server::awaitable slave_server::session(std::shared_ptr<connection> c) {
    co_await (handshake(c) || handshake_deadline(c));
    while (c->session.authenticated() && reading(c)) {
        const bool more = co_await read_some(c);
        if (!more) break;
    }
    // A refusal flushes its error frame before the socket closes; do not cut it short.
    co_await written(c, milliseconds(1000));
    c->link->close();
    connections_.erase(c->session.id());
    c->session.closed();
}

// The TLS handshake (if on), then the challenge, hello, proof and welcome: all within the one
// handshake deadline. (g++ 12 miscompiles some co_await inside conditions: each gets a
// statement of its own.)
slave_server::awaitable slave_server::handshake(std::shared_ptr<connection> c) {
    if (c->link->secured()) {
        const boost::system::error_code ec = co_await c->link->handshake();
        if (ec) {
            // operation_aborted: the deadline cut it, and handshake_timeout says so.
            if (ec != asio::error::operation_aborted) {
                host_.record_event({.event = event_kind::tls_handshake_failed, .slave = c->session.name(),
                                 .reason = fmt::format("tls handshake failed: {}", ec.message()),
                                 .address = c->session.peer()});
            }
            co_return;
        }
    }
    c->ready = true;
    c->session.start();
    while (reading(c) && !c->session.authenticated()) {
        const bool more = co_await read_some(c);
        if (!more) co_return;
    }
}

slave_server::awaitable slave_server::handshake_deadline(std::shared_ptr<connection> c) {
    asio::steady_timer t(executor_);
    const auto timeout = host_.server_limits().handshake_timeout;
    t.expires_after(timeout);
    co_await t.async_wait(use_awaitable);
    host_.record_event({.event = event_kind::handshake_timeout, .slave = c->session.name(),
                     .reason = fmt::format("no authenticated hello within {} ms", timeout.count()),
                     .address = c->session.peer()});
    if (c->ready) {
        c->session.close("handshake_timeout", "authenticate within the handshake timeout");
    } else {
        // Still in the TLS handshake: no frame can go out yet.
        c->link->close();
    }
}

}  // namespace meshmaster::master
