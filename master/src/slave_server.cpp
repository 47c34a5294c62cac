// The slave server: accepts slaves on the listening port (up to limits.max_connections), runs each
// connection's TLS handshake and its handshake deadline, and its read loop into the sans-I/O
// slave_session, until the connection ends (its write queue and closing: slave_writes.cpp). Thread
// safety: none; every coroutine runs on the daemon's io_context thread, and a connection lives while
// one of them holds it.
#include "slave_connection.hpp"

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

std::shared_ptr<connection> daemon_runtime::find(connection_id id) {
    auto it = connections_.find(id);
    return it == connections_.end() ? nullptr : it->second;
}

void daemon_runtime::close_connection(connection_id id, const std::string& code, const std::string& message) {
    if (auto c = find(id)) c->session.close(code, message);
}

daemon_runtime::awaitable daemon_runtime::accept_slaves() {
    while (true) {
        auto [ec, socket] = co_await acceptor_.async_accept(tuple_awaitable);
        if (ec) {
            if (ec == asio::error::operation_aborted) co_return;
            log_line("warn", "accept failed", {{"error", ec.message()}});
            continue;
        }
        boost::system::error_code ignored;
        const auto remote = socket.remote_endpoint(ignored);
        const std::string peer = fmt::format("{}:{}", remote.address().to_string(), remote.port());
        if (connections_.size() >= cfg_.max_connections) {
            log_event({.event = "connection_refused",
                       .reason = fmt::format("connection limit (limits.max_connections = {}) reached", cfg_.max_connections),
                       .address = peer});
            socket.close(ignored);
            continue;
        }
        socket.set_option(tcp::no_delay(true), ignored);
        auto c = std::make_shared<connection>(next_connection_++, std::move(socket), tls_.get(), peer,
                                              session_settings_, *this);
        connections_[c->session.id()] = c;
        asio::co_spawn(io_, session(c), asio::detached);
    }
}

// Reads what is available and hands it to the session; false when the connection ended.
// Unauthenticated peers get small reads: a flood of them must not cost the master much memory.
asio::awaitable<bool> daemon_runtime::read_some(const std::shared_ptr<connection>& c) {
    auto space = c->session.read_buffer();
    auto [ec, n] = co_await std::visit(
        [&](auto& stream) { return stream.async_read_some(asio::buffer(space.data(), space.size()), tuple_awaitable); },
        c->stream);
    if (ec) co_return false;
    c->session.received(n);
    co_return true;
}

bool daemon_runtime::reading(const std::shared_ptr<connection>& c) const {
    return !c->closing && !c->session.closing();
}

daemon_runtime::awaitable daemon_runtime::session(std::shared_ptr<connection> c) {
    co_await (handshake(c) || handshake_deadline(c));
    while (c->session.authenticated() && reading(c)) {
        const bool more = co_await read_some(c);
        if (!more) break;
    }
    // A refusal flushes its error frame before the socket closes; do not cut it short.
    co_await written(c, milliseconds(1000));
    boost::system::error_code ignored;
    c->socket().close(ignored);
    connections_.erase(c->session.id());
    c->session.closed();
}

// The TLS handshake (if on), then the challenge, hello, proof and welcome: all within the one
// handshake deadline. (g++ 12 miscompiles some co_await inside conditions: each gets a
// statement of its own.)
daemon_runtime::awaitable daemon_runtime::handshake(std::shared_ptr<connection> c) {
    if (auto* tls = c->tls()) {
        auto [ec] = co_await tls->async_handshake(ssl::stream_base::server, tuple_awaitable);
        if (ec) {
            // operation_aborted: the deadline cut it, and handshake_timeout says so.
            if (ec != asio::error::operation_aborted) {
                log_event({.event = "tls_handshake_failed", .slave = c->session.name(),
                           .reason = fmt::format("tls handshake failed: {}", ec.message()), .address = c->session.peer()});
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

daemon_runtime::awaitable daemon_runtime::handshake_deadline(std::shared_ptr<connection> c) {
    asio::steady_timer t(io_);
    t.expires_after(cfg_.handshake_timeout);
    co_await t.async_wait(use_awaitable);
    log_event({.event = "handshake_timeout", .slave = c->session.name(),
               .reason = fmt::format("no authenticated hello within {} ms", cfg_.handshake_timeout.count()),
               .address = c->session.peer()});
    if (c->ready) {
        c->session.close("handshake_timeout", "authenticate within the handshake timeout");
    } else {
        // Still in the TLS handshake: no frame can go out yet.
        boost::system::error_code ignored;
        c->socket().close(ignored);
    }
}

}  // namespace meshmaster::master
