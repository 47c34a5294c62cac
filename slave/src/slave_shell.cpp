// The slave library's network shell (slave_shell.hpp): Boost.Asio coroutines around slave_core,
// over whatever byte stream the connector hands it — the connection's life (connect, handshake
// deadline, reconnect with backoff) and the calls the public API posts. The reading, writing and
// heartbeat coroutines are in slave_shell_io.cpp (split for compile time).
#include "slave_shell.hpp"
#include "shell_vocabulary.hpp"

#include <meshmaster/protocol/event_id.hpp>
#include <meshmaster/protocol/failpoint.hpp>
#include <meshmaster/protocol/frame.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/string.hpp>

#include <fmt/format.h>

#include <cstdio>
#include <random>
#include <unistd.h>

namespace meshmaster::slave {

slave::impl::impl(asio::io_context& context, options o, handlers h, connector c)
    : io(&context), strand(asio::make_strand(context)), opts(std::move(o)), on(std::move(h)), connect(std::move(c)),
      core(make_core_config()), backoff_timer(strand), written(strand, clock::time_point::max()),
      authenticated(strand, clock::time_point::max()), stopping(strand, clock::time_point::max()) {}

detail::core_config slave::impl::make_core_config() {
    if (!opts.log) {
        opts.log = [id = opts.slave_id](std::string_view level, std::string_view text) {
            const std::string line = fmt::format(R"({{"level":"{}","component":"slave","slave":{},"msg":{}}})", level,
                                                 boost::json::serialize(boost::json::string(id)),
                                                 boost::json::serialize(boost::json::string(text)));
            std::fprintf(stderr, "%s\n", line.c_str());
        };
    }
    return {.slave_id = opts.slave_id,
            .secret = opts.secret,
            .generation = opts.generation,
            .pid = ::getpid(),
            .max_state_size = opts.max_state_size,
            .log = [this](std::string_view level, std::string text) { opts.log(level, text); },
            .mesh = opts.mesh,
            .mesh_members = [this](std::vector<mesh::peer_record> others) {
                if (on.mesh_members) on.mesh_members(std::move(others));
            }};
}

// Delivers a worker's completion back onto the strand, if the slave still exists.
struct slave::impl::target final : detail::completion_target {
    std::weak_ptr<impl> owner;
    std::uint64_t op;
    target(std::weak_ptr<impl> o, std::uint64_t id) : owner(std::move(o)), op(id) {}
    void deliver(outcome result) override {
        auto self = owner.lock();
        if (!self) return;
        asio::post(self->strand, [weak = owner, op = op, result = std::move(result)]() mutable {
            if (auto s = weak.lock()) {
                s->core.complete(op, std::move(result));
                s->after_core();
            }
        });
    }
};

template <class T>
completion<T> slave::impl::make_completion(std::uint64_t op) {
    return completion<T>(std::make_shared<target>(weak_from_this(), op));
}

// Invokes the worker handlers the core asked for, then writes what it produced.
void slave::impl::after_core() {
    for (auto& r : core.take_requests()) {
        const shard_grant g{.shard = r.shard, .epoch = r.epoch, .shard_count = r.shard_count};
        switch (r.kind) {
            case detail::op_kind::soft_start:
                if (on.soft_start) on.soft_start(make_completion<void>(r.op));
                else make_completion<void>(r.op)();
                break;
            case detail::op_kind::full_start:
                if (on.full_start) on.full_start(make_completion<void>(r.op));
                else make_completion<void>(r.op)();
                break;
            case detail::op_kind::start_shard:
                if (on.start_shard) on.start_shard(g, make_completion<void>(r.op));
                else make_completion<void>(r.op)();
                break;
            case detail::op_kind::stop_shard:
                if (on.stop_shard) on.stop_shard(g, make_completion<std::vector<std::byte>>(r.op));
                else make_completion<std::vector<std::byte>>(r.op)({});
                break;
            case detail::op_kind::resume_shard:
                if (on.resume_shard) on.resume_shard(g, r.state, make_completion<void>(r.op));
                else make_completion<void>(r.op)();
                break;
            case detail::op_kind::shutdown:
                if (on.shutdown) on.shutdown(make_completion<void>(r.op));
                else make_completion<void>(r.op)();
                break;
        }
    }
    if (core.authenticated()) authenticated.cancel();  // wakes heartbeats() out of the handshake wait
    flush();
    publish();
}

void slave::impl::publish() {
    std::lock_guard lock(snapshot_mutex);
    snapshot = core.shards();
    done = core.finished();
    rtt = core.authenticated() ? core.heartbeat_rtt() : std::nullopt;
}

void slave::impl::flush() {
    if (writing || !core.has_output() || !link || !link->is_open()) return;
    writing = true;
    asio::co_spawn(strand, write_all(shared_from_this()), asio::detached);
}

awaitable<void> slave::impl::run(std::shared_ptr<impl> self) {
    std::minstd_rand jitter(static_cast<unsigned>(::getpid()));
    auto backoff = self->opts.reconnect_min;
    std::uint64_t failures = 0;
    while (!self->stopped && !self->core.finished()) {
        // stop() cuts a connect or TLS handshake in flight short, as it closes a connection.
        auto reached = co_await (self->connect(self->strand, self->opts.handshake_timeout) || self->stopping.async_wait(tuple_awaitable));
        if (reached.index() == 1) break;
        link_attempt attempt = std::move(std::get<0>(reached));
        if (attempt.link && !self->stopped) {
            failures = 0;
            backoff = self->opts.reconnect_min;
            self->link = std::move(attempt.link);
            const std::shared_ptr<shell::byte_stream> link = self->link;
            self->decoder = p::frame_decoder();
            self->core.on_connected();
            co_await (self->read_frames(*link) || self->heartbeats(attempt.handshake_deadline));
            self->core.on_disconnected();
            self->publish();
            link->close();
            self->link.reset();
            if (self->core.finished() || self->stopped) break;
        } else if (!self->stopped) {
            // A failed TLS handshake is retried like a failed connect: a master that is being
            // replaced, or a certificate that is being fixed, comes right eventually.
            if (failures++ % 20 == 0) self->log("warn", fmt::format("{} (retrying)", attempt.failure));
        }
        if (self->stopped) break;
        // Full jitter in [backoff/2, backoff]: slaves of a restarted master do not stampede it.
        const auto half = backoff.count() / 2;
        const auto wait = std::chrono::milliseconds(half + static_cast<long>(jitter() % static_cast<unsigned>(half + 1)));
        self->backoff_timer.expires_after(wait);
        co_await self->backoff_timer.async_wait(tuple_awaitable);
        backoff = std::min(backoff * 2, self->opts.reconnect_max);
    }
    if (self->core.finished()) self->log("info", "shut down by the master");
}

void slave::impl::start() { asio::co_spawn(strand, run(shared_from_this()), asio::detached); }

void slave::impl::stop() {
    asio::post(strand, [self = shared_from_this()] {
        self->stopped = true;
        self->stopping.cancel();
        if (self->link) self->link->close();
        self->backoff_timer.cancel();
    });
}

void slave::impl::checkpoint(std::uint32_t shard, std::vector<std::byte> state) {
    asio::post(strand, [self = shared_from_this(), shard, state = std::move(state)]() mutable {
        if (self->core.checkpoint(shard, std::move(state))) self->flush();
    });
}

void slave::impl::checkpoint(std::uint32_t shard, shared_bytes state) {
    asio::post(strand, [self = shared_from_this(), shard, state = std::move(state)]() mutable {
        if (self->core.checkpoint(shard, std::move(state))) self->flush();
    });
}

void slave::impl::update_mesh(mesh::peer_record node) {
    asio::post(strand, [self = shared_from_this(), node = std::move(node)] {
        if (self->core.update_mesh(node)) self->flush();
    });
}

std::vector<protocol::shard_epoch> slave::impl::shards() const {
    std::lock_guard lock(snapshot_mutex);
    return snapshot;
}

std::optional<std::chrono::microseconds> slave::impl::heartbeat_rtt() const {
    std::lock_guard lock(snapshot_mutex);
    return rtt;
}

bool slave::impl::finished() const {
    std::lock_guard lock(snapshot_mutex);
    return done;
}

}  // namespace meshmaster::slave
