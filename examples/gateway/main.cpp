// gateway — a fake upstream in the image of a Discord gateway proxy, and the auditor of the
// rolling-restart demo.
//
// Sharded bots connect over TCP (see gateway_protocol.hpp for the records), IDENTIFY or RESUME
// their shards and process the events the gateway emits for them, acknowledging what they
// processed. The gateway audits those acknowledgements: every event must be processed exactly
// once, with a checksum proving each bot's state intact across handoffs, and each handoff's pause
// is measured.
//
//   gateway [--listen HOST:PORT] [--control HOST:PORT] [--shards N] [--rate R] [--tick-ms T]
//           [--resume-window-ms W] [--record FILE]
//
// On start it prints one line to stdout, {"listen":"127.0.0.1:PORT","control":"127.0.0.1:PORT"},
// so scripts learn the ports it picked for port 0. Logs go to stderr as JSON lines, for notable
// happenings only. The control port takes text lines, one reply line each:
//   stats | report   the report, one JSON line (see report.hpp)
//   lagging          the shards with unprocessed events and their state, one JSON line
//   pause | unpause  stop / resume emitting (ticks go on; paused time earns no events) -> ok
//   drain MS         wait until every emitted event was processed -> drained | timeout UNPROCESSED
//   quit             -> ok, then exit 0
// SIGTERM or SIGINT prints the report line to stdout and exits 0. Exit codes: 0 clean, 1 runtime
// failure, 64 bad arguments, 69 a port cannot be bound.
//
// This file wires things up: the command line (options.cpp), the core, the server
// (gateway_server.cpp, the Asio coroutines), the signals and the start-up lines.
#include "gateway_core.hpp"
#include "gateway_server.hpp"
#include "json_line.hpp"
#include "options.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>

#include <fmt/format.h>

#include <cerrno>
#include <charconv>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <exception>
#include <optional>
#include <random>
#include <string>
#include <string_view>

namespace {

namespace asio = boost::asio;
using boost::asio::ip::tcp;
using namespace meshmaster::gateway;

constexpr int exit_runtime_failure = 1;
constexpr int exit_usage = 64;
constexpr int exit_unavailable = 69;

// "127.0.0.1:0" or "[::1]:9000".
std::optional<tcp::endpoint> parse_endpoint(std::string_view text) {
    const std::size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) return std::nullopt;
    std::string_view host = text.substr(0, colon);
    const std::string_view port_text = text.substr(colon + 1);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
    std::uint16_t port = 0;
    const auto [end, error] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
    if (port_text.empty() || error != std::errc{} || end != port_text.data() + port_text.size()) return std::nullopt;
    boost::system::error_code bad_address;
    const auto address = asio::ip::make_address(std::string{host}, bad_address);
    if (bad_address) return std::nullopt;
    return tcp::endpoint{address, port};
}

std::string to_string(const tcp::endpoint& endpoint) {
    if (endpoint.address().is_v6()) return fmt::format("[{}]:{}", endpoint.address().to_string(), endpoint.port());
    return fmt::format("{}:{}", endpoint.address().to_string(), endpoint.port());
}

int run(int argc, char** argv) {
    command_line options;
    if (const auto exit_code = parse_command_line(argc, argv, options)) return *exit_code;
    const auto& [listen, control, shards, rate, tick_ms, resume_window_ms, record_path] = options;
    const auto bot_endpoint = parse_endpoint(listen);
    const auto control_endpoint = parse_endpoint(control);
    if (!bot_endpoint || !control_endpoint) {
        fmt::print(stderr, "gateway: --listen and --control take HOST:PORT, e.g. 127.0.0.1:0\n");
        return exit_usage;
    }

    std::FILE* record_file = nullptr;
    if (!record_path.empty()) {
        record_file = std::fopen(record_path.c_str(), "a");
        if (record_file == nullptr) {
            fmt::print(stderr, "gateway: cannot open --record {}: {}\n", record_path, std::strerror(errno));
            return exit_runtime_failure;
        }
        std::setvbuf(record_file, nullptr, _IOFBF, std::size_t{1} << 20);
    }

    gateway_config config;
    config.shards = shards;
    config.rate = rate;
    config.resume_window_ns = std::int64_t{resume_window_ms} * 1'000'000;
    config.session_seed = (std::uint64_t{std::random_device{}()} << 32) ^ std::random_device{}();

    asio::io_context io{1};
    gateway_core core{config};
    std::optional<gateway_server> server;
    try {
        server.emplace(io, core,
                       server_options{.bots = *bot_endpoint,
                                      .control = *control_endpoint,
                                      .tick = std::chrono::milliseconds{tick_ms},
                                      .record_file = record_file});
    } catch (const boost::system::system_error& error) {
        fmt::print(stderr, "gateway: cannot listen: {}\n", error.what());
        if (record_file != nullptr) std::fclose(record_file);
        return exit_unavailable;
    }

    asio::signal_set signals{io, SIGINT, SIGTERM};
    signals.async_wait([&](const boost::system::error_code& error, int) {
        if (error) return;
        server->flush_records();
        fmt::print(stdout, "{}\n", to_json(core.make_report()));
        std::fflush(stdout);
        io.stop();
    });
    server->start([&io] { io.stop(); });

    fmt::print(stdout, "{}\n",
               json_line{}
                   .field("listen", to_string(server->bot_endpoint()))
                   .field("control", to_string(server->control_endpoint()))
                   .str());
    std::fflush(stdout);
    fmt::print(stderr, "{}\n",
               json_line{}
                   .field("level", "info")
                   .field("event", "started")
                   .field("listen", to_string(server->bot_endpoint()))
                   .field("control", to_string(server->control_endpoint()))
                   .field("shards", shards)
                   .field("rate", rate)
                   .field("tick_ms", tick_ms)
                   .field("resume_window_ms", resume_window_ms)
                   .str());

    io.run();
    server.reset();  // flushes the record file
    if (record_file != nullptr) std::fclose(record_file);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        return run(argc, argv);
    } catch (const std::exception& error) {
        fmt::print(stderr, "{}\n",
                   json_line{}.field("level", "error").field("event", "fatal").field("reason", error.what()).str());
        return exit_runtime_failure;
    }
}
