// The event log's events: one enum, and one table that gives each its name — the `event` field of
// a log line (docs/events.md explains each; tests/python/check_event_catalogue.py checks the
// document against this table, and that the master's sources log every name in it).
//
// event_record carries an event_id: built from an event_kind, or from a string literal that is
// checked against the table when it compiles (a name not in the table does not build). The name
// never changes with the enum: it is the log's format.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <utility>

namespace meshmaster::master {

enum class event_kind : std::uint8_t {
    // The master
    master_started, master_stopping, master_stopped, master_detached, adoption_started, adoption_finished,
    config_reloaded, config_rejected, config_not_applied, event_log_reopened, epochs_snapshot,
    // Slaves
    slave_spawned, slave_process_started, spare_spawned, spare_ready, spare_promoted, spawn_failed,
    slave_connected, slave_joined, slave_adopted, slave_disconnected, slave_lost, slave_killed, slave_exited,
    slave_retiring, shutdown_acknowledged, slave_retired, respawn_scheduled, slot_failed, slot_retried,
    spares_failed, spares_retried, slave_reported_error,
    // Shards
    shard_granted, shard_started, shard_adopted, shard_fenced, fence_acknowledged, shard_orphaned,
    shard_recovering, shard_recovered, recovery_failed, shard_state_collecting, shard_report_ignored,
    stale_ack_ignored,
    // Rolling restarts
    restart_started, restart_queued, restart_already_queued, restart_refused, restart_slot_skipped,
    soft_start_completed, migration_started, shard_stopped, shard_resuming, shard_resuming_on_source,
    migration_completed, migration_rolled_back, migration_abandoned, migration_failed, restart_pair_completed,
    restart_pair_rolled_back, restart_completed, restart_failed, restart_abandoned,
    // Connections and bad input
    auth_failed, handshake_timeout, tls_handshake_failed, frame_refused, frame_truncated, connection_refused,
    refusals_suppressed, connection_dropped, frame_not_sent,
};

/// Every event, in the enum's order, with its name in the log.
inline constexpr std::array<std::pair<event_kind, std::string_view>, 73> event_table{{
    // The master
    {event_kind::master_started, "master_started"},
    {event_kind::master_stopping, "master_stopping"},
    {event_kind::master_stopped, "master_stopped"},
    {event_kind::master_detached, "master_detached"},
    {event_kind::adoption_started, "adoption_started"},
    {event_kind::adoption_finished, "adoption_finished"},
    {event_kind::config_reloaded, "config_reloaded"},
    {event_kind::config_rejected, "config_rejected"},
    {event_kind::config_not_applied, "config_not_applied"},
    {event_kind::event_log_reopened, "event_log_reopened"},
    {event_kind::epochs_snapshot, "epochs_snapshot"},
    // Slaves
    {event_kind::slave_spawned, "slave_spawned"},
    {event_kind::slave_process_started, "slave_process_started"},
    {event_kind::spare_spawned, "spare_spawned"},
    {event_kind::spare_ready, "spare_ready"},
    {event_kind::spare_promoted, "spare_promoted"},
    {event_kind::spawn_failed, "spawn_failed"},
    {event_kind::slave_connected, "slave_connected"},
    {event_kind::slave_joined, "slave_joined"},
    {event_kind::slave_adopted, "slave_adopted"},
    {event_kind::slave_disconnected, "slave_disconnected"},
    {event_kind::slave_lost, "slave_lost"},
    {event_kind::slave_killed, "slave_killed"},
    {event_kind::slave_exited, "slave_exited"},
    {event_kind::slave_retiring, "slave_retiring"},
    {event_kind::shutdown_acknowledged, "shutdown_acknowledged"},
    {event_kind::slave_retired, "slave_retired"},
    {event_kind::respawn_scheduled, "respawn_scheduled"},
    {event_kind::slot_failed, "slot_failed"},
    {event_kind::slot_retried, "slot_retried"},
    {event_kind::spares_failed, "spares_failed"},
    {event_kind::spares_retried, "spares_retried"},
    {event_kind::slave_reported_error, "slave_reported_error"},
    // Shards
    {event_kind::shard_granted, "shard_granted"},
    {event_kind::shard_started, "shard_started"},
    {event_kind::shard_adopted, "shard_adopted"},
    {event_kind::shard_fenced, "shard_fenced"},
    {event_kind::fence_acknowledged, "fence_acknowledged"},
    {event_kind::shard_orphaned, "shard_orphaned"},
    {event_kind::shard_recovering, "shard_recovering"},
    {event_kind::shard_recovered, "shard_recovered"},
    {event_kind::recovery_failed, "recovery_failed"},
    {event_kind::shard_state_collecting, "shard_state_collecting"},
    {event_kind::shard_report_ignored, "shard_report_ignored"},
    {event_kind::stale_ack_ignored, "stale_ack_ignored"},
    // Rolling restarts
    {event_kind::restart_started, "restart_started"},
    {event_kind::restart_queued, "restart_queued"},
    {event_kind::restart_already_queued, "restart_already_queued"},
    {event_kind::restart_refused, "restart_refused"},
    {event_kind::restart_slot_skipped, "restart_slot_skipped"},
    {event_kind::soft_start_completed, "soft_start_completed"},
    {event_kind::migration_started, "migration_started"},
    {event_kind::shard_stopped, "shard_stopped"},
    {event_kind::shard_resuming, "shard_resuming"},
    {event_kind::shard_resuming_on_source, "shard_resuming_on_source"},
    {event_kind::migration_completed, "migration_completed"},
    {event_kind::migration_rolled_back, "migration_rolled_back"},
    {event_kind::migration_abandoned, "migration_abandoned"},
    {event_kind::migration_failed, "migration_failed"},
    {event_kind::restart_pair_completed, "restart_pair_completed"},
    {event_kind::restart_pair_rolled_back, "restart_pair_rolled_back"},
    {event_kind::restart_completed, "restart_completed"},
    {event_kind::restart_failed, "restart_failed"},
    {event_kind::restart_abandoned, "restart_abandoned"},
    // Connections and bad input
    {event_kind::auth_failed, "auth_failed"},
    {event_kind::handshake_timeout, "handshake_timeout"},
    {event_kind::tls_handshake_failed, "tls_handshake_failed"},
    {event_kind::frame_refused, "frame_refused"},
    {event_kind::frame_truncated, "frame_truncated"},
    {event_kind::connection_refused, "connection_refused"},
    {event_kind::refusals_suppressed, "refusals_suppressed"},
    {event_kind::connection_dropped, "connection_dropped"},
    {event_kind::frame_not_sent, "frame_not_sent"},
}};

namespace detail {
consteval bool event_table_in_enum_order() {
    for (std::size_t i = 0; i < event_table.size(); ++i) {
        if (static_cast<std::size_t>(event_table[i].first) != i) return false;
    }
    return true;
}
}  // namespace detail
static_assert(detail::event_table_in_enum_order(), "event_table: one entry per event_kind, in the enum's order");

/// The name `kind` has in the log.
[[nodiscard]] constexpr std::string_view name(event_kind kind) noexcept {
    return event_table[static_cast<std::size_t>(kind)].second;
}

/// An event of the log: which one, and its name.
class event_id {
public:
    constexpr event_id(event_kind kind) noexcept : kind_(kind) {}  // NOLINT: implicit on purpose
    /// A name from the table; any other literal is a compile error.
    template <std::size_t N>
    consteval event_id(const char (&name)[N]) : kind_(lookup(std::string_view(name, N - 1))) {}  // NOLINT

    [[nodiscard]] constexpr event_kind kind() const noexcept { return kind_; }
    [[nodiscard]] constexpr std::string_view name() const noexcept { return master::name(kind_); }
    constexpr operator std::string_view() const noexcept { return name(); }  // NOLINT: the log's field
    friend constexpr bool operator==(event_id a, event_kind b) noexcept { return a.kind_ == b; }
    // Against a name: another event_id, or a name read from a log, say.
    friend constexpr bool operator==(event_id a, std::string_view b) noexcept { return a.name() == b; }

private:
    static consteval event_kind lookup(std::string_view name) {
        for (const auto& [kind, n] : event_table) {
            if (n == name) return kind;
        }
        throw "not an event name: add it to event_table (event_kind.hpp) and docs/events.md";
    }
    event_kind kind_;
};

}  // namespace meshmaster::master
