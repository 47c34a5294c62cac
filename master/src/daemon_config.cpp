#include "daemon_config.hpp"

#include <toml++/toml.h>

#include <fmt/format.h>

#include <charconv>
#include <set>
#include <sstream>

namespace meshmaster::master {

using std::chrono::milliseconds;

std::optional<milliseconds> parse_duration(std::string_view text) {
    double value = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc{} || value < 0) return std::nullopt;
    const std::string_view unit(end, static_cast<std::size_t>(text.data() + text.size() - end));
    double factor = 0;
    if (unit.empty() || unit == "ms") factor = 1;
    else if (unit == "s") factor = 1'000;
    else if (unit == "m" || unit == "min") factor = 60'000;
    else if (unit == "h") factor = 3'600'000;
    else if (unit == "us") factor = 0.001;
    else return std::nullopt;
    return milliseconds(static_cast<std::int64_t>(value * factor + 0.5));
}

std::optional<std::uint64_t> parse_size(std::string_view text) {
    double value = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc{} || value < 0) return std::nullopt;
    const std::string_view unit(end, static_cast<std::size_t>(text.data() + text.size() - end));
    double factor = 0;
    if (unit.empty() || unit == "B") factor = 1;
    else if (unit == "KiB") factor = 1024.0;
    else if (unit == "MiB") factor = 1024.0 * 1024;
    else if (unit == "GiB") factor = 1024.0 * 1024 * 1024;
    else if (unit == "kB" || unit == "KB") factor = 1e3;
    else if (unit == "MB") factor = 1e6;
    else if (unit == "GB") factor = 1e9;
    else return std::nullopt;
    return static_cast<std::uint64_t>(value * factor);
}

namespace {

// Reads typed values out of the TOML tree, collecting errors and noting which keys were used so
// that leftovers can be reported as unknown.
class reader {
public:
    explicit reader(const toml::table& root) : root_(root) {}

    template <class T>
    void integer(std::string_view path, T& out, std::int64_t min, std::int64_t max) {
        const toml::node* n = find(path);
        if (!n) return;
        if (auto v = n->value<std::int64_t>(); v && *v >= min && *v <= max) {
            out = static_cast<T>(*v);
        } else {
            error(path, n, fmt::format("must be an integer from {} to {}", min, max));
        }
    }
    void boolean(std::string_view path, bool& out) {
        const toml::node* n = find(path);
        if (!n) return;
        if (auto v = n->value<bool>()) out = *v;
        else error(path, n, "must be true or false");
    }
    void string(std::string_view path, std::string& out) {
        const toml::node* n = find(path);
        if (!n) return;
        if (auto v = n->value<std::string>()) out = *v;
        else error(path, n, "must be a string");
    }
    void strings(std::string_view path, std::vector<std::string>& out) {
        const toml::node* n = find(path);
        if (!n) return;
        const toml::array* a = n->as_array();
        std::vector<std::string> values;
        if (a) {
            for (const toml::node& item : *a) {
                if (auto v = item.value<std::string>()) values.push_back(*v);
                else a = nullptr;
                if (!a) break;
            }
        }
        if (a) out = std::move(values);
        else error(path, n, "must be an array of strings");
    }
    void duration(std::string_view path, milliseconds& out) {
        const toml::node* n = find(path);
        if (!n) return;
        if (auto i = n->value<std::int64_t>(); i && *i >= 0 && n->is_integer()) {
            out = milliseconds(*i);
        } else if (auto s = n->value<std::string>(); s && parse_duration(*s)) {
            out = *parse_duration(*s);
        } else {
            error(path, n, "must be a duration such as \"250ms\", \"5s\" or a number of milliseconds");
        }
    }
    template <class T>
    void size(std::string_view path, T& out) {
        const toml::node* n = find(path);
        if (!n) return;
        if (auto i = n->value<std::int64_t>(); i && *i >= 0 && n->is_integer()) {
            out = static_cast<T>(*i);
        } else if (auto s = n->value<std::string>(); s && parse_size(*s)) {
            out = static_cast<T>(*parse_size(*s));
        } else {
            error(path, n, "must be a size such as \"16MiB\" or a number of bytes");
        }
    }

