// The start limit of a slot (as systemd's StartLimitBurst / StartLimitIntervalSec): a slave command
// that cannot start — a missing binary, a process that exits before it says hello — is retried with
// backoff, but once `burst` starts have failed within `interval` the slot gives up and is marked
// failed, so that the operator hears about it instead of the master retrying forever.
//
// Only failed starts count. A slave whose hello was accepted started; it resets the count, and its
// later death is a crash, which the respawn backoff handles.
//
// Sans-I/O: the time comes in with each call, and the limits too (they may change with a reload).
// Thread safety: none.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>

namespace meshmaster::master {

class start_limit {
public:
    using time_point = std::chrono::nanoseconds;  ///< monotonic, from the caller's origin

    /// A start failed at `now`. True when that exhausts the limit: `burst` failures (or more)
    /// within `interval` up to now. `burst` 0 means no limit: never exhausted.
    bool failed(time_point now, std::uint32_t burst, std::chrono::milliseconds interval);
    /// A start succeeded, or the operator asked for another try: the count starts over.
    void reset() noexcept { failures_.clear(); }
    /// Failed starts within `interval` up to `now`.
    [[nodiscard]] std::uint32_t recent(time_point now, std::chrono::milliseconds interval) const;

private:
    std::deque<time_point> failures_;  // oldest first; only those that may still count are kept
};

}  // namespace meshmaster::master
