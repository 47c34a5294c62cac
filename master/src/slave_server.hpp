// The master's slave server, an object of its own: it accepts slaves (up to limits.max_connections),
// gives each connection its TLS handshake (when on) and its handshake deadline, runs each session's
// read loop into the sans-I/O slave_session and its write queue (slave_writes.cpp), and closes what
// ends. It talks to the daemon core through slave_server_host alone, and to each slave through a
// shell::byte_stream — TCP or TLS here, an in-memory stream that fails on purpose in its unit tests.
// Private to the daemon (daemon_runtime.hpp) and those tests: it includes Asio, no SSL.
// Thread safety: none; everything runs on the executor it is given (one thread).
#pragma once

#include "frame_counts.hpp"

#include <meshmaster/master/slave_session.hpp>
#include <meshmaster/master/supervisor.hpp>
#include <meshmaster/shell/byte_stream.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>

namespace boost::asio::ssl {
class context;
}

namespace meshmaster::master {

struct connection;  // slave_connection.hpp: one slave's stream, session and write queue

/// What the slave server asks of the daemon around it.
class slave_server_host {
public:
    struct limits {
        std::uint32_t max_connections = 1024;
        std::uint64_t max_output = std::uint64_t{16} << 20;  // unread bytes before a slave is dropped
        std::chrono::milliseconds handshake_timeout{5'000};
    };
    virtual ~slave_server_host() = default;
    /// One input for the supervisor; the host carries out its actions right after.
    virtual void to_core(const std::function<void(supervisor&, mono_time)>& input) = 0;
    virtual const supervisor_config& core_config() const = 0;
    virtual void record_event(event_record record) = 0;
    /// A line for the operator that is no event of the log (an accept that failed).
    virtual void warn(std::string_view message, std::string_view error) = 0;
    /// The limits and session settings in force now (a reload may change them).
    virtual limits server_limits() const = 0;
    virtual const session_settings& settings() const = 0;
};

class slave_server final : public session_host {
public:
    slave_server(boost::asio::any_io_executor executor, slave_server_host& host);
    ~slave_server() override;
    slave_server(const slave_server&) = delete;
    slave_server& operator=(const slave_server&) = delete;

    /// Accepts slaves on `acceptor` until it is closed; TLS over each connection when `tls` is set.
    boost::asio::awaitable<void> accept(boost::asio::ip::tcp::acceptor& acceptor, boost::asio::ssl::context* tls);
    /// Serves one connection from `peer` ("address:port") until it ends.
    void serve(std::unique_ptr<shell::byte_stream> link, std::string peer);
    /// The supervisor's close: a fatal error frame, then the connection closes.
    void close(connection_id id, const std::string& code, const std::string& message);
    /// For a failpoint: writes out at once what every connection has queued.
    void write_queued_now();
    /// Until nothing is being written to any slave, or until `limit` has passed.
    boost::asio::awaitable<void> writes_done(std::chrono::milliseconds limit);
    std::size_t size() const { return connections_.size(); }
    /// Every frame read from and queued for slaves since the server was made, per event.
    const frame_counts& frames() const { return frames_; }

    // --- session_host: what the sessions ask for, and the supervisor's frames (write) -----------
    void to_core(connection_id, const std::function<void(supervisor&, mono_time)>& input) override;
    const supervisor_config& core_config() const override;
    void log(event_record record) override;
    void write(connection_id id, std::span<const std::byte> bytes) override;
    void close_after_write(connection_id id) override;
    void frame_received(std::uint32_t event) override { frames_.received(event); }
    /// The supervisor's frames (actions::send_frame): taken over, not copied, when nothing else
    /// waits to be written on that connection — the usual case for a resume carrying a state.
    void send(connection_id id, std::vector<std::byte> frames);

private:
    using awaitable = boost::asio::awaitable<void>;
    std::shared_ptr<connection> find(connection_id id);
    /// Whether `size` more bytes may be queued on `c`; if not, the slave is dropped (it stopped reading).
    bool admit(const std::shared_ptr<connection>& c, std::size_t size);
    void send_bytes(const std::shared_ptr<connection>& c, std::span<const std::byte> bytes);
    void flush(const std::shared_ptr<connection>& c);
    awaitable written(std::shared_ptr<connection> c, std::chrono::milliseconds limit);
    awaitable close_tls(std::shared_ptr<connection> c);
    awaitable write_loop(std::shared_ptr<connection> c);
    boost::asio::awaitable<bool> read_some(const std::shared_ptr<connection>& c);
    bool reading(const std::shared_ptr<connection>& c) const;
    awaitable session(std::shared_ptr<connection> c);
    awaitable handshake(std::shared_ptr<connection> c);
    awaitable handshake_deadline(std::shared_ptr<connection> c);

    boost::asio::any_io_executor executor_;
    slave_server_host& host_;
    std::unordered_map<connection_id, std::shared_ptr<connection>> connections_;
    connection_id next_connection_ = 1;
    frame_counts frames_;
};

}  // namespace meshmaster::master
