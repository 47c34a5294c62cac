// `meshmaster run`: the supervisor core driven by Boost.Asio — TCP sessions with slaves
// (authentication, frames in and out), the spawner, one deadline timer, signals, the event log and
// the control socket the CLI talks to. One io_context, one thread. No Asio here: the runtime and
// its rooms are declared in daemon_runtime.hpp, which only the daemon's own sources include.
//
// Errors, one convention for the daemon and the CLI: a problem an operator must fix is a message
// naming the setting, path or peer and what is wrong with it. A check that can find several
// (a configuration, a reload) returns all of them as std::vector<std::string>; a single check
// returns std::optional<std::string> (empty: fine); a constructor that opens a file (event_log,
// checkpoint_store) throws std::runtime_error carrying that message. Each is read once, at an
// edge — start-up, a reload, a CLI command, a control-socket request — which logs it and turns it
// into one exit code of exit_code.hpp or a refused reply; nothing below an edge exits the process.
// I/O failing at run time arrives as a boost::system::error_code from Asio and is handled where it
// happens (the connection closes; the core hears of it and logs an event).
#pragma once

#include "daemon_config.hpp"

#include <functional>
#include <string>
#include <variant>
#include <vector>

namespace meshmaster::master {

/// Re-reads the configuration (same file, same flags) for SIGHUP: the new settings, or the errors.
using config_loader = std::function<std::variant<daemon_config, std::vector<std::string>>()>;

/// Runs the daemon until it stops; returns the process exit code (exit_code.hpp: ok, failure,
/// unavailable when the port or control socket is taken, cant_create for the checkpoint store,
/// config for a bad configuration).
int run_daemon(daemon_config config, config_loader reload);

}  // namespace meshmaster::master
