// The mesh side of tests/bench/mesh (and the peer of the mesh integration tests): a server that
// echoes requests and checks one-way streams, and a client that measures. Same command line as
// the other peers of the benchmark (README.md there):
//
//   mesh_peer server --port P [--bind A] [--id ID] [--static HOST:PORT ...] [--check full|sampled]
//   mesh_peer client --host H --port P --test rr|oneway|bulk|requests --count N --size B [--check ...]
//   (both: [--busy-poll MICROSECONDS] [--no-offload], node_options::busy_poll and udp_offload)
//
// Both use static discovery (the client probes the server's address; each learns the other) and
// authentication with --secret (default: a fixed benchmark key; --insecure turns it off). The
// server checks that one-way messages arrive exactly once and in order with intact payloads; the
// client's last request asks it for that verdict, prints one JSON line and exits 1 if anything
// was lost, duplicated, reordered or corrupted.
//
// --check full (the default, what the integration tests use): every payload byte follows from the
// message's sequence number and the server checks them all. --check sampled (what mesh_bench.py
// passes): the message format of the other benchmark peers (bench_common.hpp: a header, a tag
// over kind, sequence and size, a pattern sampled every 4 KiB, built once and not refilled), so
// that the mesh does the same work per message as ZeroMQ and ENet do beside it.
#include "bench_common.hpp"

#include <meshmaster/mesh/node.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/endian/conversion.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace asio = boost::asio;
namespace mesh = meshmaster::mesh;
using asio::awaitable;
using clock_type = std::chrono::steady_clock;

namespace {

constexpr std::uint16_t cmd_echo = 1;
constexpr std::uint16_t cmd_stream = 2;
constexpr std::uint16_t cmd_verdict = 3;
constexpr std::uint16_t cmd_reset = 4;

struct args {
    std::string role, host = "127.0.0.1", bind = "127.0.0.1", test = "rr", secret = "mesh-bench-secret-0123456789";
    std::uint16_t port = 7700;
    std::uint64_t count = 10000;
    std::size_t size = 64;
    std::size_t datagram = 0;  // 0: the node's defaults (1400, and 65000 towards loopback peers)
    std::size_t concurrency = 64;
    bool insecure = false;
    bool sampled = false;                    // --check sampled: bench_common.hpp's message format
    unsigned long busy_poll_us = 0;          // node_options::busy_poll
    bool udp_offload = true;                 // node_options::udp_offload (--no-offload: off)
    std::string id = "server";               // server: its node id
    std::vector<std::string> static_peers;   // server: other servers to find (static discovery)
};

args parse(int argc, char** argv) {
    args a;
    if (argc > 1) a.role = argv[1];
    for (int i = 2; i < argc; ++i) {
        const std::string k = argv[i];
        if (k == "--insecure") {
            a.insecure = true;
            continue;
        }
        if (k == "--no-offload") {
            a.udp_offload = false;
            continue;
        }
        if (i + 1 >= argc) {
            std::fprintf(stderr, "%s needs a value\n", k.c_str());
            std::exit(64);
        }
        const std::string v = argv[++i];
        if (k == "--host") a.host = v;
        else if (k == "--bind") a.bind = v;
        else if (k == "--port") a.port = static_cast<std::uint16_t>(std::stoul(v));
        else if (k == "--test") a.test = v;
        else if (k == "--count") a.count = std::stoull(v);
        else if (k == "--size") a.size = std::stoull(v);
        else if (k == "--secret") a.secret = v;
        else if (k == "--datagram") a.datagram = std::stoull(v);
        else if (k == "--concurrency") a.concurrency = std::stoull(v);
        else if (k == "--id") a.id = v;
        else if (k == "--static") a.static_peers.push_back(v);
        else if (k == "--check" && (v == "full" || v == "sampled")) a.sampled = v == "sampled";
        else if (k == "--busy-poll") a.busy_poll_us = std::stoul(v);
        else {
            std::fprintf(stderr, "unknown option %s\n", k.c_str());
            std::exit(64);
        }
    }
    if (a.role != "server" && a.role != "client") {
        std::fprintf(stderr, "usage: mesh_peer server|client [--host H] [--port P] [--test rr|oneway|bulk|requests] "
                             "[--count N] [--size B] [--secret S | --insecure] [--datagram B]\n");
        std::exit(64);
    }
    if (a.insecure) a.secret.clear();
    return a;
}

// A payload whose every byte follows from its sequence number, so the receiver checks it whole
// (8 bytes a step: the check must cost far less than the transport it checks).
std::uint64_t next_word(std::uint64_t& x) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x;
}

