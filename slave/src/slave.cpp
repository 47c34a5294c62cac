// The slave library's network shell: Boost.Asio coroutines around slave_core.
#include <meshmaster/slave/slave.hpp>

#include "slave_core.hpp"

#include <meshmaster/protocol/failpoint.hpp>
#include <meshmaster/protocol/frame_decoder.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/string.hpp>

#include <fmt/format.h>

#include <atomic>
#include <cstdio>
#include <mutex>
#include <random>
#include <thread>
#include <unistd.h>

namespace meshmaster::slave {

namespace asio = boost::asio;
using asio::awaitable;
using asio::use_awaitable;
using asio::ip::tcp;
using namespace asio::experimental::awaitable_operators;
namespace p = meshmaster::protocol;

struct slave::impl : std::enable_shared_from_this<impl> {
    impl(asio::io_context& context, options o, handlers h)
        : io(&context), strand(asio::make_strand(context)), opts(std::move(o)), on(std::move(h)),
          core(make_core_config()), socket(strand), heartbeat_timer(strand), backoff_timer(strand) {}

    detail::core_config make_core_config() {
        if (!opts.log) {
            opts.log = [id = opts.slave_id](std::string_view level, std::string_view text) {
                const std::string line = fmt::format(R"({{"level":"{}","component":"slave","slave":{},"msg":{}}})",
                                                     level, boost::json::serialize(boost::json::string(id)),
                                                     boost::json::serialize(boost::json::string(text)));
                std::fprintf(stderr, "%s\n", line.c_str());
            };
        }
        return {.slave_id = opts.slave_id,
                .secret = opts.secret,
                .generation = opts.generation,
                .pid = ::getpid(),
                .max_state_size = opts.max_state_size,
                .log = [this](std::string_view level, std::string text) { opts.log(level, text); }};
    }

    // Delivers a worker's completion back onto the strand, if the slave still exists.
    struct target final : detail::completion_target {
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
    completion<T> make_completion(std::uint64_t op) {
        return completion<T>(std::make_shared<target>(weak_from_this(), op));
    }

    // Invokes the worker handlers the core asked for, then writes what it produced.
    void after_core() {
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
        flush();
        publish();
    }

    void publish() {
        std::lock_guard lock(snapshot_mutex);
        snapshot = core.shards();
        done = core.finished();
    }

    void flush() {
        if (writing || !core.has_output() || !socket.is_open()) return;
        writing = true;
        asio::co_spawn(strand, write_all(shared_from_this()), asio::detached);
    }

    static awaitable<void> write_all(std::shared_ptr<impl> self) {
        while (self->core.has_output() && self->socket.is_open()) {
            const auto failpoints = self->core.take_after_write();
            self->write_buffer = self->core.take_output();
            auto [ec, n] = co_await asio::async_write(self->socket, asio::buffer(self->write_buffer),
                                                      asio::as_tuple(use_awaitable));
            if (ec) {
                self->log("warn", fmt::format("write to the master failed: {}", ec.message()));
                boost::system::error_code ignored;
                self->socket.close(ignored);
                break;
            }
            for (const auto name : failpoints) p::failpoint(name);
        }
        self->writing = false;
        if (self->core.finished() && !self->core.has_output()) {
            boost::system::error_code ignored;
            self->socket.shutdown(tcp::socket::shutdown_both, ignored);
        }
    }

    void log(std::string_view level, std::string text) { opts.log(level, text); }

    awaitable<boost::system::error_code> connect() {
        const auto colon = opts.master_address.rfind(':');
        if (colon == std::string::npos) co_return asio::error::invalid_argument;
        tcp::resolver resolver(strand);
        auto [rec, endpoints] = co_await resolver.async_resolve(opts.master_address.substr(0, colon),
                                                                opts.master_address.substr(colon + 1),
                                                                asio::as_tuple(use_awaitable));
        if (rec) co_return rec;
        socket = tcp::socket(strand);
        auto [ec, endpoint] = co_await asio::async_connect(socket, endpoints, asio::as_tuple(use_awaitable));
        if (!ec) socket.set_option(tcp::no_delay(true));
        co_return ec;
    }

    awaitable<void> read_frames() {
        while (true) {
            auto space = decoder.prepare(64 * 1024);
            auto [ec, n] = co_await socket.async_read_some(asio::buffer(space.data(), space.size()),
                                                           asio::as_tuple(use_awaitable));
            if (ec) {
                log("warn", fmt::format("connection to the master lost: {}", ec.message()));
                co_return;
            }
            decoder.commit(n);
            while (true) {
                auto next = decoder.next();
                if (!next) {
                    core.on_stream_error(next.error());
                    break;
                }
                if (!*next) break;
                core.on_frame(**next);
                after_core();  // handlers see resume states while the frame is still in the buffer
            }
            after_core();
            if (core.close_reason()) {
                log("warn", fmt::format("closing the connection: {}", *core.close_reason()));
                // Give a goodbye error frame a moment to leave before closing.
                for (int i = 0; i < 50 && writing; ++i) {
                    heartbeat_timer.expires_after(std::chrono::milliseconds(10));
                    co_await heartbeat_timer.async_wait(asio::as_tuple(use_awaitable));
                }
                co_return;
            }
            if (core.finished() && !writing) co_return;
        }
    }

