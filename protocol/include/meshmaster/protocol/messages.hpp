// The message catalogue: one struct per event, with named fields.
//
// Every control event's body is a msgpack map with string keys; `fields()` gives each struct's wire
// names (see field.hpp for the rules). docs/protocol.md describes every event for implementers in
// other languages and carries a test vector for each; a unit test checks the two agree.
//
// Lifetimes: string_view and bytes_view members of a *decoded* message point into the frame buffer
// (see frame_decoder.hpp) and dangle once the decoder moves on. Messages built for encoding point at
// whatever the caller owns for the duration of the `encode` call.
//
// Thread safety: plain aggregates.
#pragma once

#include <meshmaster/protocol/bytes.hpp>
#include <meshmaster/protocol/error.hpp>
#include <meshmaster/protocol/event_id.hpp>
#include <meshmaster/protocol/field.hpp>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <variant>
#include <vector>

namespace meshmaster::protocol {

/// A shard and the epoch under which its holder runs it. On the wire: `[shard, epoch]`.
struct shard_epoch {
    std::uint32_t shard = 0;
    std::uint64_t epoch = 0;
    friend bool operator==(const shard_epoch&, const shard_epoch&) = default;
};

/// Key/value metadata of a mesh node (1.2). On the wire: a msgpack map of str → str, entries in
/// vector order; a key given twice is refused (`duplicate_field:<field>`).
using string_map = std::vector<std::pair<std::string_view, std::string_view>>;

/// One node of the UDP mesh, as the master lists it in mesh_members (1.2). On the wire: the
/// fixed-position array `[id, type, host, port, incarnation, values]`. A decoded member has a port
/// in 1..65535, a nonzero incarnation and a host that is an IPv4 or IPv6 address.
struct mesh_member {
    std::string_view id;    ///< the slave's id (unique in the list)
    std::string_view type;  ///< what the node is ("bot", "room", …); may be empty
    std::string_view host;  ///< the IP address the node's UDP socket is bound to
    std::uint16_t port = 0;
    std::uint64_t incarnation = 0;  ///< random per start of the node: a restart is a new peer
    string_map values;
    friend bool operator==(const mesh_member&, const mesh_member&) = default;
};

/// One node of the UDP mesh, owned: the one definition of a node's record. The mesh's discovery
/// knows nodes by it (mesh::peer_record), the master keeps each slave's node in it, and
/// mesh_member above is its view on the wire. `values` is a map: a node has one value per key
/// (the decoder refuses a key given twice), and readers look values up by key.
struct mesh_node {
    std::string id;    ///< unique in the cluster (a slave id, a host name, a uuid)
    std::string type;  ///< what the node is ("bot", "room", …)
    std::string host;  ///< IP address the node's UDP socket is bound to (v4 or v6)
    std::uint16_t port = 0;
    std::uint64_t incarnation = 0;  ///< random per start of the node: a restart is a new peer
    std::map<std::string, std::string> values;  ///< key/value metadata peers can read
    friend bool operator==(const mesh_node&, const mesh_node&) = default;
};

/// The wire view of `n`, which must outlive it.
inline mesh_member to_member(const mesh_node& n) {
    mesh_member m{.id = n.id, .type = n.type, .host = n.host, .port = n.port, .incarnation = n.incarnation, .values = {}};
    for (const auto& [k, v] : n.values) m.values.emplace_back(k, v);
    return m;
}

/// The owned record of a member read off the wire.
inline mesh_node to_node(const mesh_member& m) {
    mesh_node n{.id = std::string(m.id), .type = std::string(m.type), .host = std::string(m.host), .port = m.port,
                .incarnation = m.incarnation, .values = {}};
    for (const auto& [k, v] : m.values) n.values.emplace(k, v);
    return n;
}

/// Which side of a batch of moves a slave is on. On the wire: the string "source" or "target".
enum class migration_role : std::uint8_t { source, target };

// --- YAGPDB-compatible ids 1-10 ---------------------------------------------------------------

/// 1 · master → slave. Prepare to take shards (connect upstream, warm caches) but run none yet.
/// The slave answers soft_start_complete.
struct soft_start {
    static constexpr event_id id = event_id::soft_start;
    std::uint64_t restart_id = 0;  ///< the rolling restart this belongs to (0: none)
    static constexpr auto fields() {
        return std::tuple{optional_field("restart_id", &soft_start::restart_id)};
    }
    friend bool operator==(const soft_start&, const soft_start&) = default;
};

/// 2 · master → slave. Start normally; the shards to run follow as start_shard frames.
struct full_start {
    static constexpr event_id id = event_id::full_start;
    std::uint64_t restart_id = 0;
    static constexpr auto fields() {
        return std::tuple{optional_field("restart_id", &full_start::restart_id)};
    }
    friend bool operator==(const full_start&, const full_start&) = default;
};

/// 3 · master → slave. A batch of shard moves involving this slave begins.
struct shard_migration_start {
    static constexpr event_id id = event_id::shard_migration_start;
    std::uint64_t restart_id = 0;
    migration_role role = migration_role::source;  ///< this slave gives shards away or takes them
    std::string_view peer;                         ///< the slave on the other side
    std::uint32_t shard_count = 0;                 ///< how many shards the batch moves
    static constexpr auto fields() {
        using m = shard_migration_start;
        return std::tuple{optional_field("restart_id", &m::restart_id),
                          required_field("role", &m::role), optional_field("peer", &m::peer),
                          required_field("shard_count", &m::shard_count)};
    }
    friend bool operator==(const shard_migration_start&, const shard_migration_start&) = default;
};

/// 4 · master → slave. Stop processing `shard` (held under `epoch`) and answer shard_stopped with
/// its state. `migration_id` 0 means the shard is taken away for good (fencing): stop, no handoff.
struct stop_shard {
    static constexpr event_id id = event_id::stop_shard;
    std::uint32_t shard = 0;
    std::uint64_t epoch = 0;
    std::uint64_t migration_id = 0;
    static constexpr auto fields() {
        using m = stop_shard;
        return std::tuple{required_field("shard", &m::shard), required_field("epoch", &m::epoch),
                          optional_field("migration_id", &m::migration_id)};
    }
    friend bool operator==(const stop_shard&, const stop_shard&) = default;
};

/// 5 · master → slave. Run `shard` under the new `epoch`, starting from the handed-over state.
/// Large states arrive first as state_chunk frames; `state` is then the last piece and
/// `state_size` the total. The slave answers resumed.
struct resume {
    static constexpr event_id id = event_id::resume;
    std::uint32_t shard = 0;
    std::uint64_t epoch = 0;
    std::uint64_t migration_id = 0;
    bytes_view state;
    std::optional<std::uint64_t> state_size;  ///< total state bytes incl. chunks; absent: state's size
    /// The previous holder's shard_stopped.stopped_at_us, relayed (1.3): the new holder answers
    /// with resumed.pause_us. Absent when the stop carried none (or the receiver is older).
    std::optional<std::uint64_t> stopped_at_us;
    static constexpr auto fields() {
        using m = resume;
        return std::tuple{required_field("shard", &m::shard), required_field("epoch", &m::epoch),
                          required_field("migration_id", &m::migration_id),
                          required_field("state", &m::state),
                          optional_field("state_size", &m::state_size),
                          optional_field("stopped_at_us", &m::stopped_at_us)};
    }
    friend bool operator==(const resume&, const resume&) = default;
};

/// 6 · master → slave. Stop all shards and exit; answer shutdown_complete first.
struct shutdown {
    static constexpr event_id id = event_id::shutdown;
    std::string_view reason;
    std::uint32_t deadline_ms = 0;  ///< after this the master kills the process (0: master's default)
    static constexpr auto fields() {
        return std::tuple{optional_field("reason", &shutdown::reason),
                          optional_field("deadline_ms", &shutdown::deadline_ms)};
    }
    friend bool operator==(const shutdown&, const shutdown&) = default;
};

/// 7 · either way. One piece of a shard state too large for one frame. Pieces of one state share
/// (migration_id, shard, epoch), arrive in order, and are followed by the shard_stopped or resume
/// frame that carries the last piece and the total size.
struct state_chunk {
    static constexpr event_id id = event_id::state_chunk;
    std::uint64_t migration_id = 0;
    std::uint32_t shard = 0;
    std::uint64_t epoch = 0;
    std::uint64_t offset = 0;  ///< where `data` starts within the whole state
    bytes_view data;
    static constexpr auto fields() {
        using m = state_chunk;
        return std::tuple{required_field("migration_id", &m::migration_id),
                          required_field("shard", &m::shard), required_field("epoch", &m::epoch),
                          required_field("offset", &m::offset), required_field("data", &m::data)};
    }
    friend bool operator==(const state_chunk&, const state_chunk&) = default;
};

/// 8 · slave → master, after auth_challenge. Who the slave is and what it already runs (a slave
/// reconnecting to a restarted master reports its shards so the master can rebuild its table).
struct slave_hello {
    static constexpr event_id id = event_id::slave_hello;
    std::uint32_t version_major = 0;
    std::uint32_t version_minor = 0;
    std::string_view slave_id;
    std::uint32_t pid = 0;
    std::uint64_t generation = 0;     ///< the restart generation the slave was spawned for
    bytes_view nonce;                 ///< the slave's challenge to the master (mutual auth)
    std::vector<shard_epoch> shards;  ///< shards the slave runs now, with their epochs
    bool soft_started = false;        ///< the slave completed a soft start and awaits shards
    /// Shards the slave stopped and whose state it still holds, with the epochs it held them
    /// under: handed back to a master that may not have taken them up (1.1).
    std::vector<shard_epoch> stopped;
    /// The slave's mesh node (1.2), all absent when it runs none. If any mesh_* field is present,
    /// mesh_host, mesh_port and mesh_incarnation must be (`missing_field:<field>` otherwise); the
    /// host is an IP address and the port 1..65535, the incarnation nonzero (`out_of_range:<field>`).
    std::optional<std::string_view> mesh_host;
    std::optional<std::uint16_t> mesh_port;
    std::optional<std::uint64_t> mesh_incarnation;
    std::optional<std::string_view> mesh_type;
    std::optional<string_map> mesh_values;
    static constexpr auto fields() {
        using m = slave_hello;
        return std::tuple{required_field("version_major", &m::version_major),
                          required_field("version_minor", &m::version_minor),
                          required_field("slave_id", &m::slave_id), optional_field("pid", &m::pid),
                          optional_field("generation", &m::generation),
                          required_field("nonce", &m::nonce), optional_field("shards", &m::shards),
                          optional_field("soft_started", &m::soft_started), optional_field("stopped", &m::stopped),
                          optional_field("mesh_host", &m::mesh_host), optional_field("mesh_port", &m::mesh_port),
                          optional_field("mesh_incarnation", &m::mesh_incarnation),
                          optional_field("mesh_type", &m::mesh_type), optional_field("mesh_values", &m::mesh_values)};
    }
    /// Whether the hello describes a mesh node (after decoding: then host, port and incarnation are set).
    [[nodiscard]] bool has_mesh_node() const noexcept { return mesh_host.has_value(); }
    /// Checks across fields, run by the decoder after every field was read (see codec.cpp).
    [[nodiscard]] error validate() const noexcept;
    friend bool operator==(const slave_hello&, const slave_hello&) = default;
};

/// 9 · slave → master. The soft start finished; the slave can take shards.
struct soft_start_complete {
    static constexpr event_id id = event_id::soft_start_complete;
    std::uint64_t restart_id = 0;
    static constexpr auto fields() {
        return std::tuple{optional_field("restart_id", &soft_start_complete::restart_id)};
    }
    friend bool operator==(const soft_start_complete&, const soft_start_complete&) = default;
};

/// 10 · slave → master. The shard is stopped; here is its state (last piece, after any chunks).
struct shard_stopped {
    static constexpr event_id id = event_id::shard_stopped;
    std::uint32_t shard = 0;
    std::uint64_t epoch = 0;
    std::uint64_t migration_id = 0;
    bytes_view state;
    std::optional<std::uint64_t> state_size;
    /// The sender's wall clock (Unix microseconds) when it stopped handling the shard's events
    /// (1.3): relayed in resume so that the new holder can measure the pause.
    std::optional<std::uint64_t> stopped_at_us;
    static constexpr auto fields() {
        using m = shard_stopped;
        return std::tuple{required_field("shard", &m::shard), required_field("epoch", &m::epoch),
                          optional_field("migration_id", &m::migration_id),
                          required_field("state", &m::state),
                          optional_field("state_size", &m::state_size),
                          optional_field("stopped_at_us", &m::stopped_at_us)};
    }
    friend bool operator==(const shard_stopped&, const shard_stopped&) = default;
};

// --- meshmaster control events, 11 and up ------------------------------------------------------

/// 11 · master → slave, the first frame on every connection.
struct auth_challenge {
    static constexpr event_id id = event_id::auth_challenge;
    std::uint32_t version_major = 0;
    std::uint32_t version_minor = 0;
    std::string_view master_id;
    bytes_view nonce;  ///< fresh random bytes the slave must sign
    static constexpr auto fields() {
        using m = auth_challenge;
        return std::tuple{required_field("version_major", &m::version_major),
                          required_field("version_minor", &m::version_minor),
                          optional_field("master_id", &m::master_id),
                          required_field("nonce", &m::nonce)};
    }
    friend bool operator==(const auth_challenge&, const auth_challenge&) = default;
};

/// 12 · slave → master, after slave_hello. Proof that the slave knows the shared secret.
struct auth_proof {
    static constexpr event_id id = event_id::auth_proof;
    bytes_view mac;
    static constexpr auto fields() { return std::tuple{required_field("mac", &auth_proof::mac)}; }
    friend bool operator==(const auth_proof&, const auth_proof&) = default;
};

/// 13 · master → slave. Authentication succeeded; `mac` proves the master knows the secret too.
struct welcome {
    static constexpr event_id id = event_id::welcome;
    bytes_view mac;
    std::uint32_t heartbeat_interval_ms = 0;
    static constexpr auto fields() {
        return std::tuple{required_field("mac", &welcome::mac),
                          optional_field("heartbeat_interval_ms", &welcome::heartbeat_interval_ms)};
    }
    friend bool operator==(const welcome&, const welcome&) = default;
};

/// 14 · master → slave. Run `shard` from scratch under `epoch` (no state to resume from).
struct start_shard {
    static constexpr event_id id = event_id::start_shard;
    std::uint32_t shard = 0;
    std::uint64_t epoch = 0;
    std::uint32_t shard_count = 0;  ///< total shards in the fleet (0: unknown)
    static constexpr auto fields() {
        using m = start_shard;
        return std::tuple{required_field("shard", &m::shard), required_field("epoch", &m::epoch),
                          optional_field("shard_count", &m::shard_count)};
    }
    friend bool operator==(const start_shard&, const start_shard&) = default;
};

/// 15 · slave → master. The shard granted by start_shard is running.
struct shard_started {
    static constexpr event_id id = event_id::shard_started;
    std::uint32_t shard = 0;
    std::uint64_t epoch = 0;
    static constexpr auto fields() {
        return std::tuple{required_field("shard", &shard_started::shard),
                          required_field("epoch", &shard_started::epoch)};
    }
    friend bool operator==(const shard_started&, const shard_started&) = default;
};

/// 16 · slave → master. The shard granted by resume is running from its state.
struct resumed {
    static constexpr event_id id = event_id::resumed;
    std::uint32_t shard = 0;
    std::uint64_t epoch = 0;
    std::uint64_t migration_id = 0;
    /// Microseconds from resume.stopped_at_us to the moment the shard runs here, on this slave's
    /// wall clock, clamped at 0 (1.3): the handoff's pause as the slaves saw it. Absent when the
    /// resume carried no stopped_at_us.
    std::optional<std::uint64_t> pause_us;
    static constexpr auto fields() {
        using m = resumed;
        return std::tuple{required_field("shard", &m::shard), required_field("epoch", &m::epoch),
                          required_field("migration_id", &m::migration_id), optional_field("pause_us", &m::pause_us)};
    }
    friend bool operator==(const resumed&, const resumed&) = default;
};

/// 17 · slave → master. Acknowledges shutdown; the process exits next.
struct shutdown_complete {
    static constexpr event_id id = event_id::shutdown_complete;
    static constexpr auto fields() { return std::tuple{}; }
    friend bool operator==(const shutdown_complete&, const shutdown_complete&) = default;
};

/// 18 · either way. Liveness. `progress` counts the sender's event-loop turns, so a process that is
/// alive but stuck (a callback that never returns) is told apart from a healthy one. The echo (1.3)
/// lets the peer measure the round trip: RTT = now − send time of its heartbeat `echo_seq` −
/// `echo_delay_us`. Both are absent until the sender has received a heartbeat on this connection.
struct heartbeat {
    static constexpr event_id id = event_id::heartbeat;
    std::uint64_t seq = 0;
    std::uint64_t progress = 0;
    std::optional<std::uint64_t> echo_seq;       ///< the newest `seq` received from the peer
    std::optional<std::uint64_t> echo_delay_us;  ///< microseconds from receiving it to sending this
    static constexpr auto fields() {
        return std::tuple{required_field("seq", &heartbeat::seq),
                          optional_field("progress", &heartbeat::progress),
                          optional_field("echo_seq", &heartbeat::echo_seq),
                          optional_field("echo_delay_us", &heartbeat::echo_delay_us)};
    }
    friend bool operator==(const heartbeat&, const heartbeat&) = default;
};

/// 19 · either way. A frame was refused or something failed. `code` is machine-readable
/// (e.g. "wrong_type:shard", "stale_epoch", "auth_failed"); `fatal` means the sender closes next.
struct error_message {
    static constexpr event_id id = event_id::error;
    std::string_view code;
    std::string_view message;
    std::optional<std::uint32_t> shard;
    std::optional<std::uint64_t> epoch;
    bool fatal = false;
    static constexpr auto fields() {
        using m = error_message;
        return std::tuple{required_field("code", &m::code), optional_field("message", &m::message),
                          optional_field("shard", &m::shard), optional_field("epoch", &m::epoch),
                          optional_field("fatal", &m::fatal)};
    }
    friend bool operator==(const error_message&, const error_message&) = default;
};

/// 20 · slave → master (1.1). The shard's current state, sent from time to time by its holder, so a
/// replacement can resume from it if the holder dies. Large states travel as state_chunk frames
/// first, with migration_id 0.
struct checkpoint {
    static constexpr event_id id = event_id::checkpoint;
    std::uint32_t shard = 0;
    std::uint64_t epoch = 0;  ///< the epoch the sender holds the shard under
    bytes_view state;
    std::optional<std::uint64_t> state_size;
    static constexpr auto fields() {
        using m = checkpoint;
        return std::tuple{required_field("shard", &m::shard), required_field("epoch", &m::epoch),
                          required_field("state", &m::state), optional_field("state_size", &m::state_size)};
    }
    friend bool operator==(const checkpoint&, const checkpoint&) = default;
};

/// 21 · master → slave (1.1). The state this slave handed back for (shard, epoch, migration) now runs
/// elsewhere: the slave may forget the copy it kept in case the master lost it.
struct handoff_complete {
    static constexpr event_id id = event_id::handoff_complete;
    std::uint32_t shard = 0;
    std::uint64_t epoch = 0;
    std::uint64_t migration_id = 0;
    static constexpr auto fields() {
        using m = handoff_complete;
        return std::tuple{required_field("shard", &m::shard), required_field("epoch", &m::epoch),
                          optional_field("migration_id", &m::migration_id)};
    }
    friend bool operator==(const handoff_complete&, const handoff_complete&) = default;
};

/// 22 · master → slave (1.2). The complete current membership of the UDP mesh: every slave that runs
/// a mesh node, the receiver included (it skips itself). `version` grows with every change; a slave
/// ignores a list older than one it already applied. Sent only to slaves that announced 1.2.
struct mesh_members {
    static constexpr event_id id = event_id::mesh_members;
    std::uint64_t version = 0;
    std::vector<mesh_member> members;  ///< ids are unique (`duplicate_field:members` otherwise)
    static constexpr auto fields() {
        using m = mesh_members;
        return std::tuple{required_field("version", &m::version), required_field("members", &m::members)};
    }
    friend bool operator==(const mesh_members&, const mesh_members&) = default;
};

/// 23 · slave → master (1.2). The slave's mesh node changed its type or its values at runtime; the
/// master updates its record and pushes a new mesh_members. Only from a slave that announced a mesh
/// node in its hello, and only to a 1.2 master.
struct mesh_update {
    static constexpr event_id id = event_id::mesh_update;
    std::optional<std::string_view> mesh_type;  ///< the new type; absent: unchanged
    string_map mesh_values;                     ///< all of the node's values now (replaces the old ones)
    static constexpr auto fields() {
        using m = mesh_update;
        return std::tuple{optional_field("mesh_type", &m::mesh_type), required_field("mesh_values", &m::mesh_values)};
    }
    friend bool operator==(const mesh_update&, const mesh_update&) = default;
};

/// A frame in the application range: forwarded as is, body not decoded.
struct application_frame {
    std::uint32_t event = application_event_first;
    bytes_view body;
    friend bool operator==(const application_frame&, const application_frame&) = default;
};

/// Any frame, decoded.
using message = std::variant<soft_start, full_start, shard_migration_start, stop_shard, resume,
                             shutdown, state_chunk, slave_hello, soft_start_complete, shard_stopped,
                             auth_challenge, auth_proof, welcome, start_shard, shard_started,
                             resumed, shutdown_complete, heartbeat, error_message, checkpoint, handoff_complete,
                             mesh_members, mesh_update, application_frame>;

/// The event id a message travels under.
[[nodiscard]] std::uint32_t event_of(const message& m) noexcept;

}  // namespace meshmaster::protocol
