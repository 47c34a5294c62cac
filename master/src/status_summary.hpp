// `meshmaster status` for people: the daemon's status answer (control_status.hpp, summary or full
// form) as a summary that fits a terminal whatever the fleet's size — the master, the verdict in
// words with its problems, shard counts per state and the first shards that do not run, the
// restart's progress or the last one's outcome, and the slaves (one line each up to
// slaves_listed; past that, counts per phase and the slaves that are not running).
//
// Pure: JSON in, text out; a field the answer lacks (an older daemon) prints as "-" or is left out,
// never throws. Thread safety: plain functions.
#pragma once

#include <boost/json/object.hpp>

#include <cstddef>
#include <string>

namespace meshmaster::master {

/// Up to this many slaves the summary lists every one; past it, only those not running.
inline constexpr std::size_t slaves_listed = 50;
/// How many of the slaves not running a large fleet's summary lists.
inline constexpr std::size_t slaves_not_running_listed = 20;

/// The summary, ending in a newline.
std::string status_summary_text(const boost::json::object& status);

}  // namespace meshmaster::master
