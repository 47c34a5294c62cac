// The `meshmaster` command line, defined with CLI11: the App, its subcommands, and the parse. The
// only translation unit that includes CLI11 (command_line.hpp says why).
#include "command_line.hpp"

#include "daemon_config.hpp"
#include "exit_code.hpp"

#include <meshmaster/protocol/version.hpp>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

namespace meshmaster::master {

namespace {

// The subcommands, as added to the App: which one was given is read from these after parsing.
struct subcommands {
    CLI::App* run = nullptr;
    CLI::App* check = nullptr;
    CLI::App* status = nullptr;
    CLI::App* restart = nullptr;
    CLI::App* drain = nullptr;
    CLI::App* reload = nullptr;
    CLI::App* stop = nullptr;
    CLI::App* metrics = nullptr;
    CLI::App* events = nullptr;
    CLI::App* replay = nullptr;
    CLI::App* mesh = nullptr;
    CLI::App* mesh_ping = nullptr;
    CLI::App* mesh_nodes = nullptr;
    std::vector<CLI::Option*> control_socket;  // -s of status, restart, reload and stop
};

// run, check-config: a flag for every setting that has one (settings(), daemon_config.hpp), the
// configuration file, and the slave command after `--`.
void add_run_flags(CLI::App& app, run_flags& f) {
    app.add_option("-c,--config", f.config_file, "TOML configuration file");
    for (const setting& s : settings()) {
        if (s.flag.empty()) continue;
        app.add_option("--" + std::string(s.flag), f.given[std::string(s.flag)], std::string(s.help));
    }
    app.add_option("command", f.command, "the slave command line (after --)");
}

void add_run_commands(CLI::App& app, command_line& cl, subcommands& s) {
    s.run = app.add_subcommand("run", "run the daemon");
    add_run_flags(*s.run, cl.flags);
    s.check = app.add_subcommand("check-config", "validate a configuration; exit 78 if it is wrong");
    add_run_flags(*s.check, cl.flags);
}

// status: a summary by default; --shards [LIST] and --state list shards; --json is the daemon's
// complete answer (--summary: without the per-shard arrays). The list's syntax is checked by
// cli::status (status_shards.hpp), which exits 64 naming what is wrong.
void add_status_options(CLI::App& status, cli::status_options& o) {
    auto* json = status.add_flag("--json", o.as_json, "machine-readable: the daemon's complete answer");
    status.add_flag("--summary", o.summary, "with --json: the summary form (no per-shard arrays)")->needs(json);
    // An optional value: `--shards` alone lists every shard, `--shards 0-99,512` some.
    auto* shards = status.add_option("--shards", o.shards, "list shards, one a row: all, or these (0-99,512)")
                       ->expected(0, 1);
    auto* state = status.add_option("--state", o.states,
                                    "list only shards in these states: unowned, starting, running, stopping, "
                                    "resuming, moving, not-running")
                      ->delimiter(',');
    json->excludes(shards);
    json->excludes(state);
}

// status, restart, drain, reload, stop, metrics: the commands that talk to the daemon's control socket (-s, or the
// path in the configuration given with -c).
void add_control_commands(CLI::App& app, command_line& cl, subcommands& s) {
    auto add_control = [&](CLI::App* sub) {
        s.control_socket.push_back(sub->add_option("-s,--control-socket", cl.control_socket, "the daemon's control socket"));
        sub->add_option("-c,--config", cl.control_config, "read the control socket path from this configuration");
    };
    s.status = app.add_subcommand("status", "health, shard counts per state, restart progress, slaves; or the shard table");
    add_control(s.status);
    add_status_options(*s.status, cl.status);
    s.restart = app.add_subcommand("restart", "start a rolling restart");
    add_control(s.restart);
    s.restart->add_flag("--wait", cl.wait, "follow it to the end (exit 1 if it fails)");
    s.drain = app.add_subcommand("drain", "move one slave's shards, with their state, to a new slave for its slot");
    add_control(s.drain);
    s.drain->add_option("slave", cl.drain_slave, "the slave's id, as `meshmaster status` lists it")->required();
    s.drain->add_flag("--wait", cl.wait, "follow it to the end (exit 1 if it fails)");
    s.reload = app.add_subcommand("reload", "reload the configuration (like SIGHUP)");
    add_control(s.reload);
    s.stop = app.add_subcommand("stop", "stop gracefully (like SIGTERM)");
    add_control(s.stop);
    s.stop->add_flag("--leave-slaves", cl.leave_slaves,
                     "exit but leave the slaves running their shards; the next master adopts them");
    CLI::Option* stop_wait =
        s.stop->add_flag("--wait", cl.wait, "return once the daemon has exited (exit 1 if it did not stop cleanly in time)");
    s.stop->add_option("--timeout", cl.stop_timeout, "with --wait: how long to wait at most, e.g. 90s, 10m")
        ->capture_default_str()
        ->needs(stop_wait);
    s.metrics = app.add_subcommand("metrics", "print the Prometheus metrics (text format 0.0.4), as GET /metrics serves them");
    add_control(s.metrics);
}

// events, replay: the commands that read the event log (--log, or the path in the configuration
// given with -c).
void add_log_commands(CLI::App& app, command_line& cl, subcommands& s) {
    s.events = app.add_subcommand("events", "read and filter the event log");
    s.events->add_option("--log", cl.event_log_path, "the event log file");
    s.events->add_option("-c,--config", cl.control_config, "read the event log path from this configuration");
    s.events->add_flag("-f,--follow", cl.follow, "keep printing new events");
    s.events->add_option("--since", cl.since,
                         "90s, 5m, 2h, 1d (ago); an RFC 3339 time (2026-12-06T14:00:00+01:00); a local time "
                         "(2026-12-06 14:00); or a sequence number (#812)");
    s.events->add_option("--type", cl.filter.types, "event names (repeat, or end with * for a prefix)")->delimiter(',');
    s.events->add_option("--slave", cl.slave_filter);
    s.events->add_option("--shard", cl.shard);
    s.events->add_flag("--json", cl.as_json, "print the JSON lines");

    s.replay = app.add_subcommand(
        "replay", "the shard table rebuilt from the event log alone (exit 1: a restart lacks its terminal record)");
    s.replay->add_option("--log", cl.event_log_path, "the event log file");
    s.replay->add_option("-c,--config", cl.control_config,
                         "read the event log path and shard count from this configuration");
    s.replay->add_option("--shards", cl.replay_shards,
                         "shard count (default: the configuration's with -c, else the one the log's last master ran)");
    s.replay->add_flag("--json", cl.as_json, "machine-readable");
}

// mesh ping, mesh nodes: tools for the UDP mesh between slaves (mesh_cli.hpp runs them).
void add_mesh_commands(CLI::App& app, command_line& cl, subcommands& s) {
    s.mesh = app.add_subcommand("mesh", "tools for the UDP mesh between slaves");
    s.mesh->require_subcommand(1);
    auto add_key = [&](CLI::App* sub, bool address_required) {
        sub->add_option("address", cl.mesh_address, "the node's HOST:PORT")->required(address_required);
        sub->add_option("--key-file", cl.mesh_key.key_file, "the mesh key");
        sub->add_option("--secret-file", cl.mesh_key.secret_file, "the fleet secret (the mesh key is derived from it)");
        sub->add_option("-c,--config", cl.control_config, "take the fleet secret from this configuration");
        sub->add_flag("--insecure", cl.mesh_key.insecure, "no key: for nodes running without authentication");
        sub->add_option("--timeout", cl.mesh_timeout, "milliseconds to wait for an answer");
    };
    s.mesh_ping = s.mesh->add_subcommand("ping", "probe a node and print its round-trip time");
    add_key(s.mesh_ping, true);
    s.mesh_ping->add_option("-n,--count", cl.ping_count, "probes to send");
    s.mesh_ping->add_option("-i,--interval", cl.ping_interval, "milliseconds between probes");
    s.mesh_nodes = s.mesh->add_subcommand(
        "nodes", "a node's status list (its peers, state, RTT, loss, traffic), or the nodes in Redis");
    add_key(s.mesh_nodes, false);  // or --redis
    s.mesh_nodes->add_option("--redis", cl.redis.address, "list the nodes registered in this Redis (HOST:PORT) instead");
    s.mesh_nodes->add_option("--redis-prefix", cl.redis.prefix, "key prefix of the Redis discovery");
    s.mesh_nodes->add_option("--redis-password-file", cl.redis.password_file, "Redis password");
    s.mesh_nodes->add_option("--redis-db", cl.redis.database, "Redis database index");
    s.mesh_nodes->add_flag("--json", cl.as_json, "machine-readable");
}

}  // namespace

std::variant<command_line, int> parse_command_line(int argc, char** argv) {
    command_line cl;
    subcommands s;
    CLI::App app{"meshmaster: zero-downtime supervisor for sharded worker fleets"};
    app.require_subcommand(1);
    // The protocol version is the constant the handshake announces (auth_challenge, slave_hello).
    app.set_version_flag("--version", fmt::format("meshmaster {} (protocol {}.{})", MESHMASTER_VERSION,
                                                  meshmaster::protocol::current_version.major,
                                                  meshmaster::protocol::current_version.minor));
    add_run_commands(app, cl, s);
    add_control_commands(app, cl, s);
    add_log_commands(app, cl, s);
    add_mesh_commands(app, cl, s);

    try {
        app.parse(argc, argv);
    } catch (const CLI::Success& e) {
        return app.exit(e);
    } catch (const CLI::ParseError& e) {
        app.exit(e);
        return to_int(exit_code::usage);
    }

    using command = command_line::command;
    const std::pair<CLI::App*, command> given[] = {
        {s.run, command::run},         {s.check, command::check_config}, {s.status, command::status},
        {s.restart, command::restart}, {s.drain, command::drain},
        {s.reload, command::reload},       {s.stop, command::stop},
        {s.metrics, command::metrics},
        {s.events, command::events},   {s.replay, command::replay},
        {s.mesh_ping, command::mesh_ping}, {s.mesh_nodes, command::mesh_nodes},
    };
    bool found = false;
    for (const auto& [sub, which] : given) {
        if (sub->parsed()) {
            cl.which = which;
            found = true;
            break;
        }
    }
    if (!found) return to_int(exit_code::usage);
    for (const CLI::Option* o : s.control_socket) cl.control_socket_given = cl.control_socket_given || o->count() > 0;
    cl.status.list_shards = s.status->count("--shards") > 0 || !cl.status.states.empty();
    return cl;
}

}  // namespace meshmaster::master
