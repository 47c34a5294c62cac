// gateway: parses the command line (see options.hpp).
#include "options.hpp"

#include <CLI/CLI.hpp>

namespace meshmaster::gateway {

std::optional<int> parse_command_line(int argc, char** argv, command_line& out) {
    constexpr int exit_usage = 64;
    CLI::App app{"A fake Discord-like gateway that emits sharded event streams to bots and audits "
                 "that every event is processed exactly once across rolling restarts."};
    app.add_option("--listen", out.listen, "HOST:PORT for bots (port 0 picks a free port)")->capture_default_str();
    app.add_option("--control", out.control, "HOST:PORT for control commands")->capture_default_str();
    app.add_option("--shards", out.shards, "number of shards; valid ids are 0..N-1")
        ->check(CLI::Range(1U, 1U << 24))
        ->capture_default_str();
    app.add_option("--rate", out.rate, "events per second per shard")->check(CLI::Range(0.0, 1e6))->capture_default_str();
    app.add_option("--tick-ms", out.tick_ms, "emission tick in milliseconds")
        ->check(CLI::Range(1U, 1000U))
        ->capture_default_str();
    app.add_option("--resume-window-ms", out.resume_window_ms, "how long emitted events stay resumable")
        ->check(CLI::Range(0U, 24U * 3600 * 1000))
        ->capture_default_str();
    app.add_option("--record", out.record_path, "append every ACK to FILE as a JSON line");
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& error) {
        const int code = app.exit(error);  // prints help (code 0) or the error and a hint
        return code == 0 ? 0 : exit_usage;
    }
    return std::nullopt;
}

}  // namespace meshmaster::gateway
