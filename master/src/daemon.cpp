#include "daemon.hpp"
#include "fleet_secret.hpp"

#include "checkpoint_store.hpp"
#include "event_classes.hpp"
#include "event_log.hpp"
#include "event_replay.hpp"
#include "refusal_limiter.hpp"
#include "spawner.hpp"
#include "startup_checks.hpp"
#include "tls_context.hpp"

#include <meshmaster/master/slave_session.hpp>
#include <meshmaster/master/supervisor.hpp>
#include <meshmaster/protocol/auth.hpp>
#include <meshmaster/protocol/codec.hpp>
#include <meshmaster/protocol/failpoint.hpp>
#include <meshmaster/protocol/frame_decoder.hpp>
#include <meshmaster/protocol/json_text.hpp>
#include <meshmaster/protocol/state_transfer.hpp>
#include <meshmaster/protocol/version.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <fmt/format.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>
#include <sys/resource.h>
#include <deque>
#include <fstream>
#include <sstream>
#include <unistd.h>
#include <variant>

namespace meshmaster::master {

namespace asio = boost::asio;
namespace json = boost::json;
namespace p = meshmaster::protocol;
using asio::awaitable;
using asio::use_awaitable;
using asio::ip::tcp;
namespace ssl = asio::ssl;
using namespace asio::experimental::awaitable_operators;
using std::chrono::milliseconds;

namespace {

constexpr auto tuple_awaitable = asio::as_tuple(use_awaitable);

void log_line(std::string_view level, std::string_view msg, json::object extra = {}) {
    json::object o;
    o["time"] = iso8601(std::chrono::system_clock::now());
    o["level"] = level;
    o["component"] = "meshmaster";
    o["msg"] = msg;
    for (auto& [k, v] : extra) o[k] = v;
    const std::string line = p::json_text(o) + "\n";
    (void)!::write(STDERR_FILENO, line.data(), line.size());
}

// The slave link is plain TCP or, with [tls] set, TLS over it. TLS and the HMAC handshake both run
// because they prove different things: TLS keeps the link confidential and tamper-proof on the wire
// and lets the slave check it reached the real master (PKI); the HMAC challenge-response proves the
// slave holds the fleet's secret — that it is one of ours — whoever issued what certificate.
// Both alternatives' async_read_some/async_write complete with the same awaitable type, so the
// coroutines std::visit the variant; plain TCP pays only for the variant's index check.
using tls_stream = ssl::stream<tcp::socket>;
using transport = std::variant<tcp::socket, tls_stream>;

transport make_transport(tcp::socket s, ssl::context* tls) {
    if (tls) return transport(std::in_place_type<tls_stream>, std::move(s), *tls);
    return transport(std::in_place_type<tcp::socket>, std::move(s));
}

struct connection {
    connection(connection_id i, tcp::socket s, ssl::context* tls, std::string peer, const session_settings& settings,
               session_host& host)
        : stream(make_transport(std::move(s), tls)), session(i, std::move(peer), settings, host) {}
    transport stream;
    slave_session session;  // the protocol: handshake, frames, states (sans-I/O)
    std::vector<std::byte> out;
    std::vector<std::byte> writing;
    bool write_in_progress = false;
    bool closing = false;  // close once `out` has left
    bool ready = false;  // the TLS handshake is done (at once for plain TCP): frames may go out
    bool tls_closing = false;  // close_notify on its way

    // The TCP socket under either: open, shut down, close.
    tcp::socket::lowest_layer_type& socket() {
        return std::visit([](auto& s) -> tcp::socket::lowest_layer_type& { return s.lowest_layer(); }, stream);
    }
    tls_stream* tls() { return std::get_if<tls_stream>(&stream); }
};

}  // namespace

class daemon_runtime final : public session_host {
public:
    daemon_runtime(daemon_config config, config_loader reload)
        : cfg_(std::move(config)), reload_(std::move(reload)), core_(cfg_.supervisor, first_id()),
          log_(cfg_.event_log), refusals_(refusal_limits_of(cfg_)), spawner_(io_, spawner_callbacks()), acceptor_(io_),
          control_(io_), timer_(io_), refusal_timer_(io_), signals_(io_, SIGUSR1, SIGUSR2, SIGHUP) {
        signals_.add(SIGTERM);
        signals_.add(SIGINT);
    }

