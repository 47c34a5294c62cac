#include "mesh_cli.hpp"
#include "exit_code.hpp"

#include <meshmaster/mesh/node.hpp>
#include <meshmaster/mesh/packet_auth.hpp>
#include <meshmaster/mesh/redis_discovery.hpp>
#include <meshmaster/protocol/secret.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value_to.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <sstream>
#include <unistd.h>

namespace meshmaster::master::cli {
namespace {

namespace asio = boost::asio;
namespace json = boost::json;
using asio::awaitable;

std::optional<std::string> read_trimmed(const std::string& path) {
    std::ifstream in(path);
    if (!in) return std::nullopt;
    std::stringstream s;
    s << in.rdbuf();
    std::string v = s.str();
    while (!v.empty() && (v.back() == '\n' || v.back() == '\r')) v.pop_back();
    return v;
}

// The key, or an exit code with the reason printed.
std::optional<std::string> resolve_key(const mesh_key_source& k, int& rc) {
    rc = to_int(exit_code::ok);
    if (k.insecure) return std::string();
    if (!k.key_file.empty()) {
        if (auto v = read_trimmed(k.key_file)) return v;
        fmt::print(stderr, "cannot read the mesh key file {}\n", k.key_file);
    } else if (!k.secret_file.empty()) {
        auto secret = protocol::read_secret_file(k.secret_file);  // the master's rules: mode, length
        if (secret) return mesh::mesh_key_from_fleet_secret(*secret);
        fmt::print(stderr, "{}\n", secret.error().message);
    } else if (const char* env = std::getenv("MESHMASTER_SECRET"); env && *env) {
        return mesh::mesh_key_from_fleet_secret(env);
    } else {
        fmt::print(stderr, "no key: give --key-file, --secret-file, -c <config>, MESHMASTER_SECRET, or --insecure\n");
    }
    rc = to_int(exit_code::config);
    return std::nullopt;
}

bool split(const std::string& address, std::string& host, std::uint16_t& port) {
    const auto colon = address.rfind(':');
    if (colon == std::string::npos) return false;
    host = address.substr(0, colon);
    if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
    try {
        const unsigned long p = std::stoul(address.substr(colon + 1));
        if (p == 0 || p > 65535) return false;
        port = static_cast<std::uint16_t>(p);
    } catch (...) {
        return false;
    }
    return true;
}

mesh::node_options tool_options(const std::string& key, const std::string& host) {
    mesh::node_options o{.id = fmt::format("meshmaster-cli-{}", ::getpid()), .type = "cli",
                         .bind = host.find(':') != std::string::npos ? "::" : "0.0.0.0", .secret = key,
                         .insecure = key.empty()};
    o.learn_from_probes = false;
    // The goodbye at the end has nothing to wait for but the acknowledgements of the last answer.
    o.drain_timeout = std::chrono::milliseconds(200);
    return o;
}

// Runs `body` on a fresh io_context with a node; returns its exit code.
template <class Body>
int with_node(const std::string& key, const std::string& host, Body body) {
    asio::io_context io;
    mesh::node n(io.get_executor(), tool_options(key, host));
    if (auto ec = n.start()) {
        fmt::print(stderr, "cannot open a UDP socket: {}\n", ec.message());
        return to_int(exit_code::unavailable);
    }
    int rc = to_int(exit_code::failure);
    // The tool says goodbye when done: the node it visited forgets it at once.
    auto visit = [&]() -> awaitable<int> {
        const int r = co_await body(n);
        co_await n.go_offline();
        co_return r;
    };
    asio::co_spawn(io, visit(), [&](std::exception_ptr e, int r) {
        rc = e ? 70 : r;
        io.stop();
    });
    io.run();
    return rc;
}

// A node's HOST:PORT and the key to talk to it with, or the exit code (with the reason printed).
struct target {
    std::string host;
    std::uint16_t port = 0;
    std::string key;
};
std::optional<target> resolve_target(const std::string& address, const mesh_key_source& k, int& rc) {
    target t;
    if (!split(address, t.host, t.port)) {
        fmt::print(stderr, "'{}' is not HOST:PORT\n", address);
        rc = to_int(exit_code::usage);
        return std::nullopt;
    }
    auto key = resolve_key(k, rc);
    if (!key) return std::nullopt;
    t.key = std::move(*key);
    return t;
}

}  // namespace

int mesh_ping(const std::string& address, const mesh_key_source& k, unsigned count, unsigned interval_ms,
              unsigned timeout_ms) {
    int rc = to_int(exit_code::ok);
    const auto t = resolve_target(address, k, rc);
    if (!t) return rc;
    const auto& [host, port, key] = *t;
    return with_node(key, host, [&](mesh::node& n) -> awaitable<int> {
        fmt::print("MESH PING {} ({})\n", address, key.empty() ? "unauthenticated" : "authenticated");
        std::vector<double> rtts;
        asio::steady_timer pause(co_await asio::this_coro::executor);
        for (unsigned seq = 1; seq <= count; ++seq) {
            auto r = co_await n.probe(host, port, std::chrono::milliseconds(timeout_ms));
            if (r) {
                const double ms = std::chrono::duration<double, std::milli>(r->rtt).count();
                rtts.push_back(ms);
                fmt::print("reply from {} (type {}) {}: seq={} time={:.3f} ms\n", r->id.empty() ? "?" : r->id,
                           r->type.empty() ? "-" : r->type, address, seq, ms);
            } else {
                fmt::print("no reply from {}: seq={} (timeout {} ms{})\n", address, seq, timeout_ms,
                           key.empty() ? "" : "; a node with another key stays silent");
            }
            if (seq < count) {
                pause.expires_after(std::chrono::milliseconds(interval_ms));
                co_await pause.async_wait(asio::use_awaitable);
            }
        }
        fmt::print("--- {} mesh ping statistics ---\n", address);
        fmt::print("{} probes sent, {} replies, {:.0f}% loss", count, rtts.size(),
                   100.0 * static_cast<double>(count - rtts.size()) / count);
        if (!rtts.empty()) {
            double sum = 0;
            for (double x : rtts) sum += x;
            fmt::print(", rtt min/avg/max = {:.3f}/{:.3f}/{:.3f} ms", *std::min_element(rtts.begin(), rtts.end()),
                       sum / static_cast<double>(rtts.size()), *std::max_element(rtts.begin(), rtts.end()));
        }
        fmt::print("\n");
        co_return to_int(rtts.empty() ? exit_code::failure : exit_code::ok);
    });
}

int mesh_nodes(const std::string& address, const mesh_key_source& k, bool as_json, unsigned timeout_ms) {
    int rc = to_int(exit_code::ok);
    const auto t = resolve_target(address, k, rc);
    if (!t) return rc;
    const auto& [host, port, key] = *t;
    return with_node(key, host, [&](mesh::node& n) -> awaitable<int> {
        std::optional<mesh::probe_result> who;
        for (int attempt = 0; attempt < 5 && !who; ++attempt) {
            // As a visitor: the node answers, but does not add the CLI to its mesh.
            who = co_await n.probe(host, port, std::chrono::milliseconds(timeout_ms), mesh::node::probe_mode::visit);
        }
        if (!who) {
            fmt::print(stderr, "no answer from {} (not a mesh node, or another key)\n", address);
            co_return to_int(exit_code::failure);
        }
        auto o = co_await n.request(who->id, mesh::node::status_command, {}, std::chrono::milliseconds(timeout_ms), 2);
        if (!o.ok()) {
            fmt::print(stderr, "{} did not answer the status request: {}\n", who->id, mesh::to_string(o.what));
            co_return to_int(exit_code::failure);
        }
        const std::string text(reinterpret_cast<const char*>(o.body.data()), o.body.size());
        if (as_json) {
            fmt::print("{}\n", text);
            co_return to_int(exit_code::ok);
        }
        boost::system::error_code ec;
        const json::value v = json::parse(text, ec);
        if (ec || !v.is_object()) {
            fmt::print(stderr, "unreadable status from {}\n", who->id);
            co_return to_int(exit_code::failure);
        }
        const auto& self = v.at("self").as_object();
        fmt::print("node {} (type {}) at {}:{}{}\n", json::value_to<std::string>(self.at("id")),
                   json::value_to<std::string>(self.at("type")), json::value_to<std::string>(self.at("host")),
                   self.at("port").to_number<int>(), self.at("authenticated").as_bool() ? "" : "  UNAUTHENTICATED");
        fmt::print("{:<24} {:<10} {:<22} {:<8} {:>10} {:>7} {:>10} {:>10} {:>12} {:>12}\n", "PEER", "TYPE", "ADDRESS",
                   "STATE", "RTT", "LOSS", "PKT IN", "PKT OUT", "BYTES IN", "BYTES OUT");
        for (const auto& pv : v.at("peers").as_array()) {
            const auto& p = pv.as_object();
            const std::string rtt = p.at("rtt_us").is_null() ? "-" : fmt::format("{:.0f} µs", p.at("rtt_us").to_number<double>());
            fmt::print("{:<24} {:<10} {:<22} {:<8} {:>10} {:>6.2f}% {:>10} {:>10} {:>12} {:>12}\n",
                       json::value_to<std::string>(p.at("id")), json::value_to<std::string>(p.at("type")),
                       fmt::format("{}:{}", json::value_to<std::string>(p.at("host")), p.at("port").to_number<int>()),
                       p.at("online").as_bool() ? "online" : "offline", rtt, 100 * p.at("loss").to_number<double>(),
                       p.at("packets_in").to_number<std::uint64_t>(), p.at("packets_out").to_number<std::uint64_t>(),
                       p.at("bytes_in").to_number<std::uint64_t>(), p.at("bytes_out").to_number<std::uint64_t>());
        }
        co_return to_int(exit_code::ok);
    });
}

int mesh_nodes_from_redis(const redis_source& redis, bool as_json, unsigned timeout_ms) {
    mesh::redis_options o;
    if (!split(redis.address, o.host, o.port)) {
        fmt::print(stderr, "'{}' is not HOST:PORT\n", redis.address);
        return to_int(exit_code::usage);
    }
    if (!redis.password_file.empty()) {
        auto p = read_trimmed(redis.password_file);
        if (!p) {
            fmt::print(stderr, "cannot read the Redis password file {}\n", redis.password_file);
            return to_int(exit_code::config);
        }
        o.password = *p;
    }
    o.prefix = redis.prefix;
    o.database = redis.database;
    o.command_timeout = std::chrono::milliseconds(timeout_ms);
    o.log = [](std::string_view, std::string_view) {};  // the error below says it
    auto nodes = mesh::redis_discovery::list(o);
    if (!nodes) {
        fmt::print(stderr, "Redis at {}: {}\n", redis.address, nodes.error().message());
        return to_int(exit_code::unavailable);
    }
    if (as_json) {
        json::array a;
        for (const auto& n : *nodes) {
            json::object values;
            for (const auto& [k, v] : n.values) values[k] = v;
            a.push_back(json::object{{"id", n.id}, {"type", n.type}, {"host", n.host}, {"port", n.port},
                                     {"incarnation", std::to_string(n.incarnation)}, {"values", std::move(values)}});
        }
        fmt::print("{}\n", json::serialize(a));
        return to_int(exit_code::ok);
    }
    fmt::print("{} node(s) under {} in Redis {} (db {})\n", nodes->size(), o.prefix, redis.address, o.database);
    fmt::print("{:<24} {:<10} {:<22} {}\n", "NODE", "TYPE", "ADDRESS", "VALUES");
    for (const auto& n : *nodes) {
        std::string values;
        for (const auto& [k, v] : n.values) values += fmt::format("{}{}={}", values.empty() ? "" : " ", k, v);
        fmt::print("{:<24} {:<10} {:<22} {}\n", n.id, n.type, fmt::format("{}:{}", n.host, n.port), values);
    }
    return to_int(exit_code::ok);
}

}  // namespace meshmaster::master::cli
