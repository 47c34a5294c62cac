// The frame: `u32 LE event id · u32 LE body length · body`.
//
// The header is fixed at 8 bytes. The body is one msgpack value (a map with string keys for
// control events; opaque bytes for application events). Its length is checked against a maximum
// before any memory is reserved for it.
#pragma once

#include <boost/endian/conversion.hpp>

#include <cstddef>
#include <cstdint>
#include <span>

namespace meshmaster::protocol {

inline constexpr std::size_t frame_header_size = 8;
/// The default largest body a peer accepts: 16 MiB. Larger states travel as state_chunk frames.
inline constexpr std::size_t default_max_body_size = std::size_t{16} << 20;

struct frame_header {
    std::uint32_t event = 0;
    std::uint32_t body_size = 0;
};

/// Reads a header from the first `frame_header_size` bytes at `p`.
[[nodiscard]] inline frame_header read_frame_header(const std::byte* p) noexcept {
    return {boost::endian::load_little_u32(reinterpret_cast<const unsigned char*>(p)),
            boost::endian::load_little_u32(reinterpret_cast<const unsigned char*>(p) + 4)};
}

/// Writes `h` into the `frame_header_size` bytes at `p`.
inline void write_frame_header(std::byte* p, frame_header h) noexcept {
    boost::endian::store_little_u32(reinterpret_cast<unsigned char*>(p), h.event);
    boost::endian::store_little_u32(reinterpret_cast<unsigned char*>(p) + 4, h.body_size);
}

/// A whole frame as the decoder yields it. `body` points into the decoder's buffer: it stays valid
/// until the decoder is next asked for a frame or given bytes. Copy what must live longer.
struct frame_view {
    std::uint32_t event = 0;
    std::span<const std::byte> body;
};

}  // namespace meshmaster::protocol
