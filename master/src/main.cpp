// meshmaster: the daemon (`run`), its configuration check, and the CLI that talks to it. The command
// line is parsed in command_line*.cpp (CLI11 stays out of this file); here it is dispatched.
// Exit codes: exit_code.hpp (0 clean, 1 runtime failure, 64 usage, 69 unavailable, 78 bad configuration).
#include "cli.hpp"
#include "command_line.hpp"
#include "daemon.hpp"
#include "daemon_config.hpp"
#include "exit_code.hpp"
#include "fleet_secret.hpp"
#include "mesh_cli.hpp"
#include "startup_checks.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <map>
#include <unistd.h>
#include <variant>

using namespace meshmaster::master;

namespace {

std::variant<daemon_config, std::vector<std::string>> build_config(const run_flags& f) {
    daemon_config c;
    if (!f.config_file.empty()) {
        if (auto errors = apply_config_file(f.config_file, c); !errors.empty()) return errors;
    }
    std::vector<std::string> errors;
    for (const setting& s : settings()) {
        if (s.flag.empty()) continue;
        const auto& value = f.given.at(std::string(s.flag));
        if (!value) continue;
        if (auto problem = apply_setting(s, *value, c)) errors.push_back(fmt::format("--{}: '{}' {}", s.flag, *value, *problem));
    }
    if (!f.command.empty()) c.slave_command = f.command;
    if (c.master_id.empty()) {
        char host[256] = {};
        ::gethostname(host, sizeof host - 1);
        c.master_id = host;
    }
    for (auto& problem : validate(c)) errors.push_back(std::move(problem));
    if (!errors.empty()) return errors;
    return c;
}

void print_errors(const std::vector<std::string>& errors) {
    for (const auto& e : errors) fmt::print(stderr, "meshmaster: {}\n", e);
}

}  // namespace

int main(int argc, char** argv) {
    auto parsed = parse_command_line(argc, argv);
    if (const int* code = std::get_if<int>(&parsed)) return *code;
    command_line& cl = std::get<command_line>(parsed);
    using command = command_line::command;
    const command which = cl.which;

    // Commands that only need paths from the configuration read it leniently: a key this version
    // does not know (or a bad value elsewhere) must not keep the operator from the running daemon.
    auto paths_from = [&](const std::string& file) -> std::optional<daemon_config> {
        daemon_config c;
        if (file.empty()) return c;
        std::vector<std::string> warnings;
        auto errors = apply_config_file(file, c, config_reading::lenient, &warnings);
        for (const auto& w : warnings) fmt::print(stderr, "meshmaster: warning: {}\n", w);
        if (!errors.empty()) {
            print_errors(errors);
            return std::nullopt;
        }
        return c;
    };

    if (which == command::run || which == command::check_config) {
        auto built = build_config(cl.flags);
        if (auto* errors = std::get_if<std::vector<std::string>>(&built)) {
            print_errors(*errors);
            return to_int(exit_code::config);
        }
        auto& config = std::get<daemon_config>(built);
        if (which == command::check_config) {
            // What `run` checks at start, by the same functions (it runs them again itself); the
            // secret as `run` checks it (file mode, length), without printing it.
            auto problems = startup_problems(config);
            if (auto secret = load_fleet_secret(config.secret_file); !secret) problems.push_back(secret.error().message);
            if (!problems.empty()) {
                print_errors(problems);
                return to_int(exit_code::config);
            }
            for (const auto& w : startup_warnings(config)) fmt::print(stderr, "meshmaster: warning: {}\n", w);
            fmt::print("configuration ok: {} shards over {} slaves, listening on {}, {} moves in flight{}\n",
                       config.supervisor.shard_count, config.supervisor.slave_count, config.listen,
                       config.supervisor.migration_concurrency,
                       config.supervisor.spawn_slaves ? fmt::format(", spawning `{}`", fmt::join(config.slave_command, " "))
                                                      : ", slaves launched externally");
            return to_int(exit_code::ok);
        }
        return run_daemon(std::move(config), [flags = cl.flags] { return build_config(flags); });
    }
    if (which == command::status || which == command::restart || which == command::drain || which == command::reload ||
        which == command::stop || which == command::metrics) {
        if (!cl.control_config.empty()) {
            auto c = paths_from(cl.control_config);
            if (!c) return to_int(exit_code::config);
            if (!cl.control_socket_given) cl.control_socket = c->control_socket;
        }
        if (which == command::status) return cli::status(cl.control_socket, cl.status);
        if (which == command::restart) return cli::restart(cl.control_socket, cl.wait);
        if (which == command::drain) return cli::drain(cl.control_socket, cl.drain_slave, cl.wait);
        if (which == command::reload) return cli::reload(cl.control_socket);
        if (which == command::metrics) return cli::metrics(cl.control_socket);
        return cli::stop(cl.control_socket, {.leave_slaves = cl.leave_slaves, .wait = cl.wait, .timeout = cl.stop_timeout});
    }
    if (which == command::mesh_ping || which == command::mesh_nodes) {
        if (!cl.control_config.empty() && cl.mesh_key.key_file.empty() && cl.mesh_key.secret_file.empty()) {
            auto c = paths_from(cl.control_config);
            if (!c) return to_int(exit_code::config);
            cl.mesh_key.secret_file = c->secret_file;
        }
        if (which == command::mesh_ping) {
            return cli::mesh_ping(cl.mesh_address, cl.mesh_key, cl.ping_count, cl.ping_interval, cl.mesh_timeout);
        }
        if (!cl.redis.address.empty()) return cli::mesh_nodes_from_redis(cl.redis, cl.as_json, cl.mesh_timeout);
        if (cl.mesh_address.empty()) {
            fmt::print(stderr, "mesh nodes: give the node's HOST:PORT, or --redis HOST:PORT\n");
            return to_int(exit_code::usage);
        }
        return cli::mesh_nodes(cl.mesh_address, cl.mesh_key, cl.as_json, cl.mesh_timeout);
    }
    if (which == command::replay) {
        auto c = paths_from(cl.control_config);
        if (!c) return to_int(exit_code::config);
        if (cl.event_log_path.empty()) cl.event_log_path = c->event_log;
        std::optional<std::uint32_t> shards;
        if (cl.replay_shards != 0) shards = cl.replay_shards;
        else if (!cl.control_config.empty()) shards = c->supervisor.shard_count;
        return cli::replay(cl.event_log_path, shards, cl.as_json);
    }
    // events
    if (cl.event_log_path.empty()) {
        auto c = paths_from(cl.control_config);
        if (!c) return to_int(exit_code::config);
        cl.event_log_path = c->event_log;
    }
    cl.filter.slave = cl.slave_filter;
    cl.filter.shard = cl.shard;
    cl.filter.since = cl.since;
    return cli::events(cl.event_log_path, cl.filter, cl.as_json, cl.follow);
}
