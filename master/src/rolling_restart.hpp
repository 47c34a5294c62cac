// The rolling-restart planner: a restart replaces each slot's slave by a new one of the next
// generation, a pair (old, new) at a time within restart_surge, soft-starts the new slave, queues
// the old one's shards as moves for the migration pipeline within migration_concurrency, retires
// the old slave, and ends in exactly one of restart_completed or restart_failed (a failed target
// rolls its pair back). A second request during a restart is queued once. The records live here;
// the behaviour is in rolling_restart.cpp, as members of supervisor::state (supervisor_state.hpp).
#pragma once

#include <meshmaster/master/supervisor.hpp>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <string>
#include <utility>
#include <vector>

namespace meshmaster::master {

enum class pair_phase { waiting, spawning, soft_starting, migrating, retiring, done };

struct pair_rec {
    std::uint32_t slot = 0;
    std::string from;
    std::string to;
    pair_phase phase = pair_phase::waiting;
    bool target_failed = false;
    bool source_dead = false;
    std::uint32_t total = 0;  // shards to move, known once the target is ready
    std::uint32_t moved = 0;
    mono_time soft_start_sent{};
    // Its moves waiting in the queue and its migrations in flight (queue_move, start_move,
    // end_migration keep them): whether a pair still moves is then a look, not a walk.
    std::uint32_t queued = 0;
    std::uint32_t moving = 0;
};

struct restart_rec {
    std::uint64_t id = 0;
    mono_time started{};
    std::string reason;
    std::vector<pair_rec> pairs;
    std::size_t next_pair = 0;
    // Pairs start in order and never go back: those before next_pair have started, those before
    // first_open are done (pump_restart moves it on), so the walks on every move cover only
    // [first_open, next_pair) — the surge, not the fleet.
    std::size_t first_open = 0;
    bool failing = false;
    std::string failure;
    std::deque<std::pair<std::size_t, std::uint32_t>> queue;  // (pair, shard) waiting to move
};

}  // namespace meshmaster::master
