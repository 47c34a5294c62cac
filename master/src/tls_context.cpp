#include "tls_context.hpp"

#include <fmt/format.h>

#include <openssl/ssl.h>

#include <cerrno>
#include <cstring>
#include <fstream>

namespace meshmaster::master {

namespace ssl = boost::asio::ssl;

std::optional<std::string> load_tls_context(const daemon_config& config, std::optional<ssl::context>& out) {
    // Name the file that is missing or unreadable, before OpenSSL's terser complaints.
    auto unreadable = [](const std::string& what, const std::string& path) -> std::optional<std::string> {
        if (std::ifstream(path)) return std::nullopt;
        return fmt::format("cannot read the {} {}: {}", what, path, std::strerror(errno));
    };
    if (auto problem = unreadable("TLS certificate file (tls.cert)", config.tls_cert)) return problem;
    if (auto problem = unreadable("TLS key file (tls.key)", config.tls_key)) return problem;
    // The CA file is for the slaves this master spawns; only check it when there are some.
    if (!config.tls_ca.empty() && config.supervisor.spawn_slaves) {
        if (auto problem = unreadable("TLS CA file (tls.ca)", config.tls_ca)) return problem;
    }
    ssl::context context(ssl::context::tls_server);
    // TLS 1.2 at least; OpenSSL negotiates 1.3 with any peer that has it.
    context.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                        ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
    // Slaves open a fresh session on every connect and never resume one: sending them tickets
    // would cost each handshake for nothing.
    SSL_CTX_set_num_tickets(context.native_handle(), 0);
    boost::system::error_code ec;
    context.use_certificate_chain_file(config.tls_cert, ec);
    if (ec) return fmt::format("cannot load the TLS certificate chain {}: {}", config.tls_cert, ec.message());
    // (OpenSSL checks here that the key belongs to the certificate: "key values mismatch".)
    context.use_private_key_file(config.tls_key, ssl::context::pem, ec);
    if (ec) return fmt::format("cannot load the TLS private key {}: {}", config.tls_key, ec.message());
    out.emplace(std::move(context));
    return std::nullopt;
}

}  // namespace meshmaster::master
