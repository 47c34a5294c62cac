// The supervisor core: meshmaster's shard table, slaves, rolling restarts and failure handling, as
// a plain state machine. Sans-I/O: events go in through the `on_*` and `request_*` methods, each
// with the current monotonic time; actions (send a frame, spawn, kill, log, exit) come out of
// `take_actions()`. It holds no sockets, no clock and no threads, so tests drive it step by step
// and a seeded simulation can replay thousands of fault schedules.
//
// Guarantees it keeps (and the simulation checks):
//  - single owner: a shard is granted (start_shard / resume, each with a new, higher epoch) only
//    when its previous holder has confirmed stopping it or its process is known to be dead;
//  - epochs only grow; acknowledgements carrying a superseded epoch change nothing;
//  - every migration ends in exactly one logged terminal state: migration_completed,
//    migration_rolled_back or migration_failed.
//
// Errors: the core never throws, and no call of it fails. Input it cannot accept (a stale epoch, a
// frame from a slave it does not know, a request it must refuse while stopping) is answered through
// actions (an error frame, a closed connection) and logged as an event record; where the caller
// needs the verdict, it comes back as a value (request_restart's outcome, retried_starts). The
// daemon around it has its own rule, stated in master/src/daemon.hpp.
//
// Once it has emitted exit_daemon, every later on_* call is ignored: the daemon is on its way out
// (its closing connections must not orphan shards in the log).
//
// Thread safety: none. One driver thread calls it. Time passed in must not go backwards.
#pragma once

#include <meshmaster/master/actions.hpp>
#include <meshmaster/protocol/messages.hpp>
#include <meshmaster/master/status.hpp>
#include <meshmaster/master/supervisor_config.hpp>

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <utility>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

namespace meshmaster::master {

/// Monotonic time, from an origin the driver chooses.
using mono_time = std::chrono::nanoseconds;

/// What an authenticated slave said about itself in its hello.
/// A slave's node in the UDP mesh, as its hello announced it (protocol 1.2): the master lists every
/// such node to every such slave (mesh_members), which is the mesh's embedded discovery. The
/// protocol's node record (its id is the slave's).
using mesh_node_info = protocol::mesh_node;

struct slave_hello_info {
    std::string id;
    std::int64_t pid = 0;
    std::uint64_t generation = 0;
    std::vector<protocol::shard_epoch> shards;  ///< what it runs now (after a master restart)
    bool soft_started = false;
    /// Shards it stopped whose handed-back state it still keeps (protocol 1.1).
    std::vector<protocol::shard_epoch> stopped;
    std::uint32_t version_minor = 0;  ///< 1.1 slaves get checkpoints and handoff_complete; 1.3 ones heartbeat echoes
    std::optional<mesh_node_info> mesh;  ///< its mesh node, if it runs one (1.2)
    std::string address;  ///< the remote address (ip:port) of its connection, for status
};

/// A heartbeat from a slave, beyond its progress counter (protocol 1.3 adds the echo).
struct heartbeat_info {
    std::uint64_t seq = 0;  ///< the slave's own sequence number, echoed back in the master's heartbeats
    /// The newest master heartbeat the slave had received, and microseconds it held it before
    /// sending this one: the round trip is now − that heartbeat's send time − the delay.
    std::optional<std::uint64_t> echo_seq;
    std::optional<std::uint64_t> echo_delay_us;
};

/// The id the master gives the slave it spawns for `slot` in `generation`: "s<slot>-g<generation>".
std::string spawned_slave_id(std::uint32_t slot, std::uint64_t generation);
/// The slot encoded in a spawned slave's id, if it is one.
std::optional<std::uint32_t> slot_of_spawned_id(std::string_view id);
/// The id the master gives its n-th spare of `generation`: "p<n>-g<generation>".
std::string spare_slave_id(std::uint32_t n, std::uint64_t generation);
/// Whether `id` names a spare spawned by a master.
bool is_spare_id(std::string_view id);

class supervisor {
public:
    /// `first_id` seeds the migration and restart counters (the daemon uses the wall clock, so ids
    /// stay unique across master restarts).
    supervisor(supervisor_config config, std::uint64_t first_id = 1);
    ~supervisor();
    supervisor(const supervisor&) = delete;
    supervisor& operator=(const supervisor&) = delete;

    /// Epochs to continue from (per shard, e.g. the highest in the event log of a previous master),
    /// so that grants never reuse an epoch a slave may still hold. Call before start().
    void seed_epochs(const std::vector<std::uint64_t>& epochs);

