#include "daemon_metrics.hpp"

#include "event_classes.hpp"
#include "shard_table.hpp"
#include "slave_pool.hpp"

#include <cmath>

namespace meshmaster::master {

namespace {

constexpr shard_phase shard_phases[] = {shard_phase::unowned, shard_phase::starting, shard_phase::running,
                                        shard_phase::stopping, shard_phase::resuming};
constexpr slave_phase slave_phases[] = {slave_phase::spawning, slave_phase::soft_starting, slave_phase::ready,
                                        slave_phase::running,  slave_phase::retiring,      slave_phase::lost};
constexpr std::string_view restart_outcomes[] = {"completed", "failed", "abandoned"};

double seconds(double ms) { return ms / 1000; }

}  // namespace

daemon_metrics::daemon_metrics(std::string_view version, std::string_view protocol)
    : build_info_(registry_.gauge("meshmaster_build_info",
                                  "Always 1: the daemon's version and the protocol version it speaks, as labels",
                                  {"version", "protocol"})),
      shards_(registry_.gauge("meshmaster_shards", "Configured shards by phase (every phase present, at 0 too)", {"state"})),
      slaves_(registry_.gauge("meshmaster_slaves", "Slaves the master knows, by phase (every phase present, at 0 too)", {"state"})),
      handoff_pause_(registry_.histogram(
          "meshmaster_handoff_pause_seconds",
          "Completed migrations: the shard's pause as the slaves measured it, from the old holder's stop to the new "
          "holder's resume (protocol 1.3 slaves only)",
          metrics::duration_buckets())),
      handoff_pause_master_(registry_.histogram(
          "meshmaster_handoff_pause_master_seconds",
          "Completed migrations: the shard's unowned window as the master saw it (every slave version)",
          metrics::duration_buckets())),
      migration_duration_(registry_.histogram("meshmaster_migration_duration_seconds",
                                              "Completed migrations: from the move's start to the new holder's resume",
                                              metrics::duration_buckets())),
      restarts_(registry_.counter("meshmaster_restarts_total",
                                  "Rolling restarts ended (a drain is a restart of one slot), by outcome: completed, "
                                  "failed, abandoned (by a master killed during it, closed by the next)",
                                  {"outcome"})),
      heartbeat_rtt_(registry_.gauge("meshmaster_slave_heartbeat_rtt_seconds",
                                     "The last heartbeat round trip per connected slave, less the time the slave held "
                                     "the echo (protocol 1.3 slaves only)",
                                     {"slave"})),
      frames_(registry_.counter("meshmaster_frames_total",
                                "Frames read from (in) and queued for (out) slaves, by protocol event; application "
                                "events as one",
                                {"direction", "event"})),
      refusals_(registry_.counter("meshmaster_refusals_total",
                                  "Input turned away, by reason (the refusal's event name, or the HTTP server's reason), "
                                  "including those the refusal limiter kept from the log",
                                  {"reason"})),
      spawn_failures_(registry_.counter("meshmaster_spawn_failures_total", "Slave processes that could not be started")),
      events_(registry_.counter("meshmaster_events_total",
                                "Event records by event name, including refusals the limiter kept from the log",
                                {"event"})),
      http_requests_(registry_.counter("meshmaster_http_requests_total",
                                       "HTTP requests answered by an endpoint or the router, by route and status code "
                                       "(those turned away before routing are in meshmaster_refusals_total only)",
                                       {"route", "code"})),
      process_cpu_(registry_.counter("process_cpu_seconds_total", "Total user and system CPU time spent in seconds")),
      process_resident_(registry_.gauge("process_resident_memory_bytes", "Resident memory size in bytes")),
      process_virtual_(registry_.gauge("process_virtual_memory_bytes", "Virtual memory size in bytes")),
      process_open_fds_(registry_.gauge("process_open_fds", "Number of open file descriptors")),
      process_max_fds_(registry_.gauge("process_max_fds", "Maximum number of open file descriptors")),
      process_start_time_(registry_.gauge("process_start_time_seconds",
                                          "Start time of the process since unix epoch in seconds")) {
    build_info_.set({version, protocol}, 1);
    for (const auto outcome : restart_outcomes) restarts_.add({outcome}, 0);
    for (const auto& [kind, event] : event_table) {
        if (is_refusal(kind)) refusals_.add({event}, 0);
    }
}

void daemon_metrics::observe(const event_record& r) {
    ++events_seen_[static_cast<std::size_t>(r.event.kind())];
    if (is_refusal(r.event)) refusals_.add({r.event.name()});
    switch (r.event.kind()) {
        case event_kind::migration_completed:
            if (r.duration_ms) migration_duration_.observe({}, seconds(*r.duration_ms));
            if (r.pause_ms) handoff_pause_master_.observe({}, seconds(*r.pause_ms));
            if (r.slave_pause_ms) handoff_pause_.observe({}, seconds(*r.slave_pause_ms));
            break;
        case event_kind::restart_completed: restarts_.add({"completed"}); break;
        case event_kind::restart_failed: restarts_.add({"failed"}); break;
        case event_kind::restart_abandoned: restarts_.add({"abandoned"}); break;
        case event_kind::spawn_failed: spawn_failures_.add({}); break;
        default: break;
    }
}

void daemon_metrics::count_refusal(std::string_view reason) { refusals_.add({reason}); }

void daemon_metrics::count_http_request(std::string_view route, unsigned status) {
    http_requests_.add({route, std::to_string(status)});
}

std::string daemon_metrics::text(const supervisor_status& status, const frame_counts& frames, const process_facts& process) {
    // Every phase is a series even at 0: a dashboard or an alert on `state="unowned"` must see 0,
    // not nothing. A phase a later build adds is counted too (its series appears with it).
    shards_.clear();
    for (const shard_phase p : shard_phases) shards_.set({name(p)}, 0);
    for (const shard_status& s : status.shards) shards_.add({s.phase}, 1);
    slaves_.clear();
    for (const slave_phase p : slave_phases) slaves_.set({name(p)}, 0);
    heartbeat_rtt_.clear();
    for (const slave_status& s : status.slaves) {
        slaves_.add({s.phase}, 1);
        // Whole microseconds (as the master measures them), divided once: 0.000143, not the
        // 0.00014299999999999998 that ms / 1000 of 0.143 prints.
        if (s.heartbeat_rtt_ms) heartbeat_rtt_.set({s.id}, std::round(*s.heartbeat_rtt_ms * 1000) / 1e6);
    }
    for (std::size_t slot = 0; slot < frame_counts::slots; ++slot) {
        // No event has id 0: the slot of ids this build does not know, shown once one arrived.
        if (slot == frame_counts::unknown && frames.in[slot] == 0 && frames.out[slot] == 0) continue;
        frames_.set({"in", frame_counts::label(slot)}, static_cast<double>(frames.in[slot]));
        frames_.set({"out", frame_counts::label(slot)}, static_cast<double>(frames.out[slot]));
    }
    for (const auto& [kind, event] : event_table) {
        events_.set({event}, static_cast<double>(events_seen_[static_cast<std::size_t>(kind)]));
    }
    const auto set_if = [](metrics::family& f, const std::optional<double>& v) {
        f.clear();
        if (v) f.set({}, *v);
    };
    // A fact not read (no /proc) leaves its metric without a sample rather than a false 0.
    if (process.cpu_seconds) process_cpu_.set({}, *process.cpu_seconds);
    set_if(process_resident_, process.resident_bytes);
    set_if(process_virtual_, process.virtual_bytes);
    set_if(process_open_fds_, process.open_fds);
    set_if(process_max_fds_, process.max_fds);
    set_if(process_start_time_, process.start_time_seconds);
    return registry_.text();
}

}  // namespace meshmaster::master
