// `meshmaster run`: the supervisor core driven by Boost.Asio — TCP sessions with slaves
// (authentication, frames in and out), the spawner, one deadline timer, signals, the event log and
// the control socket the CLI talks to. One io_context, one thread. No Asio here: the runtime and
// its rooms are declared in daemon_runtime.hpp, which only the daemon's own sources include.
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