    /// The generation and the slave ids a previous master used (its event log says so): spawns
    /// continue in that generation and never reuse an id, whose slave may still be running and
    /// come back to this master. Call before start().
    void seed_ids(std::uint64_t generation, std::set<std::string> used_ids);
    /// States to resume shards from, kept by a previous master (store_checkpoint actions): per
    /// shard, null where there is none. Call before start().
    void seed_checkpoints(std::vector<shared_bytes> states);
    /// Slaves a previous master spawned that its log does not show exiting. Adoption ends as soon as
    /// all of them are back; one that is not back by then may be frozen or cut off while it
    /// believes it holds shards, so it is killed by pid and no shard is granted until its exit is
    /// seen (or stop_timeout passes). Call before start().
    struct previous_slave {
        std::string id;
        std::int64_t pid = 0;
    };
    void expect_slaves(std::vector<previous_slave> slaves);
    /// Moves a previous master started and never ended (its event log says so). Once adoption is
    /// over, each gets its terminal record, migration_abandoned, naming where the shard ended up.
    struct abandoned_migration {
        std::uint64_t id = 0;
        std::uint32_t shard = 0;
        std::string from;
        std::string to;
    };
    void adopt_open_migrations(std::vector<abandoned_migration> open);
    /// Rolling restarts a previous master started and never ended (it was killed mid-restart). At
    /// start(), right after master_started, each gets its terminal record, restart_abandoned: this
    /// master converges the fleet it finds, old and new slaves alike, instead of carrying on the old
    /// plan (the moves in flight end as usual, with migration_abandoned once adoption is over).
    void adopt_open_restarts(std::vector<std::uint64_t> restarts);

    /// Begins supervision. With a non-zero `adopt_window`, the master first waits that long for
    /// slaves still running from a previous master to reconnect and report their shards, and only
    /// then spawns what is missing and grants unowned shards.
    void start(mono_time now, std::chrono::milliseconds adopt_window = {});

    // --- slaves and their processes ---
    void on_spawned(const std::string& slave, std::int64_t pid, mono_time now);
    void on_spawn_failed(const std::string& slave, std::string reason, mono_time now);
    /// An authenticated slave said hello on `connection`.
    void on_slave_connected(connection_id connection, const slave_hello_info& hello, mono_time now);
    /// The connection closed (EOF, reset, or closed by the driver).
    void on_disconnected(connection_id connection, mono_time now);
    /// The slave's process is gone (reaped child, or a watched pid that vanished).
    void on_process_exited(const std::string& slave, std::string status, mono_time now);

    // --- frames from an authenticated slave ---
    void on_soft_start_complete(connection_id connection, mono_time now);
    void on_shard_started(connection_id connection, std::uint32_t shard, std::uint64_t epoch, mono_time now);
    /// `state` is the complete state (the driver reassembles state_chunk frames first).
    /// `stopped_at_us`: the slave's wall clock when it stopped the shard (1.3), relayed to the new
    /// holder in resume; the core never reads a wall clock itself.
    void on_shard_stopped(connection_id connection, std::uint32_t shard, std::uint64_t epoch,
                          std::uint64_t migration, shared_bytes state, mono_time now,
                          std::optional<std::uint64_t> stopped_at_us = std::nullopt);
    /// `pause_us`: the pause the new holder measured from the relayed stopped_at_us (1.3), logged
    /// as slave_pause_ms on migration_completed.
    void on_resumed(connection_id connection, std::uint32_t shard, std::uint64_t epoch,
                    std::uint64_t migration, mono_time now, std::optional<std::uint64_t> pause_us = std::nullopt);
    void on_shutdown_complete(connection_id connection, mono_time now);
    /// A holder's copy of a running shard's state (the driver reassembles chunks first): kept to
    /// resume the shard elsewhere should the holder die.
    void on_checkpoint(connection_id connection, std::uint32_t shard, std::uint64_t epoch, shared_bytes state,
                       mono_time now);
    /// `progress`: the slave's event-loop counter (0 from slaves that do not report one). From a
    /// 1.3 slave, `info`'s echo gives the heartbeat round trip (status: heartbeat_rtt_ms), and its
    /// seq is echoed back in the master's next heartbeats.
    void on_heartbeat(connection_id connection, std::uint64_t progress, mono_time now, const heartbeat_info& info = {});
    /// A frame carrying state arrived (a state_chunk, or shard_stopped / checkpoint with their
    /// state): the slave is alive and working, as a heartbeat whose progress moved would show.
    /// The driver calls it for each such frame, before the frame's own handler.
    void on_state_received(connection_id connection, mono_time now);
    /// The slave's mesh node changed its type (if given) or values (mesh_update, 1.2).
    void on_mesh_update(connection_id connection, std::optional<std::string> type,
                        std::vector<std::pair<std::string, std::string>> values, mono_time now);
    /// An error frame from the slave (it refused something); logged.
    void on_slave_error(connection_id connection, std::string code, std::string message, mono_time now);

