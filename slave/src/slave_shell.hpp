// The slave library's network shell: the Asio coroutines around slave_core — reaching the master
// (through a connector: TCP and TLS in slave.cpp, an in-memory stream in unit tests), the read loop,
// the write loop, heartbeats, the handshake deadline, and reconnecting with jittered backoff. It
// talks to the master through a shell::byte_stream, so the unit tests run this very code over a
// stream that fails on purpose. Private to the slave library (slave.cpp, slave_shell.cpp) and its
// unit tests: it includes Asio.
// Thread safety: start(), stop(), checkpoint(), update_mesh(), shards(), finished() and heartbeat_rtt() may be called
// from any thread (they post to the strand or read a snapshot under a mutex); everything else runs
// on the strand.
#pragma once

#include <meshmaster/slave/slave.hpp>

#include "slave_core.hpp"

#include <meshmaster/protocol/frame_decoder.hpp>
#include <meshmaster/shell/byte_stream.hpp>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace meshmaster::slave {

/// One attempt to reach the master: a stream ready for the protocol (connected and, with TLS,
/// secured), or why there is none ("cannot reach the master at ...: ...").
struct link_attempt {
    std::unique_ptr<shell::byte_stream> link;
    std::string failure;
    /// When the TLS and HMAC handshakes must both be done: the handshake timeout from the connect.
    std::chrono::steady_clock::time_point handshake_deadline{};
};

/// Reaches the master on `executor`, within `handshake_timeout` of the connect for a TLS handshake.
using connector = std::function<boost::asio::awaitable<link_attempt>(boost::asio::any_io_executor executor,
                                                                     std::chrono::milliseconds handshake_timeout)>;

struct slave::impl : std::enable_shared_from_this<impl> {
    impl(boost::asio::io_context& context, options o, handlers h, connector c);

    void start();
    void stop();
    void checkpoint(std::uint32_t shard, std::vector<std::byte> state);
    void checkpoint(std::uint32_t shard, shared_bytes state);
    void update_mesh(mesh::peer_record node);
    std::vector<protocol::shard_epoch> shards() const;
    bool finished() const;
    std::optional<std::chrono::microseconds> heartbeat_rtt() const;

    // --- on the strand (slave_shell.cpp) ---
    struct target;
    template <class T>
    completion<T> make_completion(std::uint64_t op);
    detail::core_config make_core_config();
    void after_core();
    void publish();
    void flush();
    void log(std::string_view level, std::string text) { opts.log(level, text); }
    static boost::asio::awaitable<void> write_all(std::shared_ptr<impl> self);
    static boost::asio::awaitable<boost::system::error_code> write_frames(std::shared_ptr<impl> self,
                                                                         shell::byte_stream& to);
    boost::asio::awaitable<void> read_frames(shell::byte_stream& from);
    boost::asio::awaitable<void> heartbeats(std::chrono::steady_clock::time_point handshake_deadline);
    static boost::asio::awaitable<void> run(std::shared_ptr<impl> self);

    boost::asio::io_context* io;
    std::unique_ptr<boost::asio::io_context> own_io;
    std::thread own_thread;
    boost::asio::strand<boost::asio::io_context::executor_type> strand;
    options opts;
    handlers on;
    connector connect;
    detail::slave_core core;
    std::shared_ptr<shell::byte_stream> link;  // the current connection; none between connections
    boost::asio::steady_timer backoff_timer;
    boost::asio::steady_timer written;        // never expires: cancelled whenever the write loop ends
    boost::asio::steady_timer authenticated;  // never expires: cancelled when the handshake completes
    boost::asio::steady_timer stopping;       // never expires: cancelled by stop()
    protocol::frame_decoder decoder;
    detail::write_batch writing_batch;  // the frames being written; their states stay alive with it
    bool writing = false;
    bool stopped = false;
    std::uint64_t progress = 0;
    mutable std::mutex snapshot_mutex;
    std::vector<protocol::shard_epoch> snapshot;
    bool done = false;
    std::optional<std::chrono::microseconds> rtt;
};

}  // namespace meshmaster::slave
