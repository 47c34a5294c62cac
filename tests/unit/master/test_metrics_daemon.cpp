// The daemon's metrics (daemon_metrics.hpp) from records and statuses made by hand, the frame
// counts the slave server keeps (frame_counts.hpp), and the process facts read from /proc
// (process_metrics.hpp).
#include "daemon_metrics.hpp"

#include <meshmaster/protocol/codec.hpp>

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <sstream>
#include <string>
#include <vector>

using namespace meshmaster::master;
namespace p = meshmaster::protocol;

namespace {

bool has_line(const std::string& text, const std::string& line) {
    std::istringstream in(text);
    for (std::string l; std::getline(in, l);) {
        if (l == line) return true;
    }
    return false;
}

std::size_t lines_starting(const std::string& text, const std::string& prefix) {
    std::istringstream in(text);
    std::size_t n = 0;
    for (std::string l; std::getline(in, l);) n += l.starts_with(prefix) ? 1 : 0;
    return n;
}

supervisor_status two_slaves() {
    supervisor_status st;
    st.shards = {{.shard = 0, .owner = "s-1", .epoch = 1, .phase = "running"},
                 {.shard = 1, .owner = "s-1", .epoch = 1, .phase = "running"},
                 {.shard = 2, .owner = "s-2", .epoch = 2, .phase = "stopping", .moving = true},
                 {.shard = 3, .owner = "", .epoch = 0, .phase = "unowned"}};
    st.slaves = {{.id = "s-1", .slot = 0, .generation = 1, .pid = 10, .phase = "running", .connected = true,
                  .heartbeat_rtt_ms = 0.143},  // 143 us: printed 0.000143, not 0.00014299999999999998
                 {.id = "s-2", .slot = 1, .generation = 1, .pid = 11, .phase = "retiring", .connected = true}};
    return st;
}

}  // namespace

TEST_CASE("shards and slaves are counted per phase, every phase present at 0; RTT only for slaves that have one") {
    daemon_metrics m("9.9.9", "1.3");
    const std::string t = m.text(two_slaves(), {}, {});
    CHECK(has_line(t, "meshmaster_build_info{version=\"9.9.9\",protocol=\"1.3\"} 1"));
    CHECK(has_line(t, "meshmaster_shards{state=\"running\"} 2"));
    CHECK(has_line(t, "meshmaster_shards{state=\"stopping\"} 1"));
    CHECK(has_line(t, "meshmaster_shards{state=\"unowned\"} 1"));
    CHECK(has_line(t, "meshmaster_shards{state=\"starting\"} 0"));
    CHECK(has_line(t, "meshmaster_shards{state=\"resuming\"} 0"));
    CHECK(lines_starting(t, "meshmaster_shards{") == 5);
    CHECK(has_line(t, "meshmaster_slaves{state=\"running\"} 1"));
    CHECK(has_line(t, "meshmaster_slaves{state=\"retiring\"} 1"));
    for (const char* phase : {"spawning", "soft_starting", "ready", "lost"}) {
        CHECK(has_line(t, fmt::format("meshmaster_slaves{{state=\"{}\"}} 0", phase)));
    }
    CHECK(has_line(t, "meshmaster_slave_heartbeat_rtt_seconds{slave=\"s-1\"} 0.000143"));
    CHECK(lines_starting(t, "meshmaster_slave_heartbeat_rtt_seconds{") == 1);

    // A later scrape sees the fleet as it is then: the slave that left has no RTT series any more.
    supervisor_status later = two_slaves();
    later.slaves.erase(later.slaves.begin());
    const std::string t2 = m.text(later, {}, {});
    CHECK(lines_starting(t2, "meshmaster_slave_heartbeat_rtt_seconds{") == 0);
    CHECK(has_line(t2, "meshmaster_slaves{state=\"running\"} 0"));
}

