// The `meshmaster` command line: which subcommand the operator gave, and every value it set. It is
// defined with CLI11 in command_line.cpp, the one translation unit that includes CLI11: CLI11 2.1 is
// header-only and costs about 11 s at -O2 -g to include at all, so a second TU with it (main.cpp
// with the dispatch, or the subcommands' options split apart) only adds that again. Nothing here
// includes CLI11; main.cpp dispatches.
//
// Thread safety: plain values; parse_command_line() before any thread starts.
#pragma once

#include "cli.hpp"
#include "mesh_cli.hpp"

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace meshmaster::master {

/// Flags of `run` and `check-config`, kept as given, so SIGHUP can rebuild the configuration from
/// the same file and the same flags. Every setting with a flag in settings() is one here.
struct run_flags {
    std::string config_file;
    std::map<std::string, std::optional<std::string>> given;  // flag → value, if given
    std::vector<std::string> command;
};

struct command_line {
    enum class command { run, check_config, status, restart, drain, reload, stop, metrics, events, replay, mesh_ping, mesh_nodes };
    command which = command::status;

    run_flags flags;  // run, check-config

    // status, restart, reload, stop
    std::string control_socket = "meshmaster.sock";
    bool control_socket_given = false;  // -s on the command line: it wins over the configuration's
    bool wait = false;                  // restart --wait, drain --wait, stop --wait
    std::string drain_slave;            // drain SLAVE
    bool leave_slaves = false;          // stop --leave-slaves
    std::string stop_timeout = "10m";   // stop --wait --timeout
    cli::status_options status;         // status --json, --summary, --shards, --state

    // -c of every subcommand but run and check-config: the configuration to take paths from
    std::string control_config;
    bool as_json = false;

    // events, replay
    cli::event_filter filter;
    std::string event_log_path;
    bool follow = false;
    std::optional<std::uint32_t> shard;
    std::optional<std::string> slave_filter, since;
    std::uint32_t replay_shards = 0;

    // mesh ping, mesh nodes
    cli::mesh_key_source mesh_key;
    std::string mesh_address;
    unsigned ping_count = 4, ping_interval = 1000, mesh_timeout = 1000;
    cli::redis_source redis;
};

/// The command line parsed, or the exit code when parsing ends the program (--help and --version:
/// 0, having printed them; a bad command line: 64, the error printed).
std::variant<command_line, int> parse_command_line(int argc, char** argv);

}  // namespace meshmaster::master
