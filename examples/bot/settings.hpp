// examples/bot: the bot's command line, as a plain struct, and its parsing.
//
// Kept apart from the Asio code so CLI11 (slow to compile at -O2) has a translation unit of its own.
#pragma once

#include <cstddef>
#include <optional>
#include <string>

namespace meshmaster::example_bot {

struct settings {
    std::string gateway;
    std::size_t state_padding = 256;
    int soft_start_delay_ms = 0;
    int stop_delay_ms = 0;  // hand the state back this much later (widens the window tests aim at)
    bool ignore_shutdown = false;  // misbehave: never finish a shutdown (tests the master's deadline)
    // Checkpoints (see timers.cpp for why these defaults): a shard that moved is checkpointed
    // every checkpoint_ms, in a slot of its own within that interval, and also as soon as
    // checkpoint_events events arrived since its last checkpoint; and at each new session.
    int checkpoint_ms = 5000;          // each shard's checkpoint interval (0: no checkpoints at all)
    int checkpoint_events = 1000;      // checkpoint a shard after this many events (0: on the interval only)
    bool mesh = false;             // run a node of the fleet's UDP mesh (embedded discovery)
};

/// Parses the command line into `s`. Returns the exit code when the program must end now
/// (0 after --help, 64 for bad arguments, after printing why), nothing when it should run.
std::optional<int> parse_settings(int argc, char** argv, settings& s);

}  // namespace meshmaster::example_bot
