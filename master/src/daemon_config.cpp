#include "daemon_config.hpp"

#include "checkpoint_store.hpp"
#include "quantity.hpp"
#include "time_parse.hpp"

#include <toml++/toml.h>

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <fstream>
#include <set>
#include <sstream>
#include <stdexcept>

namespace meshmaster::master {

using std::chrono::milliseconds;

namespace {
// Past these a setting is a typo, not a wish; they also keep every sum and product the daemon
// forms from settings far from overflowing.
constexpr milliseconds max_setting_duration = std::chrono::hours(24 * 30);
constexpr std::uint64_t max_memory_size = std::uint64_t{1} << 40;  // 1 TiB
}  // namespace

std::optional<std::uint64_t> parse_size(std::string_view text) {
    static constexpr unit_factor units[] = {
        {"", 1, false}, {"B", 1, false}, {"KiB", std::uint64_t{1} << 10}, {"MiB", std::uint64_t{1} << 20},
        {"GiB", std::uint64_t{1} << 30}, {"TiB", std::uint64_t{1} << 40}, {"kB", 1'000}, {"KB", 1'000},
        {"MB", 1'000'000}, {"GB", 1'000'000'000}, {"TB", 1'000'000'000'000}};
    // Bytes up to 2^62: any setting's limit is far below, and sums of them cannot overflow.
    return parse_quantity(text, units, std::uint64_t{1} << 62, 6);
}

static_assert(std::is_same_v<std::size_t, std::uint64_t>, "sizes are read as std::uint64_t");

const std::vector<setting>& settings() {
    using c = daemon_config;
    static const std::vector<setting> all{
        {"listen", "listen", "TCP address slaves connect to (host:port)", [](c& d) -> setting_target { return &d.listen; }},
        {"shards", "shards", "total shard count", [](c& d) -> setting_target { return &d.supervisor.shard_count; }, 1, 1u << 20},
        {"control_socket", "control-socket", "path of the control socket the CLI uses", [](c& d) -> setting_target { return &d.control_socket; }},
        {"event_log", "event-log", "path of the JSON-lines event log", [](c& d) -> setting_target { return &d.event_log; }},
        {"checkpoint_dir", "checkpoint-dir", "where shard states are kept across master restarts (default: <event_log>.checkpoints)", [](c& d) -> setting_target { return &d.checkpoint_dir; }},
        {"checkpoint_sync", "checkpoint-sync", "none: checkpoints reach the kernel (a machine crash may lose the newest); batch: fdatasync every batch", [](c& d) -> setting_target { return &d.checkpoint_sync; }},
        {"secret_file", "secret-file", "file holding the shared secret (else $MESHMASTER_SECRET)", [](c& d) -> setting_target { return &d.secret_file; }},
        {"master_id", "master-id", "this master's name in logs", [](c& d) -> setting_target { return &d.master_id; }},
        {"adopt_window", "adopt-window", "after a crash, how long to wait for running slaves", [](c& d) -> setting_target { return &d.adopt_window; }},
        {"external_grace", "external-grace", "how long an external slave may be away", [](c& d) -> setting_target { return &d.supervisor.external_grace; }},
        {"slaves.command", "", "", [](c& d) -> setting_target { return &d.slave_command; }},
        {"slaves.count", "slaves", "how many slaves run shards", [](c& d) -> setting_target { return &d.supervisor.slave_count; }, 1, 4096},
        {"slaves.spares", "spares", "idle slaves kept ready to take over a dead slave's shards at once", [](c& d) -> setting_target { return &d.supervisor.spares; }, 0, 1024},
        {"slaves.spawn", "spawn", "spawn the slaves (false: they are launched elsewhere)", [](c& d) -> setting_target { return &d.supervisor.spawn_slaves; }},
        {"slaves.env", "", "", [](c& d) -> setting_target { return &d.slave_env; }},
        {"restart.concurrency", "concurrency", "shard moves in flight during a rolling restart", [](c& d) -> setting_target { return &d.supervisor.migration_concurrency; }, 1, 1u << 16},
        {"restart.surge", "surge", "replacement slaves prepared ahead during a rolling restart", [](c& d) -> setting_target { return &d.supervisor.restart_surge; }, 1, 4096},
        {"timeouts.spawn", "spawn-timeout", "spawn to authenticated hello", [](c& d) -> setting_target { return &d.supervisor.spawn_timeout; }},
        {"timeouts.soft_start", "soft-start-timeout", "soft_start to soft_start_complete", [](c& d) -> setting_target { return &d.supervisor.soft_start_timeout; }},
        {"timeouts.start", "start-timeout", "start_shard to shard_started", [](c& d) -> setting_target { return &d.supervisor.start_timeout; }},
        {"timeouts.stop", "stop-timeout", "stop_shard to shard_stopped", [](c& d) -> setting_target { return &d.supervisor.stop_timeout; }},
        {"timeouts.resume", "resume-timeout", "resume to resumed", [](c& d) -> setting_target { return &d.supervisor.resume_timeout; }},
        {"timeouts.shutdown", "shutdown-timeout", "shutdown to exit, then SIGKILL", [](c& d) -> setting_target { return &d.supervisor.shutdown_timeout; }},
        {"timeouts.handshake", "handshake-timeout", "connection to authenticated hello", [](c& d) -> setting_target { return &d.handshake_timeout; }},
        {"heartbeat.interval", "heartbeat-interval", "e.g. 250ms", [](c& d) -> setting_target { return &d.supervisor.heartbeat_interval; }},
        {"heartbeat.misses", "heartbeat-misses", "missed heartbeats before a slave is declared lost", [](c& d) -> setting_target { return &d.supervisor.heartbeat_misses; }, 1, 1000},
        {"respawn.backoff_min", "backoff-min", "first delay of a crash loop's backoff", [](c& d) -> setting_target { return &d.supervisor.respawn_backoff_min; }},
        {"respawn.backoff_max", "backoff-max", "longest delay of a crash loop's backoff", [](c& d) -> setting_target { return &d.supervisor.respawn_backoff_max; }},
        {"respawn.stable_after", "stable-after", "a slave living this long resets its slot's backoff", [](c& d) -> setting_target { return &d.supervisor.stable_after; }},
        {"respawn.limit_burst", "start-limit-burst", "failed starts within respawn.limit_interval after which a slot is marked failed (0: retry forever)", [](c& d) -> setting_target { return &d.supervisor.start_limit_burst; }, 0, 1000},
        {"respawn.limit_interval", "start-limit-interval", "the window of respawn.limit_burst, e.g. 10s", [](c& d) -> setting_target { return &d.supervisor.start_limit_interval; }},
        {"limits.max_frame", "max-frame", "largest frame body accepted, e.g. 16MiB", [](c& d) -> setting_target { return &d.max_frame_size; }},
        {"limits.max_state", "max-state", "largest shard state, e.g. 256MiB", [](c& d) -> setting_target { return &d.max_state_size; }},
        {"limits.state_chunk", "state-chunk", "states above this travel in chunks, e.g. 1MiB", [](c& d) -> setting_target { return &d.supervisor.state_chunk_size; }},
        {"limits.max_output", "max-output", "bytes queued for a slave that stopped reading before it is dropped", [](c& d) -> setting_target { return &d.max_output; }},
        {"limits.max_connections", "max-connections", "connections served at once", [](c& d) -> setting_target { return &d.max_connections; }, 1, 1u << 20},
        {"limits.refusal_burst", "refusal-burst", "refusals logged per peer within limits.refusal_window; the rest are counted", [](c& d) -> setting_target { return &d.refusal_burst; }, 1, 1u << 20},
        {"limits.refusal_window", "refusal-window", "the sliding window of limits.refusal_burst, e.g. 1m", [](c& d) -> setting_target { return &d.refusal_window; }},
        {"tls.cert", "tls-cert", "PEM certificate chain the master presents; with tls.key the slave link runs TLS", [](c& d) -> setting_target { return &d.tls_cert; }},
        {"tls.key", "tls-key", "PEM private key of tls.cert", [](c& d) -> setting_target { return &d.tls_key; }},
        {"tls.ca", "tls-ca", "PEM CA file spawned slaves verify the master with (default: tls.cert, for a self-signed one)", [](c& d) -> setting_target { return &d.tls_ca; }},
        {"http.listen", "", "address of the HTTP API (host:port)", [](c& d) -> setting_target { return &d.http.listen; }},
        {"http.read_token_file", "", "file holding the token that may read /v1", [](c& d) -> setting_target { return &d.http.read_token_file; }},
        {"http.admin_token_file", "", "file holding the token that may read and act", [](c& d) -> setting_target { return &d.http.admin_token_file; }},
        {"http.https", "", "serve the HTTP API over TLS with tls.cert and tls.key", [](c& d) -> setting_target { return &d.http.https; }},
        {"http.max_header", "", "largest request line and headers, e.g. 8KiB", [](c& d) -> setting_target { return &d.http.max_header; }},
        {"http.max_body", "", "largest request body, e.g. 64KiB", [](c& d) -> setting_target { return &d.http.max_body; }},
        {"http.max_connections", "", "HTTP connections served at once", [](c& d) -> setting_target { return &d.http.max_connections; }, 1, 1u << 16},
        {"http.header_timeout", "", "time to send a request's headers", [](c& d) -> setting_target { return &d.http.header_timeout; }},
        {"http.idle_timeout", "", "how long a keep-alive connection may wait between requests", [](c& d) -> setting_target { return &d.http.idle_timeout; }},
        {"tls.server_name", "tls-server-name", "name spawned slaves require in the master's certificate (default: the chain only)", [](c& d) -> setting_target { return &d.tls_server_name; }},
    };
    return all;
}

namespace {
// What a setting's value must look like, for the message that refuses one that does not.
std::string expectation(const setting& s) {
    daemon_config scratch;
    return std::visit(
        [&](auto* field) -> std::string {
            using T = std::remove_pointer_t<decltype(field)>;
            if constexpr (std::is_same_v<T, std::string>) return "must be a string";
            else if constexpr (std::is_same_v<T, std::vector<std::string>>) return "must be an array of strings";
            else if constexpr (std::is_same_v<T, bool>) return "must be true or false";
            else if constexpr (std::is_same_v<T, std::uint32_t>) return fmt::format("must be an integer from {} to {}", s.min, s.max);
            else if constexpr (std::is_same_v<T, std::chrono::milliseconds>) {
                return "must be a duration of at most 30d, such as \"250ms\", \"1.5s\", \"2m\", \"1h\" "
                       "(units ms, s, m, h, d) or a whole number of milliseconds";
            } else {
                return "must be a size such as \"16MiB\", \"1.5GiB\", \"100kB\" or a whole number of bytes";
            }
        },
        s.target(scratch));
}
}  // namespace

std::optional<std::string> apply_setting(const setting& s, std::string_view text, daemon_config& config) {
    return std::visit(
        [&](auto* field) -> std::optional<std::string> {
            using T = std::remove_pointer_t<decltype(field)>;
            if constexpr (std::is_same_v<T, std::string>) {
                *field = text;
            } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
                return "is a list: set it in the configuration file";
            } else if constexpr (std::is_same_v<T, bool>) {
                if (text == "true") *field = true;
                else if (text == "false") *field = false;
                else return expectation(s);
            } else if constexpr (std::is_same_v<T, std::uint32_t>) {
                std::uint64_t n = 0;
                const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
                if (ec != std::errc{} || end != text.data() + text.size() || n < s.min || n > s.max) return expectation(s);
                *field = static_cast<std::uint32_t>(n);
            } else if constexpr (std::is_same_v<T, std::chrono::milliseconds>) {
                auto d = parse_duration(text);
                if (!d || *d > max_setting_duration) return expectation(s);
                *field = *d;
            } else {
                auto n = parse_size(text);
                if (!n) return expectation(s);
                *field = *n;
            }
            return std::nullopt;
        },
        s.target(config));
}

namespace {
// The key a line of a TOML file sets, with its table ("timeouts.stop"), for naming it when the
// value on that line does not even parse (`stop = 1e400`); "" if the line sets none.
std::string key_on_line(const std::string& path, std::size_t number) {
    std::ifstream in(path);
    std::string line, table;
    for (std::size_t n = 1; n <= number && std::getline(in, line); ++n) {
        const auto first = line.find_first_not_of(" \t");
        if (first == std::string::npos) continue;
        if (line[first] == '[') {
            const auto close = line.find(']', first);
            table = close == std::string::npos ? "" : line.substr(first + 1, close - first - 1);
            table.erase(std::remove(table.begin(), table.end(), '['), table.end());
            table.erase(std::remove_if(table.begin(), table.end(), [](char c) { return c == ' ' || c == '\t'; }), table.end());
            continue;
        }
        if (n != number) continue;
        const auto equals = line.find('=', first);
        if (equals == std::string::npos) return "";
        std::string key = line.substr(first, equals - first);
        key.erase(key.find_last_not_of(" \t") + 1);
        if (key.empty() || key.find_first_of("\"'#") != std::string::npos) return "";
        return table.empty() ? key : table + "." + key;
    }
    return "";
}
}  // namespace

std::vector<std::string> apply_config_file(const std::string& path, daemon_config& config, config_reading mode,
                                           std::vector<std::string>* warnings) {
    toml::table root;
    try {
        root = toml::parse_file(path);
    } catch (const toml::parse_error& e) {
        const auto& where = e.source().begin;
        const std::string key = key_on_line(path, where.line);
        return {fmt::format("{}:{}:{}: {}{}", path, where.line, where.column, key.empty() ? "" : key + ": ", e.description())};
    } catch (const std::exception& e) {
        return {fmt::format("{}: {}", path, e.what())};
    }
    daemon_config c = config;
    std::vector<std::string> errors;
    std::set<std::string> known;
    auto fail = [&](const toml::node& n, std::string_view key, std::string_view what) {
        const auto& where = n.source().begin;
        errors.push_back(fmt::format("{}:{}:{}: {} {}", path, where.line, where.column, key, what));
    };
    for (const setting& s : settings()) {
        known.insert(std::string(s.key));
        if (const auto dot = s.key.find('.'); dot != std::string_view::npos) known.insert(std::string(s.key.substr(0, dot)));
        const toml::node* n = root.at_path(s.key).node();
        if (!n) continue;
        const setting_target target = s.target(c);
        if (auto* list = std::get_if<std::vector<std::string>*>(&target)) {
            std::vector<std::string> values;
            const toml::array* a = n->as_array();
            for (std::size_t i = 0; a && i < a->size(); ++i) {
                if (auto v = (*a)[i].value<std::string>()) values.push_back(*v);
                else a = nullptr;
            }
            if (a) **list = std::move(values);
            else fail(*n, s.key, "must be an array of strings");
            continue;
        }
        // Scalars go through the same text parsing as the command-line flags.
        std::string text;
        if (auto str = n->value_exact<std::string>()) text = *str;
        else if (auto i = n->value_exact<std::int64_t>()) text = std::to_string(*i);
        else if (auto b = n->value_exact<bool>()) text = *b ? "true" : "false";
        else if (n->is_floating_point()) {
            // TOML floats (1.5, 1e400, inf, nan) are no setting's type: durations and sizes with a
            // fraction are strings ("1.5s").
            fail(*n, s.key, fmt::format("is a floating-point number: it {}", expectation(s)));
            continue;
        } else {
            fail(*n, s.key, fmt::format("has the wrong type: it {}", expectation(s)));
            continue;
        }
        if (auto problem = apply_setting(s, text, c)) fail(*n, s.key, *problem);
    }
    // Unknown keys are errors: a typo must not silently fall back to a default.
    auto unknown = [&](auto& self, const toml::table& table, const std::string& prefix) -> void {
        for (const auto& [key, node] : table) {
            const std::string full = prefix.empty() ? std::string(key.str()) : prefix + "." + std::string(key.str());
            if (!known.contains(full)) fail(node, full, "is not a setting");
            else if (const toml::table* sub = node.as_table()) self(self, *sub, full);
        }
    };
    unknown(unknown, root, "");
    // The HTTP API runs when the file has an [http] table, even one that keeps every default.
    if (root.get_as<toml::table>("http")) c.http.enabled = true;
    if (mode == config_reading::lenient) {
        // Every setting that could be read is applied; the rest was left at what it was.
        for (auto& e : errors) {
            if (warnings) warnings->push_back(std::move(e) + " (ignored)");
        }
        errors.clear();
    }
    if (errors.empty()) {
        c.config_file = path;
        config = std::move(c);
    }
    return errors;
}

std::vector<std::string> validate(const daemon_config& c) {
    std::vector<std::string> problems;
    const supervisor_config& s = c.supervisor;
    auto host_port = [](const std::string& address) {
        const auto colon = address.rfind(':');
        if (colon == std::string::npos || colon == 0) return false;
        unsigned port = 0;
        const char* begin = address.data() + colon + 1;
        const auto [end, ec] = std::from_chars(begin, address.data() + address.size(), port);
        return ec == std::errc{} && end == address.data() + address.size() && port <= 65535;
    };
    if (!host_port(c.listen)) problems.push_back(fmt::format("listen: '{}' is not host:port", c.listen));
    if (s.shard_count == 0) problems.push_back("shards: must be at least 1");
    if (s.slave_count == 0) problems.push_back("slaves.count: must be at least 1");
    if (s.slave_count > s.shard_count) {
        problems.push_back(fmt::format("slaves.count ({}) is more than shards ({}): some slaves would run nothing",
                                       s.slave_count, s.shard_count));
    }
    if (s.spawn_slaves && c.slave_command.empty()) {
        problems.push_back("slaves.command: needed to spawn slaves (or set slaves.spawn = false)");
    }
    for (const auto& kv : c.slave_env) {
        if (kv.find('=') == std::string::npos || kv.front() == '=') {
            problems.push_back(fmt::format("slaves.env: '{}' is not KEY=VALUE", kv));
        }
    }
    if (s.migration_concurrency == 0) problems.push_back("restart.concurrency: must be at least 1");
    if (s.heartbeat_interval < milliseconds(10)) problems.push_back("heartbeat.interval: must be at least 10ms");
    for (const auto& [name, value] : {std::pair{"timeouts.spawn", s.spawn_timeout}, {"timeouts.soft_start", s.soft_start_timeout},
                                      {"timeouts.start", s.start_timeout}, {"timeouts.stop", s.stop_timeout},
                                      {"timeouts.resume", s.resume_timeout}, {"timeouts.shutdown", s.shutdown_timeout},
                                      {"timeouts.handshake", c.handshake_timeout}, {"limits.refusal_window", c.refusal_window}}) {
        if (value.count() <= 0) problems.push_back(fmt::format("{}: must be more than 0", name));
    }
    if (s.respawn_backoff_min > s.respawn_backoff_max) {
        problems.push_back("respawn.backoff_min: must not exceed respawn.backoff_max");
    }
    if (s.start_limit_burst > 0 && s.start_limit_interval.count() <= 0) {
        problems.push_back("respawn.limit_interval: must be more than 0 (or set respawn.limit_burst = 0 for no limit)");
    }
    const bool frame_ok = c.max_frame_size >= 4096 && c.max_frame_size <= 0xFFFF'FFFFu;
    if (!frame_ok) problems.push_back("limits.max_frame: must be between 4KiB and 4GiB-1");
    // (Subtracting keeps a huge state_chunk from wrapping around past the check.)
    if (frame_ok && (s.state_chunk_size == 0 || s.state_chunk_size > c.max_frame_size - 256)) {
        problems.push_back("limits.state_chunk: must be more than 0 and fit in a frame (limits.max_frame)");
    }
    if (c.max_state_size > max_memory_size) problems.push_back("limits.max_state: must be at most 1TiB");
    if (c.max_output > max_memory_size) problems.push_back("limits.max_output: must be at most 1TiB");
    if (c.control_socket.empty()) problems.push_back("control_socket: must not be empty");
    if (c.event_log.empty()) problems.push_back("event_log: must not be empty");
    if (!parse_checkpoint_sync(c.checkpoint_sync)) {
        problems.push_back(fmt::format("checkpoint_sync: '{}' is not \"none\" or \"batch\"", c.checkpoint_sync));
    }
    if (c.tls_cert.empty() != c.tls_key.empty()) {
        problems.push_back("tls.cert and tls.key: set both (TLS) or neither (plain TCP)");
    }
    // A CA or server name without a certificate would leave the link in cleartext while the file
    // reads as if it were encrypted.
    if (!c.tls() && (!c.tls_ca.empty() || !c.tls_server_name.empty())) {
        problems.push_back("tls.ca and tls.server_name: need tls.cert and tls.key");
    }
    if (c.http.enabled) {
        if (!host_port(c.http.listen)) problems.push_back(fmt::format("http.listen: '{}' is not host:port", c.http.listen));
        if (c.http.https && !c.tls()) problems.push_back("http.https: needs tls.cert and tls.key (the certificate it presents)");
        if (c.http.max_header < 1024 || c.http.max_header > (std::uint64_t{1} << 20)) {
            problems.push_back("http.max_header: must be between 1KiB and 1MiB");
        }
        if (c.http.max_body < 1024 || c.http.max_body > (std::uint64_t{64} << 20)) {
            problems.push_back("http.max_body: must be between 1KiB and 64MiB");
        }
        for (const auto& [name, value] : {std::pair{"http.header_timeout", c.http.header_timeout}, {"http.idle_timeout", c.http.idle_timeout}}) {
            if (value.count() <= 0) problems.push_back(fmt::format("{}: must be more than 0", name));
        }
    }
    return problems;
}

namespace {

// Settings read once, at start. Every other setting applies live on a reload.
//  - listen, control_socket: sockets bound at start.
//  - event_log, checkpoint_dir: the event log is the master's memory across crashes (epochs,
//    slave ids, running slaves); switching files midway would split it.
//  - checkpoint_sync: the checkpoint store is built with it at start.
//  - secret_file: read once at start (the running slaves were given that secret).
//  - master_id: what the running slaves were welcomed by.
//  - adopt_window: only a start after a crash waits for slaves.
//  - shards, slaves.count, slaves.spawn: the shard table and its slots.
//  - limits.max_frame: every connection's frame decoder is built with it.
//  - tls.*: the TLS context is built once at start, and the slaves already running verify it with
//    what they were given then.
//  - http.listen, http.https: the HTTP port is bound, and its TLS chosen, at start; so is whether
//    it runs at all ([http] added or removed: "http").
// The HTTP token files are not here: a reload reads them again (rotation).
constexpr std::string_view restart_only_keys[] = {
    "listen", "control_socket", "event_log", "checkpoint_dir", "checkpoint_sync", "secret_file", "master_id", "adopt_window",
    "shards", "slaves.count", "slaves.spawn", "limits.max_frame", "tls.cert", "tls.key", "tls.ca", "tls.server_name",
    "http.listen", "http.https",
};

const setting& setting_named(std::string_view key) {
    for (const setting& s : settings()) {
        if (s.key == key) return s;
    }
    throw std::logic_error(fmt::format("no setting {}", key));
}

bool same_value(const setting& s, const daemon_config& a, const daemon_config& b) {
    // target() hands out pointers into a mutable config; these are only read.
    return std::visit([&](auto* x) { return *x == *std::get<decltype(x)>(s.target(const_cast<daemon_config&>(b))); },
                      s.target(const_cast<daemon_config&>(a)));
}

}  // namespace

std::vector<std::string> restart_only_change(const daemon_config& running, const daemon_config& reloaded) {
    std::vector<std::string> changed;
    for (std::string_view key : restart_only_keys) {
        if (!same_value(setting_named(key), running, reloaded)) changed.emplace_back(key);
    }
    if (running.http.enabled != reloaded.http.enabled) changed.emplace_back("http");
    return changed;
}

void keep_restart_only(const daemon_config& running, daemon_config& reloaded) {
    for (std::string_view key : restart_only_keys) {
        const setting& s = setting_named(key);
        std::visit([&](auto* to) { *to = *std::get<decltype(to)>(s.target(const_cast<daemon_config&>(running))); },
                   s.target(reloaded));
    }
    reloaded.http.enabled = running.http.enabled;
}

}  // namespace meshmaster::master
