// The mesh's datagram format: one header, any number of frames, and an authentication tag.
// Pure: bytes in, structs out, no I/O. Everything is little-endian.
//
//   offset size
//   0      2   magic "M1" (0x4D 0x31): meshmaster mesh, format 1
//   2      1   flags: bit 0 set = a 16-byte tag ends the datagram (the cluster is keyed)
//   3      1   reserved, 0
//   4      8   sender incarnation: random per node start, never 0
//   12     8   receiver incarnation: 0 only for probes to a peer not known yet
//   20     8   packet number: per sender, strictly increasing (the replay window's counter and
//              the tag's nonce)
//   28     ... frames
//   end-16 16  tag (keyed only): AES-128-GCM over everything before it (see packet_auth.hpp)
//
// Frames, each starting with its type byte:
//   ack    0x01  u32 cumulative (next sequence expected), u32 window (sequences the receiver takes
//                beyond it), u8 n, n × (u32 first, u16 count) ranges received beyond the cumulative
//   data   0x02  u8 flags (bit 0 first, bit 1 last segment of a message), u32 sequence,
//                [u32 message size, first only], u16 length, bytes
//   udata  0x03  u16 length, bytes: an unreliable message (one datagram, no retransmission)
//   probe  0x04  u64 token, u8 n, n bytes of node id, u8 m, m bytes of node type: asks for a
//                reply (reachability, RTT, the peer's incarnation) and says who asks (an empty id:
//                an anonymous pinger, not a node)
//   reply  0x05  u64 token (the probe's), u8 n, n bytes of node id, u8 m, m bytes of node type
//   bye    0x06  u8 reason: the sender goes offline; its incarnation is over
//   visit  0x07  as probe, from a node that names itself as a visitor (a tool): answered like a
//                probe, and the sender may talk to the receiver, but is no member of its mesh
//   pad    0x00  zeros to the end of the frames: makes datagrams one size, as UDP GSO needs
//
// Sequence numbers travel as their low 32 bits; both ends widen them against a reference they
// share within a window far smaller than 2^31 (widen()).
//
// Thread safety: plain functions and values.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

namespace meshmaster::mesh {

inline constexpr std::size_t header_size = 28;
inline constexpr std::size_t tag_size = 16;
inline constexpr std::uint8_t flag_keyed = 0x01;

struct packet_header {
    bool keyed = false;
    std::uint64_t sender = 0;
    std::uint64_t receiver = 0;
    std::uint64_t number = 0;
};

struct sack_range {
    std::uint64_t first = 0;
    std::uint32_t count = 0;
    friend bool operator==(const sack_range&, const sack_range&) = default;
};

struct ack_frame {
    std::uint64_t cumulative = 0;  ///< every sequence below it was received
    std::uint32_t window = 0;      ///< the sender may send sequences < cumulative + window
    std::vector<sack_range> ranges;
};

struct data_frame {
    bool first = false;
    bool last = false;
    std::uint64_t sequence = 0;
    std::uint32_t message_size = 0;  ///< first segments only
    std::span<const std::byte> bytes;
};

enum class frame_type : std::uint8_t { padding = 0, ack = 1, data = 2, udata = 3, probe = 4, reply = 5, bye = 6, visit = 7 };

inline constexpr std::size_t max_sack_ranges = 255;
inline constexpr std::size_t ack_frame_size(std::size_t ranges) { return 1 + 4 + 4 + 1 + 6 * ranges; }
inline constexpr std::size_t data_frame_overhead(bool first) { return 1 + 1 + 4 + (first ? 4 : 0) + 2; }
inline constexpr std::size_t udata_frame_overhead = 1 + 2;

/// Why a datagram was dropped; each has a counter in the node's statistics.
enum class drop_reason : std::uint8_t {
    truncated,        ///< shorter than its header (and tag), or a frame runs past the end
    bad_magic,        ///< not a mesh datagram of this format
    bad_frame,        ///< an unknown frame type, a zero-length segment, an impossible size
    bad_tag,          ///< the tag does not verify (wrong key, tampered), or a tag is missing/extra
    replayed,         ///< a packet number seen before, or older than the replay window
    wrong_receiver,   ///< addressed to another incarnation (a previous run of this node)
};
std::string_view to_string(drop_reason r) noexcept;

/// Widens the low 32 bits `wire` to the 64-bit value nearest `reference`.
[[nodiscard]] std::uint64_t widen(std::uint32_t wire, std::uint64_t reference) noexcept;

/// Builds one datagram in a caller-owned buffer of the configured size.
class packet_writer {
public:
    packet_writer(std::span<std::byte> buffer, const packet_header& header);
    [[nodiscard]] std::size_t room() const noexcept;  ///< bytes left for frames (the tag kept aside)
    [[nodiscard]] bool empty() const noexcept { return used_ == header_size; }
    [[nodiscard]] std::size_t frames() const noexcept { return frames_; }

    /// Each returns false, writing nothing, when the frame does not fit.
    bool ack(std::uint64_t cumulative, std::uint32_t window, std::span<const sack_range> ranges);
    bool data(const data_frame& f);
    bool udata(std::span<const std::byte> bytes);
    /// probe, visit or reply; id and type ≤ 255 bytes each.
    bool probe(frame_type type, std::uint64_t token, std::string_view id, std::string_view node_type);
    bool bye(std::uint8_t reason);
    /// Fills the room left with padding (the datagram then has the buffer's full size).
    void pad() noexcept;

    /// The datagram so far, tag space included when keyed (the sealer fills it).
    [[nodiscard]] std::span<std::byte> finish() noexcept;

private:
    std::span<std::byte> buf_;
    std::size_t used_ = 0;
    std::size_t limit_ = 0;
    std::size_t frames_ = 0;
    bool keyed_ = false;
};

/// Reads a datagram's header; nullopt with `why` set if it is not one of ours.
[[nodiscard]] std::optional<packet_header> read_header(std::span<const std::byte> datagram, drop_reason& why) noexcept;

/// The frames of a datagram whose tag (if any) has been checked. Each call to next() yields one
/// frame; bytes point into the datagram. A malformed frame ends the iteration with error() set;
/// frames before it were valid (the caller drops the whole datagram: it was authenticated, so
/// this is a bug or an incompatible peer, not an attacker).
class frame_reader {
public:
    explicit frame_reader(std::span<const std::byte> datagram) noexcept;

    struct frame {
        frame_type type{};
        ack_frame ack;          ///< type ack
        data_frame data;        ///< type data
        std::span<const std::byte> bytes;  ///< type udata
        std::uint64_t token = 0;           ///< probe, visit, reply
        std::string_view id, node_type;    ///< probe, visit, reply: who asks, who answers
        std::uint8_t reason = 0;           ///< bye
    };
    /// False at the end (padding ends the frames too) or on a malformed frame. `reference`
    /// widens sequence numbers.
    bool next(frame& out, std::uint64_t data_reference, std::uint64_t ack_reference);
    [[nodiscard]] bool error() const noexcept { return error_; }

private:
    std::span<const std::byte> rest_;
    bool error_ = false;
};

}  // namespace meshmaster::mesh
