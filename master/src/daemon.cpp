// The core driver: carries out what the supervisor core asks (frames, spawns, kills, checkpoints,
// records), keeps its one deadline timer, writes the event log (refusals through the limiter) and
// ends the daemon. The other rooms of daemon_runtime are named in daemon_runtime.hpp. Thread
// safety: none; everything runs on the io_context's one thread.
#include "daemon_runtime.hpp"

#include "event_classes.hpp"
#include "exit_code.hpp"
#include "startup_checks.hpp"

#include <meshmaster/protocol/failpoint.hpp>
#include <meshmaster/protocol/version.hpp>
#include <meshmaster/protocol/json_text.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <csignal>
#include <sys/resource.h>
#include <unistd.h>

namespace meshmaster::master {

namespace asio = boost::asio;
namespace json = boost::json;
namespace p = meshmaster::protocol;
using std::chrono::milliseconds;

void log_line(std::string_view level, std::string_view msg, json::object extra) {
    json::object o;
    o["time"] = iso8601(std::chrono::system_clock::now());
    o["level"] = level;
    o["component"] = "meshmaster";
    o["msg"] = msg;
    for (auto& [k, v] : extra) o[k] = v;
    const std::string line = p::json_text(o) + "\n";
    (void)!::write(STDERR_FILENO, line.data(), line.size());
}

int daemon_runtime::run() {
    // What the configuration decides comes first: a start refused for it (78) binds nothing.
    if (int rc = load_secret(); rc != 0) return rc;
    if (int rc = load_tls(); rc != 0) return rc;
    if (int rc = listen(); rc != 0) return rc;
    if (int rc = open_control(); rc != 0) return rc;
    if (int rc = listen_http(); rc != 0) return rc;
    // The control socket is ours from here on: removed when run() ends, whether the daemon
    // stops or its start fails later on (open_control() never binds over a daemon that answers).
    struct remove_at_exit {
        const std::string& path;
        ~remove_at_exit() { ::unlink(path.c_str()); }
    } control_socket_file{cfg_.control_socket};
    origin_ = std::chrono::steady_clock::now();

    const auto adopted = adopt_previous();
    if (const int* rc = std::get_if<int>(&adopted)) return *rc;
    const milliseconds adopt = std::get<milliseconds>(adopted);
    drive([&] { core_.start(now(), adopt); });

    asio::co_spawn(io_, slaves_.accept(acceptor_, tls_.get()), asio::detached);
    asio::co_spawn(io_, accept_control(), asio::detached);
    asio::co_spawn(io_, timer_loop(), asio::detached);
    asio::co_spawn(io_, signal_loop(), asio::detached);
    refusal_timer_.expires_at(std::chrono::steady_clock::time_point::max());
    asio::co_spawn(io_, refusal_summary_loop(), asio::detached);
    if (http_acceptor_.is_open()) {
        http_refusal_timer_.expires_at(std::chrono::steady_clock::time_point::max());
        asio::co_spawn(io_, http_.accept(http_acceptor_, http_tls_.get()), asio::detached);
        asio::co_spawn(io_, http_refusal_loop(), asio::detached);
    }
    notify_.begin();  // listening, the initial start asked for: READY=1 follows once it is over
    io_.run();
    return exit_code_;
}

std::uint64_t daemon_runtime::first_id() {
    // Migration and restart ids stay unique across master restarts: start from the clock.
    const auto ms = std::chrono::duration_cast<milliseconds>(std::chrono::system_clock::now().time_since_epoch());
    return static_cast<std::uint64_t>(ms.count()) * 1000;
}

void daemon_runtime::rearm() {
    if (auto next = core_.next_deadline()) {
        timer_.expires_at(origin_ + std::chrono::duration_cast<std::chrono::steady_clock::duration>(*next));
    } else {
        timer_.expires_at(std::chrono::steady_clock::time_point::max());
    }
}

void daemon_runtime::execute(std::vector<action> actions) {
    for (action& a : actions) {
        std::visit([&](auto& act) { perform(act); }, a);
    }
}

void daemon_runtime::perform(actions::send_frame& a) { slaves_.send(a.connection, std::move(a.frames)); }
void daemon_runtime::perform(actions::spawn_slave& a) {
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
void daemon_runtime::perform(actions::watch_process& a) { spawner_.watch(a.slave, a.pid); }
void daemon_runtime::perform(actions::store_checkpoint& a) {
    if (checkpoints_) checkpoints_->put(a.shard, a.epoch, std::move(a.state));
}
void daemon_runtime::perform(actions::kill_slave& a) { spawner_.kill(a.slave, a.pid); }
void daemon_runtime::perform(actions::close_connection& a) { slaves_.close(a.connection, a.code, a.message); }
void daemon_runtime::perform(actions::log_event& a) {
    if (a.record.event == event_kind::restart_completed || a.record.event == event_kind::restart_failed) {
        restart_outcomes_.push_back(a.record);
        if (restart_outcomes_.size() > kept_restart_outcomes) restart_outcomes_.pop_front();
        ++restarts_ended_;
        restart_finished_.cancel();  // wakes the `restart --wait` sessions
    }
    const bool failed_start = a.record.event == event_kind::slot_failed || a.record.event == event_kind::spares_failed;
    log_event(a.record, failed_start);
    if (failed_start) say_failed_starts(a.record);
}

// A slot given up after failed starts leaves shards unrun: the operator must hear it now, not
// only from the event log or status. (Its stderr line, in place of the generic lifecycle line.)
void daemon_runtime::say_failed_starts(const event_record& r) {
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
void daemon_runtime::perform(actions::hit_failpoint& a) {
    if (!p::failpoints_armed()) return;
    // "After X was sent" must mean sent: write out what is queued before the failpoint fires.
    slaves_.write_queued_now();
    p::failpoint(a.name);
}
void daemon_runtime::perform(actions::exit_daemon& a) {
    exit_code_ = a.code;
    notify_.stopping();  // an immediate stop, or one the status loop has not seen yet
    log_line("info", "meshmaster stopped");
    // Let goodbye frames leave, then stop.
    asio::co_spawn(io_, finish(), asio::detached);
}

daemon_runtime::awaitable daemon_runtime::finish() {
    co_await slaves_.writes_done(milliseconds(200));
    io_.stop();
}

// Every record goes through here: refusals through the limiter (per peer, so a flood cannot fill
// the disk), everything else straight to the log.
// `on_stderr`: the caller writes this lifecycle record's stderr line itself, in words.
void daemon_runtime::log_event(event_record r, bool on_stderr) {
    metrics_.observe(r);  // before the limiter: a refusal it holds back still counts
    if (is_refusal(r.event)) {
        for (const event_record& out : refusals_.offer(std::move(r), now())) write_record(out);
        rearm_refusals();
        return;
    }
    if (r.event == event_kind::master_stopped || r.event == event_kind::master_detached) {
        // What the limiter holds back is told before the log's last record.
        for (const event_record& out : refusals_.flush(now())) write_record(out);
    }
    write_record(r, on_stderr);
}

// Into the event log and, for a lifecycle event, one line on stderr. After the log's last
// record (a stop) nothing more goes into it — a log that ends with master_stopped was stopped
// cleanly, and the next master relies on that — so a record of the last moments (a late
// refusal, a dropped connection) goes to stderr only.
void daemon_runtime::write_record(const event_record& r, bool on_stderr) {
    const auto level = lifecycle_level(r.event);
    json::object line;
    if (!log_ended_) {
        std::string text = log_.write(r, std::chrono::system_clock::now(), std::chrono::duration<double, std::milli>(now()).count());
        feed_.append(log_.last_seq(), r, std::move(text));
        feed_grew_.cancel();
        line["seq"] = log_.last_seq();
    }
    if ((level || log_ended_) && !on_stderr) {
        for (auto& [key, value] : event_log::to_json(r)) line[key] = value;
        log_line(level.value_or("info"), r.event, std::move(line));
    }
    if (r.event == event_kind::master_stopped || r.event == event_kind::master_detached) log_ended_ = true;
}

void daemon_runtime::rearm_refusals() {
    const auto next = refusals_.next_due();
    if (next == refusals_armed_for_) return;  // a flood must not re-arm the timer for every record
    refusals_armed_for_ = next;
    refusal_timer_.expires_at(next ? origin_ + std::chrono::duration_cast<std::chrono::steady_clock::duration>(*next)
                                   : std::chrono::steady_clock::time_point::max());
}

// The summaries of refusals held back, when the window lets them through: the tail of a flood
// is told too, without a refusal to carry it.
daemon_runtime::awaitable daemon_runtime::refusal_summary_loop() {
    while (true) {
        co_await refusal_timer_.async_wait(asio::as_tuple(asio::use_awaitable));  // cancelled whenever rearm_refusals() moves it
        if (refusal_timer_.expiry() > std::chrono::steady_clock::now()) continue;
        for (const event_record& out : refusals_.due(now())) write_record(out);
        refusals_armed_for_.reset();
        rearm_refusals();
    }
}

std::string daemon_runtime::version_label() { return MESHMASTER_VERSION; }

std::string daemon_runtime::protocol_label() {
    return fmt::format("{}.{}", p::current_version.major, p::current_version.minor);
}

std::string daemon_runtime::metrics_text() {
    return metrics_.text(core_.status(now()), slaves_.frames(), read_process_facts());
}

refusal_limits daemon_runtime::refusal_limits_of(const daemon_config& c) {
    return {.burst = c.refusal_burst, .window = c.refusal_window};
}

daemon_runtime::awaitable daemon_runtime::timer_loop() {
    while (true) {
        co_await timer_.async_wait(asio::as_tuple(asio::use_awaitable));  // cancelled whenever rearm() moves the deadline
        if (timer_.expiry() <= std::chrono::steady_clock::now()) drive([&] { core_.on_tick(now()); });
    }
}

spawner::callbacks daemon_runtime::spawner_callbacks() {
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

fleet_progress daemon_runtime::progress_for_systemd() const {
    const auto c = core_.counts(now());  // 4 times a second: the counts, not status()'s rows
    fleet_progress p{.running = c.shards_running, .total = c.shards_total, .stopping = c.stopping};
    const bool all_run = c.shards_running + c.shards_moving == c.shards_total;
    p.settled = !cfg_.supervisor.spawn_slaves || all_run || c.gave_up;
    return p;
}

int run_daemon(daemon_config config, config_loader reload) {
    // Everything `check-config` checks, before anything is opened or bound: the runtime opens the
    // event log as it is built.
    if (const auto problems = startup_problems(config); !problems.empty()) {
        for (const auto& problem : problems) log_line("error", problem);
        return to_int(exit_code::config);
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
        return to_int(exit_code::failure);
    }
}

}  // namespace meshmaster::master
