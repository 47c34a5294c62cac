// examples/bot: a sharded worker built on the slave library, against the fake gateway.
//
// Per shard it owns, it holds a gateway session and processes that shard's events in order,
// folding each payload into a running checksum (the per-shard state that must survive handoffs).
// On stop_shard it stops processing at once, acknowledges what it processed, detaches from the
// gateway and hands back (session, sequence, checksum, padding); on resume_shard it RESUMEs the
// session from that sequence, so the gateway replays exactly what happened in between. The
// gateway's audit then proves every event was processed once, by exactly one owner at a time.
//
//   bot --gateway 127.0.0.1:7500 [--state-padding BYTES] [--soft-start-delay-ms MS] [--stop-delay-ms MS]
//       [--ignore-shutdown] [--checkpoint-ms MS] [--mesh]     (bot --help says what each does)
// --mesh runs a node of the fleet's UDP mesh, found through meshmaster (embedded discovery).
// The master connection comes from the environment meshmaster sets (MESHMASTER_ADDR, ...).
#include "../gateway/gateway_protocol.hpp"

#include <meshmaster/mesh/membership_sync.hpp>
#include <meshmaster/mesh/node.hpp>
#include <meshmaster/mesh/packet_auth.hpp>
#include <meshmaster/slave/slave.hpp>

#include <CLI/CLI.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/endian/conversion.hpp>

#include <fmt/format.h>

#include <csignal>
#include <cstdlib>
#include <map>
#include <optional>
#include <string>

namespace asio = boost::asio;
namespace gw = meshmaster::gateway;
namespace ms = meshmaster::slave;
namespace mesh = meshmaster::mesh;
using asio::awaitable;
using asio::use_awaitable;
using asio::ip::tcp;

namespace {

constexpr auto tuple_awaitable = asio::as_tuple(use_awaitable);

struct settings {
    std::string gateway;
    std::size_t state_padding = 256;
    int soft_start_delay_ms = 0;
    int stop_delay_ms = 0;  // hand the state back this much later (widens the window tests aim at)
    bool ignore_shutdown = false;  // misbehave: never finish a shutdown (tests the master's deadline)
    int checkpoint_ms = 100;       // how often each shard's state is checkpointed to the master (0: never)
    bool mesh = false;             // run a node of the fleet's UDP mesh (embedded discovery)
};

// The state handed from one owner to the next: session, position, checksum, then padding whose
// bytes derive from the checksum (so the receiver can verify the whole blob arrived intact).
struct shard_state {
    std::uint64_t session = 0;
    std::uint64_t seq = 0;
    std::uint64_t checksum = 0;
    std::size_t padding = 0;

    std::vector<std::byte> encode() const {
        std::vector<std::byte> out(28 + padding);
        auto* p = reinterpret_cast<unsigned char*>(out.data());
        boost::endian::store_little_u64(p, session);
        boost::endian::store_little_u64(p + 8, seq);
        boost::endian::store_little_u64(p + 16, checksum);
        boost::endian::store_little_u32(p + 24, static_cast<std::uint32_t>(padding));
        for (std::size_t i = 0; i < padding; ++i) p[28 + i] = pad_byte(i);
        return out;
    }
    static std::optional<shard_state> decode(std::span<const std::byte> in) {
        if (in.size() < 28) return std::nullopt;
        const auto* p = reinterpret_cast<const unsigned char*>(in.data());
        shard_state s{.session = boost::endian::load_little_u64(p),
                      .seq = boost::endian::load_little_u64(p + 8),
                      .checksum = boost::endian::load_little_u64(p + 16),
                      .padding = boost::endian::load_little_u32(p + 24)};
        if (in.size() != 28 + s.padding) return std::nullopt;
        for (std::size_t i = 0; i < s.padding; ++i) {
            if (p[28 + i] != s.pad_byte(i)) return std::nullopt;
        }
        return s;
    }
    unsigned char pad_byte(std::size_t i) const { return static_cast<unsigned char>((checksum >> (8 * (i % 8))) ^ i); }
};

class bot {
public:
    bot(asio::io_context& io, settings s, ms::options o)
        : io_(io), settings_(std::move(s)), name_(o.slave_id), socket_(io),
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

