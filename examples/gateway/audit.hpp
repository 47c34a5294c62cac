// The exactly-once audit: which events of each shard were processed and how often, whether the
// checksums bots report prove their state intact across handoffs, and how long each handoff left
// the shard unprocessed.
//
// Fed one ACK at a time (the gateway core has already checked that the range was emitted):
//   - processed: each shard keeps the set of seqs processed at least once (`seq_ranges`); an ACK
//     adding seqs already in the set adds that many duplicates.
//   - checksums: each shard keeps a verified position and the checksum there, reset to (session
//     start, 0) when a session starts. An ACK continuing exactly from that position is checked by
//     recomputing the fold; the position then advances with the true checksum, so one bad ACK
//     counts once and does not poison the ones after it. An ACK that does not continue exactly
//     (a repeat, a gap, a stale owner) is counted as unverified.
//   - ownership: an ACK's owner is (bot name, epoch). An owner with a higher epoch than the
//     shard's current owner takes over: a handoff, whose pause is the time from the previous
//     owner's last ACK to this one (both receive times, gateway clock). An ACK from a lower epoch,
//     or from another bot under the same epoch, comes from an owner that should no longer be
//     processing: an overlap.
//
// Thread safety: none; one instance, used from the gateway's thread.
#pragma once

#include "report.hpp"
#include "seq_ranges.hpp"

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace meshmaster::gateway {

/// An ACK as the audit sees it.
struct ack {
    std::uint32_t shard = 0;
    std::uint64_t first = 0;  ///< first seq processed (>= 1)
    std::uint64_t last = 0;   ///< last seq processed (>= first)
    std::uint64_t checksum = 0;
    std::uint64_t epoch = 0;
    std::uint32_t slave = 0;  ///< from `audit::slave_index`
    std::int64_t received_ns = 0;
};

/// What one ACK revealed (for logs and for the core's follow-up).
struct ack_outcome {
    std::uint64_t repeated = 0;  ///< seqs of the range processed before
    bool verified = false;       ///< the checksum was checked
    bool checksum_mismatch = false;
    std::uint64_t expected_checksum = 0;  ///< when verified
    bool handoff = false;                 ///< a new owner's first ACK
    bool overlap = false;                 ///< from an owner superseded by a newer one
    std::uint32_t current_owner = 0;      ///< the shard's owner before this ACK, when overlap or handoff
    std::uint64_t current_epoch = 0;
};

class audit {
public:
    explicit audit(std::uint32_t shards);

    /// The index of the bot called `name`, registered on first use. Indexes are stable.
    std::uint32_t slave_index(std::string_view name);
    [[nodiscard]] const std::string& slave_name(std::uint32_t index) const { return slaves_[index].name; }

    /// A session of `shard` starts after `start_seq`: checksums restart from 0 there.
    void session_started(std::uint32_t shard, std::uint64_t start_seq);

    ack_outcome record(const ack& a);

    /// After a handoff: how long the new owner's first event waited since its emission.
    void record_event_delay(std::int64_t ns) { event_delays_ns_.push_back(ns); }

    /// The committed position of `shard`: the last seq acknowledged in order in its session.
    [[nodiscard]] std::uint64_t committed(std::uint32_t shard) const noexcept { return shards_[shard].verified_seq; }

    /// Seqs processed at least once, all shards.
    [[nodiscard]] std::uint64_t distinct_processed() const noexcept { return distinct_; }
    /// Seqs of `shard` processed at least once.
    [[nodiscard]] std::uint64_t distinct_processed(std::uint32_t shard) const noexcept {
        return shards_[shard].processed.size();
    }

    [[nodiscard]] std::uint64_t checksum_mismatches() const noexcept { return mismatches_; }
    [[nodiscard]] std::uint64_t overlaps() const noexcept { return overlaps_; }

    /// Fills the audit's part of a report (everything but shards, emitted and lost).
    void fill(report& r) const;

private:
    static constexpr std::uint32_t no_owner = UINT32_MAX;

    struct shard_audit {
        seq_ranges processed;
        std::uint64_t verified_seq = 0;
        std::uint64_t verified_checksum = 0;
        std::uint32_t owner = no_owner;
        std::uint64_t owner_epoch = 0;
        std::int64_t owner_last_ack_ns = 0;
    };

    struct slave {
        std::string name;
        std::uint64_t events = 0;
    };

    std::vector<shard_audit> shards_;
    std::vector<slave> slaves_;
    std::unordered_map<std::string, std::uint32_t> slave_by_name_;

    std::uint64_t distinct_ = 0;
    std::uint64_t processed_ = 0;
    std::uint64_t duplicated_ = 0;
    std::uint64_t mismatches_ = 0;
    std::uint64_t unverified_ = 0;
    std::uint64_t overlaps_ = 0;
    std::vector<std::int64_t> pauses_ns_;  // one per handoff
    std::vector<std::int64_t> event_delays_ns_;
};

}  // namespace meshmaster::gateway
