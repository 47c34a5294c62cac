// The slave server's write side: each connection's write queue (bounded by limits.max_output: a
// slave that stops reading is dropped), its write loop, closing once the queue has left (with TLS's
// close_notify when on), and the waits for queues to leave before a session or the daemon ends.
// Also the session_host the sans-I/O sessions talk to. Thread safety: none; everything runs on the
// slave server's executor.
#include "slave_connection.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <fmt/format.h>

namespace meshmaster::master {

namespace asio = boost::asio;
using asio::use_awaitable;
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

void slave_server::write_queued_now() {
    // (Over TLS this synchronous write runs beside the session's pending read: OpenSSL allows a
    // write while a read waits for input, and no write is in flight here.)
    for (auto& [id, c] : connections_) {
        if (c->out.empty() || !c->link->is_open() || c->write_in_progress || !c->ready) continue;
        (void)c->link->write_now(c->out);
        c->out.clear();
    }
}

asio::awaitable<void> slave_server::writes_done(milliseconds limit) {
    asio::steady_timer deadline(executor_);
    deadline.expires_after(limit);
    std::vector<std::shared_ptr<connection>> all;
    for (auto& [id, c] : connections_) all.push_back(c);
    for (const auto& c : all) co_await written_or(c, deadline);
}

slave_server::awaitable slave_server::written(std::shared_ptr<connection> c, milliseconds limit) {
    asio::steady_timer deadline(executor_);
    deadline.expires_after(limit);
    co_await written_or(c, deadline);
}

bool slave_server::admit(const std::shared_ptr<connection>& c, std::size_t size) {
    if (c->closing) return false;
    // A slave that stops reading must not make the master's memory grow without bound: past
    // limits.max_output of unread bytes it is dropped, and the core fences and replaces it. (A
    // single message larger than the limit still goes out when nothing else is queued.)
    const std::size_t queued = c->out.size() + c->writing.size();
    if (queued != 0 && queued + size > host_.server_limits().max_output) {
        host_.record_event({.event = event_kind::connection_dropped, .slave = c->session.name(),
                         .reason = fmt::format("the slave stopped reading: {} bytes queued", queued)});
        c->closing = true;
        c->out.clear();
        c->out.shrink_to_fit();
        c->link->close();
        return false;
    }
    return true;
}

void slave_server::send_bytes(const std::shared_ptr<connection>& c, std::span<const std::byte> bytes) {
    if (!admit(c, bytes.size())) return;
    frames_.sent(bytes);
    c->out.insert(c->out.end(), bytes.begin(), bytes.end());
    flush(c);
}

void slave_server::send(connection_id id, std::vector<std::byte> frames) {
    const auto c = find(id);
    if (!c || !admit(c, frames.size())) return;
    frames_.sent(frames);
    if (c->out.empty()) {
        c->out = std::move(frames);  // a state of megabytes is not copied once more
    } else {
        c->out.insert(c->out.end(), frames.begin(), frames.end());
    }
    flush(c);
}

// --- session_host: what the sessions ask for ---------------------------------------------------

void slave_server::to_core(connection_id, const std::function<void(supervisor&, mono_time)>& input) {
    host_.to_core(input);
}
const supervisor_config& slave_server::core_config() const { return host_.core_config(); }
void slave_server::log(event_record record) { host_.record_event(std::move(record)); }
void slave_server::write(connection_id id, std::span<const std::byte> bytes) {
    if (auto c = find(id)) send_bytes(c, bytes);
}
void slave_server::close_after_write(connection_id id) {
    if (auto c = find(id); c && !c->closing) {
        c->closing = true;
        flush(c);
    }
}

void slave_server::flush(const std::shared_ptr<connection>& c) {
    if (c->write_in_progress) return;
    if (c->out.empty()) {
        if (c->closing) {
            if (c->link->secured() && c->ready) {
                if (!c->tls_closing) {
                    c->tls_closing = true;
                    asio::co_spawn(executor_, close_tls(c), asio::detached);
                }
                return;
            }
            c->link->shutdown();
            c->link->close();
        }
        return;
    }
    c->write_in_progress = true;
    asio::co_spawn(executor_, write_loop(c), asio::detached);
}

// close_notify first, so that the slave can tell a deliberate close from a cut connection; a
// slave that does not answer it is not waited for long.
slave_server::awaitable slave_server::close_tls(std::shared_ptr<connection> c) {
    asio::steady_timer t(executor_);
    t.expires_after(milliseconds(500));
    co_await (c->link->goodbye() || t.async_wait(tuple_awaitable));
    c->link->shutdown();
    c->link->close();
}

slave_server::awaitable slave_server::write_loop(std::shared_ptr<connection> c) {
    while (!c->out.empty() && c->link->is_open()) {
        std::swap(c->writing, c->out);
        const shell::io_result r = co_await c->link->write(c->writing);
        c->writing.clear();  // written: no longer counts against the slave's queue
        if (r.ec) {
            c->link->close();
            c->out.clear();
            break;
        }
    }
    c->write_in_progress = false;
    c->written.cancel();  // wakes whoever waits for the queue to leave
    if (c->closing) flush(c);
}

}  // namespace meshmaster::master
