// The client side of the CLI: `meshmaster status`, `restart` and `events`. No Asio: plain
// blocking POSIX sockets to the daemon's control socket, and plain file reads of the event log.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace meshmaster::master::cli {

struct status_options {
    bool as_json = false;   ///< --json: the daemon's answer as it is (complete unless `summary`)
    bool summary = false;   ///< --summary (with --json): the summary form, without the per-shard arrays
    bool list_shards = false;            ///< --shards or --state given: the shard table, one row a shard
    std::string shards;                  ///< --shards' value: "0-99,512"; empty: every shard
    std::vector<std::string> states;     ///< --state: only shards in these states
};

/// `meshmaster status [--json [--summary]] [--shards [LIST]] [--state STATE,...]`: a summary, the
/// daemon's JSON, or the shard table. 0 every configured shard runs, 1 the fleet is degraded (the
/// problems printed), 64 a bad --shards or --state, 69 no daemon answers.
int status(const std::string& control_socket, const status_options& options);

/// `meshmaster restart [--wait]`: 0 accepted (or completed), 1 refused (the master is stopping) or
/// failed, 69 no daemon.
int restart(const std::string& control_socket, bool wait);

/// `meshmaster drain SLAVE [--wait]`: the slave's shards move, with their state, to a new slave for
/// its slot (a restart of that slot alone). 0 accepted (or completed), 1 refused (unknown slave, a
/// restart running, a spare, …) or failed, 69 no daemon.
int drain(const std::string& control_socket, const std::string& slave, bool wait);

/// `meshmaster reload`: 0 applied, 1 applied except the settings named (they need the daemon
/// restarted), 78 rejected (nothing applied; the errors printed), 69 no daemon.
int reload(const std::string& control_socket);
/// `meshmaster metrics`: the daemon's Prometheus metrics (text format 0.0.4) on stdout — for
/// node_exporter's textfile collector, or a look without HTTP. 0; 1 an answer without metrics; 69
/// no daemon.
int metrics(const std::string& control_socket);

struct stop_options {
    bool leave_slaves = false;  ///< the daemon exits but the slaves keep their shards for the next master to adopt
    bool wait = false;          ///< return once the daemon has exited
    std::string timeout = "10m";  ///< with wait: how long at most (time_parse.hpp's parse_duration)
};
/// `meshmaster stop [--leave-slaves] [--wait [--timeout D]]`: 0 stopping (or already); with --wait,
/// 0 the daemon exited and its event log ends with the stop asked for (master_stopped, or
/// master_detached with --leave-slaves). 1 refused (a stop of the other kind is under way), or with
/// --wait: still running after the timeout, or exited without ending its log that way. 64 a bad
/// --timeout, 69 no daemon.
int stop(const std::string& control_socket, const stop_options& options);

struct event_filter {
    std::vector<std::string> types;   ///< event names (a trailing * matches a prefix)
    std::optional<std::string> slave;
    std::optional<std::uint32_t> shard;
    std::optional<std::string> since; ///< what time_parse.hpp's parse_since() reads: "5m" (ago), an RFC 3339 or local time, "#812"
};

/// `meshmaster replay`: the shard table rebuilt from the event log alone, for `shards` shards (the
/// configured count), else as many as the log's last master ran. 0; 1 if the log is unreadable; 64
/// when no shard count is given and the log names none.
int replay(const std::string& path, std::optional<std::uint32_t> shards, bool as_json);

/// `meshmaster events`: prints matching records (as JSON lines with `as_json`), following the file
/// as it grows when `follow` is set (also across a rotation). 0, or 1 when the log cannot be read.
int events(const std::string& path, const event_filter& filter, bool as_json, bool follow);

}  // namespace meshmaster::master::cli
