// meshmaster: the daemon (`run`), its configuration check, and the CLI that talks to it.
// Exit codes: exit_code.hpp (0 clean, 1 runtime failure, 64 usage, 69 unavailable, 78 bad configuration).
#include "cli.hpp"
#include "daemon.hpp"
#include "daemon_config.hpp"
#include "exit_code.hpp"
#include "fleet_secret.hpp"
#include "mesh_cli.hpp"
#include "startup_checks.hpp"

#include <meshmaster/protocol/version.hpp>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <map>
#include <unistd.h>
#include <variant>

using namespace meshmaster::master;

namespace {

// Flags of `run` and `check-config`, kept as given, so SIGHUP can rebuild the configuration from
// the same file and the same flags. Every setting with a flag in settings() is one here.
struct run_flags {
    std::string config_file;
    std::map<std::string, std::optional<std::string>> given;  // flag → value, if given
    std::vector<std::string> command;
};

void add_run_flags(CLI::App& app, run_flags& f) {
    app.add_option("-c,--config", f.config_file, "TOML configuration file");
    for (const setting& s : settings()) {
        if (s.flag.empty()) continue;
        app.add_option("--" + std::string(s.flag), f.given[std::string(s.flag)], std::string(s.help));
    }
    app.add_option("command", f.command, "the slave command line (after --)");
}

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
    CLI::App app{"meshmaster: zero-downtime supervisor for sharded worker fleets"};
    app.require_subcommand(1);
    // The protocol version is the constant the handshake announces (auth_challenge, slave_hello).
    app.set_version_flag("--version", fmt::format("meshmaster {} (protocol {}.{})", MESHMASTER_VERSION,
                                                  meshmaster::protocol::current_version.major,
                                                  meshmaster::protocol::current_version.minor));

    run_flags flags;
    auto* run = app.add_subcommand("run", "run the daemon");
    add_run_flags(*run, flags);
    auto* check = app.add_subcommand("check-config", "validate a configuration; exit 78 if it is wrong");
    add_run_flags(*check, flags);

    std::string control_socket = "meshmaster.sock";
    std::string control_config;
    auto add_control = [&](CLI::App* sub) {
        sub->add_option("-s,--control-socket", control_socket, "the daemon's control socket");
        sub->add_option("-c,--config", control_config, "read the control socket path from this configuration");
    };
    bool as_json = false;
    auto* status = app.add_subcommand("status", "slaves, shards, epochs, generation, restart progress");
    add_control(status);
    status->add_flag("--json", as_json, "machine-readable");
    bool wait = false;
    auto* restart = app.add_subcommand("restart", "start a rolling restart");
    add_control(restart);
    restart->add_flag("--wait", wait, "follow it to the end (exit 1 if it fails)");
    auto* reload = app.add_subcommand("reload", "reload the configuration (like SIGHUP)");
    add_control(reload);
    bool leave_slaves = false;
    auto* stop = app.add_subcommand("stop", "stop gracefully (like SIGTERM)");
    add_control(stop);
    stop->add_flag("--leave-slaves", leave_slaves,
                   "exit but leave the slaves running their shards; the next master adopts them");

    cli::event_filter filter;
    std::string event_log_path;
    bool follow = false;
    std::optional<std::uint32_t> shard;
    std::optional<std::string> slave_filter, since;
    auto* events = app.add_subcommand("events", "read and filter the event log");
    events->add_option("--log", event_log_path, "the event log file");
    events->add_option("-c,--config", control_config, "read the event log path from this configuration");
    events->add_flag("-f,--follow", follow, "keep printing new events");
    events->add_option("--since", since,
                       "90s, 5m, 2h, 1d (ago); an RFC 3339 time (2026-12-06T14:00:00+01:00); a local time "
                       "(2026-12-06 14:00); or a sequence number (#812)");
    events->add_option("--type", filter.types, "event names (repeat, or end with * for a prefix)")->delimiter(',');
    events->add_option("--slave", slave_filter);
    events->add_option("--shard", shard);
    events->add_flag("--json", as_json, "print the JSON lines");

    std::uint32_t replay_shards = 0;
    auto* replay = app.add_subcommand(
        "replay", "the shard table rebuilt from the event log alone (exit 1: a restart lacks its terminal record)");
    replay->add_option("--log", event_log_path, "the event log file");
    replay->add_option("-c,--config", control_config, "read the event log path and shard count from this configuration");
    replay->add_option("--shards", replay_shards,
                       "shard count (default: the configuration's with -c, else the one the log's last master ran)");
    replay->add_flag("--json", as_json, "machine-readable");