    int run() {
        // What the configuration decides comes first: a start refused for it (78) binds nothing.
        if (int rc = load_secret(); rc != 0) return rc;
        if (int rc = load_tls(); rc != 0) return rc;
        if (int rc = listen(); rc != 0) return rc;
        if (int rc = open_control(); rc != 0) return rc;
        // The control socket is ours from here on: removed when run() ends, whether the daemon
        // stops or its start fails later on (open_control() never binds over a daemon that answers).
        struct remove_at_exit {
            const std::string& path;
            ~remove_at_exit() { ::unlink(path.c_str()); }
        } control_socket_file{cfg_.control_socket};
        origin_ = std::chrono::steady_clock::now();

        // A previous master that crashed may have left slaves running: give them a moment to come
        // back and report their shards before spawning anything. After a clean stop (or on a fresh
        // event log) there is nobody to wait for.
        // The event log tells what a previous master left: the epochs to continue above, and
        // whether it stopped cleanly or crashed (maybe mid-move).
        const event_replay history = replay_event_log(cfg_.event_log, cfg_.supervisor.shard_count);
        const milliseconds adopt = history.clean_stop ? milliseconds(0) : cfg_.adopt_window;
        core_.seed_epochs(history.max_epochs);
        core_.seed_ids(history.generation, history.spawned_ids);
        std::vector<supervisor::previous_slave> running;
        for (const auto& [id, pid] : history.running_slaves) running.push_back({id, pid});
        core_.expect_slaves(std::move(running));
        // The states to resume shards from that the previous master kept.
        const std::string checkpoint_dir = cfg_.checkpoint_dir.empty() ? cfg_.event_log + ".checkpoints" : cfg_.checkpoint_dir;
        try {
            checkpoints_.emplace(checkpoint_dir, [](const std::string& problem) {
                log_line("error", "checkpoint store: " + problem);
            });
        } catch (const std::exception& e) {
            log_line("error", e.what());
            return 73;  // EX_CANTCREAT
        }
        auto stored = checkpoints_->load(cfg_.supervisor.shard_count);
        if (stored.unreadable) {
            log_line("warn", fmt::format("{} stored checkpoints in {} are damaged and were skipped", stored.unreadable, checkpoint_dir));
        }
        core_.seed_checkpoints(std::move(stored.states));
        std::vector<supervisor::abandoned_migration> open;
        for (const auto& m : history.open) open.push_back({m.id, m.shard, m.from, m.to});
        core_.adopt_open_migrations(std::move(open));
        core_.adopt_open_restarts(history.open_restarts);
        log_line("info", "meshmaster started",
                 {{"listen", slave_address_}, {"control_socket", cfg_.control_socket}, {"event_log", cfg_.event_log},
                  {"shards", cfg_.supervisor.shard_count}, {"slaves", cfg_.supervisor.slave_count},
                  {"adopt_window_ms", adopt.count()}, {"replayed_records", history.records},
                  {"open_migrations", history.open.size()}, {"open_restarts", history.open_restarts.size()},
                  {"stored_checkpoints", stored.found},
                  {"tls", tls_.has_value()}});
        drive([&] { core_.start(now(), adopt); });

        asio::co_spawn(io_, accept_slaves(), asio::detached);
        asio::co_spawn(io_, accept_control(), asio::detached);
        asio::co_spawn(io_, timer_loop(), asio::detached);
        asio::co_spawn(io_, signal_loop(), asio::detached);
        refusal_timer_.expires_at(std::chrono::steady_clock::time_point::max());
        asio::co_spawn(io_, refusal_summary_loop(), asio::detached);
        io_.run();
        return exit_code_;
    }

private:
    static std::uint64_t first_id() {
        // Migration and restart ids stay unique across master restarts: start from the clock.
        const auto ms = std::chrono::duration_cast<milliseconds>(std::chrono::system_clock::now().time_since_epoch());
        return static_cast<std::uint64_t>(ms.count()) * 1000;
    }

    mono_time now() const { return std::chrono::steady_clock::now() - origin_; }

    // --- driving the core ---------------------------------------------------------------------

    template <class F>
    void drive(F&& f) {
        f();
        execute(core_.take_actions());
        rearm();
    }

    void rearm() {
        if (auto next = core_.next_deadline()) {
            timer_.expires_at(origin_ + std::chrono::duration_cast<std::chrono::steady_clock::duration>(*next));
        } else {
            timer_.expires_at(std::chrono::steady_clock::time_point::max());
        }
    }

    void execute(std::vector<action> actions) {
        for (action& a : actions) {
            std::visit([&](auto& act) { perform(act); }, a);
        }
    }

    void perform(actions::send_frame& a) {
        if (auto c = find(a.connection)) send_bytes(c, a.frames);
    }
    void perform(actions::spawn_slave& a) {
        std::vector<std::string> env = cfg_.slave_env;
        env.push_back("MESHMASTER_ADDR=" + slave_address_);
        env.push_back("MESHMASTER_SLAVE_ID=" + a.slave);
        env.push_back(fmt::format("MESHMASTER_GENERATION={}", a.generation));
        if (a.slot) env.push_back(fmt::format("MESHMASTER_SLOT={}", *a.slot));
        if (tls_) {
            env.push_back("MESHMASTER_TLS_CA=" + slave_tls_ca_);
            if (!cfg_.tls_server_name.empty()) env.push_back("MESHMASTER_TLS_SERVER_NAME=" + cfg_.tls_server_name);
        }
        spawner_.spawn({.slave = a.slave, .argv = cfg_.slave_command, .environment = std::move(env), .secret = secret_});
    }
    void perform(actions::watch_process& a) { spawner_.watch(a.slave, a.pid); }
    void perform(actions::store_checkpoint& a) {
        if (checkpoints_) checkpoints_->put(a.shard, a.epoch, std::move(a.state));
    }
    void perform(actions::kill_slave& a) { spawner_.kill(a.slave, a.pid); }
    void perform(actions::close_connection& a) {
        if (auto c = find(a.connection)) c->session.close(a.code, a.message);
    }
    void perform(actions::log_event& a) {
        if (a.record.event == "restart_completed" || a.record.event == "restart_failed") {
            restart_outcomes_.push_back(a.record);
        }
        const bool failed_start = a.record.event == "slot_failed" || a.record.event == "spares_failed";
        log_event(a.record, failed_start);
        if (failed_start) say_failed_starts(a.record);
    }