void fill(mesh::bytes& b, std::uint64_t seq) {
    std::uint64_t x = seq * 0x9E3779B97F4A7C15ull + 1;
    std::size_t i = 8;
    for (; i + 8 <= b.size(); i += 8) {
        const std::uint64_t w = next_word(x);
        std::memcpy(b.data() + i, &w, 8);
    }
    const std::uint64_t w = next_word(x);
    std::memcpy(b.data() + i, &w, b.size() - i);
    boost::endian::store_little_u64(reinterpret_cast<unsigned char*>(b.data()), seq);
}

bool intact(std::span<const std::byte> b, std::uint64_t& seq) {
    if (b.size() < 8) return false;
    seq = boost::endian::load_little_u64(reinterpret_cast<const unsigned char*>(b.data()));
    std::uint64_t x = seq * 0x9E3779B97F4A7C15ull + 1;
    std::size_t i = 8;
    for (; i + 8 <= b.size(); i += 8) {
        const std::uint64_t w = next_word(x);
        if (std::memcmp(b.data() + i, &w, 8) != 0) return false;
    }
    const std::uint64_t w = next_word(x);
    return std::memcmp(b.data() + i, &w, b.size() - i) == 0;
}

mesh::node_options options(const args& a, std::string id, std::uint16_t port) {
    mesh::node_options o{.id = std::move(id), .type = "bench", .bind = a.bind, .port = port, .secret = a.secret,
                         .insecure = a.insecure};
    o.busy_poll = std::chrono::microseconds(a.busy_poll_us);
    o.udp_offload = a.udp_offload;
    if (a.datagram) {  // one size for every peer
        o.channel.max_datagram = a.datagram;
        o.loopback_datagram = a.datagram;
    }
    o.log = [](std::string_view level, std::string_view m) {
        if (level != "info") std::fprintf(stderr, "%.*s: %.*s\n", int(level.size()), level.data(), int(m.size()), m.data());
    };
    return o;
}

struct verdict {
    std::uint64_t received = 0, expected_next = 0, out_of_order = 0, corrupt = 0;
};

int run_server(const args& a) {
    asio::io_context io;
    mesh::node_options o = options(a, a.id, a.port);
    o.static_peers = a.static_peers;
    mesh::node n(io.get_executor(), std::move(o));
    verdict v;
    n.command(cmd_echo, [](const mesh::incoming& in) { return mesh::reply::respond(in.payload); });
    n.command(cmd_stream, [&](const mesh::incoming& in) {
        std::uint64_t seq = 0;
        bool ok = false;
        if (a.sampled) {
            const auto d = bench::decode(in.payload);
            ok = d && d->k == bench::kind::data;
            seq = ok ? d->seq : 0;
        } else {
            ok = intact(in.payload, seq);
        }
        if (!ok) {
            ++v.corrupt;
        } else if (seq != v.expected_next) {
            ++v.out_of_order;  // lost, duplicated or reordered: each breaks the sequence
            v.expected_next = seq + 1;
        } else {
            ++v.expected_next;
        }
        ++v.received;
        return mesh::reply::nothing();
    });
    n.command(cmd_verdict, [&](const mesh::incoming&) {
        mesh::bytes b(32);
        auto* p = reinterpret_cast<unsigned char*>(b.data());
        boost::endian::store_little_u64(p, v.received);
        boost::endian::store_little_u64(p + 8, v.expected_next);
        boost::endian::store_little_u64(p + 16, v.out_of_order);
        boost::endian::store_little_u64(p + 24, v.corrupt);
        return mesh::reply::respond(std::move(b));
    });
    n.command(cmd_reset, [&](const mesh::incoming&) {
        v = {};
        return mesh::reply::respond(mesh::bytes{});
    });
    if (auto ec = n.start()) {
        std::fprintf(stderr, "mesh_peer: cannot start: %s\n", ec.message().c_str());
        return 69;
    }
    asio::signal_set signals(io, SIGTERM, SIGINT);
    signals.async_wait([&](auto, int) {
        asio::co_spawn(io, [&]() -> awaitable<void> {
            co_await n.go_offline();
            io.stop();
        }, asio::detached);
    });
    io.run();
    return 0;
}

