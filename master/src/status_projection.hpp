// The status projection: supervisor_status (status.hpp), what `meshmaster status` and the control
// socket show, read from the supervisor's state at a given time. Read-only; fleet_health.cpp judges
// the result. supervisor::status composes it from the projections of single records declared
// here (a slot, a restart), which read nothing but the record and the time.
//
// Thread safety: the functions below are pure; supervisor::status runs on the driver thread.
#pragma once

#include "rolling_restart.hpp"
#include "slave_pool.hpp"

#include <meshmaster/master/status.hpp>
#include <meshmaster/master/supervisor.hpp>

#include <cstdint>

namespace meshmaster::master {

/// Slot `index` as status shows it: its slave, its failed starts within `start_limit_interval`,
/// whether it was given up, and when it respawns. first_shard and last_shard are left to the caller.
[[nodiscard]] slot_status project_slot(std::uint32_t index, const slot_rec& slot, mono_time now,
                                       milliseconds start_limit_interval);

/// A running restart as status shows it: slaves and moves done of the total, time elapsed.
[[nodiscard]] restart_status project_restart(const restart_rec& restart, std::uint32_t in_flight, mono_time now);

}  // namespace meshmaster::master
