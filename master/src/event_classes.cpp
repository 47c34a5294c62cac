#include "event_classes.hpp"

#include <algorithm>
#include <array>

namespace meshmaster::master {

namespace {

using enum event_kind;

constexpr std::array<event_kind, 7> refusals{
    frame_refused, frame_truncated, auth_failed, handshake_timeout, tls_handshake_failed,
    connection_refused, stale_ack_ignored,
};

// Lifecycle events that say something went wrong: "warn" on stderr.
constexpr std::array<event_kind, 11> troubles{
    slave_lost, spawn_failed, slot_failed, spares_failed, restart_failed, restart_abandoned,
    restart_pair_rolled_back, restart_refused, config_rejected, config_not_applied, refusals_suppressed,
};

constexpr std::array<event_kind, 16> routine{
    master_started, master_stopping, master_stopped, master_detached, adoption_started,
    adoption_finished, config_reloaded, slave_connected, slave_disconnected, slave_exited,
    slot_retried, spares_retried, restart_started, restart_pair_completed, restart_completed,
    restart_queued,
};

bool listed(auto const& list, event_id event) {
    return std::find(list.begin(), list.end(), event.kind()) != list.end();
}

}  // namespace

bool is_refusal(event_id event) { return listed(refusals, event); }

std::optional<std::string_view> lifecycle_level(event_id event) {
    if (is_refusal(event) || listed(troubles, event)) return "warn";
    if (listed(routine, event)) return "info";
    return std::nullopt;
}

}  // namespace meshmaster::master
