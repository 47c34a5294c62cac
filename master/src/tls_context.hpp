// The slave link's TLS server context, built from [tls]: what the daemon accepts connections with,
// and what `check-config` builds and throws away to prove the files load. Asio's SSL header: include
// this only where a context is made (daemon_startup.cpp, startup_checks.cpp).
#pragma once

#include "daemon_config.hpp"

#include <boost/asio/ssl/context.hpp>

#include <optional>
#include <string>

namespace meshmaster::master {

/// Builds the context of tls.cert and tls.key into `out` (config.tls() must hold); tls.ca is only
/// checked to be readable, when the master spawns slaves (they are the ones that read it). The
/// problem, naming the setting and the file, if a file cannot be read or loaded.
std::optional<std::string> load_tls_context(const daemon_config& config, std::optional<boost::asio::ssl::context>& out);

}  // namespace meshmaster::master
