// The slave server: accepts slaves on the listening port (up to limits.max_connections), runs each
// connection's TLS or plain stream, its handshake deadline, its read loop into the sans-I/O
// slave_session and its write queue (bounded by limits.max_output), and closes it — with TLS's
// close_notify when on. The one translation unit with Asio SSL streams. Thread safety: none; every
// coroutine runs on the daemon's io_context thread, and a connection lives while one of them holds it.
#include "daemon_runtime.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <fmt/format.h>

#include <variant>

namespace meshmaster::master {

namespace asio = boost::asio;
namespace ssl = asio::ssl;
using asio::use_awaitable;
using asio::ip::tcp;
using namespace asio::experimental::awaitable_operators;
using std::chrono::milliseconds;

namespace {

constexpr auto tuple_awaitable = asio::as_tuple(use_awaitable);

// The slave link is plain TCP or, with [tls] set, TLS over it. TLS and the HMAC handshake both run
// because they prove different things: TLS keeps the link confidential and tamper-proof on the wire
// and lets the slave check it reached the real master (PKI); the HMAC challenge-response proves the
// slave holds the fleet's secret — that it is one of ours — whoever issued what certificate.
// Both alternatives' async_read_some/async_write complete with the same awaitable type, so the
// coroutines std::visit the variant; plain TCP pays only for the variant's index check.
using tls_stream = ssl::stream<tcp::socket>;
using transport = std::variant<tcp::socket, tls_stream>;

transport make_transport(tcp::socket s, ssl::context* tls) {
    if (tls) return transport(std::in_place_type<tls_stream>, std::move(s), *tls);
    return transport(std::in_place_type<tcp::socket>, std::move(s));
}

}  // namespace

struct connection {
    connection(connection_id i, tcp::socket s, ssl::context* tls, std::string peer, const session_settings& settings,
               session_host& host)
        : written(s.get_executor(), std::chrono::steady_clock::time_point::max()),
          stream(make_transport(std::move(s), tls)),
          session(i, std::move(peer), settings, host) {}
    asio::steady_timer written;  // never expires: cancelled whenever a write loop ends
    transport stream;
    slave_session session;  // the protocol: handshake, frames, states (sans-I/O)
    std::vector<std::byte> out;
    std::vector<std::byte> writing;
    bool write_in_progress = false;
    bool closing = false;  // close once `out` has left
    bool ready = false;  // the TLS handshake is done (at once for plain TCP): frames may go out
    bool tls_closing = false;  // close_notify on its way

