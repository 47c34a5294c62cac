#include "startup_checks.hpp"

#include "http_auth.hpp"
#include "tls_context.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <fmt/format.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <sys/un.h>
#include <unistd.h>

namespace meshmaster::master {

namespace asio = boost::asio;
namespace fs = std::filesystem;
using asio::ip::tcp;

std::variant<listen_endpoint, std::string> resolve_listen(const std::string& listen) {
    const auto colon = listen.rfind(':');
    if (colon == std::string::npos || colon == 0) return fmt::format("listen: '{}' is not host:port", listen);
    std::string host = listen.substr(0, colon);
    if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
    const std::string port = listen.substr(colon + 1);
    asio::io_context io;
    tcp::resolver resolver(io);
    boost::system::error_code ec;
    // The first address, in the order the resolver prefers: the one clients of the name try first.
    const auto results = resolver.resolve(host, port, tcp::resolver::numeric_service, ec);
    if (ec || results.empty()) {
        return fmt::format("listen: '{}' does not resolve: {}", listen, ec ? ec.message() : "no address");
    }
    const tcp::endpoint endpoint = results.begin()->endpoint();
    const auto address = endpoint.address();
    if (address.is_multicast()) {
        return fmt::format("listen: '{}' is the multicast address {}: slaves need a unicast address of this host", listen,
                           address.to_string());
    }
    // Whether the address is one of this host's: bind it with any port (the configured one may be
    // held by a running daemon, which is no configuration problem).
    tcp::acceptor probe(io);
    probe.open(endpoint.protocol(), ec);
    if (!ec) probe.bind(tcp::endpoint(address, 0), ec);
    if (ec == boost::system::errc::address_not_available) {
        return fmt::format("listen: '{}': {} is not an address of this host", listen, address.to_string());
    }
    if (ec) return fmt::format("listen: '{}': cannot use {}: {}", listen, address.to_string(), ec.message());
    return listen_endpoint{.ip = address.to_string(), .port = endpoint.port()};
}

namespace {

std::string errno_text() { return std::strerror(errno); }

// A file the daemon creates (or appends to) at `path`: it must not be a directory, and its
// directory must exist and take new files.
std::optional<std::string> creatable_file(std::string_view key, const std::string& path) {
    std::error_code ec;
    const auto status = fs::status(path, ec);
    if (fs::exists(status)) {
        if (fs::is_directory(status)) return fmt::format("{}: '{}' is a directory", key, path);
        if (::access(path.c_str(), W_OK) != 0) return fmt::format("{}: cannot write '{}': {}", key, path, errno_text());
        return std::nullopt;
    }
    const fs::path parent = fs::path(path).parent_path().empty() ? fs::path(".") : fs::path(path).parent_path();
    const auto parent_status = fs::status(parent, ec);
    if (!fs::exists(parent_status)) return fmt::format("{}: the directory of '{}' does not exist", key, path);
    if (!fs::is_directory(parent_status)) return fmt::format("{}: '{}' is not a directory", key, parent.string());
    if (::access(parent.c_str(), W_OK | X_OK) != 0) {
        return fmt::format("{}: cannot create '{}': {}: {}", key, path, parent.string(), errno_text());
    }
    return std::nullopt;
}

// A directory the daemon creates with its parents (std::filesystem::create_directories) and
// writes files into.
std::optional<std::string> creatable_directory(std::string_view key, const std::string& path) {
    std::error_code ec;
    fs::path at = fs::absolute(path, ec);
    if (ec) return fmt::format("{}: '{}': {}", key, path, ec.message());
    // The nearest part of the path that exists decides: a directory that takes new entries.
    while (!fs::exists(fs::status(at, ec)) && at.has_relative_path()) at = at.parent_path();
    if (!fs::is_directory(fs::status(at, ec))) return fmt::format("{}: cannot create '{}': '{}' is not a directory", key, path, at.string());
    if (::access(at.c_str(), W_OK | X_OK) != 0) {
        return fmt::format("{}: cannot create or write '{}': {}: {}", key, path, at.string(), errno_text());
    }
    return std::nullopt;
}

}  // namespace

std::vector<std::string> path_problems(const daemon_config& c) {
    std::vector<std::string> problems;
    if (auto p = creatable_file("event_log", c.event_log)) problems.push_back(std::move(*p));
    const std::string checkpoints = c.checkpoint_dir.empty() ? c.event_log + ".checkpoints" : c.checkpoint_dir;
    if (auto p = creatable_directory(c.checkpoint_dir.empty() ? "checkpoint_dir (beside event_log)" : "checkpoint_dir", checkpoints)) {
        problems.push_back(std::move(*p));
    }
    constexpr std::size_t max_socket_path = sizeof(sockaddr_un{}.sun_path) - 1;
    if (c.control_socket.size() > max_socket_path) {
        problems.push_back(fmt::format("control_socket: '{}' is {} bytes long: a Unix socket path has at most {}",
                                       c.control_socket, c.control_socket.size(), max_socket_path));
    } else {
        std::error_code ec;
        const auto status = fs::symlink_status(c.control_socket, ec);
        // A socket there is a stale one (the daemon removes it) or a running daemon's (the daemon
        // refuses to start, exit 69); anything else is somebody's file, never replaced.
        if (fs::exists(status) && !fs::is_socket(status)) {
            problems.push_back(fmt::format("control_socket: '{}' exists and is not a socket", c.control_socket));
        } else if (!fs::exists(status)) {
            if (auto p = creatable_file("control_socket", c.control_socket)) problems.push_back(std::move(*p));
        }
    }
    return problems;
}

std::vector<std::string> startup_problems(const daemon_config& c) {
    std::vector<std::string> problems;
    auto listen = resolve_listen(c.listen);
    if (auto* p = std::get_if<std::string>(&listen)) problems.push_back(std::move(*p));
    for (auto& p : path_problems(c)) problems.push_back(std::move(p));
    if (c.tls()) {
        std::optional<asio::ssl::context> unused;
        if (auto p = load_tls_context(c, unused)) problems.push_back(std::move(*p));
    }
    if (c.http.enabled) {
        // The HTTP API's address and token files, as the start reads them.
        auto http_listen = resolve_listen(c.http.listen);
        if (auto* p = std::get_if<std::string>(&http_listen)) problems.push_back("http." + std::move(*p));
        auto loaded = http::load_tokens({.read_token_file = c.http.read_token_file, .admin_token_file = c.http.admin_token_file});
        if (auto* p = std::get_if<std::string>(&loaded)) problems.push_back(std::move(*p));
    }
    return problems;
}

std::vector<std::string> startup_warnings(const daemon_config& c) {
    std::vector<std::string> warnings;
    if (!c.supervisor.spawn_slaves || c.slave_command.empty()) return warnings;
    // As posix_spawnp(3) finds it: a name with a slash as it is, any other on the PATH.
    const std::string& program = c.slave_command.front();
    bool found = false;
    if (program.find('/') != std::string::npos) {
        found = ::access(program.c_str(), X_OK) == 0 && !fs::is_directory(program);
    } else {
        const char* path = std::getenv("PATH");
        std::string_view dirs = path ? path : "/usr/local/bin:/bin:/usr/bin";
        while (!found) {
            const auto colon = dirs.find(':');
            const std::string dir(dirs.substr(0, colon));
            const fs::path candidate = fs::path(dir.empty() ? "." : dir) / program;
            found = ::access(candidate.c_str(), X_OK) == 0 && !fs::is_directory(candidate);
            if (colon == std::string_view::npos) break;
            dirs.remove_prefix(colon + 1);
        }
    }
    if (!found) {
        warnings.push_back(fmt::format("slaves.command: '{}' is not an executable file{}: the daemon starts, but "
                                       "cannot spawn its slaves", program,
                                       program.find('/') != std::string::npos ? "" : " on the PATH"));
    }
    return warnings;
}

}  // namespace meshmaster::master
