// The node's peer table, sans I/O: who is known (members from discovery, peers learned from
// their probes, visitors), at which address and incarnation, and the online/offline judgement
// made from what was heard and when. It also keeps peers discovery reported gone for a minute
// (the same incarnation may come back, and its channel must live on), and forgets learned peers
// and visitors that fell silent. Time comes in as values; membership events, log lines and
// "stop the requests to this incarnation" go out through an observer the driver implements.
//
// Thread safety: none; a table and its peers are used on the node's executor only.
#pragma once

#include "rpc.hpp"

#include <meshmaster/mesh/channel.hpp>
#include <meshmaster/mesh/discovery.hpp>
#include <meshmaster/mesh/node_types.hpp>
#include <meshmaster/mesh/packet_auth.hpp>

#include <sys/socket.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace meshmaster::mesh {

/// A peer's socket address as the kernel takes it (sockaddr_in or sockaddr_in6).
struct peer_address {
    sockaddr_storage raw{};
    socklen_t size = 0;
    /// 127.0.0.0/8 or ::1: a peer on this host.
    [[nodiscard]] bool loopback() const noexcept;
    friend bool operator==(const peer_address& a, const peer_address& b) noexcept;
};

/// One peer: its record, address, channel and what the driver and the judgement need.
struct peer {
    peer_record rec;
    peer_address address;
    std::unique_ptr<channel> ch;
    replay_window replay;
    std::deque<bytes> udata;  // unreliable messages waiting for the next datagram
    bool online = true;       // discovery says it exists; silence past offline_after says not
    bool draining = false;    // it announced it goes offline
    bool learned = false;     // from a probe, not from discovery: forgotten once long silent
    bool visitor = false;     // learned while learn_from_probes is off, or from a visit: talks, but is no member
    bool visiting = false;    // we are its visitor (probe_mode::visit): our probes say so too
    std::size_t datagram = 1400;  // the datagram size used with this peer
    mono_time last_heard{};
    mono_time last_probe{};
    mono_time since{};  // when discovery (or a probe) made it a peer
    bool probe_due = false;
    std::optional<std::uint8_t> bye;  // to send in the next datagram
    std::uint64_t packets_in = 0, packets_out = 0, bytes_in = 0, bytes_out = 0;
    rpc::answer_cache answered;  // requests from it answered (or being answered): retries run once
};

struct peer_table_config {
    std::string self_id;
    bool learn_from_probes = true;
    channel_config channel{};           // `keyed` already set from the node's key
    std::size_t loopback_datagram = 0;  // 0: channel.max_datagram for loopback peers too
    std::chrono::milliseconds keepalive{250};
    std::chrono::milliseconds offline_after{2000};
};

class peer_table {
public:
    /// What the table tells its driver.
    class observer {
    public:
        virtual ~observer() = default;
        virtual void log(std::string_view level, std::string_view message) = 0;
        virtual void membership(membership_event::kind what, const std::string& id) = 0;
        /// That incarnation of the peer will answer nothing more: its requests are stopped.
        virtual void stop_requests(const std::string& id, std::uint64_t incarnation, const std::string& why) = 0;
        /// Peers came, went, changed state or were acknowledged: waiters re-check what they wait for.
        virtual void changed() = 0;
    };
    /// `resolve` turns a record's host and port into an address (the driver's parser, which logs).
    using resolver = std::function<peer_address(const peer_record&)>;

    peer_table(peer_table_config config, observer& obs, resolver resolve);

    [[nodiscard]] peer* find(std::string_view id);
    [[nodiscard]] const peer* find(std::string_view id) const;
    [[nodiscard]] peer* by_incarnation(std::uint64_t incarnation);
    /// Grows whenever a peer is removed or replaced: a peer* held across a call may be stale.
    [[nodiscard]] std::uint64_t changes() const noexcept { return changes_; }
    [[nodiscard]] const std::map<std::string, std::unique_ptr<peer>, std::less<>>& all() const noexcept { return peers_; }

    /// A peer reported by discovery (from_probe false) or by its own probe. One found by probing
    /// (static discovery) that has been silent for long is forgotten. A node that only visits
    /// (`visiting`: its probe says so), or any prober while learn_from_probes is off, is a
    /// visitor: it may talk to this node, but is no member — not in members(), no membership
    /// events — and it is forgotten when it says goodbye or falls silent.
    void add(const peer_record& rec, bool from_probe, bool visiting, mono_time now);
    /// Discovery reports the peer gone; kept a minute in case the same incarnation comes back.
    void remove(std::string_view id, mono_time now);
    /// A visitor leaves no trace: no events, no place among the departed.
    void forget_visitor(std::string_view id);

    /// An authenticated datagram from `p` came from `from` at `now`.
    void heard(peer& p, const peer_address& from, mono_time now);
    /// A bye frame from `p` (rpc::bye_draining or rpc::bye_gone).
    void on_bye(peer& p, std::uint8_t reason);
    /// The judgement at `now`: channel timers run, keepalive probes fall due, peers silent for
    /// offline_after go offline, long-silent learned peers and silent visitors are forgotten.
    void tick(mono_time now);
    /// The earliest time tick() has work: a channel deadline or a keepalive.
    [[nodiscard]] std::optional<mono_time> next_deadline() const;

    [[nodiscard]] std::vector<peer_record> members() const;
    [[nodiscard]] std::vector<peer_record> members_of_type(std::string_view type) const;
    [[nodiscard]] bool is_online(std::string_view id) const;
    /// No online peer has unacknowledged messages.
    [[nodiscard]] bool idle() const;
    [[nodiscard]] std::size_t departed() const noexcept { return departed_.size(); }

private:
    void set_online(peer& p, bool online);
    std::unique_ptr<peer> make_peer(const peer_record& rec, mono_time now) const;
    channel_config channel_config_for(const peer_address& a) const;

    peer_table_config config_;
    observer& obs_;
    resolver resolve_;
    std::map<std::string, std::unique_ptr<peer>, std::less<>> peers_;
    std::map<std::string, std::pair<std::unique_ptr<peer>, mono_time>, std::less<>> departed_;
    std::unordered_map<std::uint64_t, peer*> by_incarnation_;
    std::uint64_t changes_ = 0;
};

}  // namespace meshmaster::mesh
