// The byte stream the Asio shells talk to a peer through — the master's slave server and the slave
// library's client — whatever carries the bytes: plain TCP, TLS over TCP (asio_byte_stream.hpp) or,
// in unit tests, an in-memory stream that fails on purpose (tests/unit/shell/test_stream.hpp). Type
// erasure instead of templates over the stream type: each shell stays one set of translation units,
// compiled once, and the tests run the very code that ships. Every operation is a coroutine, so it
// takes the awaiting coroutine's cancellation — `co_await (link.read_some(b) || timer)` cancels the
// read when the timer wins — and costs one pooled coroutine frame per read or write, which is little
// beside the system call under it. Light on purpose (no socket or SSL headers): the shells' private
// headers include it.
// Thread safety: none; a stream is used from one executor (or strand) at a time, with at most one
// read and one write in flight.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/system/error_code.hpp>

#include <cstddef>
#include <span>

namespace meshmaster::shell {

/// How a read or write ended: an error, or how many bytes moved.
struct io_result {
    boost::system::error_code ec;
    std::size_t bytes = 0;
};

class byte_stream {
public:
    virtual ~byte_stream() = default;
    byte_stream() = default;
    byte_stream(const byte_stream&) = delete;
    byte_stream& operator=(const byte_stream&) = delete;

    virtual boost::asio::any_io_executor get_executor() = 0;
    /// Some bytes (at least one) into `into`, or an error (eof when the peer ended the stream;
    /// operation_aborted when the awaiting coroutine was cancelled or the stream closed).
    virtual boost::asio::awaitable<io_result> read_some(std::span<std::byte> into) = 0;
    /// All of `bytes`, or an error.
    virtual boost::asio::awaitable<io_result> write(std::span<const std::byte> bytes) = 0;
    /// All of `pieces`, in order, as one run of bytes (a gathered write: writev on a socket), or an
    /// error. For frames whose large bodies stay in their own buffers instead of being copied
    /// behind their headers (protocol::gathered_frames).
    virtual boost::asio::awaitable<io_result> write_gathered(std::span<const std::span<const std::byte>> pieces) = 0;
    /// All of `bytes` now, blocking: for a failpoint, whose "after X was sent" must mean sent. Only
    /// while no write is in flight.
    virtual boost::system::error_code write_now(std::span<const std::byte> bytes) = 0;
    /// TLS: the handshake, on the side the stream was made for; plain: nothing to do.
    virtual boost::asio::awaitable<boost::system::error_code> handshake() = 0;
    /// Whether the stream is TLS (a deliberate close then says close_notify first: goodbye()).
    virtual bool secured() const = 0;
    /// TLS: close_notify, and the peer's answer (bound it with a timer); plain: nothing.
    virtual boost::asio::awaitable<void> goodbye() = 0;
    virtual bool is_open() const = 0;
    /// Ends both directions of the connection under the stream (the peer reads eof); keeps it open.
    virtual void shutdown() = 0;
    /// Closes the connection: pending operations end with operation_aborted, later ones fail.
    virtual void close() = 0;
};

}  // namespace meshmaster::shell
