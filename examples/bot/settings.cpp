// examples/bot: parses the bot's command line (see settings.hpp).
#include "settings.hpp"

#include <CLI/CLI.hpp>

#include <fmt/format.h>

#include <cstdio>

namespace meshmaster::example_bot {

std::optional<int> parse_settings(int argc, char** argv, settings& s) {
    CLI::App app{"bot: a sharded worker on the meshmaster slave library, against examples/gateway.\n"
                 "meshmaster spawns it; the master's address and the secret come from the environment it sets "
                 "(MESHMASTER_ADDR, ...).",
                 "bot"};
    app.add_option("--gateway", s.gateway, "the gateway's HOST:PORT")->required();
    app.add_option("--state-padding", s.state_padding, "bytes of padding in each shard's state")->capture_default_str();
    app.add_option("--soft-start-delay-ms", s.soft_start_delay_ms, "delay the soft start (tests)")->check(CLI::NonNegativeNumber);
    app.add_option("--stop-delay-ms", s.stop_delay_ms, "hand states back this much later (tests)")->check(CLI::NonNegativeNumber);
    app.add_flag("--ignore-shutdown", s.ignore_shutdown, "misbehave: never finish a shutdown (tests the master's deadline)");
    app.add_option("--checkpoint-ms", s.checkpoint_ms,
                   "checkpoint each shard that moved this often, shards spread over the interval (0: never checkpoint)")
        ->check(CLI::NonNegativeNumber)
        ->capture_default_str();
    app.add_option("--checkpoint-events", s.checkpoint_events,
                   "also checkpoint a shard once this many events arrived since its last checkpoint (0: interval only)")
        ->check(CLI::NonNegativeNumber)
        ->capture_default_str();
    app.add_flag("--mesh", s.mesh, "run a node of the fleet's UDP mesh, found through meshmaster");
    try {
        app.parse(argc, argv);
    } catch (const CLI::Success& e) {
        return app.exit(e);  // --help: the usage, exit 0
    } catch (const CLI::ParseError& e) {
        app.exit(e);
        return 64;
    }
    if (s.gateway.rfind(':') == std::string::npos) {
        fmt::print(stderr, "bot: --gateway: '{}' is not HOST:PORT\n", s.gateway);
        return 64;
    }
    return std::nullopt;
}

}  // namespace meshmaster::example_bot
