// What `meshmaster status` shows: the supervisor's status projected into the control socket's JSON
// answer, with the fleet verdict (`healthy`, `problems`) the CLI exits on, and the reload/restart
// answers' list of retried starts. No Asio: a pure function of its arguments, safe from any thread.
#pragma once

#include <meshmaster/master/supervisor.hpp>

#include <boost/json/object.hpp>

#include <string>

namespace meshmaster::master {

struct daemon_config;

/// The `status` answer for a daemon whose slaves connect to `slave_address`.
boost::json::object status_json(const supervisor_status& st, const daemon_config& cfg, const std::string& slave_address);

/// {"retried_slots": [...], "retried_spares": bool}: the failed starts a reload or restart retried.
boost::json::object retried_json(const supervisor::retried_starts& r);

}  // namespace meshmaster::master