    // meshmaster mesh ping|nodes: tools for the UDP mesh.
    auto* mesh = app.add_subcommand("mesh", "tools for the UDP mesh between slaves");
    mesh->require_subcommand(1);
    cli::mesh_key_source mesh_key;
    std::string mesh_address;
    unsigned ping_count = 4, ping_interval = 1000, mesh_timeout = 1000;
    auto add_key = [&](CLI::App* sub, bool address_required) {
        sub->add_option("address", mesh_address, "the node's HOST:PORT")->required(address_required);
        sub->add_option("--key-file", mesh_key.key_file, "the mesh key");
        sub->add_option("--secret-file", mesh_key.secret_file, "the fleet secret (the mesh key is derived from it)");
        sub->add_option("-c,--config", control_config, "take the fleet secret from this configuration");
        sub->add_flag("--insecure", mesh_key.insecure, "no key: for nodes running without authentication");
        sub->add_option("--timeout", mesh_timeout, "milliseconds to wait for an answer");
    };
    auto* mesh_ping = mesh->add_subcommand("ping", "probe a node and print its round-trip time");
    add_key(mesh_ping, true);
    mesh_ping->add_option("-n,--count", ping_count, "probes to send");
    mesh_ping->add_option("-i,--interval", ping_interval, "milliseconds between probes");
    auto* mesh_nodes = mesh->add_subcommand("nodes", "a node's status list (its peers, state, RTT, loss, traffic), or the nodes in Redis");
    cli::redis_source redis;
    add_key(mesh_nodes, false);  // or --redis
    mesh_nodes->add_option("--redis", redis.address, "list the nodes registered in this Redis (HOST:PORT) instead");
    mesh_nodes->add_option("--redis-prefix", redis.prefix, "key prefix of the Redis discovery");
    mesh_nodes->add_option("--redis-password-file", redis.password_file, "Redis password");
    mesh_nodes->add_option("--redis-db", redis.database, "Redis database index");
    mesh_nodes->add_flag("--json", as_json, "machine-readable");

    try {
        app.parse(argc, argv);
    } catch (const CLI::Success& e) {
        return app.exit(e);
    } catch (const CLI::ParseError& e) {
        app.exit(e);
        return to_int(exit_code::usage);
    }

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

    if (*run || *check) {
        auto built = build_config(flags);
        if (auto* errors = std::get_if<std::vector<std::string>>(&built)) {
            print_errors(*errors);
            return to_int(exit_code::config);
        }
        auto& config = std::get<daemon_config>(built);
        if (*check) {
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
        return run_daemon(std::move(config), [flags] { return build_config(flags); });
    }
    if (*status || *restart || *reload || *stop) {
        if (!control_config.empty()) {
            auto c = paths_from(control_config);
            if (!c) return to_int(exit_code::config);
            if (status->count("--control-socket") == 0 && restart->count("--control-socket") == 0 &&
                reload->count("--control-socket") == 0 && stop->count("--control-socket") == 0) {
                control_socket = c->control_socket;
            }
        }
        if (*status) return cli::status(control_socket, as_json);
        if (*restart) return cli::restart(control_socket, wait);
        if (*reload) return cli::reload(control_socket);
        return cli::stop(control_socket, leave_slaves);
    }
    if (*mesh) {
        if (!control_config.empty() && mesh_key.key_file.empty() && mesh_key.secret_file.empty()) {
            auto c = paths_from(control_config);
            if (!c) return to_int(exit_code::config);
            mesh_key.secret_file = c->secret_file;
        }
        if (*mesh_ping) return cli::mesh_ping(mesh_address, mesh_key, ping_count, ping_interval, mesh_timeout);
        if (!redis.address.empty()) return cli::mesh_nodes_from_redis(redis, as_json, mesh_timeout);
        if (mesh_address.empty()) {
            fmt::print(stderr, "mesh nodes: give the node's HOST:PORT, or --redis HOST:PORT\n");
            return to_int(exit_code::usage);
        }
        return cli::mesh_nodes(mesh_address, mesh_key, as_json, mesh_timeout);
    }
    if (*replay) {
        auto c = paths_from(control_config);
        if (!c) return to_int(exit_code::config);
        if (event_log_path.empty()) event_log_path = c->event_log;
        std::optional<std::uint32_t> shards;
        if (replay_shards != 0) shards = replay_shards;
        else if (!control_config.empty()) shards = c->supervisor.shard_count;
        return cli::replay(event_log_path, shards, as_json);
    }
    if (*events) {
        if (event_log_path.empty()) {
            auto c = paths_from(control_config);
            if (!c) return to_int(exit_code::config);
            event_log_path = c->event_log;
        }
        filter.slave = slave_filter;
        filter.shard = shard;
        filter.since = since;
        return cli::events(event_log_path, filter, as_json, follow);
    }
    return to_int(exit_code::usage);
}
