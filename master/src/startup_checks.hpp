// What `run` needs from the machine, beyond a configuration that hangs together (daemon_config's
// validate()): a listen address that resolves to one of this host's, files and directories it can
// create and write, TLS files that load. The daemon runs these before it binds or opens anything,
// so a start refused for its configuration (exit 78) leaves nothing behind; `check-config` runs the
// same functions, so it refuses what `run` would. Each message names the setting.
//
// Thread safety: plain functions (they resolve names and look at the file system).
#pragma once

#include "daemon_config.hpp"

#include <cstdint>
#include <string>
#include <variant>
#include <vector>

namespace meshmaster::master {

/// Where the slave link listens: a numeric IP address and a port (0: any free one).
struct listen_endpoint {
    std::string ip;
    std::uint16_t port = 0;
};

/// `listen` ("HOST:PORT"; HOST a name such as localhost, an IPv4 address, or an IPv6 one in
/// brackets) resolved to the first address the name has, which must be one of this host's (or
/// the unspecified address, for all of them); or the problem: "listen: 'nohost.invalid:7000' does
/// not resolve: ...".
std::variant<listen_endpoint, std::string> resolve_listen(const std::string& listen);

/// event_log, checkpoint_dir and control_socket: each can be created or written where it is
/// (and control_socket fits in a Unix socket address). One message per problem.
std::vector<std::string> path_problems(const daemon_config& config);

/// Everything `run` checks at start: the listen address, the paths, the TLS files.
std::vector<std::string> startup_problems(const daemon_config& config);

/// What `run` does not refuse but an operator wants to hear about before it: a slave command that
/// is not found (the daemon starts, and retries it).
std::vector<std::string> startup_warnings(const daemon_config& config);

}  // namespace meshmaster::master
