// A mesh node: one UDP socket, the peers discovery reports, and on top of the reliability channel
// per peer: commands by 16-bit id, request/response with exactly one outcome, reliable and
// unreliable one-way sends, sends to many with a limit on deliveries in flight, node types and
// values, online/offline state with events, and a status list per peer.
//
//     boost::asio::io_context io;
//     mesh::node n(io.get_executor(), {.id = "a", .type = "bot", .port = 7400, .secret = key});
//     n.command(1, [](const mesh::incoming& in) { return mesh::reply::respond(in.payload); });  // echo
//     n.start();
//     n.peer_up({.id = "b", .host = "127.0.0.1", .port = 7401, .incarnation = b_incarnation});
//     auto out = co_await n.request("b", 1, bytes);  // response, error, timeout or stopped
//
// Authentication is on by default: every datagram carries an AES-128-GCM tag keyed from
// `secret`, with replay protection (packet_auth.hpp). Running without a key needs
// `insecure = true`, and start() logs that it does.
//
// Errors, one convention for the mesh library:
//  - A caller's mistake (options out of range, a secret too short, start() twice, update() before
//    start()) throws std::invalid_argument or std::logic_error, naming the option.
//  - What the environment refuses when the node or discovery starts (the port taken, no such
//    address) is returned as a boost::system::error_code: start() here, the callback's result in
//    redis_discovery.
//  - Every operation on the network ends in a value, never an exception: a request's outcome
//    (response, error, timeout, stopped), a send's send_result or bool, a count of deliveries.
//  - Bad datagrams from outside (a failed tag, a replay, garbage) are dropped and counted in the
//    node's counters (counters()), never thrown or logged one by one.
//
// Thread safety: a node and everything it calls back run on its executor (one thread: an
// io_context run by one thread, or a strand). Call it only from there. Handlers may complete
// later (async handlers are coroutines); they must not outlive the node. Destroying the node
// cancels everything pending (requests complete as `stopped`).
#pragma once

#include <meshmaster/mesh/channel.hpp>
#include <meshmaster/mesh/discovery.hpp>
#include <meshmaster/mesh/node_types.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/system/error_code.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace meshmaster::mesh {

struct node_options {
    std::string id;    ///< unique in the cluster; default: "<hostname>-<pid>"
    std::string type;  ///< nodes_by_type(); may change with set_type() before start()
    std::string bind = "127.0.0.1";
    std::uint16_t port = 0;       ///< 0: any free port
    std::uint16_t port_last = 0;  ///< > port: the first free one of port..port_last
    std::string secret;           ///< the cluster key, ≥ 16 bytes
    bool insecure = false;        ///< no key: datagrams unauthenticated (logged at start)
    channel_config channel{};     ///< datagram size, windows, RTO bounds (keyed follows secret)
    /// Datagram size towards peers on loopback addresses (same host: 64 KiB MTU, and the cost is
    /// per datagram); 0: channel.max_datagram for them too. Both ends must have room for it.
    std::size_t loopback_datagram = 65000;
    std::chrono::milliseconds request_timeout{1000};
    std::chrono::milliseconds keepalive{250};       ///< probe a peer heard nothing from for this long
    std::chrono::milliseconds offline_after{2000};  ///< then call it offline
    std::chrono::milliseconds drain_timeout{2000};  ///< go_offline() waits this long at most
    std::size_t socket_buffer = std::size_t{16} << 20;  ///< SO_RCVBUF / SO_SNDBUF asked for
    /// Busy polling: after the last datagram, keep reading the socket for this long (between the
    /// executor's other work) before sleeping in the reactor. A datagram that comes meanwhile is
    /// read without a wake-up, which costs more than the rest of a round trip when the peers run
    /// on other CPUs (or machines). Costs the CPU it spins while traffic flows; 0: never spins.
    std::chrono::microseconds busy_poll{0};
    /// UDP GSO (a run of datagrams to one peer handed to the kernel as one) and GRO (several read
    /// as one), where the kernel has them; datagrams in such a run are padded to one size. Off:
    /// one datagram per send and per read, as on kernels without them.
    bool udp_offload = true;
    /// An authenticated probe from a node discovery has not reported makes it a peer (how static
    /// discovery works: one side knowing the other's address is enough). Off (when discovery is
    /// the membership, as with meshmaster's embedded discovery), such a node is only a visitor:
    /// it can talk to this one, but is not in nodes() and raises no membership events. A probe
    /// that says it visits (probe_mode::visit: the CLI's `mesh nodes`) makes a visitor either way.
    bool learn_from_probes = true;
    /// Static discovery: "HOST:PORT" of nodes to find by probing, until they answer and again
    /// every offline_after (a restart shows as a new incarnation). Both sides become members.
    std::vector<std::string> static_peers;
    /// Tests only (fault injection): every n-th datagram this node sends is dropped before it
    /// reaches the socket, as a lossy network would; 0 (the default): none.
    std::size_t test_drop_every = 0;
    /// Log lines (level "info", "warn", "error"); default: none.
    std::function<void(std::string_view level, std::string_view message)> log;
};

