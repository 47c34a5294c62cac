#include "cli.hpp"
#include "exit_code.hpp"
#include "json_fields.hpp"
#include "restart_progress.hpp"
#include "status_shards.hpp"
#include "status_summary.hpp"

#include "event_replay.hpp"
#include "time_parse.hpp"

#include <meshmaster/protocol/json_text.hpp>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value_from.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <set>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <thread>
#include <unistd.h>
#include <variant>

namespace meshmaster::master::cli {

namespace json = boost::json;

namespace {

// One request line to the daemon, then a callback for every reply line until the daemon closes.
class control_client {
public:
    explicit control_client(const std::string& path) {
        fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        if (path.size() >= sizeof addr.sun_path) {
            error_ = "control socket path too long";
            return;
        }
        std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
        if (fd_ < 0 || ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
            error_ = fmt::format("no meshmaster answers on {}: {}", path, std::strerror(errno));
        }
    }
    ~control_client() {
        if (fd_ >= 0) ::close(fd_);
    }
    [[nodiscard]] const std::string& error() const { return error_; }

    bool request(const json::object& req) {
        const std::string line = json::serialize(req) + "\n";
        return ::send(fd_, line.data(), line.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(line.size());
    }

    // The next reply line as JSON, or nothing when the daemon closed the connection.
    std::optional<json::value> next() {
        while (true) {
            if (auto nl = buffer_.find('\n'); nl != std::string::npos) {
                const std::string line = buffer_.substr(0, nl);
                buffer_.erase(0, nl + 1);
                boost::system::error_code ec;
                json::value v = json::parse(line, ec);
                if (!ec) return v;
                continue;
            }
            char chunk[4096];
            const ssize_t n = ::read(fd_, chunk, sizeof chunk);
            if (n <= 0) return std::nullopt;
            buffer_.append(chunk, static_cast<std::size_t>(n));
        }
    }

private:
    int fd_ = -1;
    std::string buffer_;
    std::string error_;
};

using json_fields::text;

}  // namespace

int status(const std::string& path, const status_options& options) {
    // The selection first: a mistake in it needs no daemon to be told.
    shard_selection selection;
    if (options.list_shards) {
        auto parsed = parse_shard_selection(options.shards, options.states);
        if (const auto* error = std::get_if<std::string>(&parsed)) {
            fmt::print(stderr, "{}\n", *error);
            return to_int(exit_code::usage);
        }
        selection = std::get<shard_selection>(std::move(parsed));
    }
    control_client c(path);
    if (!c.error().empty()) {
        fmt::print(stderr, "{}\n", c.error());
        return to_int(exit_code::unavailable);
    }
    // Only --shards and a complete --json need every shard; the summary form spares the daemon
    // building (and the socket carrying) thousands of entries per call.
    const bool full = options.list_shards || (options.as_json && !options.summary);
    c.request({{"command", "status"}, {"detail", full ? "full" : "summary"}});
    auto reply = c.next();
    if (!reply || !reply->is_object()) {
        fmt::print(stderr, "no answer from meshmaster on {}\n", path);
        return to_int(exit_code::unavailable);
    }
    const json::object& s = reply->as_object();
    // The daemon's verdict: every configured shard runs (0), or the fleet is degraded (1).
    const json::value* healthy = s.if_contains("healthy");
    if (!healthy || !healthy->is_bool()) {
        fmt::print(stderr, "meshmaster on {} gave no health verdict: {}\n", path, json::serialize(s));
        return to_int(exit_code::failure);
    }
    const int code = healthy->as_bool() ? 0 : 1;
    if (options.as_json) {
        fmt::print("{}\n", protocol::json_text(s));
        return code;
    }
    if (options.list_shards) {
        const shard_rows rows = shard_rows_text(s, selection);
        if (!rows.error.empty()) {
            fmt::print(stderr, "{}\n", rows.error);
            return to_int(exit_code::usage);
        }
        fmt::print("{}", rows.text);
        return code;
    }
    fmt::print("{}", status_summary_text(s));
    return code;
}

namespace {
// The terminal's width in columns, for the progress bar; 80 when it does not say (a pseudo-terminal
// nobody sized reports 0).
std::size_t terminal_width() {
    winsize ws{};
    if (::ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
    return 80;
}

// "failed slots started again: 0, 1" and the like, for the replies of restart and reload.
void print_retried(const json::object& o) {
    if (const auto* slots = o.if_contains("retried_slots"); slots && slots->is_array() && !slots->as_array().empty()) {
        std::string list;
        for (const auto& v : slots->as_array()) list += (list.empty() ? "" : ", ") + text(v);
        fmt::print("failed slots started again: {}\n", list);
    }
    if (const auto* spares = o.if_contains("retried_spares"); spares && spares->is_bool() && spares->as_bool()) {
        fmt::print("failed spares started again\n");
    }
}
}  // namespace

namespace {
// The first answer to an action (restart, drain): the object accepting it, or the exit code once
// the refusal (or the missing answer) is printed.
std::variant<json::object, int> accepted_answer(control_client& c, const std::string& path, std::string_view action) {
    auto answer = c.next();
    if (!answer || !answer->is_object()) {
        fmt::print(stderr, "no answer from meshmaster on {}\n", path);
        return to_int(exit_code::unavailable);
    }
    json::object& a = answer->as_object();
    if (const auto* ok = a.if_contains("accepted"); !ok || !ok->is_bool() || !ok->as_bool()) {
        const auto* why = a.if_contains("refused");
        if (!why) why = a.if_contains("error");
        fmt::print(stderr, "{} refused: {}\n", action, why ? text(*why) : json::serialize(a));
        return to_int(exit_code::failure);
    }
    return std::move(a);
}

// restart --wait, drain --wait: the daemon's progress lines until the outcome.
int follow_restart(control_client& c) {
    // A bar redrawn in place on a terminal; in a log or a pipe, a plain sentence at most once a
    // second or per tenth of the shards moved (restart_progress.hpp).
    const bool tty = ::isatty(STDOUT_FILENO);
    restart_progress_throttle throttle;
    const auto started = std::chrono::steady_clock::now();
    bool drawn = false;  // a bar is on the terminal's current line
    while (auto line = c.next()) {
        if (!line->is_object()) continue;
        const json::object& o = line->as_object();
        if (const auto* p = o.if_contains("progress")) {
            if (!p->is_object()) continue;  // null: the restart has not started yet (queued)
            const restart_progress progress = restart_progress_from_json(p->as_object());
            const json::value* elapsed_ms = p->as_object().if_contains("elapsed_ms");
            const double elapsed_s = elapsed_ms && elapsed_ms->is_number() ? elapsed_ms->to_number<double>() / 1000 : 0;
            if (tty) {
                fmt::print("\r\033[K{}", restart_progress_bar(progress, terminal_width(), elapsed_s));
                std::fflush(stdout);
                drawn = true;
            } else if (throttle.due(progress, std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count())) {
                fmt::print("{}\n", restart_progress_line(progress, elapsed_s));
                std::fflush(stdout);
            }
            continue;
        }
        if (const auto* f = o.if_contains("finished")) {
            if (drawn) fmt::print("\r\033[K");
            const bool ok = f->as_string() == "completed";
            fmt::print("restart {} {} in {:.3f} s, {} shards moved{}\n", text(o.at("restart")), ok ? "completed" : "FAILED",
                       o.at("duration_ms").to_number<double>() / 1000, text(o.at("shards_moved")),
                       ok ? "" : ": " + text(o.at("reason")));
            return to_int(ok ? exit_code::ok : exit_code::failure);
        }
    }
    if (drawn) {
        fmt::print("\r\033[K");
        std::fflush(stdout);
    }
    fmt::print(stderr, "the daemon closed the connection before the restart finished\n");
    return to_int(exit_code::failure);
}}  // namespace

int restart(const std::string& path, bool wait) {
    control_client c(path);
    if (!c.error().empty()) {
        fmt::print(stderr, "{}\n", c.error());
        return to_int(exit_code::unavailable);
    }
    c.request({{"command", "restart"}, {"wait", wait}});
    auto accepted = accepted_answer(c, path, "restart");
    if (const int* code = std::get_if<int>(&accepted)) return *code;
    const json::object& a = std::get<json::object>(accepted);
    if (!a.at("queued").as_bool()) {
        fmt::print("restart started (id {})\n", text(a.at("restart")));
    } else if (a.at("already_queued").as_bool()) {
        fmt::print("a restart is already queued behind the running one (id {}): this request joins it\n", text(a.at("restart")));
    } else {
        fmt::print("restart queued behind the running one (id {})\n", text(a.at("restart")));
    }
    print_retried(a);
    if (!wait) return to_int(exit_code::ok);
    return follow_restart(c);
}

int drain(const std::string& path, const std::string& slave, bool wait) {
    control_client c(path);
    if (!c.error().empty()) {
        fmt::print(stderr, "{}\n", c.error());
        return to_int(exit_code::unavailable);
    }
    c.request({{"command", "drain"}, {"slave", slave}, {"wait", wait}});
    auto accepted = accepted_answer(c, path, "drain");
    if (const int* code = std::get_if<int>(&accepted)) return *code;
    const json::object& a = std::get<json::object>(accepted);
    fmt::print("draining {}: restart {} moves its shards, with their state, to a new slave for its slot\n", slave,
               text(a.at("restart")));
    if (!wait) return to_int(exit_code::ok);
    return follow_restart(c);
}


namespace {
// One request, its one reply (an object), or the exit code when there is none.
std::variant<json::object, int> request_once(const std::string& path, const json::object& request) {
    control_client c(path);
    if (!c.error().empty()) {
        fmt::print(stderr, "{}\n", c.error());
        return to_int(exit_code::unavailable);
    }
    c.request(request);
    auto reply = c.next();
    if (!reply || !reply->is_object()) {
        fmt::print(stderr, "no answer from meshmaster on {}\n", path);
        return to_int(exit_code::unavailable);
    }
    return std::move(reply->as_object());
}

std::string_view result_of(const json::object& o) {
    const auto* r = o.if_contains("result");
    return r && r->is_string() ? std::string_view(r->as_string()) : std::string_view();
}
}  // namespace

int reload(const std::string& path) {
    auto answer = request_once(path, {{"command", "reload"}});
    if (const int* code = std::get_if<int>(&answer)) return *code;
    const json::object& o = std::get<json::object>(answer);
    const std::string_view result = result_of(o);
    if (result == "rejected") {
        fmt::print(stderr, "reload rejected, the running configuration is kept:\n");
        for (const auto& e : o.at("errors").as_array()) fmt::print(stderr, "  {}\n", text(e));
        return to_int(exit_code::config);
    }
    if (result != "reloaded") {
        fmt::print(stderr, "unexpected answer from meshmaster: {}\n", json::serialize(o));
        return to_int(exit_code::failure);
    }
    std::string keys;
    for (const auto& k : o.at("not_applied").as_array()) keys += (keys.empty() ? "" : ", ") + text(k);
    fmt::print("configuration reloaded{}\n", keys.empty() ? "" : " in part");
    print_retried(o);
    if (keys.empty()) return to_int(exit_code::ok);
    fmt::print(stderr,
               "NOT applied: {}: these settings change only when the meshmaster daemon itself restarts; they keep "
               "their running values\n",
               keys);
    return to_int(exit_code::failure);
}

int metrics(const std::string& path) {
    auto answer = request_once(path, {{"command", "metrics"}});
    if (const int* code = std::get_if<int>(&answer)) return *code;
    const json::object& o = std::get<json::object>(answer);
    const auto* text = o.if_contains("metrics");
    if (!text || !text->is_string()) {
        fmt::print(stderr, "unexpected answer from meshmaster: {}\n", json::serialize(o));
        return to_int(exit_code::failure);
    }
    fmt::print("{}", std::string_view(text->as_string()));
    return to_int(exit_code::ok);
}

namespace {
// The pid and event log of the daemon on `path`, from its status, before it is asked to stop.
struct daemon_identity {
    std::int64_t pid = 0;
    std::string event_log;  // absolute: a relative one is resolved against the daemon's directory
};
std::variant<daemon_identity, int> identify(const std::string& path) {
    auto answer = request_once(path, {{"command", "status"}, {"detail", "summary"}});
    if (const int* code = std::get_if<int>(&answer)) return *code;
    const json::object& o = std::get<json::object>(answer);
    const auto* master = o.if_contains("master");
    const auto* pid = master && master->is_object() ? master->as_object().if_contains("pid") : nullptr;
    if (!pid || !pid->is_int64()) {
        fmt::print(stderr, "unexpected answer from meshmaster: {}\n", json::serialize(o));
        return to_int(exit_code::failure);
    }
    daemon_identity id{.pid = pid->as_int64()};
    if (const auto* log = o.if_contains("event_log"); log && log->is_string()) id.event_log = std::string(log->as_string());
    if (!id.event_log.empty() && id.event_log.front() != '/') {
        char cwd[4096];
        const ssize_t n = ::readlink(fmt::format("/proc/{}/cwd", id.pid).c_str(), cwd, sizeof cwd - 1);
        if (n > 0) id.event_log = std::string(cwd, static_cast<std::size_t>(n)) + "/" + id.event_log;
    }
    return id;
}

// The event name of the log's last record ("" when there is none or it cannot be read).
std::string last_event(const std::string& path) {
    std::ifstream in(path, std::ios::binary | std::ios::ate);
    if (!in) return {};
    const std::streamoff size = in.tellg();
    const std::streamoff from = std::max<std::streamoff>(0, size - 65536);  // records are far shorter
    in.seekg(from);
    std::string tail(static_cast<std::size_t>(size - from), '\0');
    in.read(tail.data(), static_cast<std::streamsize>(tail.size()));
    while (!tail.empty() && tail.back() == '\n') tail.pop_back();
    const auto nl = tail.rfind('\n');
    boost::system::error_code ec;
    const json::value v = json::parse(nl == std::string::npos ? tail : tail.substr(nl + 1), ec);
    if (ec || !v.is_object()) return {};
    const auto* e = v.as_object().if_contains("event");
    return e && e->is_string() ? std::string(e->as_string()) : std::string();
}

// Waits for `pid` to exit through a pidfd (a pid reused meanwhile cannot fool it: the pidfd is
// taken before the stop is asked for). True once it exited, false at the deadline.
bool exited_within(int pidfd, std::chrono::milliseconds limit) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (true) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        pollfd p{.fd = pidfd, .events = POLLIN, .revents = 0};
        const int rc = ::poll(&p, 1, static_cast<int>(std::clamp<std::int64_t>(left.count(), 0, 60'000)));
        if (rc > 0) return true;
        if (rc < 0 && errno != EINTR) return true;  // cannot happen with a valid pidfd; do not spin
        if (left.count() <= 0) return false;
    }
}
}  // namespace

int stop(const std::string& path, const stop_options& options) {
    std::optional<std::chrono::milliseconds> limit;
    daemon_identity daemon;
    int pidfd = -1;
    struct close_at_exit {
        int& fd;
        ~close_at_exit() {
            if (fd >= 0) ::close(fd);
        }
    } pidfd_closer{pidfd};
    if (options.wait) {
        limit = parse_duration(options.timeout);
        if (!limit) {
            fmt::print(stderr, "--timeout: '{}' is not a duration (like 90s or 10m)\n", options.timeout);
            return to_int(exit_code::usage);
        }
        auto id = identify(path);
        if (const int* code = std::get_if<int>(&id)) return *code;
        daemon = std::get<daemon_identity>(std::move(id));
        pidfd = static_cast<int>(::syscall(SYS_pidfd_open, static_cast<pid_t>(daemon.pid), 0));
        if (pidfd < 0) {
            fmt::print(stderr, "cannot watch meshmaster's process {}: {}\n", daemon.pid, std::strerror(errno));
            return to_int(exit_code::failure);
        }
    }
    auto answer = request_once(path, {{"command", "stop"}, {"leave_slaves", options.leave_slaves}});
    if (const int* code = std::get_if<int>(&answer)) return *code;
    const json::object& o = std::get<json::object>(answer);
    const std::string_view result = result_of(o);
    if (result == "stopping") {
        fmt::print("stopping: the slaves are shut down one by one, then meshmaster exits\n");
    } else if (result == "detaching") {
        fmt::print("detaching: meshmaster exits once the moves in flight are over; the slaves keep running\n");
    } else if (result == "already_stopping") {
        fmt::print("already stopping: the stop under way goes on\n");
    } else if (result == "already_detaching") {
        fmt::print("already detaching: the detach under way goes on\n");
    } else if (result == "refused") {
        fmt::print(stderr, "stop refused: {}\n", text(o.at("refused")));
        return to_int(exit_code::failure);
    } else {
        fmt::print(stderr, "unexpected answer from meshmaster: {}\n", json::serialize(o));
        return to_int(exit_code::failure);
    }
    if (!options.wait) return to_int(exit_code::ok);
    std::fflush(stdout);
    if (!exited_within(pidfd, *limit)) {
        fmt::print(stderr, "meshmaster (pid {}) is still running after {}; it goes on stopping\n", daemon.pid,
                   options.timeout);
        return to_int(exit_code::failure);
    }
    // How it ended: the log's last record says whether the stop was clean (a crash leaves none).
    const std::string wanted = options.leave_slaves ? "master_detached" : "master_stopped";
    const std::string last = last_event(daemon.event_log);
    if (last.empty()) {
        fmt::print(stderr, "meshmaster (pid {}) exited; how it ended is unknown: cannot read its event log {}\n",
                   daemon.pid, daemon.event_log);
        return to_int(exit_code::failure);
    }
    if (last != wanted) {
        fmt::print(stderr, "meshmaster (pid {}) exited, but its event log ends with {}, not {}: not a clean {}\n",
                   daemon.pid, last, wanted, options.leave_slaves ? "detach" : "stop");
        return to_int(exit_code::failure);
    }
    fmt::print("meshmaster (pid {}) exited: {}\n", daemon.pid,
               options.leave_slaves ? "detached, the slaves keep running" : "stopped cleanly");
    return to_int(exit_code::ok);
}

int replay(const std::string& path, std::optional<std::uint32_t> configured, bool as_json) {
    if (::access(path.c_str(), R_OK) != 0) {
        fmt::print(stderr, "cannot read the event log {}\n", path);
        return to_int(exit_code::failure);
    }
    const auto logged = logged_shard_count(path);
    if (!configured && !logged) {
        fmt::print(stderr, "the event log {} names no shard count (no master_started record): give --shards or -c\n", path);
        return to_int(exit_code::usage);
    }
    if (configured && logged && *configured != *logged) {
        fmt::print(stderr, "note: the log's last master ran {} shards; replaying {} as configured\n", *logged, *configured);
    }
    const event_replay r = replay_event_log(path, configured ? *configured : *logged);
    if (as_json) {
        json::object o;
        o["records"] = r.records;
        o["unreadable"] = r.unreadable;
        o["clean_stop"] = r.clean_stop;
        json::array table;
        for (std::uint32_t i = 0; i < r.shards.size(); ++i) {
            table.push_back(json::object{{"shard", i}, {"owner", r.shards[i].owner}, {"epoch", r.shards[i].epoch},
                                         {"max_epoch", r.max_epochs[i]}});
        }
        o["shards"] = std::move(table);
        json::array open;
        for (const auto& m : r.open) {
            open.push_back(json::object{{"migration", m.id}, {"shard", m.shard}, {"from", m.from}, {"to", m.to}});
        }
        o["open_migrations"] = std::move(open);
        o["open_restarts"] = json::value_from(r.open_restarts);
        json::array unterminated;
        for (const auto& u : r.unterminated_restarts) {
            unterminated.push_back(json::object{{"restart", u.restart}, {"started_seq", u.started_seq}, {"problem", u.problem}});
        }
        o["unterminated_restarts"] = std::move(unterminated);
        fmt::print("{}\n", protocol::json_text(o));
        for (const auto& u : r.unterminated_restarts) {
            fmt::print(stderr, "restart {} (restart_started at seq {}) has no terminal record: {}\n", u.restart, u.started_seq,
                       u.problem);
        }
        return r.unterminated_restarts.empty() ? 0 : 1;
    }
    fmt::print("{} records{}, {}\n", r.records, r.unreadable ? fmt::format(" ({} unreadable)", r.unreadable) : "",
               r.clean_stop ? "ending with a clean stop" : "ending without a clean stop (a crash, or still running)");
    for (std::uint32_t i = 0; i < r.shards.size(); ++i) {
        fmt::print("shard {:>5}  {:<14} epoch {}{}\n", i, r.shards[i].owner.empty() ? "-" : r.shards[i].owner, r.shards[i].epoch,
                   r.max_epochs[i] != r.shards[i].epoch ? fmt::format(" (highest seen {})", r.max_epochs[i]) : "");
    }
    for (const auto& m : r.open) fmt::print("open move {}: shard {} {} -> {}\n", m.id, m.shard, m.from, m.to);
    std::set<std::uint64_t> overdue;
    for (const auto& u : r.unterminated_restarts) {
        overdue.insert(u.restart);
        fmt::print(stderr, "restart {} (restart_started at seq {}) has no terminal record: {}\n", u.restart, u.started_seq,
                   u.problem);
    }
    for (const std::uint64_t id : r.open_restarts) {
        if (!overdue.contains(id)) fmt::print("restart {} in progress: no terminal record yet\n", id);
    }
    return r.unterminated_restarts.empty() ? 0 : 1;
}

// --- events ----------------------------------------------------------------------------------

namespace {

bool matches(const json::object& o, const event_filter& f, const since_point& since) {
    if (!f.types.empty()) {
        const auto* e = o.if_contains("event");
        if (!e || !e->is_string()) return false;
        const std::string_view name = e->as_string();
        bool any = false;
        for (const auto& t : f.types) {
            any = any || (t.ends_with('*') ? name.starts_with(std::string_view(t).substr(0, t.size() - 1)) : name == t);
        }
        if (!any) return false;
    }
    if (f.slave) {
        const auto* s = o.if_contains("slave");
        const auto* p = o.if_contains("peer");
        const bool hit = (s && s->is_string() && s->as_string() == *f.slave) || (p && p->is_string() && p->as_string() == *f.slave);
        if (!hit) return false;
    }
    if (f.shard) {
        const auto* s = o.if_contains("shard");
        if (!s || !s->is_number() || s->to_number<std::uint32_t>() != *f.shard) return false;
    }
    if (since.seq) {
        const auto* s = o.if_contains("seq");
        if (!s || s->to_number<std::uint64_t>() < *since.seq) return false;
    }
    if (since.time) {
        const auto* t = o.if_contains("time");
        const auto at = t && t->is_string() ? parse_rfc3339(t->as_string()) : std::nullopt;
        if (!at || *at < *since.time) return false;
    }
    return true;
}

void print_human(const json::object& o) {
    const std::string time = o.contains("time") ? text(o.at("time")) : "";
    std::string line = fmt::format("{} {:>6} {:<24}", time.size() > 19 ? time.substr(0, 10) + " " + time.substr(11, 12) : time,
                                   o.contains("seq") ? text(o.at("seq")) : "", o.contains("event") ? text(o.at("event")) : "?");
    for (const auto& [key, value] : o) {
        if (key == "time" || key == "seq" || key == "event" || key == "mono_ms") continue;
        if (key == "duration_ms" || key == "pause_ms") {
            line += fmt::format(" {}={:.3f}ms", std::string_view(key).substr(0, key.size() - 3), value.to_number<double>());
        } else {
            line += fmt::format(" {}={}", std::string_view(key), text(value));
        }
    }
    fmt::print("{}\n", line);
}

}  // namespace

int events(const std::string& path, const event_filter& filter, bool as_json, bool follow) {
    const auto since = filter.since ? parse_since(*filter.since, std::chrono::system_clock::now()) : since_point{};
    if (!since) {
        fmt::print(stderr,
                   "--since: '{}' is not a duration ago (90s, 5m, 2h, 1d), an RFC 3339 time "
                   "(2026-12-06T14:00:00+01:00, ...Z), a local time (2026-12-06 14:00) or a sequence number (#812)\n",
                   *filter.since);
        return to_int(exit_code::usage);
    }
    std::ifstream in(path);
    if (!in && !follow) {
        fmt::print(stderr, "cannot read the event log {}\n", path);
        return to_int(exit_code::failure);
    }
    struct stat st {};
    ino_t inode = ::stat(path.c_str(), &st) == 0 ? st.st_ino : 0;
    std::string partial;
    while (true) {
        std::string line;
        while (in && std::getline(in, line)) {
            if (in.eof()) {  // a line still being written: keep it for the next round
                partial += line;
                break;
            }
            line = partial + line;
            partial.clear();
            boost::system::error_code ec;
            json::value v = json::parse(line, ec);
            if (ec || !v.is_object() || !matches(v.as_object(), filter, *since)) continue;
            if (as_json) fmt::print("{}\n", protocol::json_text(v));  // plain decimals, also from older logs
            else print_human(v.as_object());
        }
        if (!follow) return to_int(exit_code::ok);
        std::fflush(stdout);
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
        // Rotation: the path now names another file; finish the old one, then switch.
        if (::stat(path.c_str(), &st) == 0 && st.st_ino != inode) {
            in = std::ifstream(path);
            inode = st.st_ino;
            partial.clear();
            continue;
        }
        in.clear();
    }
}

}  // namespace meshmaster::master::cli
