// The slave library's network shell: Boost.Asio coroutines around slave_core.
#include <meshmaster/slave/slave.hpp>

#include "slave_core.hpp"

#include <meshmaster/protocol/event_id.hpp>
#include <meshmaster/protocol/failpoint.hpp>
#include <meshmaster/protocol/frame.hpp>
#include <meshmaster/protocol/frame_decoder.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/string.hpp>

#include <fmt/format.h>

#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>

#include <atomic>
#include <cstdio>
#include <mutex>
#include <optional>
#include <random>
#include <span>
#include <stdexcept>
#include <thread>
#include <unistd.h>
#include <variant>

namespace meshmaster::slave {

namespace asio = boost::asio;
using asio::awaitable;
using asio::use_awaitable;
using asio::ip::tcp;
using namespace asio::experimental::awaitable_operators;
namespace p = meshmaster::protocol;
namespace ssl = asio::ssl;

namespace {

// The link to the master: plain TCP, or TLS over it (options::tls_ca_file). TLS keeps the link
// confidential and tamper-proof and proves the master to us; the HMAC handshake inside it still
// proves us to the master (the secret), independent of any PKI. Both alternatives' reads and
// writes complete with the same awaitable type, so the coroutines std::visit the variant.
using tls_stream = ssl::stream<tcp::socket>;
using transport = std::variant<tcp::socket, tls_stream>;

// The client context, made once per slave; none for plain TCP.
std::optional<ssl::context> make_tls_context(const options& o) {
    if (o.tls_ca_file.empty()) {
        // Without a CA there would be no TLS at all, while the name suggests there is.
        if (!o.tls_server_name.empty()) {
            throw std::runtime_error("tls_server_name (MESHMASTER_TLS_SERVER_NAME) needs tls_ca_file (MESHMASTER_TLS_CA)");
        }
        return std::nullopt;
    }
    std::optional<ssl::context> context(std::in_place, ssl::context::tls_client);
    // TLS 1.2 at least; 1.3 whenever the master has it.
    context->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                         ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
    boost::system::error_code ec;
    context->load_verify_file(o.tls_ca_file, ec);
    if (ec) throw std::runtime_error(fmt::format("cannot load the TLS CA file {}: {}", o.tls_ca_file, ec.message()));
    context->set_verify_mode(ssl::verify_peer);
    return context;
}

}  // namespace

struct slave::impl : std::enable_shared_from_this<impl> {
    impl(asio::io_context& context, options o, handlers h)
        : io(&context), strand(asio::make_strand(context)), opts(std::move(o)), on(std::move(h)),
          tls(make_tls_context(opts)), core(make_core_config()), link(std::in_place_type<tcp::socket>, strand),
          heartbeat_timer(strand), backoff_timer(strand) {}

