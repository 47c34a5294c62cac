// The supervisor core's composition: construction, the action queue, live settings and the frames
// that belong to no one unit. Everything else lives in the units listed in supervisor_state.hpp.
#include "supervisor_state.hpp"

#include <memory>
#include <utility>

namespace meshmaster::master {

supervisor::supervisor(supervisor_config config, std::uint64_t first_id)
    : s_(std::make_unique<state>(config, first_id)) {
    // Slaves ignore a membership list older than one they applied, and they outlive masters: the
    // next master's versions must start above this one's (first_id grows with the wall clock).
    s_->mesh_version = first_id;
}
supervisor::~supervisor() = default;

const supervisor_config& supervisor::config() const noexcept { return s_->config; }

std::vector<action> supervisor::take_actions() { return std::exchange(s_->out, {}); }

void supervisor::on_shutdown_complete(connection_id connection, mono_time now) {
    auto& s = *s_;
    slave_rec* r = s.heard_from(connection, now);
    if (!r) return;
    s.log({.event = event_kind::shutdown_acknowledged, .slave = r->id});
}

void supervisor::on_slave_error(connection_id connection, std::string code, std::string message, mono_time now) {
    auto& s = *s_;
    slave_rec* r = s.heard_from(connection, now);
    if (!r) return;
    s.log({.event = event_kind::slave_reported_error, .slave = r->id, .reason = code + ": " + message});
}

void supervisor::apply_config(const supervisor_config& config, mono_time now) {
    auto& s = *s_;
    s.now = now;
    supervisor_config next = config;
    next.shard_count = s.config.shard_count;
    next.slave_count = s.config.slave_count;
    next.spawn_slaves = s.config.spawn_slaves;
    s.config = next;
    s.arm_all();  // timeouts and the heartbeat may have shortened
    s.pump_restart();
    s.ensure_spares();  // slaves.spares may have changed
}

}  // namespace meshmaster::master
