// The daemon's settings: defaults, then the TOML file given with -c, then command-line flags.
//
//   listen = "127.0.0.1:7400"        # TCP address slaves connect to
//   shards = 256
//   control_socket = "meshmaster.sock"
//   event_log = "meshmaster-events.jsonl"
//   checkpoint_dir = "meshmaster-events.jsonl.checkpoints"   # the default: beside event_log
//   checkpoint_sync = "none"         # or "batch": fdatasync every batch of checkpoints
//   secret_file = "/etc/meshmaster/secret"   # else $MESHMASTER_SECRET, else a random one
//   master_id = "master-a"
//   adopt_window = "1s"              # after a crash, wait this long for running slaves
//   external_grace = "10s"
//   [slaves]   command = ["bot", "--gateway", "..."]  count = 4  spawn = true  env = ["K=V"]
//   [restart]  concurrency = 16  surge = 1
//   [timeouts] spawn soft_start start stop resume shutdown handshake   (durations)
//   [heartbeat] interval = "250ms"  misses = 8
//   [respawn]  backoff_min = "100ms"  backoff_max = "30s"  stable_after = "10s"
//              limit_burst = 5  limit_interval = "10s"   # then the slot is marked failed
//   [limits]   max_frame = "16MiB"  max_state = "256MiB"  state_chunk = "1MiB"  max_connections = 1024
//              max_output = "16MiB"  refusal_burst = 10  refusal_window = "1m"
//   [tls]      cert = "master.pem"  key = "master.key"  ca = "ca.pem"  server_name = "meshmaster.internal"
//   [http]     listen = "127.0.0.1:9180"  read_token_file = "..."  admin_token_file = "..."  https = false
//              max_header = "8KiB"  max_body = "64KiB"  max_connections = 64
//              header_timeout = "10s"  idle_timeout = "30s"      # the HTTP API (docs/http.md); off without [http]
//
// Durations are "250ms", "1.5s", "2m", "1h", "1d" or a bare number of milliseconds (at most 30d);
// sizes "16MiB", "512KiB" or bytes. Unknown keys are errors (a typo must not silently fall back to a
// default). TOML floats are no setting's type.
#pragma once

#include <meshmaster/master/supervisor_config.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace meshmaster::master {

