// The plain values a mesh node hands its users and takes from them: message handlers' input and
// reply, a request's one outcome, membership events, the status list and the drop counters. No
// Asio here, so that the sans-I/O pieces (rpc, peer table, status projection) and their tests can
// use them without the driver.
//
// Thread safety: plain values; no shared state.
#pragma once

#include <meshmaster/mesh/discovery.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace meshmaster::mesh {

using bytes = std::vector<std::byte>;

/// What a handler gets. `payload` is valid until the handler returns (for an async handler:
/// until its first suspension — copy what you keep).
struct incoming {
    std::string_view from;  ///< the sender's node id
    std::uint16_t command = 0;
    std::span<const std::byte> payload;
    bool is_request = false;  ///< false: a one-way send; the reply is ignored
};

/// What a handler returns: a response, an error with a message, or nothing (one-way sends, or a
/// request the handler leaves unanswered — the requester then times out).
struct reply {
    enum class kind : std::uint8_t { none, response, error } what = kind::none;
    bytes body;
    std::string message;
    static reply respond(bytes b) { return {kind::response, std::move(b), {}}; }
    static reply respond(std::span<const std::byte> b) { return {kind::response, bytes(b.begin(), b.end()), {}}; }
    static reply fail(std::string m) { return {kind::error, {}, std::move(m)}; }
    static reply nothing() { return {}; }
};

/// The one outcome of a request.
struct outcome {
    enum class kind : std::uint8_t { response, error, timeout, stopped } what = kind::timeout;
    bytes body;           ///< response
    std::string message;  ///< error: the handler's message; stopped: why
    [[nodiscard]] bool ok() const noexcept { return what == kind::response; }
};
std::string_view to_string(outcome::kind k) noexcept;

struct membership_event {
    enum class kind : std::uint8_t { join, leave, online, offline } what;
    std::string node;
};

/// One line of the status list (in the spirit of rdoorn/cluster's).
struct peer_status {
    peer_record record;
    bool member = true;  ///< false: a visitor (a tool, or a prober while learn_from_probes is off)
    bool online = false;
    std::optional<std::chrono::nanoseconds> rtt;
    double loss = 0;  ///< share of segments sent that had to be sent again
    std::uint64_t packets_in = 0, packets_out = 0, bytes_in = 0, bytes_out = 0;
    std::uint64_t messages_in = 0, messages_out = 0;
    std::uint64_t retransmitted = 0;           ///< segments sent again
    std::uint64_t timeouts = 0;                ///< retransmission timer expirations (stalls, tail losses)
    std::uint64_t duplicates_dropped = 0;      ///< segments that arrived twice (a lost or slow ack)
    std::uint64_t beyond_window_dropped = 0;   ///< segments past the window this node advertised
    std::chrono::milliseconds last_heard{};  ///< ago
};

/// Datagrams dropped before reaching any peer, by reason (wire.hpp's drop_reason) and more.
struct node_counters {
    std::uint64_t truncated = 0, bad_magic = 0, bad_frame = 0, bad_tag = 0, replayed = 0, wrong_receiver = 0;
    std::uint64_t unknown_sender = 0;  ///< authenticated, but from an incarnation discovery has not reported
    std::uint64_t send_errors = 0;
    std::uint64_t gso_sends = 0;  ///< runs of datagrams handed to the kernel as one (UDP GSO)
    std::uint64_t gro_reads = 0;  ///< reads that held several datagrams (UDP GRO)
};

/// The answer to probe(): who is at that address and how far.
struct probe_result {
    std::string id, type;
    std::uint64_t incarnation = 0;
    std::chrono::nanoseconds rtt{};
};

}  // namespace meshmaster::mesh
