// examples/bot: the bot's timers — the checkpoint timer that hands the master a copy of each
// shard's state, and the --mesh node with its pings — and its start.
#include "bot.hpp"

#include <meshmaster/mesh/packet_auth.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <fmt/format.h>

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

// Every checkpoint_ms, each shard that moved on since its last checkpoint hands the master a copy
// of its state: if this process dies, the shard resumes elsewhere from there, and the gateway
// replays what came after — nothing lost, nothing committed twice.
awaitable<void> bot::checkpoints() {
    asio::steady_timer timer(io_);
    while (!closing_) {
        timer.expires_after(std::chrono::milliseconds(settings_.checkpoint_ms));
        co_await timer.async_wait(tuple_awaitable);
        for (auto& [id, s] : shards_) {
            if (s.running && s.state.seq != s.checkpointed_seq) checkpoint_now(id, s);
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
