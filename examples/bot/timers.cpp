// examples/bot: the bot's timers — the checkpoint timer that hands the master a copy of each
// shard's state every few seconds, each shard in its own slot, and the --mesh node with its
// pings — and its start.
#include "bot.hpp"

#include <meshmaster/mesh/packet_auth.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdio>

namespace meshmaster::example_bot {

namespace asio = boost::asio;
namespace ms = meshmaster::slave;
using asio::awaitable;

namespace {
constexpr auto tuple_awaitable = asio::as_tuple(asio::use_awaitable);
}  // namespace

void bot::start() {
    slave_.start();
    if (settings_.checkpoint_ms > 0) asio::co_spawn(io_, checkpoints(), asio::detached);
    if (node_) asio::co_spawn(io_, mesh_pings(), asio::detached);
}

// --mesh: a node of the fleet's UDP mesh, found through the master (embedded discovery), keyed
// from the fleet secret. It answers command 1 (echo) and pings every other bot four times a
// second, so the status lists show traffic between them.
ms::options bot::with_mesh(ms::options o) {
    if (!settings_.mesh) return o;
    mesh::node_options options{.id = o.slave_id, .type = "bot", .bind = "127.0.0.1",
                               .secret = mesh::mesh_key_from_fleet_secret(o.secret),
                               .drain_timeout = std::chrono::milliseconds(300)};
    options.learn_from_probes = false;  // the master's list is the membership
    node_ = std::make_unique<mesh::node>(io_.get_executor(), std::move(options));
    node_->command(1, [](const mesh::incoming& in) { return mesh::reply::respond(in.payload); });
    if (auto ec = node_->start()) {
        fmt::print(stderr, "bot: no mesh node: {}\n", ec.message());
        node_.reset();
        return o;
    }
    o.mesh = node_->self();
    return o;
}

awaitable<void> bot::mesh_pings() {
    asio::steady_timer timer(io_);
    const std::vector<std::byte> ping(16, std::byte{1});
    while (!closing_ && node_) {
        timer.expires_after(std::chrono::milliseconds(250));
        co_await timer.async_wait(tuple_awaitable);
        for (const auto& peer : node_->nodes()) {
            if (closing_ || !node_) co_return;
            (void)co_await node_->request(peer.id, 1, ping, std::chrono::milliseconds(200));
        }
    }
}

namespace {

// Where shard `id`'s checkpoint falls within each interval: the fractional part of id × (√5−1)/2
// (Fibonacci hashing: id × 2654435769 modulo 2³², over 2³²). Any run of shard numbers spreads evenly
// over the interval this way (each next shard lands in the largest gap left), and since every bot
// reads the same clock, so do the shards of the whole fleet: the master gets a steady trickle
// instead of every shard's state in the same tick.
std::chrono::nanoseconds checkpoint_slot(std::uint32_t id, std::chrono::nanoseconds interval) {
    const std::uint32_t fraction = id * 2654435769u;  // wraps: the fractional part, in 32 bits
    const double phase = static_cast<double>(fraction) * 0x1p-32;
    return std::chrono::nanoseconds(static_cast<std::int64_t>(phase * static_cast<double>(interval.count())));
}

// Whether `slot` lies in (from, to] on the circle of one interval.
bool slot_passed(std::chrono::nanoseconds slot, std::chrono::nanoseconds from, std::chrono::nanoseconds to) {
    return from <= to ? slot > from && slot <= to : slot > from || slot <= to;
}

}  // namespace

// Each shard that moved on since its last checkpoint hands the master a copy of its state once per
// checkpoint_ms, in its own slot of the interval: if this process dies, the shard resumes elsewhere
// from there, and the gateway replays what came after — nothing lost, nothing committed twice.
//
// Why every 5 s by default, and not every 100 ms as this bot once did: a checkpoint only bounds how
// much a crash makes the gateway replay (and how far back the gateway must still be able to resume:
// its window is 30 s here, a few minutes at Discord). Every 100 ms, 4,096 shards of 4 KiB each sent
// the master 41,000 checkpoints and 160 MB a second, for replays of a second that nobody needs;
// every 5 s it is 820 a second and 3.3 MB/s, and a crash replays 5 s of events — at 10 events a
// second, 50 per shard. A busy shard would replay more, so a shard is also checkpointed once
// checkpoint_events events arrived since its last one (gateway_link.cpp): the replay stays bounded
// in events as well as in time, and idle shards cost nothing. A new session is checkpointed at once
// (gateway_link.cpp), so every shard is recoverable from its first moment.
awaitable<void> bot::checkpoints() {
    using std::chrono::milliseconds;
    const std::chrono::nanoseconds interval = milliseconds(settings_.checkpoint_ms);
    // A twentieth of the interval, so a shard's checkpoint comes at most that late after its slot.
    const std::chrono::nanoseconds tick =
        std::clamp<std::chrono::nanoseconds>(interval / 20, std::min<std::chrono::nanoseconds>(interval, milliseconds(5)),
                                             milliseconds(250));
    auto last = std::chrono::steady_clock::now();
    while (!closing_) {
        checkpoint_timer_.expires_after(tick);
        co_await checkpoint_timer_.async_wait(tuple_awaitable);
        if (closing_) break;
        const auto now = std::chrono::steady_clock::now();
        // A loop that fell a whole interval behind owes every shard its checkpoint.
        const bool all_due = now - last >= interval;
        const auto from = last.time_since_epoch() % interval;
        const auto to = now.time_since_epoch() % interval;
        last = now;
        for (auto& [id, s] : shards_) {
            if (!s.running || s.state.seq == s.checkpointed_seq) continue;
            if (all_due || slot_passed(checkpoint_slot(id, interval), from, to)) checkpoint_now(id, s);
        }
    }
}

void bot::checkpoint_now(std::uint32_t id, shard& s) {
    if (settings_.checkpoint_ms <= 0) return;
    s.checkpointed_seq = s.state.seq;
    shard_state copy = s.state;
    copy.padding = settings_.state_padding;
    slave_.checkpoint(id, copy.encode());
}

void bot::log(std::string_view level, const std::string& text) {
    fmt::print(stderr, R"({{"level":"{}","component":"bot","slave":"{}","msg":"{}"}})" "\n", level, name_, text);
}

}  // namespace meshmaster::example_bot
