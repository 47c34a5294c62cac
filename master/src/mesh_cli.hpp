// `meshmaster mesh ...`: tools for the UDP mesh, run against live nodes.
#pragma once

#include <cstdint>
#include <string>

namespace meshmaster::master::cli {

struct mesh_key_source {
    std::string key_file;     ///< the mesh key itself
    std::string secret_file;  ///< the fleet secret; the mesh key is derived from it
    bool insecure = false;    ///< no key: talk to nodes that run without authentication
};

/// Probes HOST:PORT `count` times, `interval_ms` apart, printing each answer like ping(8) does;
/// exit 0 if any answer came, 1 if none, 64 for a bad address, 78 for a missing key.
int mesh_ping(const std::string& address, const mesh_key_source& key, unsigned count, unsigned interval_ms,
              unsigned timeout_ms);
/// The status list of the node at HOST:PORT (it must accept our key), as a table or JSON.
int mesh_nodes(const std::string& address, const mesh_key_source& key, bool as_json, unsigned timeout_ms);

struct redis_source {
    std::string address;  ///< HOST:PORT of the Redis server
    std::string prefix = "meshmaster:mesh:";
    std::string password_file;
    int database = 0;
};
/// The nodes registered in Redis (Redis discovery), as a table or JSON.
int mesh_nodes_from_redis(const redis_source& redis, bool as_json, unsigned timeout_ms);

}  // namespace meshmaster::master::cli
