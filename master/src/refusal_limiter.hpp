// Rate limiting of refusal records, per peer, over a sliding window; sans-I/O: records and times
// in, records to write out, and the time the next summary is due (the driver arms a timer for it).
//
// A flood of wrong secrets, broken frames or half-open connections must not fill the disk, yet
// every other record must still be written, and one peer's flood must not hide another peer's
// first refusal. So, per peer, at most `burst` refusals are written within any `window` (a sliding
// window on the driver's monotonic clock, not per wall-clock second); what comes beyond is
// counted, not written. Once the window lets a record through again — with the next refusal, or
// at next_due() if the flood is over — one refusals_suppressed record says how many were held back
// and of which kinds. A summary takes a place in the window like any record, so a flood writes at
// most `burst` records per window per peer. flush() writes every pending summary (the master
// stops). Records that are not refusals never come here (event_classes.hpp decides).
//
// The peer is the remote IP address (a record's `address` without its port: reconnecting from
// another port is the same peer); for a record without an address, the slave it names (a stale
// acknowledgement from an authenticated slave).
//
// Memory: a peer is forgotten once its window has passed with nothing held back; at most
// `max_peers` are tracked, and refusals from peers beyond that share one bucket (address "*").
//
// Thread safety: none; one driver thread.
#pragma once

#include <meshmaster/master/event_record.hpp>
#include <meshmaster/master/supervisor.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace meshmaster::master {

struct refusal_limits {
    std::uint32_t burst = 10;                   ///< refusals written per peer within any window
    std::chrono::milliseconds window{60'000};
    std::size_t max_peers = 4096;
};

class refusal_limiter {
public:
    explicit refusal_limiter(refusal_limits limits = {});

    /// New limits (a reload); what is held back stays held back and is summarized as before.
    void set_limits(refusal_limits limits);
    [[nodiscard]] const refusal_limits& limits() const noexcept { return limits_; }

    /// A refusal at `now`: what to write now — nothing (held back), the record, or a summary of
    /// what this peer had held back followed by the record.
    [[nodiscard]] std::vector<event_record> offer(event_record refusal, mono_time now);
    /// The summaries due at `now` (call at next_due()).
    [[nodiscard]] std::vector<event_record> due(mono_time now);
    /// A summary for every peer with refusals held back, due or not.
    [[nodiscard]] std::vector<event_record> flush(mono_time now);
    /// When the next summary is due; nothing while no refusal is held back.
    [[nodiscard]] std::optional<mono_time> next_due() const;

    [[nodiscard]] std::size_t tracked_peers() const noexcept { return peers_.size(); }

    /// The peer a refusal counts against (see above).
    [[nodiscard]] static std::string peer_of(const event_record& refusal);

private:
    struct peer_state {
        bool by_address = true;         // the key is an address (else a slave id)
        std::deque<mono_time> written;  // records written within the window, oldest first
        std::uint64_t held = 0;         // refusals not written since the last summary
        mono_time first_held{};
        mono_time due_at{};             // when the window lets the summary through (held > 0)
        std::map<std::string_view, std::uint64_t> kinds;  // held back, by event name
    };

    void expire(peer_state& p, mono_time now) const;
    void hold(const std::string& key, peer_state& p, const event_record& r, mono_time now);
    event_record summary(const std::string& key, peer_state& p, mono_time now);
    void forget_idle(mono_time now);

    refusal_limits limits_;
    std::map<std::string, peer_state> peers_;
    std::set<std::pair<mono_time, std::string>> due_;  // (due_at, peer) of peers holding refusals back
    mono_time next_sweep_{};
};

}  // namespace meshmaster::master