double percentile(std::vector<double>& v, double q) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    return v[std::min(v.size() - 1, static_cast<std::size_t>(q * static_cast<double>(v.size())))];
}

awaitable<int> client(const args& a, mesh::node& n) {
    // The probe is one datagram each way: on a lossy path, ask again.
    std::optional<mesh::probe_result> who;
    for (int attempt = 0; attempt < 20 && !who; ++attempt) {
        who = co_await n.probe(a.host, a.port, std::chrono::milliseconds(250), mesh::node::probe_mode::join);
    }
    if (!who) {
        std::fprintf(stderr, "mesh_peer: no answer from %s:%u\n", a.host.c_str(), a.port);
        co_return 69;
    }
    const std::string server = who->id;
    mesh::bytes payload(std::max<std::size_t>(a.size, 8));
    if (a.test == "rr") {
        const std::uint64_t warmup = std::min<std::uint64_t>(a.count / 10, 1000);
        std::vector<double> us;
        us.reserve(a.count);
        for (std::uint64_t i = 0; i < warmup + a.count; ++i) {
            fill(payload, i);
            const auto t0 = clock_type::now();
            auto o = co_await n.request(server, cmd_echo, payload, std::chrono::milliseconds(5000));
            const auto t1 = clock_type::now();
            if (!o.ok() || o.body != payload) {
                std::fprintf(stderr, "mesh_peer: request %llu: %s\n", static_cast<unsigned long long>(i),
                             std::string(mesh::to_string(o.what)).c_str());
                co_return 1;
            }
            if (i >= warmup) us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
        }
        double sum = 0;
        for (double x : us) sum += x;
        const double mean = sum / static_cast<double>(us.size());
        std::printf("{\"test\":\"rr\",\"count\":%llu,\"size\":%zu,\"p50_us\":%.2f,\"p99_us\":%.2f,\"p999_us\":%.2f,\"mean_us\":%.2f}\n",
                    static_cast<unsigned long long>(a.count), a.size, percentile(us, 0.5), percentile(us, 0.99),
                    percentile(us, 0.999), mean);
        co_return 0;
    }
    if (a.test == "requests") {
        // Many requests at once over a lossy path: each must end in exactly one outcome, and every
        // response must be the echo of its request.
        std::uint64_t responses = 0, errors = 0, timeouts = 0, stopped = 0, wrong = 0, next = 0, running = 0;
        asio::steady_timer done(co_await asio::this_coro::executor);
        done.expires_at(clock_type::time_point::max());
        auto one = [&](std::uint64_t i) -> awaitable<void> {
            mesh::bytes p(std::max<std::size_t>(a.size, 8));
            fill(p, i);
            auto o = co_await n.request(server, cmd_echo, p, std::chrono::milliseconds(3000));
            switch (o.what) {
                case mesh::outcome::kind::response: ++responses; wrong += o.body != p; break;
                case mesh::outcome::kind::error: ++errors; break;
                case mesh::outcome::kind::timeout: ++timeouts; break;
                case mesh::outcome::kind::stopped: ++stopped; break;
            }
            --running;
            done.cancel();
        };
        const auto t0 = clock_type::now();
        while (next < a.count || running > 0) {
            while (next < a.count && running < a.concurrency) {
                ++running;
                asio::co_spawn(co_await asio::this_coro::executor, one(next++), asio::detached);
            }
            // A request may end at once (the peer is going offline), inside co_spawn: wait only
            // when none did, or the wake-up would be lost.
            if ((next < a.count && running < a.concurrency) || running == 0) continue;
            done.expires_at(clock_type::time_point::max());
            co_await done.async_wait(asio::as_tuple(asio::use_awaitable));
        }
        const double seconds = std::chrono::duration<double>(clock_type::now() - t0).count();
        const std::uint64_t outcomes = responses + errors + timeouts + stopped;
        std::printf("{\"test\":\"requests\",\"count\":%llu,\"responses\":%llu,\"errors\":%llu,\"timeouts\":%llu,"
                    "\"stopped\":%llu,\"wrong_bodies\":%llu,\"outcomes\":%llu,\"seconds\":%.3f}\n",
                    static_cast<unsigned long long>(a.count), static_cast<unsigned long long>(responses),
                    static_cast<unsigned long long>(errors), static_cast<unsigned long long>(timeouts),
                    static_cast<unsigned long long>(stopped), static_cast<unsigned long long>(wrong),
                    static_cast<unsigned long long>(outcomes), seconds);
        co_return outcomes == a.count && wrong == 0 ? 0 : 1;
    }
    // oneway / bulk: a stream of reliable one-way messages, then the server's verdict.
    auto reset = co_await n.request(server, cmd_reset, {}, std::chrono::milliseconds(5000), 3);
    if (!reset.ok()) co_return 1;
    bench::message_writer sampled(a.size);
    const auto t0 = clock_type::now();
    for (std::uint64_t i = 0; i < a.count; ++i) {
        std::span<const std::byte> m = payload;
        if (a.sampled) {
            m = sampled.make(bench::kind::data, i);
        } else {
            fill(payload, i);
        }
        // Without waiting while there is room; co_await send() waits for room when there is not.
        bool queued = n.try_send(server, cmd_stream, m) == mesh::node::send_result::queued;
        if (!queued) queued = co_await n.send(server, cmd_stream, mesh::bytes(m.begin(), m.end()));
        if (!queued) {
            std::fprintf(stderr, "mesh_peer: the server went offline after %llu messages\n", static_cast<unsigned long long>(i));
            co_return 1;
        }
    }
    // The verdict request travels behind the stream on the same channel: it is answered after the
    // server has handled every message before it.
    auto o = co_await n.request(server, cmd_verdict, {}, std::chrono::milliseconds(60000));
    const double seconds = std::chrono::duration<double>(clock_type::now() - t0).count();
    if (!o.ok() || o.body.size() != 32) {
        std::fprintf(stderr, "mesh_peer: no verdict: %s\n", std::string(mesh::to_string(o.what)).c_str());
        co_return 1;
    }
    const auto* p = reinterpret_cast<const unsigned char*>(o.body.data());
    const std::uint64_t received = boost::endian::load_little_u64(p), next = boost::endian::load_little_u64(p + 8),
                        out_of_order = boost::endian::load_little_u64(p + 16), corrupt = boost::endian::load_little_u64(p + 24);
    const bool exact = received == a.count && next == a.count && out_of_order == 0 && corrupt == 0;
    std::uint64_t retransmitted = 0, sent = 0;
    for (const auto& s : n.status()) {
        if (s.record.id == server) {
            sent = s.packets_out;
            retransmitted = static_cast<std::uint64_t>(s.loss * 1e6);
        }
    }
    std::printf("{\"test\":\"%s\",\"count\":%llu,\"size\":%zu,\"seconds\":%.4f,\"msgs_per_s\":%.0f,\"bytes_per_s\":%.0f,"
                "\"received\":%llu,\"out_of_order\":%llu,\"corrupt\":%llu,\"exactly_once_in_order\":%s,"
                "\"datagrams_out\":%llu,\"retransmitted_ppm\":%llu}\n",
                a.test.c_str(), static_cast<unsigned long long>(a.count), a.size, seconds,
                static_cast<double>(a.count) / seconds, static_cast<double>(a.count * a.size) / seconds,
                static_cast<unsigned long long>(received), static_cast<unsigned long long>(out_of_order),
                static_cast<unsigned long long>(corrupt), exact ? "true" : "false", static_cast<unsigned long long>(sent),
                static_cast<unsigned long long>(retransmitted));
    co_return exact ? 0 : 1;
}

int run_client(const args& a) {
    asio::io_context io;
    mesh::node n(io.get_executor(), options(a, "client", 0));
    if (auto ec = n.start()) {
        std::fprintf(stderr, "mesh_peer: cannot start: %s\n", ec.message().c_str());
        return 69;
    }
    int rc = 1;
    asio::co_spawn(io, client(a, n), [&](std::exception_ptr e, int r) {
        rc = e ? 70 : r;
        io.stop();
    });
    io.run();
    return rc;
}

}  // namespace

int main(int argc, char** argv) {
    const args a = parse(argc, argv);
    return a.role == "server" ? run_server(a) : run_client(a);
}
