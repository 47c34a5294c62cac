// Start-up: what the daemon needs before it serves, in the order that keeps a refused start
// harmless — the fleet secret and the TLS context first (a bad configuration, 78, binds nothing),
// then the slave port and the control socket (taken: 69), then what the previous master left: its
// event log (epochs, ids, slaves still running, moves and restarts it did not finish) and its
// checkpoints. Also builds and ends the runtime (its TLS context is complete only here). Thread
// safety: none; runs on the daemon's thread before the io_context does.
#include "daemon_runtime.hpp"

#include "event_replay.hpp"
#include "fleet_secret.hpp"
#include "startup_checks.hpp"
#include "tls_context.hpp"

#include <fmt/format.h>

#include <csignal>
#include <filesystem>
#include <unistd.h>

namespace meshmaster::master {

namespace asio = boost::asio;
using asio::ip::tcp;
using std::chrono::milliseconds;

daemon_runtime::daemon_runtime(daemon_config config, config_loader reload)
    : cfg_(std::move(config)), reload_(std::move(reload)), core_(cfg_.supervisor, first_id()), log_(cfg_.event_log),
      refusals_(refusal_limits_of(cfg_)), spawner_(io_, spawner_callbacks()), acceptor_(io_), control_(io_), timer_(io_),
      refusal_timer_(io_), restart_finished_(io_, std::chrono::steady_clock::time_point::max()),
      signals_(io_, SIGUSR1, SIGUSR2, SIGHUP) {
    signals_.add(SIGTERM);
    signals_.add(SIGINT);
}

daemon_runtime::~daemon_runtime() = default;

std::variant<milliseconds, int> daemon_runtime::adopt_previous() {
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
        // (validate() has refused any other value of checkpoint_sync.)
        checkpoints_.emplace(checkpoint_dir, [](const std::string& problem) { log_line("error", "checkpoint store: " + problem); },
                             checkpoint_store::settings{.sync = parse_checkpoint_sync(cfg_.checkpoint_sync).value_or(checkpoint_sync_mode::none)});
    } catch (const std::exception& e) {
        log_line("error", e.what());
        return to_int(exit_code::cant_create);
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
              {"tls", tls_ != nullptr}});
    return adopt;
}

// Binds `acceptor` to `address` (a name such as localhost, or an address; check-config resolves
// it the same way). `setting` is the configuration key's prefix in messages: "" for the slave
// port's `listen`, "http." for the HTTP API's.
int daemon_runtime::open_listener(tcp::acceptor& acceptor, const std::string& address, std::string_view setting) {
    const auto resolved = resolve_listen(address);
    if (const auto* problem = std::get_if<std::string>(&resolved)) {
        log_line("error", std::string(setting) + *problem);
        return to_int(exit_code::config);
    }
    const auto& [ip, port] = std::get<listen_endpoint>(resolved);
    boost::system::error_code ec;
    const tcp::endpoint endpoint(asio::ip::make_address(ip, ec), port);
    if (!ec) acceptor.open(endpoint.protocol(), ec);
    if (!ec) acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec) acceptor.bind(endpoint, ec);
    if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
        log_line("error", fmt::format("cannot listen on {}{}: {}", setting.empty() ? "" : std::string(setting) + "listen ",
                                      address, ec.message()));
        return to_int(exit_code::unavailable);
    }
    return to_int(exit_code::ok);
}

int daemon_runtime::listen() {
    if (const int code = open_listener(acceptor_, cfg_.listen, ""); code != to_int(exit_code::ok)) return code;
    const auto bound = acceptor_.local_endpoint();
    const std::string slave_host = bound.address().is_unspecified() ? (bound.address().is_v6() ? "[::1]" : "127.0.0.1")
                                   : bound.address().is_v6()        ? "[" + bound.address().to_string() + "]"
                                                                    : bound.address().to_string();
    slave_address_ = fmt::format("{}:{}", slave_host, bound.port());
    return to_int(exit_code::ok);
}

int daemon_runtime::open_control() {
    using local = asio::local::stream_protocol;
    boost::system::error_code ec;
    if (::access(cfg_.control_socket.c_str(), F_OK) == 0) {
        local::socket probe(io_);
        probe.connect(local::endpoint(cfg_.control_socket), ec);
        if (!ec) {
            log_line("error", fmt::format("another meshmaster answers on {}", cfg_.control_socket));
            return to_int(exit_code::unavailable);
        }
        ::unlink(cfg_.control_socket.c_str());  // left over from a crash
    }
    control_.open(local(), ec);
    if (!ec) control_.bind(local::endpoint(cfg_.control_socket), ec);
    if (!ec) control_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
        log_line("error", fmt::format("cannot open the control socket {}: {}", cfg_.control_socket, ec.message()));
        return to_int(exit_code::unavailable);
    }
    return to_int(exit_code::ok);
}

int daemon_runtime::load_secret() {
    auto secret = load_fleet_secret(cfg_.secret_file);
    if (!secret) {
        log_line("error", secret.error().message);
        return to_int(exit_code::config);
    }
    secret_ = std::move(secret->value);
    if (secret->generated) {
        log_line("warn", "no secret_file and no MESHMASTER_SECRET: generated a secret, so only the slaves this "
                         "master spawns can join");
    }
    session_settings_ = {.master_id = cfg_.master_id, .secret = secret_, .max_frame_size = cfg_.max_frame_size,
                         .max_state_size = cfg_.max_state_size};
    return to_int(exit_code::ok);
}

// [tls]: the server context every accepted connection handshakes with; unset for plain TCP.
int daemon_runtime::load_tls() {
    if (!cfg_.tls()) return to_int(exit_code::ok);
    std::optional<asio::ssl::context> context;
    if (auto problem = load_tls_context(cfg_, context)) {
        log_line("error", *problem);
        return to_int(exit_code::config);
    }
    tls_ = std::make_unique<asio::ssl::context>(std::move(*context));
    // Spawned slaves may change directory: give them an absolute path. Without tls.ca they trust
    // the certificate itself, which verifies when it is self-signed.
    std::error_code fec;
    const std::filesystem::path ca = cfg_.tls_ca.empty() ? cfg_.tls_cert : cfg_.tls_ca;
    const auto absolute = std::filesystem::absolute(ca, fec);
    slave_tls_ca_ = fec ? ca.string() : absolute.string();
    return to_int(exit_code::ok);
}

}  // namespace meshmaster::master
