// Failure handling: detecting that a slave failed, and what follows. It owns the deadlines (spawn,
// soft start, shutdown, a migration's stop and resume, a shard's start, heartbeats and progress:
// on_tick and next_deadline), a slave declared lost (fail_slave: closed and killed, or given
// external_grace if it cannot be killed) and a slave known dead (slave_dead: its shards orphaned or
// sent back to their source, its pair, slot and spare dealt with). Nothing it holds is granted again
// before its death is known. The rules that decide what a passed deadline or a failure means are
// declared here, apart from any state; the behaviour is in failure_handling.cpp, as members of
// supervisor::state (supervisor_state.hpp).
//
// Thread safety: the functions below are pure; the rest runs on the supervisor's driver thread only.
#pragma once

#include "slave_pool.hpp"

#include <meshmaster/master/supervisor.hpp>

#include <string_view>

namespace meshmaster::master {

/// How long a connected slave may send nothing, or report a progress that stands still, before it
/// is lost: heartbeat_misses heartbeat intervals.
[[nodiscard]] mono_time silence_limit(const supervisor_config& config);

/// The failure a passed phase deadline means for a slave in phase `p` ("no hello before
/// spawn_timeout", "soft_start_timeout"); empty for the phases whose deadline means something else
/// (retiring: it is killed; lost: it is presumed dead) or that have none.
[[nodiscard]] std::string_view phase_timeout(slave_phase p);

/// Whether a failure says the slave stopped answering (a timeout, progress_stalled) rather than
/// that its connection dropped: an external slave is then fenced at once, without external_grace.
[[nodiscard]] bool unresponsive(std::string_view reason);

}  // namespace meshmaster::master
