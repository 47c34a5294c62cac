#include <meshmaster/slave/options.hpp>

#include <meshmaster/protocol/secret.hpp>

#include <charconv>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <unistd.h>

namespace meshmaster::slave {

namespace p = meshmaster::protocol;

namespace {

std::string env(const char* name) {
    const char* value = std::getenv(name);
    return value ? std::string(value) : std::string();
}

// The master writes the secret into a pipe and hands the read end down: the secret never shows in
// the environment or on a command line.
std::string read_secret_pipe(const std::string& text) {
    int fd = -1;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), fd);
    if (ec != std::errc{} || end != text.data() + text.size() || fd < 0) {
        throw std::runtime_error("MESHMASTER_SECRET_FD is not a file descriptor number: " + text);
    }
    auto secret = p::read_secret_fd(fd, "MESHMASTER_SECRET_FD");
    ::close(fd);
    ::unsetenv("MESHMASTER_SECRET_FD");
    return std::move(secret).value();
}

}  // namespace

options options::from_environment() {
    options o;
    o.master_address = env("MESHMASTER_ADDR");
    if (o.master_address.empty()) throw std::runtime_error("MESHMASTER_ADDR is not set (host:port of meshmaster)");
    o.slave_id = env("MESHMASTER_SLAVE_ID");
    if (o.slave_id.empty()) {
        char host[256] = {};
        ::gethostname(host, sizeof host - 1);
        o.slave_id = std::string(host) + "-" + std::to_string(::getpid());
    }
    if (const std::string generation = env("MESHMASTER_GENERATION"); !generation.empty()) {
        o.generation = std::strtoull(generation.c_str(), nullptr, 10);
    }
    // The same rules as the master's (protocol/secret.hpp): a refused secret throws, naming its source.
    if (const std::string fd = env("MESHMASTER_SECRET_FD"); !fd.empty()) {
        o.secret = read_secret_pipe(fd);
    } else if (const std::string file = env("MESHMASTER_SECRET_FILE"); !file.empty()) {
        o.secret = p::read_secret_file(file).value();
    } else if (const std::string secret = env("MESHMASTER_SECRET"); !secret.empty()) {
        o.secret = p::check_secret(secret, "MESHMASTER_SECRET").value();
    } else {
        throw std::runtime_error("no secret: set MESHMASTER_SECRET_FD, MESHMASTER_SECRET_FILE or MESHMASTER_SECRET");
    }
    o.tls_ca_file = env("MESHMASTER_TLS_CA");
    o.tls_server_name = env("MESHMASTER_TLS_SERVER_NAME");
    return o;
}

}  // namespace meshmaster::slave
