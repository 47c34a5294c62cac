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
#include <vector>

namespace meshmaster::protocol {

/// Appends `m` as one frame to `out`. Fails with `frame_too_large` (leaving `out` as it was) if the
/// body would exceed `max_body_size`; send large states as state_chunk frames instead.
template <class Message>
result<void> encode(const Message& m, std::vector<std::byte>& out,
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
