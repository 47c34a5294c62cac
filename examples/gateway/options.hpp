// gateway: the command line, as a plain struct, and its parsing (see main.cpp for the usage).
//
// Kept apart from the Asio code so CLI11 (slow to compile at -O2) has a translation unit of its own.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace meshmaster::gateway {

struct command_line {
    std::string listen = "127.0.0.1:0";
    std::string control = "127.0.0.1:0";
    std::uint32_t shards = 256;
    double rate = 100;
    std::uint32_t tick_ms = 1;
    std::uint32_t resume_window_ms = 30'000;
    std::string record_path;
};

/// Parses the command line into `out`. Returns the exit code when the program must end now
/// (0 after --help, 64 for bad arguments, after printing why), nothing when it should run.
std::optional<int> parse_command_line(int argc, char** argv, command_line& out);

}  // namespace meshmaster::gateway
