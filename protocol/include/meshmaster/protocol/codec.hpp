// Encoding messages to frames and decoding frames to messages.
//
// Encoding appends whole frames (header + msgpack body) to a byte vector the caller owns and reuses,
// so steady-state encoding allocates nothing once the vector has grown. Fields go out in the order
// the message declares them, integers in their shortest msgpack form: the same message always
// encodes to the same bytes (the test vectors in docs/protocol.md rely on that).
//
// Decoding never throws and never crashes on any input: it returns a `protocol::error` naming what
// was wrong (result.hpp states the one error convention of the protocol library). It does not allocate, except for the lists and maps of slave_hello and the mesh events
// (never more than a small multiple of the body size, whatever counts the body claims). bin and str fields of
// the result are views into the frame (see messages.hpp for the lifetime rule).
//
// Thread safety: free functions without shared state; safe from any thread.
#pragma once

#include <meshmaster/protocol/bytes.hpp>
#include <meshmaster/protocol/frame.hpp>
#include <meshmaster/protocol/messages.hpp>
#include <meshmaster/protocol/result.hpp>

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace meshmaster::protocol {

/// Appends `m` as one frame to `out`. Fails with `frame_too_large` (leaving `out` as it was) if the
/// body would exceed `max_body_size`; send large states as state_chunk frames instead.
template <class Message>
result<void> encode(const Message& m, std::vector<std::byte>& out,
                    std::size_t max_body_size = default_max_body_size);

/// Frames whose large bin fields (shard states) were not copied in: `bytes` holds every other byte,
/// and each piece says which bytes go before `bytes[at]` (`at` may be bytes.size(): at the end). A
/// writer sends bytes[0, at₁), piece₁, bytes[at₁, at₂), piece₂, … in one gathered write (writev);
/// the bytes on the wire are exactly those `encode` into one vector would have produced. The pieces
/// view memory the caller keeps alive until the frames are written.
struct gathered_frames {
    struct piece {
        std::size_t at = 0;
        bytes_view data;
    };
    std::vector<std::byte> bytes;
    std::vector<piece> pieces;

    [[nodiscard]] bool empty() const noexcept { return bytes.empty() && pieces.empty(); }
    /// The bytes on the wire.
    [[nodiscard]] std::size_t size() const noexcept;
    /// The wire bytes in order, as views of `bytes` and of the pieces (no empty span).
    [[nodiscard]] std::vector<std::span<const std::byte>> spans() const;
    /// The wire bytes as one vector: a copy of every piece, for tests and tools.
    [[nodiscard]] std::vector<std::byte> flatten() const;
    void clear() noexcept {
        bytes.clear();
        pieces.clear();
    }
};

/// Appends `m` as one frame to `out`, like encode() into a vector, except that the bytes of the bin
/// field viewing exactly `external` are not copied: a piece of `out` views them. `external` empty:
/// every byte is copied. On failure `out` is left as it was.
template <class Message>
result<void> encode_gathered(const Message& m, bytes_view external, gathered_frames& out,
                             std::size_t max_body_size = default_max_body_size);

/// Appends any message (including an application_frame) as one frame to `out`.
result<void> encode(const message& m, std::vector<std::byte>& out,
                    std::size_t max_body_size = default_max_body_size);

/// Decodes the body of a frame known to carry `Message`.
template <class Message>
result<Message> decode_body(bytes_view body);

/// Decodes a whole frame: dispatches on its event id. Unknown control ids are `unknown_event`;
/// ids in the application range come back as an application_frame, body untouched.
result<message> decode(const frame_view& frame);

/// The msgpack-encoded size of a bin field holding `n` bytes (its header plus `n`), for senders
/// that split a state into frames of a bounded size.
[[nodiscard]] constexpr std::size_t bin_encoded_size(std::size_t n) noexcept {
    return n + (n <= 0xff ? 2 : n <= 0xffff ? 3 : 5);
}

}  // namespace meshmaster::protocol
