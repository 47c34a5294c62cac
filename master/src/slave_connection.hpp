// One slave connection as the slave server holds it: its byte stream (TCP, TLS, or a test stream),
// the sans-I/O slave_session, and the write queue. Internal to slave_server.cpp (accept, handshake,
// reads) and slave_writes.cpp (the write queue, closing). Thread safety: none; used on the slave
// server's executor only.
#pragma once

#include "slave_server.hpp"

#include <boost/asio/steady_timer.hpp>

#include <vector>

namespace meshmaster::master {

// The slave link is plain TCP or, with [tls] set, TLS over it. TLS and the HMAC handshake both run
// because they prove different things: TLS keeps the link confidential and tamper-proof on the wire
// and lets the slave check it reached the real master (PKI); the HMAC challenge-response proves the
// slave holds the fleet's secret — that it is one of ours — whoever issued what certificate.
struct connection {
    connection(connection_id i, std::unique_ptr<shell::byte_stream> l, std::string peer, const session_settings& settings,
               session_host& host)
        : written(l->get_executor(), std::chrono::steady_clock::time_point::max()),
          link(std::move(l)),
          session(i, std::move(peer), settings, host) {}
    boost::asio::steady_timer written;  // never expires: cancelled whenever a write loop ends
    std::unique_ptr<shell::byte_stream> link;
    slave_session session;  // the protocol: handshake, frames, states (sans-I/O)
    std::vector<std::byte> out;
    std::vector<std::byte> writing;
    bool write_in_progress = false;
    bool closing = false;  // close once `out` has left
    bool ready = false;  // the TLS handshake is done (at once for plain TCP): frames may go out
    bool tls_closing = false;  // close_notify on its way
};

}  // namespace meshmaster::master
