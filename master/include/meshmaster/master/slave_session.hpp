// One slave connection as the master handles it, without I/O: the driver hands it the bytes it
// read and carries out what it asks through a session_host — bytes to write, records to log,
// inputs for the supervisor, closing. The daemon drives it from Asio; the unit tests and the
// libFuzzer target drive it directly.
//
// The handshake: start() sends auth_challenge; the slave answers slave_hello, then auth_proof;
// the proof is checked (HMAC-SHA256 over both nonces and the slave id, see protocol/auth.hpp) and
// answered with welcome, and only then does the supervisor hear of the slave. Before that, any
// other frame, a broken stream, an incompatible version or a wrong proof closes the connection
// with a fatal error frame, and nothing reaches the supervisor. Reads stay small until then
// (pre_auth_read_size), so a crowd of unauthenticated peers costs little memory.
//
// After it, every frame goes to the supervisor; a state sent in state_chunk frames is
// reassembled first (bounded by max_state_size). A broken frame stream closes the connection; a
// body that does not decode, or an event slaves do not send, is refused with a non-fatal error
// and logged as frame_refused. Every record about the connection carries its `address`.
//
// Thread safety: none; one driver thread calls it and the host.
#pragma once

#include <meshmaster/master/event_record.hpp>
#include <meshmaster/master/supervisor.hpp>
#include <meshmaster/protocol/auth.hpp>
#include <meshmaster/protocol/frame_decoder.hpp>
#include <meshmaster/protocol/state_transfer.hpp>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace meshmaster::master {

/// What a session needs from whoever drives it.
class session_host {
public:
    virtual ~session_host() = default;
    /// Hands the supervisor one input from `connection`; the host carries out the supervisor's
    /// actions right after (which may close this very session).
    virtual void to_core(connection_id connection, const std::function<void(supervisor&, mono_time)>& input) = 0;
    /// The supervisor's configuration (the welcome announces its heartbeat interval).
    virtual const supervisor_config& core_config() const = 0;
    virtual void log(event_record record) = 0;
    /// Whole frames to write on `connection`, in order.
    virtual void write(connection_id connection, std::span<const std::byte> bytes) = 0;
    /// Close `connection` once what was written has left.
    virtual void close_after_write(connection_id connection) = 0;
    /// A whole frame with this event id arrived (before it is handled): the daemon counts them
    /// for its metrics. Nothing by default.
    virtual void frame_received(std::uint32_t /*event*/) {}
};

struct session_settings {
    std::string master_id;
    std::string secret;
    std::uint64_t max_frame_size = 16u << 20;
    std::uint64_t max_state_size = 256u << 20;
};

class slave_session {
public:
    /// Bytes read at a time before authentication.
    static constexpr std::size_t pre_auth_read_size = 512;
    static constexpr std::size_t read_size = 64 * 1024;

    /// `settings` and `host` must outlive the session.
    slave_session(connection_id id, std::string peer, const session_settings& settings, session_host& host);

    /// Opens the handshake: the challenge goes out.
    void start();
    /// Where the driver reads the next bytes to; then received(n).
    [[nodiscard]] std::span<std::byte> read_buffer();
    /// `n` bytes landed in read_buffer(): every whole frame is handled.
    void received(std::size_t n);
    /// Sends a fatal error frame and closes (the supervisor's close_connection, a handshake timeout).
    void close(std::string_view code, std::string_view message);
    /// The connection is gone (EOF, reset, dropped by the driver): the supervisor hears it once.
    /// A stream that ended in the middle of a frame is logged as frame_truncated.
    void closed();

    [[nodiscard]] connection_id id() const noexcept { return id_; }
    [[nodiscard]] bool authenticated() const noexcept { return authenticated_; }
    [[nodiscard]] bool closing() const noexcept { return closing_; }
    /// The slave id from its hello ("" before one arrived), else the peer address: for logs.
    [[nodiscard]] const std::string& name() const noexcept { return slave_.empty() ? peer_ : slave_; }
    [[nodiscard]] const std::string& slave() const noexcept { return slave_; }
    [[nodiscard]] const std::string& peer() const noexcept { return peer_; }

private:
    void handle_handshake(const protocol::frame_view& frame);
    void handle(const protocol::frame_view& frame);
    void refuse(std::string_view code, std::string_view why, bool fatal);
    template <class Message>
    void send(const Message& m);

    connection_id id_;
    std::string peer_;
    const session_settings& settings_;
    session_host& host_;
    protocol::frame_decoder decoder_;
    protocol::state_assembler assembler_;
    protocol::nonce master_nonce_{};
    std::optional<slave_hello_info> hello_;
    std::vector<std::byte> slave_nonce_;
    std::string slave_;
    bool authenticated_ = false;
    bool closing_ = false;
    bool told_core_closed_ = false;
};

}  // namespace meshmaster::master
