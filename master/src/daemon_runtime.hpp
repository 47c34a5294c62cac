// The daemon's one object: the supervisor core and everything that drives it, declared once and
// defined by room — daemon.cpp (the core driver: actions, the event log, timers, the stop),
// daemon_startup.cpp (secret and TLS, listening, the control socket's file, adoption from the
// previous event log), daemon_signals.cpp (signals and reload), daemon_control.cpp (status, restart,
// reload, stop as values), control_socket.cpp (the CLI's requests) and daemon_http.cpp (the HTTP
// API's endpoints; the HTTP server itself is http_server.hpp). The slave server is an object of its own (slave_server.hpp),
// which asks the daemon for what it needs through slave_server_host.
// Internal to those translation units: it includes Asio, so nothing else includes it (main.cpp sees
// daemon.hpp). Thread safety: none; everything runs on the one thread of its io_context.
#pragma once

#include "checkpoint_store.hpp"
#include "control_status.hpp"
#include "daemon.hpp"
#include "daemon_metrics.hpp"
#include "event_feed.hpp"
#include "event_log.hpp"
#include "exit_code.hpp"
#include "http_auth.hpp"
#include "http_route.hpp"
#include "http_server.hpp"
#include "refusal_limiter.hpp"
#include "slave_server.hpp"
#include "spawner.hpp"
#include "systemd_notify.hpp"

#include <meshmaster/master/slave_session.hpp>
#include <meshmaster/master/supervisor.hpp>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/json/object.hpp>

#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <variant>
#include <vector>

namespace boost::asio::ssl {
class context;
}

namespace meshmaster::master {

/// One JSON line on stderr: the daemon's own log.
void log_line(std::string_view level, std::string_view msg, boost::json::object extra = {});

class daemon_runtime final : public slave_server_host, public http::server_host {
public:
    daemon_runtime(daemon_config config, config_loader reload);
    ~daemon_runtime() override;

    int run();

    /// The Prometheus exposition (text format 0.0.4, daemon_metrics.hpp) as of now: `GET /metrics`,
    /// the control socket's `metrics` command.
    std::string metrics_text();
    /// A refusal that is no event record (the HTTP server's: "http_unauthorized", …), counted in
    /// meshmaster_refusals_total.
    void count_refusal(std::string_view reason) { metrics_.count_refusal(reason); }

private:
    using awaitable = boost::asio::awaitable<void>;

    static std::uint64_t first_id();
    mono_time now() const { return std::chrono::steady_clock::now() - origin_; }

    // --- the core driver (daemon.cpp) -----------------------------------------------------------
    template <class F>
    void drive(F&& f) {
        f();
        execute(core_.take_actions());
        rearm();
    }
    void rearm();
    void execute(std::vector<action> actions);
    void perform(actions::send_frame& a);
    void perform(actions::spawn_slave& a);
    void perform(actions::watch_process& a);
    void perform(actions::store_checkpoint& a);
    void perform(actions::kill_slave& a);
    void perform(actions::close_connection& a);
    void perform(actions::log_event& a);
    void perform(actions::hit_failpoint& a);
    void perform(actions::exit_daemon& a);
    void say_failed_starts(const event_record& r);
    awaitable finish();
    void log_event(event_record r, bool on_stderr = false);
    void write_record(const event_record& r, bool on_stderr = false);
    void rearm_refusals();
    awaitable refusal_summary_loop();
    awaitable timer_loop();
    static refusal_limits refusal_limits_of(const daemon_config& c);
    // For meshmaster_build_info: the daemon's version (MESHMASTER_VERSION, known to daemon.cpp alone)
    // and the "MAJOR.MINOR" of the protocol it speaks.
    static std::string version_label();
    static std::string protocol_label();
    spawner::callbacks spawner_callbacks();
    fleet_progress progress_for_systemd() const;  // what systemd_notifier tells (STATUS=, READY=1)

    // --- start-up (daemon_startup.cpp) ----------------------------------------------------------
    int load_secret();
    int load_tls();
    int open_listener(boost::asio::ip::tcp::acceptor& acceptor, const std::string& address, std::string_view setting);
    int listen();
    int open_control();
    /// Continues from what the previous master left in the event log and the checkpoint store;
    /// the adoption window, or the exit code of a failed start.
    std::variant<std::chrono::milliseconds, int> adopt_previous();

    // --- slave_server_host: what the slave server asks (slave_server.cpp is the server) ---------
    void to_core(const std::function<void(supervisor&, mono_time)>& input) override { drive([&] { input(core_, now()); }); }
    const supervisor_config& core_config() const override { return core_.config(); }
    void record_event(event_record record) override { log_event(std::move(record)); }
    void warn(std::string_view message, std::string_view error) override {
        log_line("warn", message, {{"error", error}});
    }
    limits server_limits() const override {
        return {.max_connections = cfg_.max_connections, .max_output = cfg_.max_output,
                .handshake_timeout = cfg_.handshake_timeout};
    }
    const session_settings& settings() const override { return session_settings_; }

    // --- signals and reload (daemon_signals.cpp) ------------------------------------------------
    struct reload_outcome {
        std::vector<std::string> errors;       // rejected, and why: nothing was applied
        std::vector<std::string> not_applied;  // restart-only settings that changed: kept as they run
        supervisor::retried_starts retried;    // failed slots (and spares) started again
    };
    awaitable signal_loop();
    reload_outcome reload(std::string_view trigger);