    void start() {
        slave_.start();
        if (settings_.checkpoint_ms > 0) asio::co_spawn(io_, checkpoints(), asio::detached);
        if (node_) asio::co_spawn(io_, mesh_pings(), asio::detached);
    }
    /// Called once the master's shutdown is done, so the process can end when its work runs out.
    std::function<void()> on_shutdown;

private:
    // --mesh: a node of the fleet's UDP mesh, found through the master (embedded discovery), keyed
    // from the fleet secret. It answers command 1 (echo) and pings every other bot four times a
    // second, so the status lists show traffic between them.
    ms::options with_mesh(ms::options o) {
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

    awaitable<void> mesh_pings() {
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
    awaitable<void> checkpoints() {
        asio::steady_timer timer(io_);
        while (!closing_) {
            timer.expires_after(std::chrono::milliseconds(settings_.checkpoint_ms));
            co_await timer.async_wait(tuple_awaitable);
            for (auto& [id, s] : shards_) {
                if (s.running && s.state.seq != s.checkpointed_seq) checkpoint_now(id, s);
            }
        }
    }


    struct shard {
        std::uint64_t checkpointed_seq = UINT64_MAX;  // the position of the last checkpoint sent
        std::uint64_t epoch = 0;
        shard_state state;
        bool running = false;
        std::uint64_t ack_first = 0;  // first processed seq not yet acknowledged (0: none)
        // Events up to here are committed at the gateway already (by us or a previous holder):
        // replayed ones are applied to the state but not acknowledged again.
        std::uint64_t commit_after = 0;
        std::optional<ms::completion<>> waiting;  // start/resume waiting for READY/RESUMED
        std::optional<ms::completion<std::vector<std::byte>>> stopping;  // stop waiting for DETACHED
        bool identify_on_invalid = false;
    };

    void log(std::string_view level, const std::string& text) {
        fmt::print(stderr, R"({{"level":"{}","component":"bot","slave":"{}","msg":"{}"}})" "\n", level, name_, text);
    }

    void checkpoint_now(std::uint32_t id, shard& s) {
        if (settings_.checkpoint_ms <= 0) return;
        s.checkpointed_seq = s.state.seq;
        shard_state copy = s.state;
        copy.padding = settings_.state_padding;
        slave_.checkpoint(id, copy.encode());
    }

    void soft_start(ms::completion<> done) {
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

    // Connects to the gateway once; completes `done` when connected.
    void ensure_gateway(ms::completion<> done) {
        if (connected_) return done();
        connect_waiters_.push_back(std::move(done));
        if (connecting_) return;
        connecting_ = true;
        asio::co_spawn(io_, connect_gateway(), asio::detached);
    }

    awaitable<void> connect_gateway() {
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

    void send(const gw::record& r, bool raw = false) {
        const std::size_t at = out_.size();
        out_.resize(at + gw::record_size);
        gw::write_record(r, out_.data() + at);
        if (!raw) flush();
    }

    void flush() {
        if (writing_ || out_.empty() || !connected_) return;
        writing_ = true;
        asio::co_spawn(io_, write_gateway(), asio::detached);
    }

    awaitable<void> write_gateway() {
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
        if (closing_ && out_.empty()) {
            boost::system::error_code ignored;
            socket_.shutdown(tcp::socket::shutdown_both, ignored);
            socket_.close(ignored);
        }
    }

    awaitable<void> read_gateway() {
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

    void handle(const gw::record& r) {
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

    void send_acks() {
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

    void start_shard(ms::shard_grant g, ms::completion<> done) {
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

    void resume_shard(ms::shard_grant g, std::span<const std::byte> state, ms::completion<> done) {
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

    void stop_shard(ms::shard_grant g, ms::completion<std::vector<std::byte>> done) {
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

    void detached(std::uint32_t id) {
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

    void shutdown(ms::completion<> done) {
        if (settings_.ignore_shutdown) {
            log("warn", "ignoring the shutdown, as told");
            ignored_shutdown_ = std::move(done);
            return;
        }
        send_acks();
        closing_ = true;
        shards_.clear();
        if (!writing_) {
            boost::system::error_code ignored;
            socket_.shutdown(tcp::socket::shutdown_both, ignored);
            socket_.close(ignored);
        }
        done();
        // The mesh node says goodbye (peers stop asking it at once) and closes, so that the
        // io_context runs out of work and the process ends.
        if (node_) asio::co_spawn(io_, node_->go_offline(), asio::detached);
        if (on_shutdown) on_shutdown();
    }

    // Adapts "gateway connected?" into a completion target.
    struct after_connect final : ms::detail::completion_target {
        explicit after_connect(std::function<void(bool)> f) : then(std::move(f)) {}
        void deliver(ms::outcome o) override { then(o.ok); }
        std::function<void(bool)> then;
    };

    asio::io_context& io_;
    settings settings_;
    std::string name_;
    tcp::socket socket_;
    std::unique_ptr<mesh::node> node_;  // --mesh; before slave_, whose hello announces it
    mesh::membership_sync sync_;
    ms::slave slave_;
    std::map<std::uint32_t, shard> shards_;
    std::vector<std::uint32_t> touched_;
    std::vector<unsigned char> out_;
    std::vector<unsigned char> writing_buffer_;
    std::vector<ms::completion<>> connect_waiters_;
    bool connected_ = false;
    bool connecting_ = false;
    bool writing_ = false;
    bool closing_ = false;
    std::optional<ms::completion<>> ignored_shutdown_;
};

}  // namespace

int main(int argc, char** argv) {
    std::signal(SIGPIPE, SIG_IGN);  // survive a master restart: our stdout is its pipe
    settings s;
    CLI::App app{"bot: a sharded worker on the meshmaster slave library, against examples/gateway.\n"
                 "meshmaster spawns it; the master's address and the secret come from the environment it sets "
                 "(MESHMASTER_ADDR, ...).",
                 "bot"};
    app.add_option("--gateway", s.gateway, "the gateway's HOST:PORT")->required();
    app.add_option("--state-padding", s.state_padding, "bytes of padding in each shard's state")->capture_default_str();
    app.add_option("--soft-start-delay-ms", s.soft_start_delay_ms, "delay the soft start (tests)")->check(CLI::NonNegativeNumber);
    app.add_option("--stop-delay-ms", s.stop_delay_ms, "hand states back this much later (tests)")->check(CLI::NonNegativeNumber);
    app.add_flag("--ignore-shutdown", s.ignore_shutdown, "misbehave: never finish a shutdown (tests the master's deadline)");
    app.add_option("--checkpoint-ms", s.checkpoint_ms, "checkpoint each shard's state this often (0: never)")
        ->check(CLI::NonNegativeNumber)
        ->capture_default_str();
    app.add_flag("--mesh", s.mesh, "run a node of the fleet's UDP mesh, found through meshmaster");
    try {
        app.parse(argc, argv);
    } catch (const CLI::Success& e) {
        return app.exit(e);  // --help: the usage, exit 0
    } catch (const CLI::ParseError& e) {
        app.exit(e);
        return 64;
    }
    if (s.gateway.rfind(':') == std::string::npos) {
        fmt::print(stderr, "bot: --gateway: '{}' is not HOST:PORT\n", s.gateway);
        return 64;
    }
    ms::options options;
    try {
        options = ms::options::from_environment();
    } catch (const std::exception& e) {
        fmt::print(stderr, "bot: {}\n", e.what());
        return 78;
    }
    asio::io_context io(1);
    bot b(io, s, std::move(options));
    b.start();
    asio::signal_set signals(io, SIGTERM, SIGINT);
    signals.async_wait([&](boost::system::error_code ec, int) { if (!ec) io.stop(); });
    b.on_shutdown = [&] { signals.cancel(); };  // io.run() returns once the goodbye is written
    io.run();
    return 0;
}