TEST_CASE("migrations fill the duration and both pause histograms; the slaves' pause only when reported") {
    daemon_metrics m("1", "1.3");
    m.observe({.event = event_kind::migration_completed, .shard = 1, .duration_ms = 500, .pause_ms = 3, .slave_pause_ms = 2});
    m.observe({.event = event_kind::migration_completed, .shard = 2, .duration_ms = 2000, .pause_ms = 30});  // an old slave
    m.observe({.event = event_kind::migration_rolled_back, .shard = 3, .duration_ms = 5});
    const std::string t = m.text({}, {}, {});
    CHECK(has_line(t, "meshmaster_migration_duration_seconds_count 2"));
    CHECK(has_line(t, "meshmaster_migration_duration_seconds_sum 2.5"));
    CHECK(has_line(t, "meshmaster_migration_duration_seconds_bucket{le=\"0.5\"} 1"));
    CHECK(has_line(t, "meshmaster_migration_duration_seconds_bucket{le=\"2.5\"} 2"));
    CHECK(has_line(t, "meshmaster_handoff_pause_master_seconds_count 2"));
    CHECK(has_line(t, "meshmaster_handoff_pause_master_seconds_bucket{le=\"0.005\"} 1"));
    CHECK(has_line(t, "meshmaster_handoff_pause_seconds_count 1"));
    CHECK(has_line(t, "meshmaster_handoff_pause_seconds_bucket{le=\"0.001\"} 0"));
    CHECK(has_line(t, "meshmaster_handoff_pause_seconds_bucket{le=\"0.0025\"} 1"));
    CHECK(has_line(t, "meshmaster_handoff_pause_seconds_sum 0.002"));
    CHECK(has_line(t, "meshmaster_events_total{event=\"migration_completed\"} 2"));
    CHECK(has_line(t, "meshmaster_events_total{event=\"migration_rolled_back\"} 1"));
    CHECK(has_line(t, "meshmaster_events_total{event=\"master_started\"} 0"));
}

TEST_CASE("restart outcomes, spawn failures and refusals are counted, every outcome and refusal present at 0") {
    daemon_metrics m("1", "1.3");
    std::string t = m.text({}, {}, {});
    for (const char* outcome : {"completed", "failed", "abandoned"}) {
        CHECK(has_line(t, fmt::format("meshmaster_restarts_total{{outcome=\"{}\"}} 0", outcome)));
    }
    for (const char* reason : {"auth_failed", "frame_refused", "handshake_timeout", "tls_handshake_failed",
                               "connection_refused", "frame_truncated", "stale_ack_ignored"}) {
        CHECK(has_line(t, fmt::format("meshmaster_refusals_total{{reason=\"{}\"}} 0", reason)));
    }
    CHECK(has_line(t, "meshmaster_spawn_failures_total 0"));

    m.observe({.event = event_kind::restart_completed, .restart = 1});
    m.observe({.event = event_kind::restart_failed, .restart = 2});
    m.observe({.event = event_kind::restart_completed, .restart = 3});
    m.observe({.event = event_kind::spawn_failed, .slave = "s-9"});
    for (int i = 0; i < 3; ++i) m.observe({.event = event_kind::auth_failed, .address = "10.0.0.1:5"});
    m.observe({.event = event_kind::slave_connected, .slave = "s-1"});  // no refusal
    m.count_refusal("http_unauthorized");
    m.count_refusal("http_unauthorized");
    t = m.text({}, {}, {});
    CHECK(has_line(t, "meshmaster_restarts_total{outcome=\"completed\"} 2"));
    CHECK(has_line(t, "meshmaster_restarts_total{outcome=\"failed\"} 1"));
    CHECK(has_line(t, "meshmaster_restarts_total{outcome=\"abandoned\"} 0"));
    CHECK(has_line(t, "meshmaster_spawn_failures_total 1"));
    CHECK(has_line(t, "meshmaster_refusals_total{reason=\"auth_failed\"} 3"));
    CHECK(has_line(t, "meshmaster_refusals_total{reason=\"http_unauthorized\"} 2"));
    CHECK(has_line(t, "meshmaster_refusals_total{reason=\"frame_refused\"} 0"));
}

TEST_CASE("HTTP requests are counted by route and status code, a series appearing with its first request") {
    daemon_metrics m("1", "1.3");
    CHECK(lines_starting(m.text({}, {}, {}), "meshmaster_http_requests_total{") == 0);
    m.count_http_request("GET /v1/status", 200);
    m.count_http_request("GET /v1/status", 200);
    m.count_http_request("GET /v1/status", 401);
    m.count_http_request("POST /v1/slaves/{id}/drain", 409);
    const std::string t = m.text({}, {}, {});
    CHECK(has_line(t, "# TYPE meshmaster_http_requests_total counter"));
    CHECK(has_line(t, R"(meshmaster_http_requests_total{route="GET /v1/status",code="200"} 2)"));
    CHECK(has_line(t, R"(meshmaster_http_requests_total{route="GET /v1/status",code="401"} 1)"));
    CHECK(has_line(t, R"(meshmaster_http_requests_total{route="POST /v1/slaves/{id}/drain",code="409"} 1)"));
    CHECK(lines_starting(t, "meshmaster_http_requests_total{") == 3);
}