    // A slot given up after failed starts leaves shards unrun: the operator must hear it now, not
    // only from the event log or status. (Its stderr line, in place of the generic lifecycle line.)
    void say_failed_starts(const event_record& r) {
        const auto st = core_.status(now());
        if (r.slot && *r.slot < st.slots.size()) {
            const slot_status& slot = st.slots[*r.slot];
            log_line("error",
                     fmt::format("slot {} failed: {}; its shards {}..{} are unassigned until `meshmaster reload` or "
                                 "`meshmaster restart` retries it",
                                 *r.slot, slot.failure, slot.first_shard, slot.last_shard),
                     {{"seq", log_.last_seq()}, {"event", r.event}, {"slot", *r.slot}, {"slave", r.slave}, {"reason", r.reason}});
        } else {
            log_line("error",
                     fmt::format("spares failed: {}; no spare is started until `meshmaster reload` or "
                                 "`meshmaster restart` retries",
                                 st.spares_failure),
                     {{"seq", log_.last_seq()}, {"event", r.event}, {"slave", r.slave}, {"reason", r.reason}});
        }
    }
    void perform(actions::hit_failpoint& a) {
        if (!p::failpoints_armed()) return;
        // "After X was sent" must mean sent: write out what is queued before the failpoint fires.
        // (Over TLS this synchronous write runs beside the session's pending read: OpenSSL allows a
        // write while a read waits for input, and no write is in flight here.)
        for (auto& [id, c] : connections_) {
            if (c->out.empty() || !c->socket().is_open() || c->write_in_progress || !c->ready) continue;
            boost::system::error_code ignored;
            std::visit([&](auto& stream) { asio::write(stream, asio::buffer(c->out), ignored); }, c->stream);
            c->out.clear();
        }
        p::failpoint(a.name);
    }
    void perform(actions::exit_daemon& a) {
        exit_code_ = a.code;
        log_line("info", "meshmaster stopped");
        // Let goodbye frames leave, then stop.
        asio::co_spawn(io_, finish(), asio::detached);
    }

    awaitable<void> finish() {
        for (int i = 0; i < 20; ++i) {
            bool pending = false;
            for (auto& [id, c] : connections_) pending = pending || c->write_in_progress;
            if (!pending) break;
            asio::steady_timer t(io_);
            t.expires_after(milliseconds(10));
            co_await t.async_wait(tuple_awaitable);
        }
        io_.stop();
    }

    // Every record goes through here: refusals through the limiter (per peer, so a flood cannot fill
    // the disk), everything else straight to the log.
    // `on_stderr`: the caller writes this lifecycle record's stderr line itself, in words.
    void log_event(event_record r, bool on_stderr = false) {
        if (is_refusal(r.event)) {
            for (const event_record& out : refusals_.offer(std::move(r), now())) write_record(out);
            rearm_refusals();
            return;
        }
        if (r.event == "master_stopped" || r.event == "master_detached") {
            // What the limiter holds back is told before the log's last record.
            for (const event_record& out : refusals_.flush(now())) write_record(out);
        }
        write_record(r, on_stderr);
    }

    // Into the event log and, for a lifecycle event, one line on stderr. After the log's last
    // record (a stop) nothing more goes into it — a log that ends with master_stopped was stopped
    // cleanly, and the next master relies on that — so a record of the last moments (a late
    // refusal, a dropped connection) goes to stderr only.
    void write_record(const event_record& r, bool on_stderr = false) {
        const auto level = lifecycle_level(r.event);
        json::object line;
        if (!log_ended_) {
            log_.write(r, std::chrono::system_clock::now(), std::chrono::duration<double, std::milli>(now()).count());
            line["seq"] = log_.last_seq();
        }
        if ((level || log_ended_) && !on_stderr) {
            for (auto& [key, value] : event_log::to_json(r)) line[key] = value;
            log_line(level.value_or("info"), r.event, std::move(line));
        }
        if (r.event == "master_stopped" || r.event == "master_detached") log_ended_ = true;
    }

    void rearm_refusals() {
        const auto next = refusals_.next_due();
        if (next == refusals_armed_for_) return;  // a flood must not re-arm the timer for every record
        refusals_armed_for_ = next;
        refusal_timer_.expires_at(next ? origin_ + std::chrono::duration_cast<std::chrono::steady_clock::duration>(*next)
                                       : std::chrono::steady_clock::time_point::max());
    }

    // The summaries of refusals held back, when the window lets them through: the tail of a flood
    // is told too, without a refusal to carry it.
    awaitable<void> refusal_summary_loop() {
        while (true) {
            co_await refusal_timer_.async_wait(tuple_awaitable);  // cancelled whenever rearm_refusals() moves it
            if (refusal_timer_.expiry() > std::chrono::steady_clock::now()) continue;
            for (const event_record& out : refusals_.due(now())) write_record(out);
            refusals_armed_for_.reset();
            rearm_refusals();
        }
    }

