// Rebuilding the supervisor's picture from its event log, for a master that starts after a crash
// and for `meshmaster replay` (a post-mortem: who held which shard under which epoch).
//
// The replay follows the ownership records — shard_started, shard_adopted, migration_completed,
// migration_rolled_back, shard_recovered, shard_orphaned — and migration_started with its terminal
// records. It yields the table as the log says it was, the highest epoch each shard reached (a new
// master continues above it, so no epoch is ever granted twice), the moves a crash left open, and
// whether the log ends with a clean stop.
//
// Thread safety: plain functions and values.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace meshmaster::master {

struct replayed_shard {
    std::string owner;  ///< empty: nobody held it when the log ended
    std::uint64_t epoch = 0;
};

struct open_migration {
    std::uint64_t id = 0;
    std::uint32_t shard = 0;
    std::string from;
    std::string to;
};

struct event_replay {
    std::vector<replayed_shard> shards;      ///< the table, per shard
    std::vector<std::uint64_t> max_epochs;   ///< the highest epoch seen, per shard
    std::vector<open_migration> open;        ///< started, never ended
    bool clean_stop = true;                  ///< empty log, or it ends with master_stopped
    std::uint64_t records = 0;
    std::uint64_t unreadable = 0;            ///< lines that were not JSON records (a torn write)
};

/// Replays the log at `path` for `shard_count` shards. A missing file is an empty log.
event_replay replay_event_log(const std::string& path, std::uint32_t shard_count);

}  // namespace meshmaster::master