TEST_CASE("frames are counted per event and direction: whole frames walked header by header") {
    frame_counts f;
    std::vector<std::byte> out;
    REQUIRE(p::encode(p::heartbeat{.progress = 1}, out).has_value());
    REQUIRE(p::encode(p::heartbeat{.progress = 2}, out).has_value());
    REQUIRE(p::encode(p::start_shard{.shard = 4, .epoch = 7}, out).has_value());
    f.sent(out);
    f.received(static_cast<std::uint32_t>(p::event_id::slave_hello));
    f.received(p::application_event_first + 5);
    f.received(999);  // no such event in this build
    CHECK(f.out[frame_counts::slot(18)] == 2);
    CHECK(f.out[frame_counts::slot(14)] == 1);
    daemon_metrics m("1", "1.3");
    const std::string t = m.text({}, f, {});
    CHECK(has_line(t, "meshmaster_frames_total{direction=\"out\",event=\"heartbeat\"} 2"));
    CHECK(has_line(t, "meshmaster_frames_total{direction=\"out\",event=\"start_shard\"} 1"));
    CHECK(has_line(t, "meshmaster_frames_total{direction=\"in\",event=\"slave_hello\"} 1"));
    CHECK(has_line(t, "meshmaster_frames_total{direction=\"in\",event=\"application\"} 1"));
    CHECK(has_line(t, "meshmaster_frames_total{direction=\"in\",event=\"unknown\"} 1"));
    CHECK(has_line(t, "meshmaster_frames_total{direction=\"in\",event=\"heartbeat\"} 0"));

    // A cut tail (a header without its whole body) counts what is whole and stops.
    frame_counts g;
    std::vector<std::byte> cut(out.begin(), out.end() - 1);
    g.sent(cut);
    CHECK(g.out[frame_counts::slot(18)] == 2);
    CHECK(g.out[frame_counts::slot(14)] == 1);  // its header arrived: counted as queued
    g.sent(std::span<const std::byte>(out.data(), 3));
    CHECK(g.out[frame_counts::slot(18)] == 2);
}

TEST_CASE("process facts: /proc/self/stat parsed past a command name with spaces and parentheses") {
    // Fields 14, 15 (utime, stime: 250 + 50 ticks), 22 (starttime: 1000 ticks), 23 (vsize), 24 (rss pages).
    const std::string stat =
        "4242 (my (odd) prog) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 1000 123456789 300 "
        "18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n";
    const process_facts f = facts_from_stat(stat, 1'700'000'000.0, 100, 4096);
    REQUIRE(f.cpu_seconds);
    CHECK(*f.cpu_seconds == doctest::Approx(3.0));
    REQUIRE(f.start_time_seconds);
    CHECK(*f.start_time_seconds == doctest::Approx(1'700'000'010.0));
    CHECK(f.virtual_bytes == 123456789.0);
    CHECK(f.resident_bytes == 300.0 * 4096);
    CHECK_FALSE(facts_from_stat("garbage", 1.0, 100, 4096).cpu_seconds);
    CHECK_FALSE(facts_from_stat("1 (x) S 1 2", 1.0, 100, 4096).resident_bytes);

    // And this very process, read for real: the metrics a scrape shows.
    const process_facts self = read_process_facts();
    REQUIRE(self.open_fds);
    CHECK(*self.open_fds >= 3);  // stdin, stdout, stderr at least
    REQUIRE(self.resident_bytes);
    CHECK(*self.resident_bytes > 0);
    daemon_metrics m("1", "1.3");
    const std::string t = m.text({}, {}, self);
    CHECK(lines_starting(t, "process_resident_memory_bytes ") == 1);
    CHECK(lines_starting(t, "process_open_fds ") == 1);
    CHECK(lines_starting(t, "process_start_time_seconds ") == 1);
    const std::string none = m.text({}, {}, {});
    CHECK(lines_starting(none, "process_resident_memory_bytes ") == 0);  // not read: no sample, not a false 0
}
