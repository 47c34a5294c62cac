// examples/bot: the slave library's handlers — soft start, start, resume and stop a shard, shut
// down — and the constructor that hands them to the library. A shard's state leaves on stop once
// the gateway confirms the detach, and comes back on resume.
#include "bot.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>

#include <fmt/format.h>

#include <utility>

namespace meshmaster::example_bot {

namespace asio = boost::asio;
namespace gw = meshmaster::gateway;
namespace ms = meshmaster::slave;

namespace {

// Adapts "gateway connected?" into a completion target.
struct after_connect final : ms::detail::completion_target {
    explicit after_connect(std::function<void(bool)> f) : then(std::move(f)) {}
    void deliver(ms::outcome o) override { then(o.ok); }
    std::function<void(bool)> then;
};

}  // namespace

bot::bot(asio::io_context& io, settings s, ms::options o)
    : io_(io), settings_(std::move(s)), name_(o.slave_id), socket_(io), checkpoint_timer_(io),
      slave_(io, with_mesh(std::move(o)),
             {.soft_start = [this](ms::completion<> done) { soft_start(std::move(done)); },
              .full_start = [this](ms::completion<> done) { ensure_gateway(std::move(done)); },
              .start_shard = [this](ms::shard_grant g, ms::completion<> done) { start_shard(g, std::move(done)); },
              .stop_shard = [this](ms::shard_grant g, ms::completion<std::vector<std::byte>> done) { stop_shard(g, std::move(done)); },
              .resume_shard = [this](ms::shard_grant g, std::span<const std::byte> state, ms::completion<> done) {
                  resume_shard(g, state, std::move(done));
              },
              .shutdown = [this](ms::completion<> done) { shutdown(std::move(done)); },
              .mesh_members = [this](std::vector<mesh::peer_record> others) {
                  if (node_) sync_.apply(others, *node_);
              }}) {}

void bot::soft_start(ms::completion<> done) {
    // A real bot would warm caches here; the delay lets tests make soft starts slow.
    if (settings_.soft_start_delay_ms > 0) {
        auto timer = std::make_shared<asio::steady_timer>(io_, std::chrono::milliseconds(settings_.soft_start_delay_ms));
        timer->async_wait([this, timer, done = std::move(done)](boost::system::error_code) mutable {
            ensure_gateway(std::move(done));
        });
        return;
    }
    ensure_gateway(std::move(done));
}

void bot::start_shard(ms::shard_grant g, ms::completion<> done) {
    shard& s = shards_[g.shard];
    s = shard{.epoch = g.epoch};
    s.waiting = std::move(done);
    ensure_gateway(ms::completion<>(std::make_shared<after_connect>([this, id = g.shard, epoch = g.epoch](bool ok) {
        auto it = shards_.find(id);
        if (it == shards_.end()) return;
        if (!ok) {
            if (it->second.waiting) std::exchange(it->second.waiting, std::nullopt)->fail("gateway unreachable");
            return;
        }
        send({.type = gw::bot_op::identify, .shard = id, .a = epoch});
    })));
}

void bot::resume_shard(ms::shard_grant g, std::span<const std::byte> state, ms::completion<> done) {
    auto decoded = shard_state::decode(state);
    if (!decoded) {
        log("error", fmt::format("shard {}: the handed-over state is corrupt ({} bytes)", g.shard, state.size()));
        return done.fail("corrupt state");
    }
    shard& s = shards_[g.shard];
    s = shard{.epoch = g.epoch, .state = *decoded};
    s.waiting = std::move(done);
    ensure_gateway(ms::completion<>(std::make_shared<after_connect>([this, id = g.shard](bool ok) {
        auto it = shards_.find(id);
        if (it == shards_.end()) return;
        if (!ok) {
            if (it->second.waiting) std::exchange(it->second.waiting, std::nullopt)->fail("gateway unreachable");
            return;
        }
        const shard& sh = it->second;
        send({.type = gw::bot_op::resume, .shard = id, .a = sh.state.session, .b = sh.state.seq, .c = sh.epoch});
    })));
}

void bot::stop_shard(ms::shard_grant g, ms::completion<std::vector<std::byte>> done) {
    auto it = shards_.find(g.shard);
    if (it == shards_.end()) return done.fail("not running here");
    shard& s = it->second;
    // Stop first: not one more event of this shard is processed here after this line.
    s.running = false;
    if (s.ack_first != 0) {
        send({.type = gw::bot_op::ack, .shard = g.shard, .a = s.ack_first, .b = s.state.seq, .c = s.state.checksum, .d = s.epoch}, true);
        s.ack_first = 0;
    }
    // The state leaves once the gateway confirms the detach, so the next owner's RESUME can
    // never race this connection for the shard.
    s.stopping = std::move(done);
    send({.type = gw::bot_op::detach, .shard = g.shard});
}

void bot::detached(std::uint32_t id) {
    auto it = shards_.find(id);
    if (it == shards_.end() || !it->second.stopping) return;
    shard_state state = it->second.state;
    state.padding = settings_.state_padding;
    auto done = std::move(*it->second.stopping);
    shards_.erase(it);
    if (settings_.stop_delay_ms > 0) {
        auto timer = std::make_shared<asio::steady_timer>(io_, std::chrono::milliseconds(settings_.stop_delay_ms));
        timer->async_wait([timer, state, done = std::move(done)](boost::system::error_code) mutable { done(state.encode()); });
        return;
    }
    done(state.encode());
}

void bot::shutdown(ms::completion<> done) {
    if (settings_.ignore_shutdown) {
        log("warn", "ignoring the shutdown, as told");
        ignored_shutdown_ = std::move(done);
        return;
    }
    send_acks();
    closing_ = true;
    checkpoint_timer_.cancel();  // its loop ends now, not a tick later: the io_context runs out of work
    shards_.clear();
    if (!writing_) close_socket();
    done();
    // The mesh node says goodbye (peers stop asking it at once) and closes, so that the
    // io_context runs out of work and the process ends.
    if (node_) asio::co_spawn(io_, node_->go_offline(), asio::detached);
    if (on_shutdown) on_shutdown();
}

}  // namespace meshmaster::example_bot
