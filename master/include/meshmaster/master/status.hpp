// A read-only picture of the supervisor for `meshmaster status` and the control socket.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace meshmaster::master {

struct slave_status {
    std::string id;
    std::optional<std::uint32_t> slot;  ///< empty for a spare
    std::uint64_t generation = 0;
    std::int64_t pid = 0;
    std::string_view phase;  ///< spawning, soft_starting, ready, running, retiring, lost
    bool connected = false;
    bool spawned_here = false;
    std::uint32_t shards = 0;
    std::string mesh;  ///< its mesh node's HOST:PORT (embedded discovery); empty: none
    std::string address;  ///< the remote address (ip:port) of its connection; empty: not connected
    /// The last heartbeat round trip, master → slave → master, less the time the slave held the
    /// echo (protocol 1.3 `heartbeat.echo_*`); empty until a 1.3 slave has echoed one.
    std::optional<double> heartbeat_rtt_ms;
};

struct shard_status {
    std::uint32_t shard = 0;
    std::string owner;  ///< empty when nobody runs it
    std::uint64_t epoch = 0;
    std::string_view phase;  ///< unowned, starting, running, stopping, resuming
    /// In a planned handoff from one live slave to another (a rolling restart's move, or a drain):
    /// stopping or resuming, but owned all along. Not set for a recovery (its holder died).
    bool moving = false;
};

/// A slot: an even, contiguous share of the shards, and the slave that serves it.
struct slot_status {
    std::uint32_t slot = 0;
    std::uint32_t first_shard = 0;  ///< its shards: first_shard .. last_shard
    std::uint32_t last_shard = 0;
    std::string slave;  ///< its slave (maybe still starting); empty: none
    /// Given up after too many failed starts (the start limit) until a reload or restart retries.
    bool failed = false;
    std::uint32_t failed_starts = 0;  ///< within the start limit's interval
    std::string failure;              ///< why it failed (the last failed start), when failed
    std::optional<double> respawn_in_ms;  ///< a respawn is scheduled (backoff)
};

struct restart_status {
    std::uint64_t id = 0;
    std::uint32_t slaves_total = 0;
    std::uint32_t slaves_done = 0;
    std::uint32_t migrations_done = 0;
    std::uint32_t migrations_total = 0;  ///< shards to move, known once each pair is ready
    std::uint32_t in_flight = 0;
    double elapsed_ms = 0;
    bool failing = false;
};

struct supervisor_status {
    std::uint64_t generation = 0;
    std::uint64_t restarts_completed = 0;
    std::uint64_t restarts_failed = 0;
    bool restart_queued = false;
    bool stopping = false;
    bool detaching = false;  ///< stopping, leaving the slaves running (stop --leave-slaves)
    /// After a crash of the previous master: how long it still waits for its slaves to report.
    std::optional<double> adopting_ms;
    std::optional<restart_status> restart;
    std::vector<slave_status> slaves;
    std::vector<shard_status> shards;
    std::vector<slot_status> slots;
    std::uint32_t spares = 0;  ///< configured
    bool spares_failed = false;  ///< spares stopped being spawned after too many failed starts
    std::string spares_failure;
    std::uint32_t shards_running = 0;
    std::uint32_t shards_checkpointed = 0;  ///< shards with a state to resume from if their holder dies
};

/// The counts that timers ask for often (systemd's STATUS= and readiness, `restart --wait`'s
/// progress): supervisor::counts() gives them without the row per shard and per slave that
/// status() builds.
struct supervisor_counts {
    std::uint32_t shards_total = 0;
    std::uint32_t shards_running = 0;
    std::uint32_t shards_moving = 0;  ///< in a planned handoff between two live slaves (see shard_status)
    bool stopping = false;            ///< stopping or detaching
    bool gave_up = false;             ///< a slot or the spares given up after failed starts
    std::optional<restart_status> restart;
};

/// What keeps the fleet from being healthy, one sentence per problem; empty when it is healthy.
///
/// Healthy means every configured shard runs: each is `running`, or `moving` (a planned handoff
/// between two live slaves, as in a rolling restart, owned throughout) — a restart in progress is
/// no degradation. Problems are: shards unassigned or still starting (named, with the state of
/// their slot: failed, respawning after failed starts, no slave, its slave still starting), failed
/// spares, an adoption in progress (shards the previous master's slaves have not reported yet are
/// not known to run), and a master that is stopping or detaching.
std::vector<std::string> fleet_problems(const supervisor_status& status);

/// "4..7, 9, 12..13": shard numbers (ascending) as ranges.
std::string shard_ranges(const std::vector<std::uint32_t>& shards);

}  // namespace meshmaster::master
