// The slave library's public face (slave.hpp) and how it reaches the master: the TCP connector,
// with TLS over it when options::tls_ca_file is set. Everything after the connection is the shell's
// (slave_shell.cpp), which runs over a shell::byte_stream.
#include <meshmaster/slave/slave.hpp>

#include "slave_shell.hpp"

#include <meshmaster/shell/asio_byte_stream.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <fmt/format.h>

#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>

#include <optional>
#include <stdexcept>

namespace meshmaster::slave {

namespace asio = boost::asio;
using asio::awaitable;
using asio::use_awaitable;
using asio::ip::tcp;
using namespace asio::experimental::awaitable_operators;
namespace ssl = asio::ssl;

namespace {

constexpr auto tuple_awaitable = asio::as_tuple(use_awaitable);

// The client context, made once per slave; none for plain TCP.
std::shared_ptr<ssl::context> make_tls_context(const options& o) {
    if (o.tls_ca_file.empty()) {
        // Without a CA there would be no TLS at all, while the name suggests there is.
        if (!o.tls_server_name.empty()) {
            throw std::runtime_error("tls_server_name (MESHMASTER_TLS_SERVER_NAME) needs tls_ca_file (MESHMASTER_TLS_CA)");
        }
        return nullptr;
    }
    auto context = std::make_shared<ssl::context>(ssl::context::tls_client);
    // TLS 1.2 at least; 1.3 whenever the master has it.
    context->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                         ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
    boost::system::error_code ec;
    context->load_verify_file(o.tls_ca_file, ec);
    if (ec) throw std::runtime_error(fmt::format("cannot load the TLS CA file {}: {}", o.tls_ca_file, ec.message()));
    context->set_verify_mode(ssl::verify_peer);
    return context;
}

// The TCP connection to the master, or what failed.
awaitable<std::variant<tcp::socket, boost::system::error_code>> connect_tcp(asio::any_io_executor ex,
                                                                             const std::string& address) {
    const auto colon = address.rfind(':');
    if (colon == std::string::npos) co_return boost::system::error_code(asio::error::invalid_argument);
    tcp::resolver resolver(ex);
    auto [rec, endpoints] =
        co_await resolver.async_resolve(address.substr(0, colon), address.substr(colon + 1), tuple_awaitable);
    if (rec) co_return rec;
    tcp::socket socket(ex);
    auto [ec, endpoint] = co_await asio::async_connect(socket, endpoints, tuple_awaitable);
    if (ec) co_return ec;
    socket.set_option(tcp::no_delay(true));
    co_return std::move(socket);
}

// With TLS, after the connect: the client handshake, verifying the master's certificate against
// the CA (and its name, if one is set), by `deadline`. What failed, or "" once secured.
awaitable<std::string> secure(shell::tls_byte_stream& link, const std::string& server_name,
                              std::chrono::steady_clock::time_point deadline) {
    auto& stream = link.stream();
    if (!server_name.empty()) {
        if (SSL_set_tlsext_host_name(stream.native_handle(), server_name.c_str()) != 1) {
            co_return fmt::format("cannot send the server name {}", server_name);
        }
        stream.set_verify_callback(
            [check = ssl::host_name_verification(server_name)](bool preverified, ssl::verify_context& v) {
                if (check(preverified, v)) return true;
                // A chain that verified but names someone else: say so, rather than OpenSSL's
                // "unspecified certificate verification error".
                if (preverified) X509_STORE_CTX_set_error(v.native_handle(), X509_V_ERR_HOSTNAME_MISMATCH);
                return false;
            });
    }
    asio::steady_timer timer(link.get_executor());
    timer.expires_at(deadline);
    auto result = co_await (link.handshake() || timer.async_wait(tuple_awaitable));
    if (result.index() == 1) co_return "no TLS handshake within the handshake timeout";
    const boost::system::error_code ec = std::get<0>(result);
    if (!ec) co_return "";
    if (const long verify = SSL_get_verify_result(stream.native_handle()); verify != X509_V_OK) {
        co_return fmt::format("{}: {}", ec.message(), X509_verify_cert_error_string(verify));
    }
    co_return ec.message();
}

// Reaches the master at opts.master_address over TCP, and secures the link when a CA is set.
connector tcp_connector(const options& opts) {
    return [tls = make_tls_context(opts), address = opts.master_address, server_name = opts.tls_server_name](
               asio::any_io_executor ex, std::chrono::milliseconds timeout) -> awaitable<link_attempt> {
        auto connected = co_await connect_tcp(ex, address);
        if (auto* ec = std::get_if<boost::system::error_code>(&connected)) {
            co_return link_attempt{.failure = fmt::format("cannot reach the master at {}: {}", address, ec->message())};
        }
        const auto deadline = std::chrono::steady_clock::now() + timeout;
        tcp::socket socket = std::move(std::get<tcp::socket>(connected));
        if (!tls) co_return link_attempt{.link = std::make_unique<shell::tcp_byte_stream>(std::move(socket)), .handshake_deadline = deadline};
        auto link = std::make_unique<shell::tls_byte_stream>(std::move(socket), *tls, ssl::stream_base::client);
        // A failed TLS handshake is retried like a failed connect (slave_shell.cpp).
        if (std::string failure = co_await secure(*link, server_name, deadline); !failure.empty()) {
            link->close();
            co_return link_attempt{.failure = fmt::format("TLS handshake with the master at {} failed: {}", address, failure)};
        }
        co_return link_attempt{.link = std::move(link), .handshake_deadline = deadline};
    };
}

}  // namespace

slave::slave(asio::io_context& io, options opts, handlers h) {
    connector c = tcp_connector(opts);
    impl_ = std::make_shared<impl>(io, std::move(opts), std::move(h), std::move(c));
}

slave::slave(options opts, handlers h) {
    connector c = tcp_connector(opts);
    auto own = std::make_unique<asio::io_context>(1);
    impl_ = std::make_shared<impl>(*own, std::move(opts), std::move(h), std::move(c));
    impl_->own_io = std::move(own);
}

slave::~slave() {
    stop();
    if (impl_->own_thread.joinable()) {
        impl_->own_io->stop();
        impl_->own_thread.join();
    }
}

void slave::start() {
    impl_->start();
    if (impl_->own_io && !impl_->own_thread.joinable()) {
        impl_->own_thread = std::thread([io = impl_->own_io.get()] {
            auto guard = asio::make_work_guard(*io);
            io->run();
        });
    }
}

void slave::stop() { impl_->stop(); }
void slave::checkpoint(std::uint32_t shard, std::vector<std::byte> state) { impl_->checkpoint(shard, std::move(state)); }
void slave::checkpoint(std::uint32_t shard, shared_bytes state) { impl_->checkpoint(shard, std::move(state)); }
void slave::update_mesh(mesh::peer_record node) { impl_->update_mesh(std::move(node)); }
std::vector<protocol::shard_epoch> slave::shards() const { return impl_->shards(); }
bool slave::finished() const { return impl_->finished(); }
std::optional<std::chrono::microseconds> slave::heartbeat_rtt() const { return impl_->heartbeat_rtt(); }

}  // namespace meshmaster::slave
