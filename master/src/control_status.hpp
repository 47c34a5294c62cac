// What `meshmaster status` shows: the supervisor's status projected into the control socket's JSON
// answer, with the fleet verdict (`healthy`, `problems`) the CLI exits on, and the reload/restart
// answers' list of retried starts. No Asio: pure functions of their arguments, safe from any thread
// (and unit-tested with status_summary.hpp, which prints what they build).
//
// Two forms (docs/operations.md, "meshmaster status"): the full one, every shard in `shards` and
// `unassigned_shards`, and the summary, which leaves those two arrays out — at 16,384 shards they are
// most of the answer's size and of the time spent building it, and the default `meshmaster status`
// (and any poller that needs counts only) has no use for them. Both carry the summary fields
// (counts per state, the first shards not running, the last restart's outcome).
#pragma once

#include <meshmaster/master/event_record.hpp>
#include <meshmaster/master/supervisor.hpp>

#include <boost/json/object.hpp>

#include <cstdint>
#include <string>

namespace meshmaster::master {

/// What the daemon knows about itself beside the supervisor's status.
struct daemon_facts {
    std::string master_id;
    std::string slave_address;  ///< where its slaves connect
    std::string event_log;
    std::uint32_t shard_count = 0;  ///< configured
    std::int64_t pid = 0;
    double uptime_ms = 0;
    const event_record* last_restart = nullptr;  ///< restart_completed or restart_failed, the last since it started
};

enum class status_detail { full, summary };

/// How many of the shards not running the answer names (`shards_not_running_first`).
inline constexpr std::size_t not_running_named = 20;

/// The `status` answer.
boost::json::object status_json(const supervisor_status& st, const daemon_facts& daemon, status_detail detail);

/// A running restart's progress: `restart` in the status answer, `progress` while `restart --wait` follows it.
boost::json::object restart_json(const restart_status& r);

/// {"retried_slots": [...], "retried_spares": bool}: the failed starts a reload or restart retried.
boost::json::object retried_json(const supervisor::retried_starts& r);

}  // namespace meshmaster::master
