// The slave pool: the supervisor's record of every slave (spawned here, adopted from a previous
// master, or external) and of every slot a slave runs shards for. It owns the slave ids (never
// reused, so the event log tells every process apart), spawning and respawning with backoff and the
// start limit, the spares kept ready to take over a slot, and retiring a slave with a shutdown.
// The records live here; the behaviour is in slave_pool.cpp, as members of supervisor::state
// (supervisor_state.hpp).
#pragma once

#include "start_limit.hpp"

#include <meshmaster/master/actions.hpp>
#include <meshmaster/master/supervisor.hpp>

#include <array>
#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <string_view>

namespace meshmaster::master {

enum class slave_phase { spawning, soft_starting, ready, running, retiring, lost };

inline std::string_view name(slave_phase p) {
    switch (p) {
        case slave_phase::spawning: return "spawning";
        case slave_phase::soft_starting: return "soft_starting";
        case slave_phase::ready: return "ready";
        case slave_phase::running: return "running";
        case slave_phase::retiring: return "retiring";
        case slave_phase::lost: return "lost";
    }
    return "unknown";
}

struct slave_rec {
    std::string id;
    std::optional<std::uint32_t> slot;
    std::uint64_t generation = 0;
    bool ours = false;     // a child of this master
    bool watched = false;  // adopted from a previous master: its pid is watched, it can be killed
    std::int64_t pid = 0;
    std::optional<connection_id> connection;
    std::uint32_t minor = 0;  // protocol minor version it speaks
    std::optional<mesh_node_info> mesh;  // its node in the UDP mesh (1.2)
    bool alive = true;  // false once its process is known to be gone
    slave_phase phase = slave_phase::spawning;
    std::optional<mono_time> deadline;  // of the current phase (spawning, soft_starting, retiring, lost)
    mono_time spawned_at{};
    mono_time last_seen{};
    mono_time next_heartbeat{};
    std::uint64_t progress = 0;  // the slave's event-loop counter, from its heartbeats
    mono_time progress_at{};     // when it last moved, or state bytes last arrived from the slave
    bool spare = false;          // an idle slave kept ready to take over a slot
    std::uint64_t heartbeat_seq = 0;
    // The send times of our last heartbeats on this connection, at seq % size (protocol 1.3): the
    // slave echoes the newest seq it got, and the round trip is measured against its send time.
    // As many as the silence limit holds by default (8 misses), and a few more.
    struct sent_heartbeat {
        std::uint64_t seq = 0;
        mono_time at{};
    };
    std::array<sent_heartbeat, 16> sent_heartbeats{};
    // The newest heartbeat seq received from the slave on this connection and when: echoed back.
    std::optional<std::pair<std::uint64_t, mono_time>> received_heartbeat;
    std::optional<double> heartbeat_rtt_ms;  // the last round trip measured (1.3 slaves)
    std::string address;  // its connection's remote ip:port; empty when not connected
    bool restart_target = false;
    bool started = false;  // its hello was accepted: a death now is a crash, not a failed start
    // Never reused (unlike a pointer): names the record in the deadline queue.
    std::uint64_t key = 0;
    // The shards whose shard_rec::owner it is, kept with the owner (state::set_owner), so that
    // what a slave holds is found without walking every shard.
    std::set<std::uint32_t> held;
    // The deadline queue's entry for it (deadline_queue.hpp): at or before its earliest deadline.
    std::optional<mono_time> armed;

    [[nodiscard]] bool killable() const { return (ours || watched) && alive && pid > 0; }
    [[nodiscard]] bool usable() const {
        return alive && connection && (phase == slave_phase::running || phase == slave_phase::ready);
    }
};

struct slot_rec {
    std::string active;  // the slave running this slot's shards
    std::uint32_t failures = 0;
    std::uint64_t spawn_generation = 0;  // generation of the slot's latest spawn
    std::uint32_t spawn_serial = 0;      // spawns in that generation after the first
    std::optional<mono_time> respawn_at;
    start_limit starts;
    bool failed = false;  // given up after too many failed starts, until retried
    std::string failure;
    std::optional<mono_time> armed;  // the deadline queue's entry for respawn_at
};

}  // namespace meshmaster::master
