// examples/bot: the bot's connection to the gateway — connect once, read records and fold the
// events into each shard's state, acknowledge what was processed, write everything queued in one
// write. The coroutines here are the bot's heaviest code generation, hence a file of their own.
#include "bot.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <fmt/format.h>

#include <cstdlib>
#include <cstring>
#include <tuple>
#include <utility>

namespace meshmaster::example_bot {

namespace asio = boost::asio;
namespace gw = meshmaster::gateway;
using asio::awaitable;
using asio::ip::tcp;

namespace {
constexpr auto tuple_awaitable = asio::as_tuple(asio::use_awaitable);
}  // namespace

// Connects to the gateway once; completes `done` when connected.
void bot::ensure_gateway(slave::completion<> done) {
    if (connected_) return done();
    connect_waiters_.push_back(std::move(done));
    if (connecting_) return;
    connecting_ = true;
    asio::co_spawn(io_, connect_gateway(), asio::detached);
}

awaitable<void> bot::connect_gateway() {
    tcp::resolver resolver(io_);
    const auto colon = settings_.gateway.rfind(':');
    auto [rec, endpoints] = co_await resolver.async_resolve(settings_.gateway.substr(0, colon),
                                                            settings_.gateway.substr(colon + 1), tuple_awaitable);
    boost::system::error_code ec = rec;
    if (!ec) std::tie(ec, std::ignore) = co_await asio::async_connect(socket_, endpoints, tuple_awaitable);
    connecting_ = false;
    if (ec) {
        log("error", fmt::format("cannot reach the gateway at {}: {}", settings_.gateway, ec.message()));
        for (auto& w : connect_waiters_) w.fail("gateway unreachable");
        connect_waiters_.clear();
        co_return;
    }
    socket_.set_option(tcp::no_delay(true));
    connected_ = true;
    send(gw::hello_record(name_));
    asio::co_spawn(io_, read_gateway(), asio::detached);
    for (auto& w : connect_waiters_) w();
    connect_waiters_.clear();
}

void bot::send(const gw::record& r, bool raw) {
    const std::size_t at = out_.size();
    out_.resize(at + gw::record_size);
    gw::write_record(r, out_.data() + at);
    if (!raw) flush();
}

void bot::flush() {
    if (writing_ || out_.empty() || !connected_) return;
    writing_ = true;
    asio::co_spawn(io_, write_gateway(), asio::detached);
}

void bot::close_socket() {
    boost::system::error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_both, ignored);
    socket_.close(ignored);
}

awaitable<void> bot::write_gateway() {
    while (!out_.empty() && connected_) {
        writing_buffer_.clear();
        std::swap(writing_buffer_, out_);
        auto [ec, n] = co_await asio::async_write(socket_, asio::buffer(writing_buffer_), tuple_awaitable);
        if (ec) {
            log("error", fmt::format("gateway write failed: {}", ec.message()));
            break;
        }
    }
    writing_ = false;
    if (closing_ && out_.empty()) close_socket();
}

awaitable<void> bot::read_gateway() {
    std::vector<unsigned char> buffer(64 * 1024);
    std::size_t have = 0;
    while (true) {
        auto [ec, n] = co_await socket_.async_read_some(asio::buffer(buffer.data() + have, buffer.size() - have), tuple_awaitable);
        if (ec) {
            if (!closing_) {
                // Without the gateway there is nothing to process: exit, the master replaces us.
                log("error", fmt::format("lost the gateway: {}", ec.message()));
                std::exit(3);
            }
            co_return;
        }
        have += n;
        std::size_t at = 0;
        for (; have - at >= gw::record_size; at += gw::record_size) handle(gw::read_record(buffer.data() + at));
        std::memmove(buffer.data(), buffer.data() + at, have - at);
        have -= at;
        send_acks();
    }
}

void bot::handle(const gw::record& r) {
    auto it = shards_.find(r.shard);
    if (it == shards_.end()) return;  // a shard we no longer hold: late events are ignored
    shard& s = it->second;
    switch (r.type) {
        case gw::gateway_op::event:
            if (!s.running || r.a != s.state.seq + 1) return;  // stopped, or replayed before our position
            s.state.checksum = gw::fold(s.state.checksum, r.b);
            s.state.seq = r.a;
            if (r.a > s.commit_after && s.ack_first == 0) s.ack_first = r.a;
            if (s.ack_first != 0) touched_.push_back(r.shard);
            // A busy shard is checkpointed before its interval is up (see timers.cpp): a crash
            // then replays at most checkpoint_events of its events.
            if (settings_.checkpoint_events > 0 && s.checkpointed_seq != UINT64_MAX &&
                s.state.seq - s.checkpointed_seq >= static_cast<std::uint64_t>(settings_.checkpoint_events)) {
                checkpoint_now(r.shard, s);
            }
            return;
        case gw::gateway_op::ready:
            s.state = {.session = r.a, .seq = r.b, .checksum = 0, .padding = settings_.state_padding};
            s.commit_after = r.b;
            s.running = true;
            if (s.waiting) std::exchange(s.waiting, std::nullopt).value()();
            checkpoint_now(r.shard, s);  // a new session: recoverable from its first moment
            return;
        case gw::gateway_op::resumed:
            // r.c: what the gateway has committed. State ahead of it (applied by the previous
            // holder, not yet acknowledged) is acknowledged now; state behind it catches up on
            // the replay without acknowledging twice.
            if (s.state.seq > r.c) {
                send({.type = gw::bot_op::ack, .shard = r.shard, .a = r.c + 1, .b = s.state.seq, .c = s.state.checksum, .d = s.epoch}, true);
            }
            s.commit_after = std::max(r.c, s.state.seq);
            s.running = true;
            if (s.waiting) std::exchange(s.waiting, std::nullopt).value()();
            checkpoint_now(r.shard, s);
            return;
        case gw::gateway_op::fenced:
            // A newer holder owns the shard: nothing more of it is ours to process.
            log("warn", fmt::format("shard {} fenced by the gateway: epoch {} superseded ours ({})", r.shard, r.a, s.epoch));
            if (s.stopping) return;  // already on its way out; the state is still handed back
            if (s.waiting) std::exchange(s.waiting, std::nullopt)->fail("fenced by the gateway");
            shards_.erase(it);
            return;
        case gw::gateway_op::detached:
            detached(r.shard);
            return;
        case gw::gateway_op::invalid_session:
            // The resume window passed: start a fresh session; the events in between are lost
            // (and the gateway's audit will say so).
            log("warn", fmt::format("shard {}: session {} invalid, identifying anew", r.shard, r.a));
            send({.type = gw::bot_op::identify, .shard = r.shard, .a = s.epoch});
            return;
        default:
            return;
    }
}

void bot::send_acks() {
    for (std::uint32_t id : touched_) {
        auto it = shards_.find(id);
        if (it == shards_.end() || it->second.ack_first == 0) continue;
        shard& s = it->second;
        send({.type = gw::bot_op::ack, .shard = id, .a = s.ack_first, .b = s.state.seq, .c = s.state.checksum, .d = s.epoch}, true);
        s.ack_first = 0;
    }
    touched_.clear();
    flush();
}

}  // namespace meshmaster::example_bot