    // --- the control actions, shared by the control socket and HTTP (daemon_control.cpp) ---------
    struct restart_answer {
        boost::json::object answer;  // the control socket's answer
        bool accepted = false;
        bool busy = false;  // queued behind a running restart
        std::uint64_t restart = 0;
        std::uint64_t outcomes_before = 0;  // restarts_ended_ when it was asked
    };
    struct reload_answer {
        boost::json::object answer;
        bool applied = false;
    };
    struct stop_answer {
        boost::json::object answer;
        bool accepted = false;  // false: refused (the other kind of stop is under way)
    };
    struct drain_answer {
        boost::json::object answer;  // accepted: the restart that drains; refused: why
        supervisor::drain_request::outcome result = supervisor::drain_request::outcome::refused;
        std::uint64_t restart = 0;
    };
    daemon_facts facts() const;
    boost::json::object control_status(status_detail detail) const;
    drain_answer control_drain(const std::string& slave, std::string_view trigger);
    restart_answer control_restart(std::string_view trigger);
    reload_answer control_reload(std::string_view trigger);
    stop_answer control_stop(bool leave_slaves, std::string_view trigger);
    /// The kept outcome (restart_completed or restart_failed) of restart `restart`, if still kept.
    const event_record* restart_outcome(std::uint64_t restart) const;
    static boost::json::object outcome_json(const event_record& outcome);

    // --- the HTTP API (daemon_http.cpp) ---------------------------------------------------------
    int listen_http();
    boost::asio::awaitable<http::response> handle(const http::request& req, const std::string& peer) override;
    // The endpoint's answer to a routed request (handle() counts it in the metrics).
    boost::asio::awaitable<http::response> answer(const http::request& req, const http::route_match& m,
                                                  const std::string& peer);
    void refused(std::string_view reason, const std::string& peer, std::string_view what) override;
    http::limits http_limits() const override;
    http::response readiness() const;
    // GET /v1/events and /v1/events/stream, from the event feed (daemon_events.cpp).
    http::response events_page(const http::route_match& m, const std::string& peer);
    http::response events_stream(const http::request& req, const http::route_match& m, const std::string& peer);
    awaitable http_refusal_loop();
    void rearm_http_refusals();

    // --- the control socket (control_socket.cpp) ------------------------------------------------
    awaitable accept_control();
    awaitable control_session(boost::asio::local::stream_protocol::socket socket);
    awaitable follow_restart(boost::asio::local::stream_protocol::socket& socket, std::uint64_t goal);

    daemon_config cfg_;
    config_loader reload_;
    boost::asio::io_context io_{1};
    supervisor core_;
    event_log log_;
    bool log_ended_ = false;  // its last record (master_stopped, master_detached) is written
    event_feed feed_;         // the newest records, for the HTTP API's /v1/events and its stream
    // Never expires: cancelled at each record the feed keeps, which wakes the event streams.
    boost::asio::steady_timer feed_grew_{io_, std::chrono::steady_clock::time_point::max()};
    refusal_limiter refusals_;
    std::optional<mono_time> refusals_armed_for_;
    spawner spawner_;
    boost::asio::ip::tcp::acceptor acceptor_;
    boost::asio::local::stream_protocol::acceptor control_;
    boost::asio::steady_timer timer_;
    boost::asio::steady_timer refusal_timer_;  // the next summary of refusals held back
    boost::asio::steady_timer restart_finished_;  // never expires: cancelled when a restart ends
    boost::asio::signal_set signals_;
    std::chrono::steady_clock::time_point origin_ = std::chrono::steady_clock::now();
    std::string secret_;
    session_settings session_settings_;
    std::unique_ptr<boost::asio::ssl::context> tls_;
    std::string slave_tls_ca_;  // MESHMASTER_TLS_CA for spawned slaves
    std::optional<checkpoint_store> checkpoints_;
    std::string slave_address_;
    slave_server slaves_{io_.get_executor(), *this};  // after what it asks for (session_settings_, cfg_)
    systemd_notifier notify_{io_.get_executor(), [this] { return progress_for_systemd(); }};
    // The HTTP API: off (no acceptor open) unless [http] is configured.
    boost::asio::ip::tcp::acceptor http_acceptor_{io_};
    http::tokens http_tokens_;
    std::unique_ptr<boost::asio::ssl::context> http_tls_;  // https = true: the [tls] certificate
    refusal_limiter http_refusals_;  // its refusals on stderr, per peer, like the slave port's
    std::optional<mono_time> http_refusals_armed_for_;
    boost::asio::steady_timer http_refusal_timer_{io_};
    http::server http_{io_.get_executor(), *this};
    // The newest restart outcomes (restart_completed / restart_failed), for `status` and the
    // `restart --wait` sessions, which wait for the n-th outcome since they asked: the count of all
    // of them, and the last few (a daemon restarted every hour for years must not keep them all).
    static constexpr std::size_t kept_restart_outcomes = 64;
    std::uint64_t restarts_ended_ = 0;
    std::deque<event_record> restart_outcomes_;
    daemon_metrics metrics_{version_label(), protocol_label()};
    bool stop_requested_ = false;
    int exit_code_ = to_int(exit_code::failure);
};

}  // namespace meshmaster::master