    // The TCP socket under either: open, shut down, close.
    tcp::socket::lowest_layer_type& socket() {
        return std::visit([](auto& s) -> tcp::socket::lowest_layer_type& { return s.lowest_layer(); }, stream);
    }
    tls_stream* tls() { return std::get_if<tls_stream>(&stream); }
};

namespace {

// Until `c` writes nothing more, or until `limit` expires (awaiting the end of its write loop, not
// polling for it).
asio::awaitable<void> written_or(const std::shared_ptr<connection>& c, asio::steady_timer& limit) {
    while (c->write_in_progress && limit.expiry() > std::chrono::steady_clock::now()) {
        co_await (c->written.async_wait(tuple_awaitable) || limit.async_wait(tuple_awaitable));
    }
}

}  // namespace

std::shared_ptr<connection> daemon_runtime::find(connection_id id) {
    auto it = connections_.find(id);
    return it == connections_.end() ? nullptr : it->second;
}

void daemon_runtime::close_connection(connection_id id, const std::string& code, const std::string& message) {
    if (auto c = find(id)) c->session.close(code, message);
}

void daemon_runtime::write_queued_now() {
    // (Over TLS this synchronous write runs beside the session's pending read: OpenSSL allows a
    // write while a read waits for input, and no write is in flight here.)
    for (auto& [id, c] : connections_) {
        if (c->out.empty() || !c->socket().is_open() || c->write_in_progress || !c->ready) continue;
        boost::system::error_code ignored;
        std::visit([&](auto& stream) { asio::write(stream, asio::buffer(c->out), ignored); }, c->stream);
        c->out.clear();
    }
}

daemon_runtime::awaitable daemon_runtime::writes_done(milliseconds limit) {
    asio::steady_timer deadline(io_);
    deadline.expires_after(limit);
    std::vector<std::shared_ptr<connection>> all;
    for (auto& [id, c] : connections_) all.push_back(c);
    for (const auto& c : all) co_await written_or(c, deadline);
}

void daemon_runtime::send_bytes(const std::shared_ptr<connection>& c, std::span<const std::byte> bytes) {
    if (c->closing) return;
    // A slave that stops reading must not make the master's memory grow without bound: past
    // limits.max_output of unread bytes it is dropped, and the core fences and replaces it. (A
    // single message larger than the limit still goes out when nothing else is queued.)
    const std::size_t queued = c->out.size() + c->writing.size();
    if (queued != 0 && queued + bytes.size() > cfg_.max_output) {
        log_event({.event = "connection_dropped", .slave = c->session.name(),
                   .reason = fmt::format("the slave stopped reading: {} bytes queued", queued)});
        c->closing = true;
        c->out.clear();
        c->out.shrink_to_fit();
        boost::system::error_code ignored;
        c->socket().close(ignored);
        return;
    }
    c->out.insert(c->out.end(), bytes.begin(), bytes.end());
    flush(c);
}

// --- session_host: what the sessions ask for ---------------------------------------------------

void daemon_runtime::to_core(connection_id, const std::function<void(supervisor&, mono_time)>& input) {
    drive([&] { input(core_, now()); });
}
const supervisor_config& daemon_runtime::core_config() const { return core_.config(); }
void daemon_runtime::log(event_record record) { log_event(std::move(record)); }
void daemon_runtime::write(connection_id id, std::span<const std::byte> bytes) {
    if (auto c = find(id)) send_bytes(c, bytes);
}
void daemon_runtime::close_after_write(connection_id id) {
    if (auto c = find(id); c && !c->closing) {
        c->closing = true;
        flush(c);
    }
}

void daemon_runtime::flush(const std::shared_ptr<connection>& c) {
    if (c->write_in_progress) return;
    if (c->out.empty()) {
        if (c->closing) {
            if (c->tls() && c->ready) {
                if (!c->tls_closing) {
                    c->tls_closing = true;
                    asio::co_spawn(io_, close_tls(c), asio::detached);
                }
                return;
            }
            boost::system::error_code ignored;
            c->socket().shutdown(tcp::socket::shutdown_both, ignored);
            c->socket().close(ignored);
        }
        return;
    }
    c->write_in_progress = true;
    asio::co_spawn(io_, write_loop(c), asio::detached);
}

// close_notify first, so that the slave can tell a deliberate close from a cut connection; a
// slave that does not answer it is not waited for long.
daemon_runtime::awaitable daemon_runtime::close_tls(std::shared_ptr<connection> c) {
    asio::steady_timer t(io_);
    t.expires_after(milliseconds(500));
    co_await (c->tls()->async_shutdown(tuple_awaitable) || t.async_wait(tuple_awaitable));
    boost::system::error_code ignored;
    c->socket().shutdown(tcp::socket::shutdown_both, ignored);
    c->socket().close(ignored);
}

daemon_runtime::awaitable daemon_runtime::write_loop(std::shared_ptr<connection> c) {
    while (!c->out.empty() && c->socket().is_open()) {
        std::swap(c->writing, c->out);
        auto [ec, n] = co_await std::visit(
            [&](auto& stream) { return asio::async_write(stream, asio::buffer(c->writing), tuple_awaitable); },
            c->stream);
        c->writing.clear();  // written: no longer counts against the slave's queue
        if (ec) {
            boost::system::error_code ignored;
            c->socket().close(ignored);
            c->out.clear();
            break;
        }
    }
    c->write_in_progress = false;
    c->written.cancel();  // wakes whoever waits for the queue to leave
    if (c->closing) flush(c);
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
    asio::steady_timer limit(io_);
    limit.expires_after(milliseconds(1000));
    co_await written_or(c, limit);
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
