// The migration pipeline: one move of a shard's state from a holder to another slave — stop it on
// the source (stop_shard), take the handed-back state, resume it on the target (resume) or, if the
// target failed, back on the source (rollback) — and its one terminal record. Moves of a restart,
// of the fleet converging (drain_surplus), and recoveries (a checkpoint or a kept state resumed
// after its holder died) all run through it; how many run at once is the rolling restart's and
// drain_surplus's business. The records live here; the behaviour is in migration_pipeline.cpp, as
// members of supervisor::state (supervisor_state.hpp).
#pragma once

#include <meshmaster/master/supervisor.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

namespace meshmaster::master {

enum class migration_phase { stopping, resuming };

struct migration_rec {
    std::uint64_t id = 0;
    std::uint32_t shard = 0;
    std::string from;
    std::string to;
    migration_phase phase = migration_phase::stopping;
    bool back_to_source = false;  // the target failed: the state goes back to `from` (rollback)
    shared_bytes state;
    mono_time started{};
    mono_time phase_started{};
    std::size_t pair = 0;
    // Not part of a restart: a shard resumed from its checkpoint after its holder died, or a state
    // a slave kept (after a master crash) collected and resumed. Not counted against concurrency.
    bool recovery = false;
    std::uint64_t from_epoch = 0;  // the epoch `from` held the shard under (for handoff_complete)
    // The source's wall clock when it stopped the shard (shard_stopped.stopped_at_us, 1.3), relayed
    // in resume; and the pause the target measured from it (resumed.pause_us), for the log.
    std::optional<std::uint64_t> stopped_at_us;
    std::optional<std::uint64_t> slave_pause_us;
    std::optional<mono_time> armed;  // the deadline queue's entry for its stop or resume timeout
};

constexpr std::size_t no_pair = SIZE_MAX;

}  // namespace meshmaster::master
