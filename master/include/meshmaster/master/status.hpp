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
};

struct shard_status {
    std::uint32_t shard = 0;
    std::string owner;  ///< empty when nobody runs it
    std::uint64_t epoch = 0;
    std::string_view phase;  ///< unowned, starting, running, stopping, resuming
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
    std::optional<restart_status> restart;
    std::vector<slave_status> slaves;
    std::vector<shard_status> shards;
    std::uint32_t shards_running = 0;
    std::uint32_t shards_checkpointed = 0;  ///< shards with a state to resume from if their holder dies
};

}  // namespace meshmaster::master