    // The TCP socket under either transport: open, shut down, close.
    tcp::socket::lowest_layer_type& socket() {
        return std::visit([](auto& s) -> tcp::socket::lowest_layer_type& { return s.lowest_layer(); }, link);
    }

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
                .log = [this](std::string_view level, std::string text) { opts.log(level, text); },
                .mesh = opts.mesh,
                .mesh_members = [this](std::vector<mesh::peer_record> others) {
                    if (on.mesh_members) on.mesh_members(std::move(others));
                }};
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
        if (writing || !core.has_output() || !socket().is_open()) return;
        writing = true;
        asio::co_spawn(strand, write_all(shared_from_this()), asio::detached);
    }

    static awaitable<boost::system::error_code> write_bytes(std::shared_ptr<impl> self, std::span<const std::byte> bytes) {
        if (bytes.empty()) co_return boost::system::error_code{};
        auto [ec, n] = co_await std::visit(
            [&](auto& stream) { return asio::async_write(stream, asio::buffer(bytes.data(), bytes.size()), asio::as_tuple(use_awaitable)); },
            self->link);
        co_return ec;
    }

    // Writes write_buffer (whole frames). With failpoints armed, every state_chunk frame goes out
    // after slave.state_chunk.before_write: delay:<ms> makes a slave that crawls through its states
    // (the frames queued behind them, heartbeats included, wait as long).
    static awaitable<boost::system::error_code> write_frames(std::shared_ptr<impl> self) {
        const std::span<const std::byte> bytes(self->write_buffer);
        std::size_t from = 0;
        if (p::failpoints_armed()) {
            for (std::size_t at = 0; at + p::frame_header_size <= bytes.size();) {
                const p::frame_header header = p::read_frame_header(bytes.data() + at);
                if (header.event == static_cast<std::uint32_t>(p::event_id::state_chunk)) {
                    const boost::system::error_code ec = co_await write_bytes(self, bytes.subspan(from, at - from));
                    if (ec) co_return ec;
                    from = at;
                    p::failpoint("slave.state_chunk.before_write");
                }
                at += p::frame_header_size + header.body_size;
            }
        }
        co_return co_await write_bytes(self, bytes.subspan(from));
    }

    static awaitable<void> write_all(std::shared_ptr<impl> self) {
        while (self->core.has_output() && self->socket().is_open()) {
            const auto failpoints = self->core.take_after_write();
            self->write_buffer = self->core.take_output();
            const boost::system::error_code ec = co_await write_frames(self);
            if (ec) {
                self->log("warn", fmt::format("write to the master failed: {}", ec.message()));
                boost::system::error_code ignored;
                self->socket().close(ignored);
                break;
            }
            for (const auto name : failpoints) p::failpoint(name);
        }
        self->writing = false;
        if (self->core.finished() && !self->core.has_output()) {
            // Over TLS too, a TCP shutdown and no close_notify: the goodbye is a protocol frame of its
            // own, so a cut cannot pass for the end of the conversation, and a TLS shutdown would
            // have to wait on the master beside the pending read.
            boost::system::error_code ignored;
            self->socket().shutdown(tcp::socket::shutdown_both, ignored);
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
        auto& socket = link.emplace<tcp::socket>(strand);
        auto [ec, endpoint] = co_await asio::async_connect(socket, endpoints, asio::as_tuple(use_awaitable));
        if (!ec) socket.set_option(tcp::no_delay(true));
        co_return ec;
    }

    // With TLS, after connect(): the client handshake, verifying the master's certificate against
    // the CA (and its name, if one is set), by `deadline`. What failed, or "" once secured.
    awaitable<std::string> secure(std::chrono::steady_clock::time_point deadline) {
        tcp::socket connected = std::move(std::get<tcp::socket>(link));
        auto& stream = link.emplace<tls_stream>(std::move(connected), *tls);
        if (!opts.tls_server_name.empty()) {
            if (SSL_set_tlsext_host_name(stream.native_handle(), opts.tls_server_name.c_str()) != 1) {
                co_return fmt::format("cannot send the server name {}", opts.tls_server_name);
            }
            stream.set_verify_callback(
                [check = ssl::host_name_verification(opts.tls_server_name)](bool preverified, ssl::verify_context& v) {
                    if (check(preverified, v)) return true;
                    // A chain that verified but names someone else: say so, rather than OpenSSL's
                    // "unspecified certificate verification error".
                    if (preverified) X509_STORE_CTX_set_error(v.native_handle(), X509_V_ERR_HOSTNAME_MISMATCH);
                    return false;
                });
        }
        asio::steady_timer timer(strand);
        timer.expires_at(deadline);
        auto result = co_await (stream.async_handshake(ssl::stream_base::client, asio::as_tuple(use_awaitable)) ||
                                timer.async_wait(asio::as_tuple(use_awaitable)));
        if (result.index() == 1) co_return "no TLS handshake within the handshake timeout";
        const auto [ec] = std::get<0>(result);
        if (!ec) co_return "";
        if (const long verify = SSL_get_verify_result(stream.native_handle()); verify != X509_V_OK) {
            co_return fmt::format("{}: {}", ec.message(), X509_verify_cert_error_string(verify));
        }
        co_return ec.message();
    }

    awaitable<void> read_frames() {
        while (true) {
            auto space = decoder.prepare(64 * 1024);
            auto [ec, n] = co_await std::visit(
                [&](auto& stream) {
                    return stream.async_read_some(asio::buffer(space.data(), space.size()), asio::as_tuple(use_awaitable));
                },
                link);
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

    // `handshake_deadline`: when the TLS and HMAC handshakes must both be done.
    awaitable<void> heartbeats(std::chrono::steady_clock::time_point handshake_deadline) {
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
            const auto handshake_deadline = std::chrono::steady_clock::now() + self->opts.handshake_timeout;
            std::string tls_failure;
            if (!ec && self->tls) tls_failure = co_await self->secure(handshake_deadline);
            if (!ec && tls_failure.empty()) {
                failures = 0;
                backoff = self->opts.reconnect_min;
                self->decoder = p::frame_decoder();
                self->core.on_connected();
                co_await (self->read_frames() || self->heartbeats(handshake_deadline));
                self->core.on_disconnected();
                self->publish();
                boost::system::error_code ignored;
                self->socket().close(ignored);
                if (self->core.finished() || self->stopped) break;
            } else {
                // A failed TLS handshake is retried like a failed connect: a master that is being
                // replaced, or a certificate that is being fixed, comes right eventually.
                boost::system::error_code ignored;
                self->socket().close(ignored);
                if (failures++ % 20 == 0) {
                    self->log("warn", ec ? fmt::format("cannot reach the master at {}: {} (retrying)",
                                                       self->opts.master_address, ec.message())
                                         : fmt::format("TLS handshake with the master at {} failed: {} (retrying)",
                                                       self->opts.master_address, tls_failure));
                }
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
    std::optional<ssl::context> tls;  // from opts, before anything connects
    detail::slave_core core;
    transport link;
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
        self->socket().close(ignored);
        self->backoff_timer.cancel();
    });
}

void slave::checkpoint(std::uint32_t shard, std::vector<std::byte> state) {
    asio::post(impl_->strand, [self = impl_, shard, state = std::move(state)] {
        if (self->core.checkpoint(shard, state)) self->flush();
    });
}

void slave::update_mesh(mesh::peer_record node) {
    asio::post(impl_->strand, [self = impl_, node = std::move(node)] {
        if (self->core.update_mesh(node)) self->flush();
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
