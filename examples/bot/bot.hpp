// examples/bot: the bot — per shard it owns, a gateway session whose events it folds into a
// running checksum (the state that must survive handoffs), driven by the slave library.
//
// Its member functions live in one source per concept, so no translation unit carries all the
// coroutine code generation: gateway_link.cpp (the gateway connection: connect, read, write, the
// records it receives), handlers.cpp (the slave library's handlers: start, resume, stop, shutdown),
// timers.cpp (the checkpoint timer and the --mesh node with its pings). main.cpp wires it up.
//
// Thread safety: none. Everything runs on one io_context driven by one thread.
#pragma once

#include "../gateway/gateway_protocol.hpp"
#include "settings.hpp"
#include "shard_state.hpp"

#include <meshmaster/mesh/membership_sync.hpp>
#include <meshmaster/mesh/node.hpp>
#include <meshmaster/slave/slave.hpp>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace meshmaster::example_bot {

class bot {
public:
    bot(boost::asio::io_context& io, settings s, slave::options o);

    void start();
    /// Called once the master's shutdown is done, so the process can end when its work runs out.
    std::function<void()> on_shutdown;

private:
    struct shard {
        std::uint64_t checkpointed_seq = UINT64_MAX;  // the position of the last checkpoint sent
        std::uint64_t epoch = 0;
        shard_state state;
        bool running = false;
        std::uint64_t ack_first = 0;  // first processed seq not yet acknowledged (0: none)
        // Events up to here are committed at the gateway already (by us or a previous holder):
        // replayed ones are applied to the state but not acknowledged again.
        std::uint64_t commit_after = 0;
        std::optional<slave::completion<>> waiting;  // start/resume waiting for READY/RESUMED
        std::optional<slave::completion<std::vector<std::byte>>> stopping;  // stop waiting for DETACHED
        bool identify_on_invalid = false;
    };

    // timers.cpp
    slave::options with_mesh(slave::options o);
    boost::asio::awaitable<void> mesh_pings();
    boost::asio::awaitable<void> checkpoints();
    void checkpoint_now(std::uint32_t id, shard& s);
    void log(std::string_view level, const std::string& text);

    // handlers.cpp
    void soft_start(slave::completion<> done);
    void start_shard(slave::shard_grant g, slave::completion<> done);
    void resume_shard(slave::shard_grant g, std::span<const std::byte> state, slave::completion<> done);
    void stop_shard(slave::shard_grant g, slave::completion<std::vector<std::byte>> done);
    void detached(std::uint32_t id);
    void shutdown(slave::completion<> done);

    // gateway_link.cpp
    void ensure_gateway(slave::completion<> done);
    boost::asio::awaitable<void> connect_gateway();
    void send(const gateway::record& r, bool raw = false);
    void flush();
    boost::asio::awaitable<void> write_gateway();
    boost::asio::awaitable<void> read_gateway();
    void handle(const gateway::record& r);
    void send_acks();
    void close_socket();

    boost::asio::io_context& io_;
    settings settings_;
    std::string name_;
    boost::asio::ip::tcp::socket socket_;
    boost::asio::steady_timer checkpoint_timer_;  // cancelled at shutdown, so the process ends at once
    std::unique_ptr<mesh::node> node_;  // --mesh; before slave_, whose hello announces it
    mesh::membership_sync sync_;
    slave::slave slave_;
    std::map<std::uint32_t, shard> shards_;
    std::vector<std::uint32_t> touched_;
    std::vector<unsigned char> out_;
    std::vector<unsigned char> writing_buffer_;
    std::vector<slave::completion<>> connect_waiters_;
    bool connected_ = false;
    bool connecting_ = false;
    bool writing_ = false;
    bool closing_ = false;
    std::optional<slave::completion<>> ignored_shutdown_;
};

}  // namespace meshmaster::example_bot
