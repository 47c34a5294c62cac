// The gateway's I/O shell: accepts bots and control clients, drives the core's tick, and carries
// out what the core asks for (write these bytes, close that connection, log this).
//
// Per bot connection, two coroutines: a reader that hands every read (up to 64 KiB, any number of
// records) to the core in one call, and a writer that sleeps until the core flags the connection
// writable, then takes all pending output in one swap and writes it in one `async_write`. Whatever
// the core queued for a connection during one input — a whole tick of events for all its shards,
// a reply with its replay — therefore leaves in a single write.
//
// Control clients send text lines and get one line back per command: `stats`, `report`, `pause`,
// `unpause`, `drain MS`, `quit` (see main.cpp for what each does).
//
// Thread safety: none. Everything runs on one io_context driven by one thread; the server, the core
// and every coroutine share that thread.
#pragma once

#include "gateway_core.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

namespace meshmaster::gateway {

struct server_options {
    boost::asio::ip::tcp::endpoint bots;     ///< where bots connect (port 0: any free port)
    boost::asio::ip::tcp::endpoint control;  ///< where control clients connect
    std::chrono::nanoseconds tick = std::chrono::milliseconds{1};
    /// If set, every accepted ACK is appended to it as a JSON line. Not owned; the server flushes
    /// it before answering each control command and when destroyed.
    std::FILE* record_file = nullptr;
};

class gateway_server {
public:
    /// Binds both listeners. Throws boost::system::system_error when one cannot be bound
    /// (a start-up failure).
    gateway_server(boost::asio::io_context& io, gateway_core& core, const server_options& options);
    ~gateway_server();
    gateway_server(const gateway_server&) = delete;
    gateway_server& operator=(const gateway_server&) = delete;

    [[nodiscard]] boost::asio::ip::tcp::endpoint bot_endpoint() const { return bot_acceptor_.local_endpoint(); }
    [[nodiscard]] boost::asio::ip::tcp::endpoint control_endpoint() const {
        return control_acceptor_.local_endpoint();
    }

    /// Starts accepting and ticking. `on_quit` runs once a control client's `quit` has been
    /// answered; it typically stops the io_context.
    void start(std::function<void()> on_quit);

    /// Writes buffered --record lines out.
    void flush_records();

private:
    struct bot_link;

    boost::asio::awaitable<void> accept_bots();
    boost::asio::awaitable<void> accept_control();
    boost::asio::awaitable<void> tick_loop();
    boost::asio::awaitable<void> read_bot(std::shared_ptr<bot_link> link);
    boost::asio::awaitable<void> write_bot(std::shared_ptr<bot_link> link);
    boost::asio::awaitable<void> serve_control(boost::asio::ip::tcp::socket socket);
    /// The reply to one control line (without newline); sets `quit` for `quit`.
    boost::asio::awaitable<std::string> run_command(std::string_view line, bool& quit);

    /// Performs and clears what the core asked for. Called after every input to the core.
    void apply_effects();
    void write_record_line(const ack_note& note);

    boost::asio::io_context& io_;
    gateway_core& core_;
    std::chrono::nanoseconds tick_;
    std::FILE* record_file_;
    std::string record_line_;  // reused for every --record line
    boost::asio::ip::tcp::acceptor bot_acceptor_;
    boost::asio::ip::tcp::acceptor control_acceptor_;
    boost::asio::steady_timer tick_timer_;
    std::unordered_map<connection_id, std::shared_ptr<bot_link>> links_;
    std::function<void()> on_quit_;
};

}  // namespace meshmaster::gateway
