// Which events are more than one line in the event log — the one place that decides it.
//
// Refusals are records of input the master turned away from a peer (a broken or unexpected frame,
// a wrong proof, a handshake not finished in time, a connection over the limit, an acknowledgement
// under a superseded epoch): a misbehaving or hostile peer produces them at will, so they pass
// through the refusal_limiter before they are written.
//
// Lifecycle events — the master starting and stopping, slaves coming and going, restarts and their
// progress, failed slots, refusals — are also written to stderr, one JSON line each, for whoever
// watches the daemon's output (journald, `docker logs`) rather than its event log.
#pragma once

#include <meshmaster/master/event_kind.hpp>

#include <optional>
#include <string_view>

namespace meshmaster::master {

/// Whether `event` is a refusal (rate-limited per peer).
[[nodiscard]] bool is_refusal(event_id event);

/// The stderr level ("info" or "warn") of a lifecycle event; nothing for the others.
[[nodiscard]] std::optional<std::string_view> lifecycle_level(event_id event);

}  // namespace meshmaster::master
