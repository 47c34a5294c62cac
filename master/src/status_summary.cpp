// `meshmaster status`'s summary: see status_summary.hpp.
#include "status_summary.hpp"

#include "json_fields.hpp"

#include <boost/json/array.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <vector>

namespace meshmaster::master {

namespace json = boost::json;
using namespace json_fields;

namespace {

const json::array& array(const json::value& v) {
    static const json::array empty;
    return v.is_array() ? v.as_array() : empty;
}

std::string plural(std::uint64_t n, std::string_view one, std::string_view many) {
    return fmt::format("{} {}", n, n == 1 ? one : many);
}

// "12.3 s", "5m 12s", "2h 05m", "3d 04h": as precise as a glance needs.
std::string duration(double ms) {
    if (!(ms >= 0)) ms = 0;
    const auto s = static_cast<std::uint64_t>(ms / 1000);
    if (s < 60) return fmt::format("{:.1f} s", ms / 1000);
    if (s < 3600) return fmt::format("{}m {:02}s", s / 60, s % 60);
    if (s < 86400) return fmt::format("{}h {:02}m", s / 3600, s % 3600 / 60);
    return fmt::format("{}d {:02}h", s / 86400, s % 86400 / 3600);
}

// A problem sentence can name thousands of shard ranges in a scattered fleet; a line is enough here.
constexpr std::size_t problem_width = 500;
std::string clipped(std::string line) {
    if (line.size() <= problem_width) return line;
    line.resize(problem_width);
    return line + "... (in full: meshmaster status --json)";
}

// The phases, in the order an operator reads them: the healthy one first.
constexpr std::string_view shard_phases[] = {"running", "stopping", "resuming", "starting", "unowned"};

// "12 of 1024 shards not running: 10 unowned, 2 starting": what keeps the fleet from running.
std::string not_running_words(const json::object& s, std::uint64_t down) {
    const json::object& states = object(field(s, "shards_not_running_states"));
    std::string words = fmt::format("{} of {} not running", down, plural(count(field(s, "shard_count")), "shard", "shards"));
    bool first = true;
    for (const std::string_view phase : {"unowned", "starting", "resuming", "stopping"}) {
        if (const std::uint64_t n = count(field(states, phase))) {
            words += fmt::format("{}{} {}", first ? ": " : ", ", n, phase);
            first = false;
        }
    }
    return words;
}

void header(std::string& out, const json::object& s) {
    const bool stopping = flag(field(s, "stopping"));
    out += fmt::format("meshmaster on {}  generation {}  shards {}/{} running  restarts {} completed, {} failed{}{}{}\n",
                       text(field(s, "listen")), text(field(s, "generation")), text(field(s, "shards_running")),
                       text(field(s, "shard_count")), text(field(s, "restarts_completed")),
                       text(field(s, "restarts_failed")), flag(field(s, "restart_queued")) ? "  (one queued)" : "",
                       stopping ? (flag(field(s, "detaching")) ? "  DETACHING" : "  STOPPING") : "",
                       flag(field(s, "adopting")) ? "  ADOPTING" : "");
    const json::object& m = object(field(s, "master"));
    if (!m.empty()) {
        out += fmt::format("master     {}, pid {}, up {}\n", text(field(m, "id")), text(field(m, "pid")),
                           duration(number(field(m, "uptime_ms"))));
    }
}

void health(std::string& out, const json::object& s) {
    const std::uint64_t down = count(field(s, "shards_not_running"));
    const std::uint64_t moving = count(field(s, "shards_moving"));
    const json::array& problems = array(field(s, "problems"));
    if (flag(field(s, "healthy"))) {
        out += fmt::format("health     healthy: all {} running{}\n", plural(count(field(s, "shard_count")), "shard", "shards"),
                           moving ? fmt::format(", {} of them moving in a planned handoff", moving) : "");
        return;
    }
    // The headline says what matters most; every problem the daemon named follows, one a line
    // (`DEGRADED:` and these sentences are what scripts and the docs have always matched).
    const std::string headline = down ? not_running_words(s, down)
                                      : problems.empty() ? "the daemon names no problem" : text(problems.front());
    out += fmt::format("health     DEGRADED: {}\n", clipped(headline));
    for (const auto& p : problems) out += fmt::format("  - {}\n", clipped(text(p)));
}

void shard_counts(std::string& out, const json::object& s) {
    const json::value& states = field(s, "shard_states");
    if (!states.is_object()) {  // an older daemon: no counts per state
        out += fmt::format("shards     {}/{} running\n", text(field(s, "shards_running")), text(field(s, "shard_count")));
        return;
    }
    std::string line;
    for (const std::string_view phase : shard_phases) {
        const std::uint64_t n = count(field(states.as_object(), phase));
        if (n || phase == "running") line += fmt::format("{}{} {}", line.empty() ? "" : ", ", n, phase);
    }
    if (const std::uint64_t moving = count(field(s, "shards_moving"))) {
        line += fmt::format("; {} in a planned handoff", moving);
    }
    out += fmt::format("shards     {}\n", line);
    const std::uint64_t down = count(field(s, "shards_not_running"));
    const json::array& first = array(field(s, "shards_not_running_first"));
    if (!down) return;
    out += fmt::format("not running ({})\n  {:>6}  {:<9} {:<14} {:>6}\n", down, "SHARD", "STATE", "OWNER", "EPOCH");
    for (const auto& v : first) {
        const json::object& sh = object(v);
        const std::string owner = text(field(sh, "owner"));
        out += fmt::format("  {:>6}  {:<9} {:<14} {:>6}\n", text(field(sh, "shard")), text(field(sh, "phase")),
                           owner.empty() ? "-" : owner, text(field(sh, "epoch")));
    }
    if (down > first.size()) {
        out += fmt::format("  ... and {} more (meshmaster status --state not-running lists them all)\n", down - first.size());
    }
}

// "12/16 shards moved, 3/4 slaves, 2 in flight, 0.4 s".
std::string progress_body(const json::object& r) {
    return fmt::format("{}/{} shards moved, {}/{} slaves, {} in flight, {:.1f} s{}", text(field(r, "migrations_done")),
                       text(field(r, "migrations_total")), text(field(r, "slaves_done")), text(field(r, "slaves_total")),
                       text(field(r, "in_flight")), number(field(r, "elapsed_ms")) / 1000,
                       flag(field(r, "failing")) ? " (failing: rolling back)" : "");
}

void restart(std::string& out, const json::object& s) {
    if (const json::value& r = field(s, "restart"); r.is_object()) {
        out += fmt::format("restart    {} running: {}{}\n", text(field(r.as_object(), "id")), progress_body(r.as_object()),
                           flag(field(s, "restart_queued")) ? "; another one queued" : "");
        return;
    }
    const json::value& last = field(s, "last_restart");
    if (!last.is_object()) {
        out += "restart    none since this master started\n";
        return;
    }
    const json::object& l = last.as_object();
    const bool ok = text(field(l, "result")) == "completed";
    const std::string reason = text(field(l, "reason"));
    out += fmt::format("restart    none running; the last, {}, {} in {:.3f} s, {} moved{}\n", text(field(l, "id")),
                       ok ? "completed" : "FAILED", number(field(l, "duration_ms")) / 1000,
                       plural(count(field(l, "shards_moved")), "shard", "shards"), ok || reason.empty() ? "" : ": " + reason);
}

// A slave as expected: connected, and running shards (or ready, for a spare).
bool slave_fine(const json::object& sl) {
    const std::string phase = text(field(sl, "phase"));
    return flag(field(sl, "connected")) && (phase == "running" || (field(sl, "slot").is_null() && phase == "ready"));
}

void slaves(std::string& out, const json::object& s) {
    const json::array& list = array(field(s, "slaves"));
    std::map<std::string, std::uint64_t> phases;
    std::vector<const json::object*> shown;
    for (const auto& v : list) {
        const json::object& sl = object(v);
        ++phases[text(field(sl, "phase"))];
        if (list.size() <= slaves_listed || !slave_fine(sl)) shown.push_back(&sl);
    }
    // By slot (a slot's old and new slave side by side in a restart), spares last; not by the id's
    // spelling, which puts s10 before s2.
    std::stable_sort(shown.begin(), shown.end(), [](const json::object* a, const json::object* b) {
        const json::value& sa = field(*a, "slot");
        const json::value& sb = field(*b, "slot");
        if (sa.is_number() != sb.is_number()) return sa.is_number();
        return sa.is_number() && count(sa) < count(sb);
    });
    std::string counts;
    for (const auto& [phase, n] : phases) counts += fmt::format("{}{} {}", counts.empty() ? ": " : ", ", n, phase);
    out += fmt::format("slaves     {}{}\n", list.size(), counts);
    if (shown.empty()) return;
    // A slot's home shards, to show beside its slave.
    std::map<std::uint64_t, std::string> home;
    for (const auto& v : array(field(s, "slots"))) {
        const json::object& slot = object(v);
        home[count(field(slot, "slot"))] = fmt::format("{}..{}", text(field(slot, "first_shard")), text(field(slot, "last_shard")));
    }
    const bool all = list.size() <= slaves_listed;
    out += fmt::format("\n{}{:<14} {:>5} {:>8} {:<14} {:>6} {:>10} {:>9} {:<21} {}\n", all ? "" : "not running:\n", "SLAVE",
                       "SLOT", "PID", "PHASE", "SHARDS", "GENERATION", "RTT", "ADDRESS", "HOME SHARDS");
    const std::size_t limit = all ? shown.size() : std::min(shown.size(), slaves_not_running_listed);
    for (std::size_t i = 0; i < limit; ++i) {
        const json::object& sl = *shown[i];
        const json::value& slot = field(sl, "slot");
        const std::string range = slot.is_number() && home.contains(count(slot)) ? home[count(slot)] : "spare";
        // The heartbeat round trip and the connection's address (protocol 1.3 slaves; "-" before
        // the first echo, for older slaves, or when not connected).
        const json::value& rtt = field(sl, "heartbeat_rtt_ms");
        const json::value& address = field(sl, "address");
        out += fmt::format("{:<14} {:>5} {:>8} {:<14} {:>6} {:>10} {:>9} {:<21} {}{}\n", text(field(sl, "id")), text(slot),
                           text(field(sl, "pid")), text(field(sl, "phase")), text(field(sl, "shards")),
                           text(field(sl, "generation")),
                           rtt.is_number() ? fmt::format("{:.2f} ms", rtt.to_number<double>()) : std::string("-"),
                           address.is_string() ? text(address) : std::string("-"), range,
                           flag(field(sl, "connected")) ? "" : "  (disconnected)");
    }
    if (shown.size() > limit) {
        out += fmt::format("... and {} more (meshmaster status --json lists every slave)\n", shown.size() - limit);
    }
}

}  // namespace

std::string status_summary_text(const json::object& s) {
    std::string out;
    header(out, s);
    health(out, s);
    shard_counts(out, s);
    restart(out, s);
    slaves(out, s);
    return out;
}

}  // namespace meshmaster::master