    // --- time and operators ---
    /// Handles every deadline that is due. Call when the timer for next_deadline() fires.
    void on_tick(mono_time now);
    /// The earliest time on_tick has something to do, if any.
    [[nodiscard]] std::optional<mono_time> next_deadline() const;

    /// Slots (and spares) given up after too many failed starts, tried again.
    struct retried_starts {
        std::vector<std::uint32_t> slots;
        bool spares = false;
        [[nodiscard]] bool empty() const { return slots.empty() && !spares; }
    };
    /// What became of a restart request.
    struct restart_request {
        enum class outcome { started, queued, already_queued, refused };
        outcome result = outcome::started;
        std::uint64_t restart = 0;  ///< the restart started, or the running one this one waits behind
        std::string refusal;        ///< why it was refused
        retried_starts retried;     ///< failed slots and spares it tried again
    };
    /// A rolling restart. During one, a second request is queued (once) and logged. Refused while
    /// the master stops. Slots and spares that failed to start are tried again.
    restart_request request_restart(mono_time now, std::string reason);
    /// What became of a drain request.
    struct drain_request {
        enum class outcome { started, unknown_slave, refused };
        outcome result = outcome::started;
        std::uint64_t restart = 0;  ///< the one-slot restart that moves the shards
        std::string refusal;        ///< why it was refused (unknown_slave, refused)
    };
    /// Drains one slave: its shards move, with their state, to a new slave started for its slot —
    /// a rolling restart of that slot alone, with its soft start, pipelined moves and the old
    /// slave's shutdown — so the slave can be taken away (its host drained, say) without losing
    /// an event. Refused, and logged as restart_refused, while the master stops, while a restart
    /// runs or waits, and for a slave that does not serve a slot, is not running or was not
    /// started by this fleet (the master cannot start its replacement).
    drain_request request_drain(mono_time now, const std::string& slave, std::string reason);
    /// Tries again every slot (and the spares) marked failed after too many failed starts, with a
    /// fresh start limit (after a reload, say: the command may be fixed). Nothing while stopping.
    retried_starts retry_failed_starts(mono_time now, std::string reason);
    /// Graceful stop: finish in-flight moves, shut slaves down one by one, then exit_daemon.
    /// `immediate`: SIGKILL every slave now and exit. `requested_by` (a signal, "control socket
    /// from pid …", "HTTP API from ip:port") is named in master_stopping's reason, for the audit.
    void request_stop(mono_time now, bool immediate, std::string requested_by = {});
    /// Stops the master but leaves the slaves running their shards (to upgrade or move the
    /// master): nothing new starts, moves in flight finish, then every connection closes and
    /// exit_daemon follows. The log ends with master_detached — not a clean stop — so the next
    /// master waits for the slaves and adopts them.
    void request_detach(mono_time now, std::string requested_by = {});
    /// Live settings (concurrency, timeouts, heartbeat); shard and slave counts must not change.
    void apply_config(const supervisor_config& config, mono_time now);

    /// Actions produced since the last call, in order.
    [[nodiscard]] std::vector<action> take_actions();
    [[nodiscard]] supervisor_status status(mono_time now) const;
    /// The counts alone: no string is copied, only the shards in a move are looked up.
    [[nodiscard]] supervisor_counts counts(mono_time now) const;
    [[nodiscard]] const supervisor_config& config() const noexcept;
    /// Checks the indexes the core keeps instead of walking its tables (the deadline queue against
    /// a walk of every deadline, each slave's shards against the shard table, each restart pair's
    /// counts of moves, the lookups by id and connection): empty when they agree, else what
    /// disagrees. A walk of everything, for tests (the simulation runs it after every step).
    [[nodiscard]] std::string self_check();

private:
    struct state;
    std::unique_ptr<state> s_;
};

}  // namespace meshmaster::master
