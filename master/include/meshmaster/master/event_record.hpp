// One entry of the event log: a state change of the supervisor, as the core reports it.
//
// The daemon adds the wall time, the monotonic time and a sequence number and writes it as one JSON
// line; every event is in event_table (event_kind.hpp) and explained in docs/events.md. Fields that
// do not apply are left empty and omitted from the line.
#pragma once

#include <meshmaster/master/event_kind.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace meshmaster::master {

struct event_record {
    event_id event;          ///< which event (its name is the log line's `event`)
    std::string slave;       ///< the slave the event is about
    std::string peer;        ///< the other slave involved (a migration's other side)
    std::optional<std::uint32_t> shard;
    std::optional<std::uint64_t> epoch;
    std::optional<std::uint64_t> migration;
    std::optional<std::uint64_t> restart;
    std::optional<std::uint64_t> generation;
    std::optional<std::uint32_t> slot;
    std::optional<std::int64_t> pid;
    std::optional<double> duration_ms;
    std::optional<double> pause_ms;         ///< a shard's unowned window as the master saw it
    /// migration_completed: the pause as the slaves measured it — from the old holder's stop to
    /// the new holder's resume (protocol 1.3 `resumed.pause_us`); empty for older slaves
    std::optional<double> slave_pause_ms;
    std::optional<std::uint64_t> count;     ///< how many (shards, slaves, …) the event covers
    std::optional<std::uint64_t> state_bytes;
    std::optional<bool> state_lost;         ///< a shard restarted from scratch: its state is gone
    std::string reason;
    std::vector<std::uint64_t> epochs;  ///< epochs_snapshot only: every shard's epoch, in order
    std::string address;                ///< the remote address ("ip:port") of the connection concerned
    std::optional<std::uint64_t> suppressed;      ///< refusals_suppressed: refusals not logged one by one
    std::optional<std::uint64_t> bytes_expected;  ///< frame_truncated: the frame's whole size, header included
    std::optional<std::uint64_t> bytes_received;  ///< frame_truncated: what arrived of it
};

}  // namespace meshmaster::master