struct daemon_config {
    std::string listen = "127.0.0.1:7400";
    std::string control_socket = "meshmaster.sock";
    std::string event_log = "meshmaster-events.jsonl";
    /// Where the states to resume shards from are kept across master restarts ("": beside the
    /// event log, <event_log>.checkpoints).
    std::string checkpoint_dir;
    /// "none": checkpoints are written into the kernel (a master crash loses none, a machine crash
    /// may lose the newest); "batch": fdatasync after every batch (docs/operations.md).
    std::string checkpoint_sync = "none";
    std::string secret_file;
    std::string master_id;
    std::vector<std::string> slave_command;
    std::vector<std::string> slave_env;
    std::uint64_t max_frame_size = std::uint64_t{16} << 20;
    std::uint64_t max_state_size = std::uint64_t{256} << 20;
    std::uint32_t max_connections = 1024;
    /// Bytes queued for one slave that has not read them yet: past this the slave is declared
    /// stalled (dropped, fenced and replaced) instead of growing the master's memory.
    std::uint64_t max_output = std::uint64_t{16} << 20;
    /// Refusals (bad frames, wrong secrets, handshake timeouts, refused connections, stale epochs)
    /// logged per peer within any refusal_window; the rest are counted in refusals_suppressed.
    std::uint32_t refusal_burst = 10;
    std::chrono::milliseconds refusal_window{60'000};
    /// TLS on the slave link, on when both are set: the PEM certificate chain the master presents
    /// and its private key. Read once at start.
    std::string tls_cert;
    std::string tls_key;
    /// The PEM CA file the slaves this master spawns verify it with (MESHMASTER_TLS_CA); "": tls_cert
    /// itself, which is right for a self-signed certificate.
    std::string tls_ca;
    /// The name spawned slaves require in the master's certificate and send as SNI
    /// (MESHMASTER_TLS_SERVER_NAME); "": they verify the chain only.
    std::string tls_server_name;
    std::chrono::milliseconds handshake_timeout{5'000};
    /// [http]: the HTTP API (docs/http.md). Off unless the file has an [http] table.
    struct http_settings {
        bool enabled = false;  ///< the configuration file has an [http] table
        std::string listen = "127.0.0.1:9180";
        std::string read_token_file;   ///< "": no read token
        std::string admin_token_file;  ///< "": no admin token
        bool https = false;            ///< TLS with [tls] cert and key
        std::uint64_t max_header = 8 << 10;  ///< request line and headers; past it 431
        std::uint64_t max_body = 64 << 10;   ///< a Content-Length past it: 413, the body unread
        std::uint32_t max_connections = 64;  ///< past it a connection is answered 503 and closed
        std::chrono::milliseconds header_timeout{10'000};  ///< to read a request's headers (slowloris)
        std::chrono::milliseconds idle_timeout{30'000};    ///< a keep-alive connection without a request
    } http;
    std::chrono::milliseconds adopt_window{2'000};
    supervisor_config supervisor{.shard_count = 256, .slave_count = 4};
    std::string config_file;  ///< where the settings came from, if a file

    [[nodiscard]] bool tls() const { return !tls_cert.empty() && !tls_key.empty(); }
};

/// Where a setting's value lands; the pointee's type decides how text is read (a u64 is a size, a
/// duration "250ms", a u32 a count within the setting's bounds).
using setting_target = std::variant<std::string*, std::vector<std::string>*, bool*, std::uint32_t*,
                                    std::chrono::milliseconds*, std::uint64_t*>;

/// One setting: its key in the TOML file and, if it has one, its command-line flag. The file
/// reader, the flags and SIGHUP's reload all go through this one list.
struct setting {
    std::string_view key;   ///< "timeouts.stop"
    std::string_view flag;  ///< "stop-timeout" (empty: file only)
    std::string_view help;
    setting_target (*target)(daemon_config&);
    std::uint32_t min = 0;  ///< bounds of a count
    std::uint32_t max = UINT32_MAX;
};

const std::vector<setting>& settings();

/// Reads `text` (a flag's value, or a TOML scalar) into the setting's field; the problem if it
/// does not fit.
std::optional<std::string> apply_setting(const setting& s, std::string_view text, daemon_config& config);

/// Parses "16MiB", "1.5GiB", "512KiB", "100kB", "2MB" or a whole number of bytes; at most 2^62.
/// (Durations: time_parse.hpp's parse_duration.)
std::optional<std::uint64_t> parse_size(std::string_view text);

/// How a configuration file is read. `strict` (run, check-config, reload): a key that is not a
/// setting, or a value a setting cannot take, refuses the whole file. `lenient` (the commands that
/// only need a path or two from it, to reach a running daemon): such keys become warnings and are
/// skipped, everything else is applied; only a file that is not TOML at all is refused.
enum class config_reading { strict, lenient };

/// Applies the TOML file at `path` over `config`. Returns the errors found (each with the key and,
/// for syntax errors, line and column); `config` is only changed when there are none. With
/// `lenient`, what strict reading calls errors goes to `warnings` instead.
std::vector<std::string> apply_config_file(const std::string& path, daemon_config& config,
                                           config_reading mode = config_reading::strict,
                                           std::vector<std::string>* warnings = nullptr);

/// Checks the settings hang together; returns one message per problem.
std::vector<std::string> validate(const daemon_config& config);

/// The settings a running daemon applies only when it starts (see docs/operations.md) whose value
/// differs between `running` and `reloaded`, by key: every one that differs.
std::vector<std::string> restart_only_change(const daemon_config& running, const daemon_config& reloaded);
/// Sets every restart-only setting of `reloaded` to its value in `running`: what a reload applies.
void keep_restart_only(const daemon_config& running, daemon_config& reloaded);

}  // namespace meshmaster::master
