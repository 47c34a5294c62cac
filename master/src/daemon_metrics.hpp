// The daemon's Prometheus metrics (docs/operations.md, "Metrics", lists them): counters and
// histograms fed by every event record the daemon logs (observe(), called where each record passes,
// daemon_runtime::log_event, before the refusal limiter holds any back), refusals the HTTP server
// counts itself (count_refusal), and gauges taken from the supervisor's status, the slave server's
// frame counts and the process's facts when the text is written. Sans-I/O: unit-tested with
// records and statuses made by hand. Thread safety: none; the daemon's one thread.
#pragma once

#include "frame_counts.hpp"
#include "metrics_registry.hpp"
#include "process_metrics.hpp"

#include <meshmaster/master/event_record.hpp>
#include <meshmaster/master/status.hpp>

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace meshmaster::master {

class daemon_metrics {
public:
    /// `version`: the daemon's (meshmaster --version); `protocol`: "MAJOR.MINOR" it speaks.
    daemon_metrics(std::string_view version, std::string_view protocol);
    daemon_metrics(const daemon_metrics&) = delete;
    daemon_metrics& operator=(const daemon_metrics&) = delete;

    /// One record of the event log, as the core or the slave server made it.
    void observe(const event_record& r);
    /// A refusal that is no event record — an HTTP request turned away ("http_unauthorized", …).
    /// `reason` must be a snake_case word; a new one adds a series.
    void count_refusal(std::string_view reason);
    /// An HTTP request answered by the router or an endpoint: `route` as http_route.hpp names it
    /// ("GET /v1/status"; "other" for a path that names none), `status` the code answered. Those
    /// the server turned away before routing (413, 431, 503, …) are refusals only.
    void count_http_request(std::string_view route, unsigned status);

    /// The exposition (text format 0.0.4) with the gauges as of now.
    [[nodiscard]] std::string text(const supervisor_status& status, const frame_counts& frames, const process_facts& process);

private:
    metrics::registry registry_;
    metrics::family& build_info_;
    metrics::family& shards_;
    metrics::family& slaves_;
    metrics::family& handoff_pause_;
    metrics::family& handoff_pause_master_;
    metrics::family& migration_duration_;
    metrics::family& restarts_;
    metrics::family& heartbeat_rtt_;
    metrics::family& frames_;
    metrics::family& refusals_;
    metrics::family& spawn_failures_;
    metrics::family& events_;
    metrics::family& http_requests_;
    metrics::family& process_cpu_;
    metrics::family& process_resident_;
    metrics::family& process_virtual_;
    metrics::family& process_open_fds_;
    metrics::family& process_max_fds_;
    metrics::family& process_start_time_;
    std::array<std::uint64_t, event_table.size()> events_seen_{};  // per event_kind: no lookup per record
};

}  // namespace meshmaster::master
