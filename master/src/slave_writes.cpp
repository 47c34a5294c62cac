// The slave server's write side: each connection's write queue (bounded by limits.max_output: a
// slave that stops reading is dropped), its write loop, closing once the queue has left (with TLS's
// close_notify when on), and the waits for queues to leave before a session or the daemon ends.
// Also the session_host the sans-I/O sessions talk to. Thread safety: none; everything runs on the
// daemon's io_context thread.
#include "slave_connection.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

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

// Until `c` writes nothing more, or until `limit` expires (awaiting the end of its write loop, not
// polling for it).
asio::awaitable<void> written_or(const std::shared_ptr<connection>& c, asio::steady_timer& limit) {
    while (c->write_in_progress && limit.expiry() > std::chrono::steady_clock::now()) {
        co_await (c->written.async_wait(tuple_awaitable) || limit.async_wait(tuple_awaitable));
    }
}

}  // namespace

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

daemon_runtime::awaitable daemon_runtime::written(std::shared_ptr<connection> c, milliseconds limit) {
    asio::steady_timer deadline(io_);
    deadline.expires_after(limit);
    co_await written_or(c, deadline);
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

}  // namespace meshmaster::master