    awaitable<void> heartbeats() {
        const auto handshake_deadline = std::chrono::steady_clock::now() + opts.handshake_timeout;
        while (true) {
            asio::steady_timer timer(strand);
            timer.expires_after(core.authenticated() ? core.heartbeat_interval() : std::chrono::milliseconds(50));
            co_await timer.async_wait(use_awaitable);
            if (!core.authenticated()) {
                if (std::chrono::steady_clock::now() > handshake_deadline) {
                    log("warn", "the master did not complete the handshake in time");
                    co_return;
                }
                continue;
            }
            ++progress;
            core.tick(opts.progress ? opts.progress() : progress);
            flush();
        }
    }

    static awaitable<void> run(std::shared_ptr<impl> self) {
        std::minstd_rand jitter(static_cast<unsigned>(::getpid()));
        auto backoff = self->opts.reconnect_min;
        std::uint64_t failures = 0;
        while (!self->stopped && !self->core.finished()) {
            const boost::system::error_code ec = co_await self->connect();
            if (!ec) {
                failures = 0;
                backoff = self->opts.reconnect_min;
                self->decoder = p::frame_decoder();
                self->core.on_connected();
                co_await (self->read_frames() || self->heartbeats());
                self->core.on_disconnected();
                self->publish();
                boost::system::error_code ignored;
                self->socket.close(ignored);
                if (self->core.finished() || self->stopped) break;
            } else if (failures++ % 20 == 0) {
                self->log("warn", fmt::format("cannot reach the master at {}: {} (retrying)", self->opts.master_address,
                                              ec.message()));
            }
            // Full jitter in [backoff/2, backoff]: slaves of a restarted master do not stampede it.
            const auto half = backoff.count() / 2;
            const auto wait = std::chrono::milliseconds(half + static_cast<long>(jitter() % static_cast<unsigned>(half + 1)));
            self->backoff_timer.expires_after(wait);
            co_await self->backoff_timer.async_wait(asio::as_tuple(use_awaitable));
            backoff = std::min(backoff * 2, self->opts.reconnect_max);
        }
        if (self->core.finished()) self->log("info", "shut down by the master");
    }

    asio::io_context* io;
    std::unique_ptr<asio::io_context> own_io;
    std::thread own_thread;
    asio::strand<asio::io_context::executor_type> strand;
    options opts;
    handlers on;
    detail::slave_core core;
    tcp::socket socket;
    asio::steady_timer heartbeat_timer;
    asio::steady_timer backoff_timer;
    p::frame_decoder decoder;
    std::vector<std::byte> write_buffer;
    bool writing = false;
    bool stopped = false;
    std::uint64_t progress = 0;
    mutable std::mutex snapshot_mutex;
    std::vector<p::shard_epoch> snapshot;
    bool done = false;
};

slave::slave(asio::io_context& io, options opts, handlers h)
    : impl_(std::make_shared<impl>(io, std::move(opts), std::move(h))) {}

slave::slave(options opts, handlers h) {
    auto own = std::make_unique<asio::io_context>(1);
    impl_ = std::make_shared<impl>(*own, std::move(opts), std::move(h));
    impl_->own_io = std::move(own);
}

slave::~slave() {
    stop();
    if (impl_->own_thread.joinable()) {
        impl_->own_io->stop();
        impl_->own_thread.join();
    }
}

void slave::start() {
    asio::co_spawn(impl_->strand, impl::run(impl_), asio::detached);
    if (impl_->own_io && !impl_->own_thread.joinable()) {
        impl_->own_thread = std::thread([io = impl_->own_io.get()] {
            auto guard = asio::make_work_guard(*io);
            io->run();
        });
    }
}

void slave::stop() {
    asio::post(impl_->strand, [self = impl_] {
        self->stopped = true;
        boost::system::error_code ignored;
        self->socket.close(ignored);
        self->backoff_timer.cancel();
    });
}

void slave::checkpoint(std::uint32_t shard, std::vector<std::byte> state) {
    asio::post(impl_->strand, [self = impl_, shard, state = std::move(state)] {
        if (self->core.checkpoint(shard, state)) self->flush();
    });
}

std::vector<protocol::shard_epoch> slave::shards() const {
    std::lock_guard lock(impl_->snapshot_mutex);
    return impl_->snapshot;
}

bool slave::finished() const {
    std::lock_guard lock(impl_->snapshot_mutex);
    return impl_->done;
}

}  // namespace meshmaster::slave
