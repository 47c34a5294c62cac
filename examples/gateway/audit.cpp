#include "audit.hpp"

#include "gateway_protocol.hpp"

#include <algorithm>

namespace meshmaster::gateway {

audit::audit(std::uint32_t shards) : shards_(shards) {}

std::uint32_t audit::slave_index(std::string_view name) {
    const std::string key{name};
    if (const auto found = slave_by_name_.find(key); found != slave_by_name_.end()) return found->second;
    const auto index = static_cast<std::uint32_t>(slaves_.size());
    slaves_.push_back({key, 0});
    slave_by_name_.emplace(key, index);
    return index;
}

void audit::session_started(std::uint32_t shard, std::uint64_t start_seq) {
    shard_audit& s = shards_[shard];
    s.verified_seq = start_seq;
    s.verified_checksum = 0;
}

ack_outcome audit::record(const ack& a) {
    shard_audit& s = shards_[a.shard];
    ack_outcome outcome;
    const std::uint64_t length = a.last - a.first + 1;

    outcome.repeated = s.processed.add(a.first, a.last);
    distinct_ += length - outcome.repeated;
    duplicated_ += outcome.repeated;
    processed_ += length;
    slaves_[a.slave].events += length;

    if (a.first == s.verified_seq + 1) {
        outcome.verified = true;
        outcome.expected_checksum = fold_range(s.verified_checksum, a.shard, a.first, a.last);
        outcome.checksum_mismatch = outcome.expected_checksum != a.checksum;
        mismatches_ += outcome.checksum_mismatch;
        s.verified_seq = a.last;
        s.verified_checksum = outcome.expected_checksum;
    } else {
        ++unverified_;
    }

    if (s.owner == a.slave && s.owner_epoch == a.epoch) {
        s.owner_last_ack_ns = a.received_ns;
    } else if (s.owner == no_owner) {
        s.owner = a.slave;
        s.owner_epoch = a.epoch;
        s.owner_last_ack_ns = a.received_ns;
    } else if (a.epoch > s.owner_epoch) {
        outcome.handoff = true;
        outcome.current_owner = s.owner;
        outcome.current_epoch = s.owner_epoch;
        pauses_ns_.push_back(a.received_ns - s.owner_last_ack_ns);
        s.owner = a.slave;
        s.owner_epoch = a.epoch;
        s.owner_last_ack_ns = a.received_ns;
    } else {
        // A lower epoch, or a second bot under the current epoch: it processed without owning.
        outcome.overlap = true;
        outcome.current_owner = s.owner;
        outcome.current_epoch = s.owner_epoch;
        ++overlaps_;
    }
    return outcome;
}

void audit::fill(report& r) const {
    r.processed = processed_;
    r.duplicated = duplicated_;
    r.checksum_mismatches = mismatches_;
    r.unverified_acks = unverified_;
    r.overlaps = overlaps_;
    r.handoffs = pauses_ns_.size();
    r.owned_shards = static_cast<std::uint64_t>(
        std::count_if(shards_.begin(), shards_.end(), [](const shard_audit& s) { return s.owner != no_owner; }));
    std::vector<std::int64_t> samples = pauses_ns_;
    r.pause_ms = summarize_ms(samples);
    samples = event_delays_ns_;
    r.event_delay_ms = summarize_ms(samples);
    r.per_slave.clear();
    for (const slave& s : slaves_) r.per_slave.emplace_back(s.name, s.events);
}

}  // namespace meshmaster::gateway
