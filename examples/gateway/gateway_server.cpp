#include "gateway_server.hpp"

#include "json_line.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <fmt/format.h>

#include <array>
#include <charconv>
#include <exception>

namespace meshmaster::gateway {

namespace asio = boost::asio;
using asio::ip::tcp;

namespace {
constexpr auto await_tuple = asio::as_tuple(asio::use_awaitable);
constexpr std::size_t read_chunk = 64 * 1024;
constexpr std::size_t max_control_line = 4096;
// How often `drain` looks again; short enough not to add to a measured drain.
constexpr auto drain_poll = std::chrono::milliseconds{2};
// A tick loop that fell this many ticks behind (a stopped process, an overloaded machine) starts
// afresh from now instead of running the missed ticks back to back; the core's emission follows
// elapsed time, not tick counts, so no events are owed either way.
constexpr int max_ticks_behind = 100;

std::int64_t steady_ns(std::chrono::steady_clock::time_point t) {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}
std::int64_t now_ns() { return steady_ns(std::chrono::steady_clock::now()); }

std::string to_string(const tcp::endpoint& endpoint) {
    if (endpoint.address().is_v6()) return fmt::format("[{}]:{}", endpoint.address().to_string(), endpoint.port());
    return fmt::format("{}:{}", endpoint.address().to_string(), endpoint.port());
}

// Completion handler for spawned coroutines: a coroutine that throws has a bug; let it end the
// program (io_context::run rethrows) instead of vanishing silently as `detached` would let it.
void rethrow(std::exception_ptr error) {
    if (error) std::rethrow_exception(error);
}

tcp::acceptor listen_on(asio::io_context& io, const tcp::endpoint& endpoint) {
    tcp::acceptor acceptor{io, endpoint.protocol()};
    acceptor.set_option(tcp::acceptor::reuse_address(true));
    acceptor.bind(endpoint);
    acceptor.listen();
    return acceptor;
}

std::string_view trim(std::string_view text) {
    while (!text.empty() && (text.back() == '\r' || text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
    while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
    return text;
}
}  // namespace

struct gateway_server::bot_link {
    bot_link(connection_id id_, tcp::socket socket_)
        : id(id_), socket(std::move(socket_)), wake(socket.get_executor()) {}

    connection_id id;
    tcp::socket socket;
    asio::steady_timer wake;              // the writer sleeps on it; cancelled when output is pending
    std::vector<unsigned char> in_flight; // the batch being written (swapped with the core's buffer)
    std::array<unsigned char, read_chunk> in{};
    std::string close_reason;             // why this side closed the socket, if it did

    void close(std::string reason) {
        if (!socket.is_open()) return;
        close_reason = std::move(reason);
        boost::system::error_code ignored;
        socket.shutdown(tcp::socket::shutdown_both, ignored);
        socket.close(ignored);
        wake.cancel();
    }
};

gateway_server::gateway_server(asio::io_context& io, gateway_core& core, const server_options& options)
    : io_(io),
      core_(core),
      tick_(options.tick),
      record_file_(options.record_file),
      bot_acceptor_(listen_on(io, options.bots)),
      control_acceptor_(listen_on(io, options.control)),
      tick_timer_(io) {
    if (record_file_ != nullptr) core_.on_ack([this](const ack_note& note) { write_record_line(note); });
}

gateway_server::~gateway_server() {
    core_.on_ack({});
    flush_records();
}

void gateway_server::start(std::function<void()> on_quit) {
    on_quit_ = std::move(on_quit);
    asio::co_spawn(io_, accept_bots(), rethrow);
    asio::co_spawn(io_, accept_control(), rethrow);
    asio::co_spawn(io_, tick_loop(), rethrow);
}

void gateway_server::flush_records() {
    if (record_file_ != nullptr) std::fflush(record_file_);
}

void gateway_server::write_record_line(const ack_note& note) {
    record_line_.clear();
    fmt::format_to(std::back_inserter(record_line_), R"({{"shard":{},"first":{},"last":{},"slave":)", note.shard,
                   note.first, note.last);
    append_json_string(record_line_, note.slave);
    fmt::format_to(std::back_inserter(record_line_), R"(,"epoch":{},"t_ns":{}}})", note.epoch, note.received_ns);
    record_line_ += '\n';
    std::fwrite(record_line_.data(), 1, record_line_.size(), record_file_);
}

void gateway_server::apply_effects() {
    const core_effects& effects = core_.effects();
    for (const std::string& line : effects.log) fmt::print(stderr, "{}\n", line);
    for (const close_request& request : effects.closes) {
        if (const auto found = links_.find(request.id); found != links_.end()) found->second->close(request.reason);
    }
    for (const connection_id id : effects.writable) {
        if (const auto found = links_.find(id); found != links_.end()) found->second->wake.cancel();
    }
    core_.clear_effects();
}

// --- bots ---------------------------------------------------------------------------------------

asio::awaitable<void> gateway_server::accept_bots() {
    for (;;) {
        auto [error, socket] = co_await bot_acceptor_.async_accept(await_tuple);
        if (error == asio::error::operation_aborted) co_return;
        if (error) {
            // Out of descriptors and the like: say so and back off instead of spinning.
            fmt::print(stderr, "{}\n",
                       json_line{}
                           .field("level", "warn")
                           .field("event", "accept_failed")
                           .field("reason", error.message())
                           .str());
            asio::steady_timer backoff{io_, std::chrono::milliseconds{100}};
            co_await backoff.async_wait(await_tuple);
            continue;
        }
        boost::system::error_code ignored;
        socket.set_option(tcp::no_delay(true), ignored);
        const tcp::endpoint peer = socket.remote_endpoint(ignored);
        const connection_id id = core_.open_connection(to_string(peer));
        auto link = std::make_shared<bot_link>(id, std::move(socket));
        links_.emplace(id, link);
        asio::co_spawn(io_, read_bot(link), rethrow);
        asio::co_spawn(io_, write_bot(link), rethrow);
        apply_effects();
    }
}

asio::awaitable<void> gateway_server::read_bot(std::shared_ptr<bot_link> link) {
    std::string reason;
    for (;;) {
        auto [error, size] = co_await link->socket.async_read_some(asio::buffer(link->in), await_tuple);
        if (error) {
            reason = !link->close_reason.empty() ? link->close_reason
                     : error == asio::error::eof ? std::string{"closed by the bot"}
                                                 : error.message();
            break;
        }
        core_.receive(link->id, {link->in.data(), size}, now_ns());
        apply_effects();
    }
    core_.connection_closed(link->id, reason);
    link->close(reason);
    links_.erase(link->id);
    apply_effects();
}

asio::awaitable<void> gateway_server::write_bot(std::shared_ptr<bot_link> link) {
    for (;;) {
        std::vector<unsigned char>* pending = core_.output(link->id);
        if (pending == nullptr || !link->socket.is_open()) co_return;
        if (pending->empty()) {
            // No lost wake-up: output only appears while this coroutine is suspended here or in
            // the write below, and both paths look at the pending buffer again afterwards.
            link->wake.expires_at(asio::steady_timer::time_point::max());
            co_await link->wake.async_wait(await_tuple);
            continue;
        }
        link->in_flight.clear();
        std::swap(link->in_flight, *pending);
        auto [error, written] = co_await asio::async_write(link->socket, asio::buffer(link->in_flight), await_tuple);
        if (error) {
            link->close(fmt::format("write failed: {}", error.message()));  // the reader cleans up
            co_return;
        }
    }
}

// --- ticks --------------------------------------------------------------------------------------

asio::awaitable<void> gateway_server::tick_loop() {
    auto next = std::chrono::steady_clock::now();
    core_.tick(steady_ns(next));  // starts the core's clock
    for (;;) {
        next += tick_;
        tick_timer_.expires_at(next);
        auto [error] = co_await tick_timer_.async_wait(await_tuple);
        if (error) co_return;
        const auto now = std::chrono::steady_clock::now();
        if (now - next > max_ticks_behind * tick_) next = now;
        core_.tick(steady_ns(now));
        apply_effects();
    }
}

// --- control ------------------------------------------------------------------------------------

asio::awaitable<void> gateway_server::accept_control() {
    for (;;) {
        auto [error, socket] = co_await control_acceptor_.async_accept(await_tuple);
        if (error == asio::error::operation_aborted) co_return;
        if (error) {
            asio::steady_timer backoff{io_, std::chrono::milliseconds{100}};
            co_await backoff.async_wait(await_tuple);
            continue;
        }
        asio::co_spawn(io_, serve_control(std::move(socket)), rethrow);
    }
}

asio::awaitable<void> gateway_server::serve_control(tcp::socket socket) {
    std::string received;
    for (;;) {
        auto [error, size] = co_await asio::async_read_until(
            socket, asio::dynamic_buffer(received, max_control_line), '\n', await_tuple);
        if (error) co_return;  // closed, or a line longer than max_control_line
        const std::string line{trim(std::string_view{received}.substr(0, size - 1))};
        received.erase(0, size);
        bool quit = false;
        std::string reply = co_await run_command(line, quit);
        reply += '\n';
        auto [write_error, written] = co_await asio::async_write(socket, asio::buffer(reply), await_tuple);
        if (write_error) co_return;
        if (quit) {
            if (on_quit_) on_quit_();
            co_return;
        }
    }
}

asio::awaitable<std::string> gateway_server::run_command(std::string_view line, bool& quit) {
    flush_records();  // whoever asks for numbers may read the record file next
    const std::size_t space = line.find(' ');
    const std::string_view command = line.substr(0, space);
    const std::string_view argument =
        space == std::string_view::npos ? std::string_view{} : trim(line.substr(space + 1));

    if ((command == "stats" || command == "report") && argument.empty()) co_return to_json(core_.make_report());
    if (command == "lagging" && argument.empty()) co_return core_.lagging(64);
    if (command == "pause" && argument.empty()) {
        core_.set_paused(true);
        co_return "ok";
    }
    if (command == "unpause" && argument.empty()) {
        core_.set_paused(false);
        co_return "ok";
    }
    if (command == "quit" && argument.empty()) {
        quit = true;
        co_return "ok";
    }
    if (command == "drain") {
        std::uint64_t milliseconds = 0;
        const auto [end, parsed] = std::from_chars(argument.data(), argument.data() + argument.size(), milliseconds);
        if (parsed != std::errc{} || end != argument.data() + argument.size()) {
            co_return "error drain needs a time limit in milliseconds, e.g. drain 5000";
        }
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds{milliseconds};
        asio::steady_timer poll{io_};
        while (core_.unprocessed() != 0 && std::chrono::steady_clock::now() < deadline) {
            poll.expires_after(drain_poll);
            co_await poll.async_wait(await_tuple);
        }
        const std::uint64_t left = core_.unprocessed();
        co_return left == 0 ? std::string{"drained"} : fmt::format("timeout {}", left);
    }
    co_return fmt::format("error unknown command '{}' (try stats, report, lagging, pause, unpause, drain MS, quit)",
                          line.substr(0, 64));
}

}  // namespace meshmaster::gateway
