// The node's private state, shared by its two driver sources: node.cpp (construction, the
// public operations, the waits) and node_datagrams.cpp (the datagram engine: batches in and out,
// the frames of each datagram, handlers). Only those two include it: it holds Asio types.
//
// Thread safety: as the node's — its executor only.
#pragma once

#include <meshmaster/mesh/node.hpp>
#include <meshmaster/mesh/packet_auth.hpp>

#include "peer_table.hpp"
#include "rpc.hpp"
#include "udp_batch.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <chrono>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace meshmaster::mesh {

namespace asio = boost::asio;
using asio::awaitable;
using asio::ip::udp;
using rpc::msg_kind;
inline constexpr auto tuple_awaitable = asio::as_tuple(asio::use_awaitable);

inline mono_time now_mono() { return std::chrono::steady_clock::now().time_since_epoch(); }
inline std::chrono::steady_clock::time_point time_point_of(mono_time t) {
    return std::chrono::steady_clock::time_point(std::chrono::duration_cast<std::chrono::steady_clock::duration>(t));
}
inline std::span<const std::byte> as_bytes(std::string_view s) { return {reinterpret_cast<const std::byte*>(s.data()), s.size()}; }

inline peer_address address_of(const udp::endpoint& e) {
    peer_address a;
    std::memcpy(&a.raw, e.data(), e.size());
    a.size = static_cast<socklen_t>(e.size());
    return a;
}

inline udp::endpoint endpoint_of(const peer_address& a) {
    udp::endpoint e;
    std::memcpy(e.data(), &a.raw, a.size);
    e.resize(a.size);
    return e;
}

struct node::impl final : peer_table::observer {
    struct pending_probe {
        std::optional<probe_result> result;
        mono_time sent{};
        asio::steady_timer* timer = nullptr;
    };

    impl(node& owner, asio::any_io_executor ex, node_options o);
    ~impl() override { *alive = false; }

    node& self_node;
    asio::any_io_executor executor;
    node_options opts;
    udp::socket socket;
    asio::steady_timer timer;    // every channel's deadlines and the keepalives
    asio::steady_timer closing;  // never expires; cancelled when the node closes: wakes its loops
    std::optional<mono_time> timer_at;
    std::shared_ptr<bool> alive;
    peer_record self;
    std::unique_ptr<packet_auth> auth;
    node_counters counters;
    udp_batch io;
    peer_table table;
    rpc::request_table requests;
    std::unordered_map<std::uint64_t, pending_probe> probes;
    std::unordered_map<std::uint16_t, handler> handlers;
    std::unordered_map<std::uint16_t, async_handler> async_handlers;
    std::vector<asio::steady_timer*> progress_waiters;  // woken on any progress (acks, peers, handlers)
    std::function<void(const membership_event&)> on_membership;
    std::uint64_t packet_number = 0;
    std::size_t handlers_running = 0;
    bool started = false;
    bool going_offline = false;
    bool closed = false;
    bool flush_posted = false;

    // --- peer_table::observer -----------------------------------------------------------------
    void log(std::string_view level, std::string_view message) override {
        if (opts.log) opts.log(level, message);
    }
    void membership(membership_event::kind k, const std::string& id) override {
        if (on_membership) on_membership({k, id});
    }
    void stop_requests(const std::string& id, std::uint64_t incarnation, const std::string& why) override {
        requests.stop_to(id, incarnation, why);
    }
    void changed() override { wake_progress(); }
    peer_address resolve(const peer_record& rec);

    // --- waiting (node.cpp) ---------------------------------------------------------------------
    void wake_progress() {
        for (auto* t : std::exchange(progress_waiters, {})) t->cancel();
    }
    awaitable<void> progress();
    awaitable<void> progress_until(mono_time deadline);
    awaitable<void> run_static_discovery();
    void close();

    // --- output (node_datagrams.cpp) -------------------------------------------------------------------------------
    packet_writer writer(std::uint64_t receiver, std::size_t size);
    void transmit(packet_writer& w, const peer_address& to, peer* p);
    static bool wants_output(peer& p, mono_time now);
    void flush_peer(peer& p, mono_time now);
    void flush_all();
    void schedule_flush();
    void arm_timer(mono_time now);
    // --- messages -----------------------------------------------------------------------------
    bool send_message(peer& p, msg_kind kind, std::uint16_t command, std::uint64_t id, std::span<const std::byte> payload);
    void answer(const std::string& peer_id, std::uint64_t incarnation, std::uint64_t id, std::uint16_t command, const reply& r);
    void dispatch(peer& p, std::span<const std::byte> raw);
    awaitable<void> run_async(async_handler h, std::string peer_id, std::uint64_t incarnation, std::uint64_t id,
                              std::uint16_t command, bytes payload, bool is_request);
    // --- input --------------------------------------------------------------------------------
    void count(drop_reason why);
    void answer_probe(std::uint64_t token, std::uint64_t to_incarnation, const peer_address& to);
    void on_datagram(std::span<const std::byte> d, const peer_address& sender, mono_time now);
    template <class Gone>
    bool deliver_ready(peer& p, const Gone& gone);
    void handle_stranger(std::span<const std::byte> d, const packet_header& h, const peer_address& sender, mono_time now);
    void complete_probe(const frame_reader::frame& f, const packet_header& h, mono_time now);
    void add_peer(const peer_record& rec, bool from_probe, bool visiting = false);
    std::size_t receive_and_flush();
    awaitable<void> receive_loop();
};

}  // namespace meshmaster::mesh