    static refusal_limits refusal_limits_of(const daemon_config& c) {
        return {.burst = c.refusal_burst, .window = c.refusal_window};
    }

    // --- slave connections ----------------------------------------------------------------------

    std::shared_ptr<connection> find(connection_id id) {
        auto it = connections_.find(id);
        return it == connections_.end() ? nullptr : it->second;
    }

    void send_bytes(const std::shared_ptr<connection>& c, std::span<const std::byte> bytes) {
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

    // --- session_host: what the sessions ask for ---------------------------------------------

    void to_core(connection_id, const std::function<void(supervisor&, mono_time)>& input) override {
        drive([&] { input(core_, now()); });
    }
    const supervisor_config& core_config() const override { return core_.config(); }
    void log(event_record record) override { log_event(std::move(record)); }
    void write(connection_id id, std::span<const std::byte> bytes) override {
        if (auto c = find(id)) send_bytes(c, bytes);
    }
    void close_after_write(connection_id id) override {
        if (auto c = find(id); c && !c->closing) {
            c->closing = true;
            flush(c);
        }
    }

    void flush(const std::shared_ptr<connection>& c) {
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
    awaitable<void> close_tls(std::shared_ptr<connection> c) {
        asio::steady_timer t(io_);
        t.expires_after(milliseconds(500));
        co_await (c->tls()->async_shutdown(tuple_awaitable) || t.async_wait(tuple_awaitable));
        boost::system::error_code ignored;
        c->socket().shutdown(tcp::socket::shutdown_both, ignored);
        c->socket().close(ignored);
    }

    awaitable<void> write_loop(std::shared_ptr<connection> c) {
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
        if (c->closing) flush(c);
    }

    awaitable<void> accept_slaves() {
        while (true) {
            auto [ec, socket] = co_await acceptor_.async_accept(tuple_awaitable);
            if (ec) {
                if (ec == asio::error::operation_aborted) co_return;
                log_line("warn", "accept failed", {{"error", ec.message()}});
                continue;
            }
            boost::system::error_code ignored;
            const auto remote = socket.remote_endpoint(ignored);
            const std::string peer = fmt::format("{}:{}", remote.address().to_string(), remote.port());
            if (connections_.size() >= cfg_.max_connections) {
                log_event({.event = "connection_refused",
                           .reason = fmt::format("connection limit (limits.max_connections = {}) reached", cfg_.max_connections),
                           .address = peer});
                socket.close(ignored);
                continue;
            }
            socket.set_option(tcp::no_delay(true), ignored);
            auto c = std::make_shared<connection>(next_connection_++, std::move(socket), tls_ ? &*tls_ : nullptr, peer,
                                                  session_settings_, *this);
            connections_[c->session.id()] = c;
            asio::co_spawn(io_, session(c), asio::detached);
        }
    }

    // Reads what is available and hands it to the session; false when the connection ended.
    // Unauthenticated peers get small reads: a flood of them must not cost the master much memory.
    awaitable<bool> read_some(const std::shared_ptr<connection>& c) {
        auto space = c->session.read_buffer();
        auto [ec, n] = co_await std::visit(
            [&](auto& stream) { return stream.async_read_some(asio::buffer(space.data(), space.size()), tuple_awaitable); },
            c->stream);
        if (ec) co_return false;
        c->session.received(n);
        co_return true;
    }

    bool reading(const std::shared_ptr<connection>& c) const { return !c->closing && !c->session.closing(); }

    awaitable<void> session(std::shared_ptr<connection> c) {
        co_await (handshake(c) || handshake_deadline(c));
        while (c->session.authenticated() && reading(c)) {
            const bool more = co_await read_some(c);
            if (!more) break;
        }
        // A refusal flushes its error frame before the socket closes; do not cut it short.
        for (int i = 0; i < 100 && c->write_in_progress; ++i) {
            asio::steady_timer t(io_);
            t.expires_after(milliseconds(10));
            co_await t.async_wait(tuple_awaitable);
        }
        boost::system::error_code ignored;
        c->socket().close(ignored);
        connections_.erase(c->session.id());
        c->session.closed();
    }

    // The TLS handshake (if on), then the challenge, hello, proof and welcome: all within the one
    // handshake deadline. (g++ 12 miscompiles some co_await inside conditions: each gets a
    // statement of its own.)
    awaitable<void> handshake(std::shared_ptr<connection> c) {
        if (auto* tls = c->tls()) {
            auto [ec] = co_await tls->async_handshake(ssl::stream_base::server, tuple_awaitable);
            if (ec) {
                // operation_aborted: the deadline cut it, and handshake_timeout says so.
                if (ec != asio::error::operation_aborted) {
                    log_event({.event = "tls_handshake_failed", .slave = c->session.name(),
                               .reason = fmt::format("tls handshake failed: {}", ec.message()), .address = c->session.peer()});
                }
                co_return;
            }
        }
        c->ready = true;
        c->session.start();
        while (reading(c) && !c->session.authenticated()) {
            const bool more = co_await read_some(c);
            if (!more) co_return;
        }
    }

    awaitable<void> handshake_deadline(std::shared_ptr<connection> c) {
        asio::steady_timer t(io_);
        t.expires_after(cfg_.handshake_timeout);
        co_await t.async_wait(use_awaitable);
        log_event({.event = "handshake_timeout", .slave = c->session.name(),
                   .reason = fmt::format("no authenticated hello within {} ms", cfg_.handshake_timeout.count()),
                   .address = c->session.peer()});
        if (c->ready) {
            c->session.close("handshake_timeout", "authenticate within the handshake timeout");
        } else {
            // Still in the TLS handshake: no frame can go out yet.
            boost::system::error_code ignored;
            c->socket().close(ignored);
        }
    }

    // --- time, signals ----------------------------------------------------------------------------

    awaitable<void> timer_loop() {
        while (true) {
            co_await timer_.async_wait(tuple_awaitable);  // cancelled whenever rearm() moves the deadline
            if (timer_.expiry() <= std::chrono::steady_clock::now()) drive([&] { core_.on_tick(now()); });
        }
    }

    awaitable<void> signal_loop() {
        while (true) {
            auto [ec, signal] = co_await signals_.async_wait(tuple_awaitable);
            if (ec) co_return;
            switch (signal) {
                case SIGUSR2:
                    log_line("info", "SIGUSR2: rolling restart");
                    drive([&] { core_.request_restart(now(), "SIGUSR2"); });
                    break;
                case SIGHUP:
                    reload("SIGHUP");
                    break;
                case SIGUSR1:
                    if (auto problem = log_.reopen()) {
                        log_line("error", *problem);
                    } else {
                        log_event({.event = "event_log_reopened"});
                        // A rotated-away log takes the epoch history with it: restate it here.
                        event_record snapshot{.event = "epochs_snapshot"};
                        for (const auto& sh : core_.status(now()).shards) snapshot.epochs.push_back(sh.epoch);
                        log_event(std::move(snapshot));
                    }
                    break;
                case SIGTERM:
                case SIGINT:
                    if (!stop_requested_) {
                        stop_requested_ = true;
                        log_line("info", fmt::format("{}: stopping gracefully (again to stop at once)", signal == SIGTERM ? "SIGTERM" : "SIGINT"));
                        drive([&] { core_.request_stop(now(), false); });
                    } else {
                        log_line("warn", "second stop signal: killing every slave and exiting now");
                        spawner_.kill_all();
                        drive([&] { core_.request_stop(now(), true); });
                    }
                    break;
            }
        }
    }

    struct reload_outcome {
        std::vector<std::string> errors;       // rejected, and why: nothing was applied
        std::vector<std::string> not_applied;  // restart-only settings that changed: kept as they run
        supervisor::retried_starts retried;    // failed slots (and spares) started again
    };

    // Validate first; on any error keep the running configuration. Settings read only at start keep
    // their running values and are named; everything else applies now. Slots (and spares) given up
    // after failed starts are tried again: the reload may have fixed their command.
    reload_outcome reload(std::string_view trigger) {
        reload_outcome out;
        auto reject = [&] {
            std::string all;
            for (const auto& e : out.errors) all += (all.empty() ? "" : "; ") + e;
            log_event({.event = "config_rejected", .reason = all}, true);
            log_line("error", fmt::format("{}: configuration rejected, keeping the running one", trigger),
                     {{"seq", log_.last_seq()}, {"event", "config_rejected"}, {"errors", all}});
            return out;
        };
        auto loaded = reload_();
        if (auto* errors = std::get_if<std::vector<std::string>>(&loaded)) {
            out.errors = std::move(*errors);
            return reject();
        }
        daemon_config next = std::get<daemon_config>(std::move(loaded));
        out.not_applied = restart_only_change(cfg_, next);
        keep_restart_only(cfg_, next);
        // What applies must hold together with the running values of what does not.
        for (auto& problem : validate(next)) {
            out.errors.push_back(out.not_applied.empty()
                                     ? std::move(problem)
                                     : fmt::format("{} (kept at their running values until meshmaster restarts: {})",
                                                   problem, fmt::join(out.not_applied, ", ")));
        }
        if (!out.errors.empty()) {
            out.not_applied.clear();
            return reject();
        }
        cfg_ = std::move(next);
        refusals_.set_limits(refusal_limits_of(cfg_));
        refusals_armed_for_.reset();
        rearm_refusals();
        session_settings_.max_state_size = cfg_.max_state_size;  // for connections from now on
        log_event({.event = "config_reloaded", .count = out.not_applied.size(), .reason = std::string(trigger)});
        if (!out.not_applied.empty()) {
            const std::string keys = fmt::format("{}", fmt::join(out.not_applied, ", "));
            log_event({.event = "config_not_applied", .count = out.not_applied.size(),
                       .reason = keys + ": these change only when meshmaster itself restarts; the running values are kept"},
                      true);
            log_line("warn",
                     fmt::format("{}: configuration reloaded, but NOT applied (they change only when meshmaster itself "
                                 "restarts): {}",
                                 trigger, keys),
                     {{"seq", log_.last_seq()}, {"event", "config_not_applied"}});
        }
        drive([&] {
            core_.apply_config(cfg_.supervisor, now());
            out.retried = core_.retry_failed_starts(now(), "configuration reloaded");
        });
        return out;
    }

    static json::object retried_json(const supervisor::retried_starts& r) {
        json::array slots;
        for (std::uint32_t slot : r.slots) slots.push_back(slot);
        return json::object{{"retried_slots", std::move(slots)}, {"retried_spares", r.spares}};
    }

    // --- control socket -------------------------------------------------------------------------

    json::object status_json() const {
        const supervisor_status st = core_.status(now());
        json::object o;
        o["listen"] = slave_address_;
        o["event_log"] = cfg_.event_log;
        o["generation"] = st.generation;
        o["shard_count"] = cfg_.supervisor.shard_count;
        o["shards_running"] = st.shards_running;
        o["shards_checkpointed"] = st.shards_checkpointed;
        o["restarts_completed"] = st.restarts_completed;
        o["restarts_failed"] = st.restarts_failed;
        o["restart_queued"] = st.restart_queued;
        o["stopping"] = st.stopping;
        o["detaching"] = st.detaching;
        o["adopting"] = st.adopting_ms.has_value();
        // The verdict `meshmaster status` exits on: every configured shard runs, or why not.
        const std::vector<std::string> problems = fleet_problems(st);
        o["healthy"] = problems.empty();
        json::array reasons;
        for (const auto& p : problems) reasons.push_back(json::string(p));
        o["problems"] = std::move(reasons);
        json::array unassigned;
        for (const auto& sh : st.shards) {
            if (sh.owner.empty()) unassigned.push_back(sh.shard);
        }
        o["unassigned_shards"] = std::move(unassigned);
        json::array slots;
        for (const auto& sl : st.slots) {
            json::object so{{"slot", sl.slot}, {"first_shard", sl.first_shard}, {"last_shard", sl.last_shard},
                            {"slave", sl.slave.empty() ? json::value(nullptr) : json::value(sl.slave)},
                            {"failed", sl.failed}, {"failed_starts", sl.failed_starts}};
            so["failure"] = sl.failed ? json::value(sl.failure) : json::value(nullptr);
            so["respawn_in_ms"] = sl.respawn_in_ms ? json::value(*sl.respawn_in_ms) : json::value(nullptr);
            slots.push_back(std::move(so));
        }
        o["slots"] = std::move(slots);
        o["spares_failed"] = st.spares_failed;
        if (st.restart) {
            o["restart"] = json::object{{"id", st.restart->id},
                                        {"slaves_total", st.restart->slaves_total},
                                        {"slaves_done", st.restart->slaves_done},
                                        {"migrations_done", st.restart->migrations_done},
                                        {"migrations_total", st.restart->migrations_total},
                                        {"in_flight", st.restart->in_flight},
                                        {"elapsed_ms", st.restart->elapsed_ms},
                                        {"failing", st.restart->failing}};
        } else {
            o["restart"] = nullptr;
        }
        json::array slaves;
        for (const auto& s : st.slaves) {
            json::object so{{"id", s.id}, {"generation", s.generation}, {"pid", s.pid}, {"phase", s.phase},
                            {"connected", s.connected}, {"spawned_here", s.spawned_here}, {"shards", s.shards}};
            if (s.slot) so["slot"] = *s.slot; else so["slot"] = nullptr;
            so["mesh"] = s.mesh.empty() ? json::value(nullptr) : json::value(s.mesh);
            slaves.push_back(std::move(so));
        }
        o["slaves"] = std::move(slaves);
        json::array shards;
        for (const auto& s : st.shards) {
            shards.push_back(json::object{{"shard", s.shard}, {"owner", s.owner}, {"epoch", s.epoch}, {"phase", s.phase}});
        }
        o["shards"] = std::move(shards);
        return o;
    }

    awaitable<void> accept_control() {
        while (true) {
            auto [ec, socket] = co_await control_.async_accept(tuple_awaitable);
            if (ec) {
                if (ec == asio::error::operation_aborted) co_return;
                continue;
            }
            asio::co_spawn(io_, control_session(std::move(socket)), asio::detached);
        }
    }

    awaitable<void> control_session(asio::local::stream_protocol::socket socket) {
        asio::streambuf in(64 * 1024);
        auto [ec, n] = co_await asio::async_read_until(socket, in, '\n', tuple_awaitable);
        if (ec) co_return;
        std::string line(asio::buffers_begin(in.data()), asio::buffers_begin(in.data()) + static_cast<std::ptrdiff_t>(n));
        auto reply = [&](const json::value& v) -> awaitable<bool> {
            const std::string text = p::json_text(v) + "\n";
            auto [wec, wn] = co_await asio::async_write(socket, asio::buffer(text), tuple_awaitable);
            co_return !wec;
        };
        boost::system::error_code pec;
        json::value request = json::parse(line, pec);
        const json::object* req = pec ? nullptr : request.if_object();
        const json::value* command = req ? req->if_contains("command") : nullptr;
        if (!command || !command->is_string()) {
            const json::value message1 = json::object{{"error", "expected {\"command\": ...}"}};
            co_await reply(message1);
            co_return;
        }
        const std::string_view cmd = command->as_string();
        if (cmd == "status") {
            co_await reply(status_json());
        } else if (cmd == "restart") {
            const bool wait = req->contains("wait") && req->at("wait").is_bool() && req->at("wait").as_bool();
            const std::size_t before = restart_outcomes_.size();
            supervisor::restart_request request;
            drive([&] { request = core_.request_restart(now(), "control socket"); });
            using outcome = supervisor::restart_request::outcome;
            if (request.result == outcome::refused) {
                const json::value refused = json::object{{"accepted", false}, {"refused", request.refusal}};
                co_await reply(refused);
                co_return;
            }
            const bool busy = request.result != outcome::started;
            json::object accepted = retried_json(request.retried);
            accepted["accepted"] = true;
            accepted["queued"] = busy;
            accepted["already_queued"] = request.result == outcome::already_queued;
            accepted["restart"] = request.restart;
            co_await reply(accepted);
            if (!wait) co_return;
            const std::size_t goal = before + (busy ? 2 : 1);
            asio::steady_timer t(io_);
            while (restart_outcomes_.size() < goal) {
                t.expires_after(milliseconds(100));
                co_await t.async_wait(tuple_awaitable);
                json::object progress;
                progress["progress"] = status_json().at("restart");
                if (!co_await reply(progress)) co_return;
            }
            const event_record& r = restart_outcomes_[goal - 1];
            json::object finished;
            finished["finished"] = r.event == "restart_completed" ? "completed" : "failed";
            finished["restart"] = r.restart.value_or(0);
            finished["duration_ms"] = r.duration_ms.value_or(0);
            finished["shards_moved"] = r.count.value_or(0);
            finished["reason"] = r.reason;
            co_await reply(finished);
        } else if (cmd == "reload") {
            const reload_outcome r = reload("control socket");
            json::object message4;
            if (!r.errors.empty()) {
                json::array errors;
                for (const auto& e : r.errors) errors.push_back(json::string(e));
                message4["result"] = "rejected";
                message4["errors"] = std::move(errors);
            } else {
                message4 = retried_json(r.retried);
                message4["result"] = "reloaded";
                json::array keys;
                for (const auto& k : r.not_applied) keys.push_back(json::string(k));
                message4["not_applied"] = std::move(keys);
            }
            co_await reply(message4);
        } else if (cmd == "stop") {
            // leave_slaves: exit once moves in flight are over and let the slaves keep their
            // shards; the next master adopts them (an upgrade of the master itself).
            const bool leave = req->contains("leave_slaves") && req->at("leave_slaves").is_bool() &&
                               req->at("leave_slaves").as_bool();
            if (const auto st = core_.status(now()); st.stopping) {
                // A stop is under way: the same request again changes nothing; the other kind cannot be honoured.
                json::object answer;
                if (st.detaching == leave) {
                    answer["result"] = leave ? "already_detaching" : "already_stopping";
                } else {
                    const std::string why = leave ? "the master is already stopping gracefully: its slaves are being "
                                                    "shut down and cannot be left running"
                                                  : "the master is detaching (stop --leave-slaves): it exits leaving "
                                                    "the slaves running; stop them through the next master";
                    answer["result"] = "refused";
                    answer["refused"] = why;
                    log_line("warn", "control socket: stop refused: " + why);
                }
                co_await reply(answer);
                co_return;
            }
            stop_requested_ = true;
            drive([&] {
                if (leave) {
                    core_.request_detach(now());
                } else {
                    core_.request_stop(now(), false);
                }
            });
            const json::value message5 = json::object{{"result", leave ? "detaching" : "stopping"}};
            co_await reply(message5);
        } else {
            const json::value message6 = json::object{{"error", fmt::format("unknown command '{}'", cmd)}};
            co_await reply(message6);
        }
    }

    // --- start-up -------------------------------------------------------------------------------

    int listen() {
        // A name (localhost) or an address; check-config resolves it the same way.
        const auto resolved = resolve_listen(cfg_.listen);
        if (const auto* problem = std::get_if<std::string>(&resolved)) {
            log_line("error", *problem);
            return 78;
        }
        const auto& [ip, port] = std::get<listen_endpoint>(resolved);
        boost::system::error_code ec;
        const tcp::endpoint endpoint(asio::ip::make_address(ip, ec), port);
        if (!ec) acceptor_.open(endpoint.protocol(), ec);
        if (!ec) acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
        if (!ec) acceptor_.bind(endpoint, ec);
        if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
        if (ec) {
            log_line("error", fmt::format("cannot listen on {}: {}", cfg_.listen, ec.message()));
            return 69;
        }
        const auto bound = acceptor_.local_endpoint();
        const std::string slave_host = bound.address().is_unspecified() ? (bound.address().is_v6() ? "[::1]" : "127.0.0.1")
                                       : bound.address().is_v6()        ? "[" + bound.address().to_string() + "]"
                                                                        : bound.address().to_string();
        slave_address_ = fmt::format("{}:{}", slave_host, bound.port());
        return 0;
    }

    int open_control() {
        using local = asio::local::stream_protocol;
        boost::system::error_code ec;
        if (::access(cfg_.control_socket.c_str(), F_OK) == 0) {
            local::socket probe(io_);
            probe.connect(local::endpoint(cfg_.control_socket), ec);
            if (!ec) {
                log_line("error", fmt::format("another meshmaster answers on {}", cfg_.control_socket));
                return 69;
            }
            ::unlink(cfg_.control_socket.c_str());  // left over from a crash
        }
        control_.open(local(), ec);
        if (!ec) control_.bind(local::endpoint(cfg_.control_socket), ec);
        if (!ec) control_.listen(asio::socket_base::max_listen_connections, ec);
        if (ec) {
            log_line("error", fmt::format("cannot open the control socket {}: {}", cfg_.control_socket, ec.message()));
            return 69;
        }
        return 0;
    }

    int load_secret() {
        auto secret = load_fleet_secret(cfg_.secret_file);
        if (!secret) {
            log_line("error", secret.error().message);
            return 78;
        }
        secret_ = std::move(secret->value);
        if (secret->generated) {
            log_line("warn", "no secret_file and no MESHMASTER_SECRET: generated a secret, so only the slaves this "
                             "master spawns can join");
        }
        session_settings_ = {.master_id = cfg_.master_id, .secret = secret_, .max_frame_size = cfg_.max_frame_size,
                             .max_state_size = cfg_.max_state_size};
        return 0;
    }

    // [tls]: the server context every accepted connection handshakes with; unset for plain TCP.
    int load_tls() {
        if (!cfg_.tls()) return 0;
        if (auto problem = load_tls_context(cfg_, tls_)) {
            log_line("error", *problem);
            return 78;
        }
        // Spawned slaves may change directory: give them an absolute path. Without tls.ca they trust
        // the certificate itself, which verifies when it is self-signed.
        std::error_code fec;
        const std::filesystem::path ca = cfg_.tls_ca.empty() ? cfg_.tls_cert : cfg_.tls_ca;
        const auto absolute = std::filesystem::absolute(ca, fec);
        slave_tls_ca_ = fec ? ca.string() : absolute.string();
        return 0;
    }

    spawner::callbacks spawner_callbacks() {
        return {
            .spawned = [this](const std::string& s, std::int64_t pid) { drive([&] { core_.on_spawned(s, pid, now()); }); },
            .spawn_failed = [this](const std::string& s, const std::string& e) { drive([&] { core_.on_spawn_failed(s, e, now()); }); },
            .exited = [this](const std::string& s, const std::string& status) { drive([&] { core_.on_process_exited(s, status, now()); }); },
            .output =
                [](const std::string& s, std::string_view stream, std::string_view line) {
                    json::object o;
                    o["time"] = iso8601(std::chrono::system_clock::now());
                    o["level"] = "info";
                    o["component"] = "slave-output";
                    o["slave"] = s;
                    o["stream"] = stream;
                    o["line"] = line;
                    const std::string text = p::json_text(o) + "\n";
                    (void)!::write(STDERR_FILENO, text.data(), text.size());
                },
        };
    }

    daemon_config cfg_;
    config_loader reload_;
    asio::io_context io_{1};
    supervisor core_;
    event_log log_;
    bool log_ended_ = false;  // its last record (master_stopped, master_detached) is written
    refusal_limiter refusals_;
    std::optional<mono_time> refusals_armed_for_;
    spawner spawner_;
    tcp::acceptor acceptor_;
    asio::local::stream_protocol::acceptor control_;
    asio::steady_timer timer_;
    asio::steady_timer refusal_timer_;  // the next summary of refusals held back
    asio::signal_set signals_;
    std::chrono::steady_clock::time_point origin_ = std::chrono::steady_clock::now();
    std::unordered_map<connection_id, std::shared_ptr<connection>> connections_;
    connection_id next_connection_ = 1;
    std::string secret_;
    session_settings session_settings_;
    std::optional<ssl::context> tls_;
    std::string slave_tls_ca_;  // MESHMASTER_TLS_CA for spawned slaves
    std::optional<checkpoint_store> checkpoints_;
    std::string slave_address_;
    std::deque<event_record> restart_outcomes_;
    bool stop_requested_ = false;
    int exit_code_ = 1;
};

int run_daemon(daemon_config config, config_loader reload) {
    // Everything `check-config` checks, before anything is opened or bound: the runtime opens the
    // event log as it is built.
    if (const auto problems = startup_problems(config); !problems.empty()) {
        for (const auto& problem : problems) log_line("error", problem);
        return 78;
    }
    std::signal(SIGPIPE, SIG_IGN);  // a closed pipe or socket is an error code, not a death
    // Connections, pipes and pidfds are descriptors: allow as many as the system lets us.
    if (rlimit limit{}; ::getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
        limit.rlim_cur = limit.rlim_max;
        ::setrlimit(RLIMIT_NOFILE, &limit);
    }
    try {
        daemon_runtime runtime(std::move(config), std::move(reload));
        return runtime.run();
    } catch (const std::exception& e) {
        log_line("error", e.what());
        return 1;
    }
}

}  // namespace meshmaster::master