using handler = std::function<reply(const incoming&)>;
using async_handler = std::function<boost::asio::awaitable<reply>(incoming)>;

class node final : public discovery_sink {
public:
    node(boost::asio::any_io_executor executor, node_options options);
    ~node() override;
    node(const node&) = delete;
    node& operator=(const node&) = delete;

    /// Binds the socket and starts receiving. Errors: no key without `insecure`, no free port.
    boost::system::error_code start();
    [[nodiscard]] std::uint16_t port() const noexcept;
    /// This node's record, for discovery to publish.
    [[nodiscard]] const peer_record& self() const noexcept;

    void set_type(std::string type);  ///< before start()
    void set_value(std::string key, std::string value);
    [[nodiscard]] std::optional<std::string> value(std::string_view node, std::string_view key) const;

    /// The command every node answers itself: its status list as JSON (what `meshmaster mesh
    /// nodes HOST:PORT` shows). Only peers holding the key can ask. Applications cannot take it.
    static constexpr std::uint16_t status_command = 0xFFFF;
    /// The status list as that JSON text: {"self": {...}, "peers": [{...}, ...], "visitors": N,
    /// "dropped": {...}}. `peers` holds the members only; visitors (the tool asking) are counted.
    [[nodiscard]] std::string status_json() const;

    /// Registers the handler of a command id (replacing any earlier one); not status_command.
    void command(std::uint16_t id, handler h);
    void command(std::uint16_t id, async_handler h);

    /// Exactly one outcome: the response, the handler's error, a timeout (on time, also when the
    /// peer is unreachable) or stopped (the peer is going offline, or unknown). `retries`: sent
    /// again after each timeout, the handler runs at most once per request all the same.
    boost::asio::awaitable<outcome> request(std::string node, std::uint16_t command, bytes payload,
                                            std::optional<std::chrono::milliseconds> timeout = std::nullopt,
                                            unsigned retries = 0);
    /// Reliable one-way: delivered exactly once and in order unless the peer goes away. Completes
    /// once queued; waits while the peer's queue is full. False: unknown or offline peer.
    boost::asio::awaitable<bool> send(std::string node, std::uint16_t command, bytes payload);
    /// send() without waiting, and without a copy of the payload on the way (it is copied once,
    /// into the peer's queue): the path for streams of small messages. `full`: the peer's queue
    /// holds send_buffer bytes already (co_await send() waits for room); `no_peer`: unknown,
    /// offline or going offline, or this node is closed; `too_large`: past max_message_size.
    enum class send_result : std::uint8_t { queued, full, no_peer, too_large };
    send_result try_send(std::string_view node, std::uint16_t command, std::span<const std::byte> payload);
    /// Unreliable one-way, at most one datagram. False: unknown peer or too large.
    bool usend(std::string_view node, std::uint16_t command, std::span<const std::byte> payload);
    /// Reliable to many, at most `limit` unacknowledged deliveries at once; completes when every
    /// delivery is acknowledged or its peer gone. Returns how many were acknowledged.
    boost::asio::awaitable<std::size_t> send_many(std::vector<std::string> nodes, std::uint16_t command, bytes payload,
                                                  std::size_t limit);
    /// Unreliable to many, `limit` datagrams at a time (the socket drains in between).
    boost::asio::awaitable<std::size_t> usend_many(std::vector<std::string> nodes, std::uint16_t command, bytes payload,
                                                   std::size_t limit);

    [[nodiscard]] std::vector<peer_record> nodes() const;
    [[nodiscard]] std::vector<peer_record> nodes_by_type(std::string_view type) const;
    [[nodiscard]] bool is_online(std::string_view node) const;
    [[nodiscard]] bool is_self_online() const noexcept;
    void on_membership(std::function<void(const membership_event&)> f);
    [[nodiscard]] std::vector<peer_status> status() const;
    [[nodiscard]] const node_counters& counters() const noexcept;

    /// Announces this node offline, answers new requests with `stopped`, drains what is in flight
    /// (handlers running, messages unacknowledged; at most drain_timeout), says goodbye, closes.
    boost::asio::awaitable<void> go_offline();

    /// How a probe introduces this node. `anonymous`: a ping; the other side only answers.
    /// `join`: it names this node, so that the other side adds it as a peer, and this node adds
    /// the answerer in turn (static discovery; a member unless learn_from_probes is off). `visit`:
    /// it names this node as a visitor — both sides may talk (requests, the status command), but
    /// neither becomes the other's member, and the other side forgets this node when it says
    /// goodbye (go_offline) or falls silent for offline_after. What tools use.
    enum class probe_mode : std::uint8_t { anonymous, join, visit };
    /// Asks whoever listens at host:port who it is (works before discovery knows it).
    boost::asio::awaitable<std::optional<probe_result>> probe(std::string host, std::uint16_t port,
                                                              std::chrono::milliseconds timeout,
                                                              probe_mode mode = probe_mode::anonymous);

    // discovery_sink: discovery backends report peers here.
    void peer_up(const peer_record& peer) override;
    void peer_down(std::string_view id) override;

    struct impl;

private:
    std::unique_ptr<impl> impl_;
};

}  // namespace meshmaster::mesh
