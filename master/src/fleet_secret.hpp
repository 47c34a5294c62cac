// Where the master's fleet secret comes from: `secret_file`, else $MESHMASTER_SECRET, else a
// secret generated for this run (then only the slaves this master spawns can join). One function
// for `run` and `check-config`, so the check refuses exactly what the start would.
#pragma once

#include <meshmaster/protocol/secret.hpp>

#include <string>

namespace meshmaster::master {

struct fleet_secret {
    std::string value;
    bool generated = false;  ///< neither a file nor the environment gave one
};

/// The secret, or why it is refused (see protocol/secret.hpp: unreadable file, a file other users
/// may access, too short).
[[nodiscard]] boost::system::result<fleet_secret, protocol::secret_error> load_fleet_secret(const std::string& secret_file);

}  // namespace meshmaster::master
