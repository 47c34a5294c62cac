// The gateway's report: what the `stats` and `report` control commands and SIGTERM print.
//
// All counts are since the gateway started. "lost" is computed at the moment of the report: an
// event emitted but not yet acknowledged counts as lost until it is (drain first for a final
// figure). Latencies are in milliseconds; percentiles are by nearest rank over all handoffs, 0 when
// there are none.
//
// Thread safety: plain values.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace meshmaster::gateway {

struct latency_summary {
    double p50 = 0;
    double p99 = 0;
    double p999 = 0;
    double max = 0;
};

/// Nearest-rank percentiles of `samples_ns` (reordered in place), converted to milliseconds.
latency_summary summarize_ms(std::vector<std::int64_t>& samples_ns);

struct report {
    std::uint32_t shards = 0;
    std::uint64_t emitted = 0;              ///< events emitted, all shards
    std::uint64_t processed = 0;            ///< events processed, repetitions included
    std::uint64_t lost = 0;                 ///< emitted events processed 0 times
    std::uint64_t duplicated = 0;           ///< sum over events of (times processed - 1)
    std::uint64_t checksum_mismatches = 0;  ///< verified ACKs whose checksum was wrong
    std::uint64_t unverified_acks = 0;      ///< ACKs not continuing the verified position
    std::uint64_t takeovers = 0;            ///< shards attached while attached elsewhere
    std::uint64_t overlaps = 0;             ///< ACKs from an owner after a newer owner's
    std::uint64_t invalid_sessions = 0;     ///< RESUMEs refused
    std::uint64_t fenced_acks = 0;          ///< ACKs refused because their epoch was superseded
    std::uint64_t fenced_attaches = 0;      ///< IDENTIFYs/RESUMEs refused for a superseded epoch
    std::uint64_t sessions = 0;             ///< IDENTIFYs (sessions started)
    std::uint64_t handoffs = 0;             ///< ownership changes seen in ACKs
    /// Shards with an owner: some bot has acknowledged one of their events. A shard's first owner
    /// takes it over from nobody, which is not a handoff.
    std::uint64_t owned_shards = 0;
    std::uint64_t protocol_errors = 0;      ///< connections closed for breaking the protocol
    latency_summary pause_ms;               ///< per handoff: new owner's first ACK - old owner's last
    latency_summary event_delay_ms;         ///< per handoff: new owner's first ACK - that event's emission
    std::vector<std::pair<std::string, std::uint64_t>> per_slave;  ///< events processed, by bot name
};

/// The report as one JSON object on one line (no newline).
std::string to_json(const report& r);

}  // namespace meshmaster::gateway
