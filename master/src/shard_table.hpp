// The shard table: per shard, its holder, its phase and its fencing epoch, and the checkpoint to
// resume it from. A shard is granted (start_shard, or resume from its checkpoint) with a new,
// higher epoch, only to a live slave of its home slot and only while nobody else may still hold it;
// acknowledgements under a superseded epoch change nothing (stale_ack_ignored); a slave that reports
// a shard under an old epoch is fenced. A slave's hello is reconciled against the table here.
// The records live here; the behaviour is in shard_table.cpp, as members of supervisor::state
// (supervisor_state.hpp).
#pragma once

#include <meshmaster/master/supervisor.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace meshmaster::master {

struct slave_rec;  // slave_pool.hpp

enum class shard_phase { unowned, starting, running, stopping, resuming };

inline std::string_view name(shard_phase p) {
    switch (p) {
        case shard_phase::unowned: return "unowned";
        case shard_phase::starting: return "starting";
        case shard_phase::running: return "running";
        case shard_phase::stopping: return "stopping";
        case shard_phase::resuming: return "resuming";
    }
    return "unknown";
}

struct shard_rec {
    std::uint64_t epoch = 0;
    std::string owner;  // who runs it (or is being asked to start, stop or resume it): set_owner only
    // The owner's record (null when unowned), for the hot paths: no lookup by id. Safe to hold: a
    // slave's record is erased only after its death took every shard from it (slave_dead).
    slave_rec* holder = nullptr;
    shard_phase phase = shard_phase::unowned;
    std::uint64_t migration = 0;
    mono_time since{};
    std::optional<mono_time> armed;  // the deadline queue's entry for its start timeout
};

}  // namespace meshmaster::master
