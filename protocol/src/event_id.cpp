#include <meshmaster/protocol/event_id.hpp>

namespace meshmaster::protocol {

std::string_view to_string(event_id id) noexcept {
    switch (id) {
        case event_id::soft_start: return "soft_start";
        case event_id::full_start: return "full_start";
        case event_id::shard_migration_start: return "shard_migration_start";
        case event_id::stop_shard: return "stop_shard";
        case event_id::resume: return "resume";
        case event_id::shutdown: return "shutdown";
        case event_id::state_chunk: return "state_chunk";
        case event_id::slave_hello: return "slave_hello";
        case event_id::soft_start_complete: return "soft_start_complete";
        case event_id::shard_stopped: return "shard_stopped";
        case event_id::auth_challenge: return "auth_challenge";
        case event_id::auth_proof: return "auth_proof";
        case event_id::welcome: return "welcome";
        case event_id::start_shard: return "start_shard";
        case event_id::shard_started: return "shard_started";
        case event_id::resumed: return "resumed";
        case event_id::shutdown_complete: return "shutdown_complete";
        case event_id::heartbeat: return "heartbeat";
        case event_id::error: return "error";
        case event_id::checkpoint: return "checkpoint";
        case event_id::handoff_complete: return "handoff_complete";
        case event_id::mesh_members: return "mesh_members";
        case event_id::mesh_update: return "mesh_update";
    }
    return "unknown";
}

}  // namespace meshmaster::protocol
