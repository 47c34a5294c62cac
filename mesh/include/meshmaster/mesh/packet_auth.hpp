// Per-packet authentication for the mesh: a cluster secret keys an AES-128-GCM tag over each
// datagram (header and frames, sent in the clear), and a sliding window refuses replays.
//
// Nonce uniqueness is what GCM's security rests on, and every node shares the cluster secret, so
// each sender gets a key of its own: HMAC-SHA256(secret, "meshmaster mesh v1" || sender
// incarnation)[0..16), and the nonce is the sender's packet number (strictly increasing). Two
// nodes reuse a nonce under one key only if they draw the same 64-bit incarnation.
//
// The receiver incarnation is part of the authenticated header, so a packet captured on its way
// to one node is refused by every other, and by a later run of the same node.
//
// Thread safety: a packet_auth is used by one thread (the node's).
#pragma once

#include <meshmaster/mesh/wire.hpp>

#include <bitset>
#include <cstdint>
#include <memory>
#include <string>
#include <span>
#include <string_view>
#include <unordered_map>

namespace meshmaster::mesh {

/// Accepts each packet number once, within the last `size` numbers of the highest seen.
class replay_window {
public:
    static constexpr std::uint64_t size = 4096;
    /// True (and remembered) if `number` was not seen and is not too old.
    bool accept(std::uint64_t number) noexcept;
    [[nodiscard]] std::uint64_t highest() const noexcept { return highest_; }

private:
    std::uint64_t highest_ = 0;
    std::bitset<size> seen_;  // bit (n % size) for n in (highest - size, highest]
};

/// The mesh key of a fleet, derived from the secret its master and slaves share: what the master
/// hands its slaves for embedded discovery, and what the CLI uses with -c <config>. Hex, 64 chars.
[[nodiscard]] std::string mesh_key_from_fleet_secret(std::string_view fleet_secret);

class packet_auth {
public:
    /// `secret` of at least 16 bytes; throws std::invalid_argument otherwise.
    explicit packet_auth(std::string_view secret);
    ~packet_auth();
    packet_auth(const packet_auth&) = delete;
    packet_auth& operator=(const packet_auth&) = delete;

    /// Fills the tag at the end of a datagram built by a keyed packet_writer (`self` is the sender).
    void seal(std::span<std::byte> datagram, std::uint64_t self);
    /// Whether the tag verifies. Does not touch the replay window: call accept() after the frames
    /// have been found well-formed, so forged or broken packets never move it.
    [[nodiscard]] bool verify(std::span<const std::byte> datagram, const packet_header& h);

private:
    struct sender_key;
    sender_key& key_for(std::uint64_t incarnation);

    std::string secret_;
    std::unordered_map<std::uint64_t, std::unique_ptr<sender_key>> keys_;  // bounded: see key_for
};

}  // namespace meshmaster::mesh
