// One slave connection as the slave server holds it: the TLS or plain stream, the sans-I/O
// slave_session, and the write queue. Internal to slave_server.cpp (accept, handshake, reads) and
// slave_writes.cpp (the write queue, closing): it includes Asio SSL streams, so nothing else
// includes it. Thread safety: none; used on the daemon's io_context thread only.
#pragma once

#include "daemon_runtime.hpp"

#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>

#include <variant>

namespace meshmaster::master {

// The slave link is plain TCP or, with [tls] set, TLS over it. TLS and the HMAC handshake both run
// because they prove different things: TLS keeps the link confidential and tamper-proof on the wire
// and lets the slave check it reached the real master (PKI); the HMAC challenge-response proves the
// slave holds the fleet's secret — that it is one of ours — whoever issued what certificate.
// Both alternatives' async_read_some/async_write complete with the same awaitable type, so the
// coroutines std::visit the variant; plain TCP pays only for the variant's index check.
using tls_stream = boost::asio::ssl::stream<boost::asio::ip::tcp::socket>;
using transport = std::variant<boost::asio::ip::tcp::socket, tls_stream>;

inline transport make_transport(boost::asio::ip::tcp::socket s, boost::asio::ssl::context* tls) {
    if (tls) return transport(std::in_place_type<tls_stream>, std::move(s), *tls);
    return transport(std::in_place_type<boost::asio::ip::tcp::socket>, std::move(s));
}

struct connection {
    connection(connection_id i, boost::asio::ip::tcp::socket s, boost::asio::ssl::context* tls, std::string peer,
               const session_settings& settings, session_host& host)
        : written(s.get_executor(), std::chrono::steady_clock::time_point::max()),
          stream(make_transport(std::move(s), tls)),
          session(i, std::move(peer), settings, host) {}
    boost::asio::steady_timer written;  // never expires: cancelled whenever a write loop ends
    transport stream;
    slave_session session;  // the protocol: handshake, frames, states (sans-I/O)
    std::vector<std::byte> out;
    std::vector<std::byte> writing;
    bool write_in_progress = false;
    bool closing = false;  // close once `out` has left
    bool ready = false;  // the TLS handshake is done (at once for plain TCP): frames may go out
    bool tls_closing = false;  // close_notify on its way

    // The TCP socket under either: open, shut down, close.
    boost::asio::ip::tcp::socket::lowest_layer_type& socket() {
        using lowest = boost::asio::ip::tcp::socket::lowest_layer_type;
        return std::visit([](auto& s) -> lowest& { return s.lowest_layer(); }, stream);
    }
    tls_stream* tls() { return std::get_if<tls_stream>(&stream); }
};

}  // namespace meshmaster::master
