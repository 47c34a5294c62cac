// Event ids: the first u32 of every frame.
//
// Ids 1-10 keep the meanings of YAGPDB's master so the framing stays byte-compatible with it
// (7, GuildState there, is our chunk of shard state). Our own control events continue from 11.
// Ids from `application_event_first` up belong to applications: the master forwards those frames
// without decoding their bodies. Everything else is reserved for future control events.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace meshmaster::protocol {

enum class event_id : std::uint32_t {
    soft_start = 1,             ///< master → slave: prepare (connect upstream) but run no shard yet
    full_start = 2,             ///< master → slave: start normally; shards follow as start_shard
    shard_migration_start = 3,  ///< master → slave: a batch of shard moves involving you begins
    stop_shard = 4,             ///< master → slave: stop a shard and hand back its state
    resume = 5,                 ///< master → slave: run a shard from handed-over state
    shutdown = 6,               ///< master → slave: stop everything and exit
    state_chunk = 7,            ///< either way: one piece of a large shard state (YAGPDB: GuildState)
    slave_hello = 8,            ///< slave → master: identity, version, the shards it already runs
    soft_start_complete = 9,    ///< slave → master: soft start done, ready to receive shards
    shard_stopped = 10,         ///< slave → master: shard stopped; carries its state
    auth_challenge = 11,        ///< master → slave: first frame on a connection; a nonce to sign
    auth_proof = 12,            ///< slave → master: HMAC over both nonces
    welcome = 13,               ///< master → slave: authenticated; the master's own proof
    start_shard = 14,           ///< master → slave: run a shard from scratch (no state)
    shard_started = 15,         ///< slave → master: acknowledgement of start_shard
    resumed = 16,               ///< slave → master: acknowledgement of resume
    shutdown_complete = 17,     ///< slave → master: acknowledgement of shutdown, exit follows
    heartbeat = 18,             ///< either way: liveness and event-loop progress
    error = 19,                 ///< either way: a refused frame or a fatal condition
    checkpoint = 20,            ///< slave → master: a shard's state, for recovery if the slave dies (1.1)
    handoff_complete = 21,      ///< master → slave: the state you handed back is taken up (1.1)
    mesh_members = 22,          ///< master → slave: the whole membership of the UDP mesh (1.2)
    mesh_update = 23,           ///< slave → master: the slave's mesh node changed type or values (1.2)
};

/// The first id that belongs to applications; frames at or above it are forwarded undecoded.
inline constexpr std::uint32_t application_event_first = 0x8000'0000u;
/// The highest control event id this build knows.
inline constexpr std::uint32_t last_known_event = static_cast<std::uint32_t>(event_id::mesh_update);

[[nodiscard]] constexpr bool is_application_event(std::uint32_t id) noexcept {
    return id >= application_event_first;
}

/// The control event with this id, or nothing if this build does not know it.
[[nodiscard]] constexpr std::optional<event_id> known_event(std::uint32_t id) noexcept {
    if (id >= 1 && id <= last_known_event) return static_cast<event_id>(id);
    return std::nullopt;
}

/// The event's name as written in docs/protocol.md and in logs, e.g. "stop_shard".
[[nodiscard]] std::string_view to_string(event_id id) noexcept;

}  // namespace meshmaster::protocol