    std::vector<std::string> finish() {
        collect_unknown(root_, "");
        return std::move(errors_);
    }

private:
    const toml::node* find(std::string_view path) {
        used_.insert(std::string(path));
        const auto dot = path.find('.');
        if (dot != std::string_view::npos) used_.insert(std::string(path.substr(0, dot)));
        return root_.at_path(path).node();
    }
    void error(std::string_view path, const toml::node* n, const std::string& what) {
        const auto& where = n->source().begin;
        errors_.push_back(fmt::format("{}:{}: {} {}", where.line, where.column, path, what));
    }
    void collect_unknown(const toml::table& table, const std::string& prefix) {
        for (const auto& [key, node] : table) {
            const std::string path = prefix.empty() ? std::string(key.str()) : prefix + "." + std::string(key.str());
            if (!used_.contains(path)) {
                const auto& where = node.source().begin;
                errors_.push_back(fmt::format("{}:{}: unknown setting {}", where.line, where.column, path));
            } else if (const toml::table* sub = node.as_table()) {
                collect_unknown(*sub, path);
            }
        }
    }

    const toml::table& root_;
    std::set<std::string> used_;
    std::vector<std::string> errors_;
};

}  // namespace

std::vector<std::string> apply_config_file(const std::string& path, daemon_config& config) {
    toml::table root;
    try {
        root = toml::parse_file(path);
    } catch (const toml::parse_error& e) {
        const auto& where = e.source().begin;
        return {fmt::format("{}:{}:{}: {}", path, where.line, where.column, e.description())};
    } catch (const std::exception& e) {
        return {fmt::format("{}: {}", path, e.what())};
    }
    daemon_config c = config;
    supervisor_config& s = c.supervisor;
    reader r(root);
    r.string("listen", c.listen);
    r.string("control_socket", c.control_socket);
    r.string("event_log", c.event_log);
    r.string("secret_file", c.secret_file);
    r.string("master_id", c.master_id);
    r.integer("shards", s.shard_count, 1, 1 << 20);
    r.duration("adopt_window", c.adopt_window);
    r.duration("external_grace", s.external_grace);
    r.strings("slaves.command", c.slave_command);
    r.integer("slaves.count", s.slave_count, 1, 4096);
    r.boolean("slaves.spawn", s.spawn_slaves);
    r.strings("slaves.env", c.slave_env);
    r.integer("restart.concurrency", s.migration_concurrency, 1, 1 << 16);
    r.integer("restart.surge", s.restart_surge, 1, 4096);
    r.duration("timeouts.spawn", s.spawn_timeout);
    r.duration("timeouts.soft_start", s.soft_start_timeout);
    r.duration("timeouts.start", s.start_timeout);
    r.duration("timeouts.stop", s.stop_timeout);
    r.duration("timeouts.resume", s.resume_timeout);
    r.duration("timeouts.shutdown", s.shutdown_timeout);
    r.duration("timeouts.handshake", c.handshake_timeout);
    r.duration("heartbeat.interval", s.heartbeat_interval);
    r.integer("heartbeat.misses", s.heartbeat_misses, 1, 1000);
    r.duration("respawn.backoff_min", s.respawn_backoff_min);
    r.duration("respawn.backoff_max", s.respawn_backoff_max);
    r.duration("respawn.stable_after", s.stable_after);
    r.size("limits.max_frame", c.max_frame_size);
    r.size("limits.max_state", c.max_state_size);
    r.size("limits.state_chunk", s.state_chunk_size);
    r.integer("limits.max_connections", c.max_connections, 1, 1 << 20);
    std::vector<std::string> errors = r.finish();
    for (auto& e : errors) e = path + ":" + e;
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
                                      {"timeouts.handshake", c.handshake_timeout}}) {
        if (value.count() <= 0) problems.push_back(fmt::format("{}: must be more than 0", name));
    }
    if (s.respawn_backoff_min > s.respawn_backoff_max) {
        problems.push_back("respawn.backoff_min: must not exceed respawn.backoff_max");
    }
    if (c.max_frame_size < 4096 || c.max_frame_size > 0xFFFF'FFFFu) {
        problems.push_back("limits.max_frame: must be between 4KiB and 4GiB-1");
    }
    if (s.state_chunk_size == 0 || s.state_chunk_size + 256 > c.max_frame_size) {
        problems.push_back("limits.state_chunk: must be more than 0 and fit in a frame (limits.max_frame)");
    }
    if (c.control_socket.empty()) problems.push_back("control_socket: must not be empty");
    if (c.event_log.empty()) problems.push_back("event_log: must not be empty");
    return problems;
}

std::optional<std::string> restart_only_change(const daemon_config& a, const daemon_config& b) {
    if (a.listen != b.listen) return "listen";
    if (a.control_socket != b.control_socket) return "control_socket";
    if (a.supervisor.shard_count != b.supervisor.shard_count) return "shards";
    if (a.supervisor.slave_count != b.supervisor.slave_count) return "slaves.count";
    if (a.supervisor.spawn_slaves != b.supervisor.spawn_slaves) return "slaves.spawn";
    if (a.max_frame_size != b.max_frame_size) return "limits.max_frame";
    return std::nullopt;
}

}  // namespace meshmaster::master
