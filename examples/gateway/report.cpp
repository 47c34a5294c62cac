#include "report.hpp"

#include "json_line.hpp"

#include <algorithm>

namespace meshmaster::gateway {

namespace {
// The sample of nearest rank ceil(permille / 1000 · n), 1-based.
std::int64_t nearest_rank(const std::vector<std::int64_t>& sorted, std::uint64_t permille) {
    const std::uint64_t rank = (permille * sorted.size() + 999) / 1000;
    return sorted[rank == 0 ? 0 : rank - 1];
}

double to_ms(std::int64_t ns) { return static_cast<double>(ns) / 1e6; }

json_line to_json(const latency_summary& s) {
    json_line line;
    line.field("p50", s.p50).field("p99", s.p99).field("p999", s.p999).field("max", s.max);
    return line;
}
}  // namespace

latency_summary summarize_ms(std::vector<std::int64_t>& samples_ns) {
    if (samples_ns.empty()) return {};
    std::sort(samples_ns.begin(), samples_ns.end());
    return {.p50 = to_ms(nearest_rank(samples_ns, 500)),
            .p99 = to_ms(nearest_rank(samples_ns, 990)),
            .p999 = to_ms(nearest_rank(samples_ns, 999)),
            .max = to_ms(samples_ns.back())};
}

std::string to_json(const report& r) {
    json_line per_slave;
    for (const auto& [name, events] : r.per_slave) per_slave.field(name, events);
    json_line line;
    line.field("shards", r.shards)
        .field("emitted", r.emitted)
        .field("processed", r.processed)
        .field("lost", r.lost)
        .field("duplicated", r.duplicated)
        .field("checksum_mismatches", r.checksum_mismatches)
        .field("unverified_acks", r.unverified_acks)
        .field("takeovers", r.takeovers)
        .field("overlaps", r.overlaps)
        .field("invalid_sessions", r.invalid_sessions)
        .field("fenced_acks", r.fenced_acks)
        .field("fenced_attaches", r.fenced_attaches)
        .field("sessions", r.sessions)
        .field("handoffs", r.handoffs)
        .field("owned_shards", r.owned_shards)
        .field("protocol_errors", r.protocol_errors)
        .object("pause_ms", to_json(r.pause_ms))
        .object("event_delay_ms", to_json(r.event_delay_ms))
        .object("per_slave", per_slave);
    return line.str();
}

}  // namespace meshmaster::gateway
