// The settings the supervisor core acts on. The daemon fills them from flags and the TOML config
// (see master/src/config.cpp); tests set them directly. Durations are plain values: the core has no
// clock of its own.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>

namespace meshmaster::master {

using std::chrono::milliseconds;

struct supervisor_config {
    std::uint32_t shard_count = 0;
    /// Slots: how many slaves run shards. Each slot owns an even, contiguous share of the shards.
    std::uint32_t slave_count = 0;
    /// Idle slaves kept ready (spawned and soft-started, no shards): one takes over a slot the moment
    /// its slave dies, so recovery does not wait for a process to start.
    std::uint32_t spares = 0;
    /// Whether the master spawns the slaves of its slots. When false, slots are filled by slaves
    /// launched elsewhere (systemd, containers, other hosts) as they connect.
    bool spawn_slaves = true;

    /// Shard moves in flight at once during a rolling restart (stop sent, resume not yet acked).
    std::uint32_t migration_concurrency = 16;
    /// Replacement slaves prepared (spawned and soft-started) ahead during a rolling restart.
    std::uint32_t restart_surge = 1;
    /// States larger than this travel as several state_chunk frames.
    std::size_t state_chunk_size = std::size_t{1} << 20;

    milliseconds spawn_timeout{10'000};       ///< spawn → authenticated hello
    milliseconds soft_start_timeout{30'000};  ///< soft_start → soft_start_complete
    milliseconds start_timeout{10'000};       ///< start_shard → shard_started
    milliseconds stop_timeout{5'000};         ///< stop_shard → shard_stopped
    milliseconds resume_timeout{5'000};       ///< resume → resumed
    milliseconds shutdown_timeout{5'000};     ///< shutdown → process exit; then SIGKILL

    milliseconds heartbeat_interval{250};
    /// A slave silent for heartbeat_interval × heartbeat_misses is declared lost; so is one whose
    /// heartbeats keep coming but whose event-loop progress counter stands still that long.
    std::uint32_t heartbeat_misses = 8;

    milliseconds respawn_backoff_min{100};
    milliseconds respawn_backoff_max{30'000};
    /// A slave that lived this long before dying resets its slot's crash-loop backoff.
    milliseconds stable_after{10'000};
    /// The start limit (as systemd's StartLimitBurst / StartLimitIntervalSec): once this many starts
    /// of a slot's slave — or of spares — have failed within start_limit_interval, the slot (or the
    /// spares) is marked failed and no longer respawned until a reload or `meshmaster restart`
    /// retries it. A start fails when the process cannot be started or ends before its hello is
    /// accepted. 0: no limit, retry forever.
    std::uint32_t start_limit_burst = 5;
    milliseconds start_limit_interval{10'000};

    /// How long an external slave (one the master cannot signal) that disconnected may take to come
    /// back before its shards are granted elsewhere. One that went silent or stuck (heartbeat or
    /// progress timeout) is fenced at once instead. If it comes back later, its epochs are stale
    /// and it is told to stop those shards.
    milliseconds external_grace{2'000};
};

}  // namespace meshmaster::master
