// A pull reader for msgpack: reads one value at a time from a byte span, in place.
//
// Why not msgpack-c's unpacker: its parser and object visitor each reserve a heap stack on every
// call and report failures by exception, while frames must decode with no allocation and no throw,
// into views of the frame buffer. msgpack-c still encodes (codec.cpp), and the fuzzer cross-checks
// this reader against msgpack-c on every input it generates.
//
// Every read either succeeds and advances, or fails and leaves the position where it was.
// Failures: `truncated` (the value runs past the end), `wrong_type` (another msgpack type is
// next), `out_of_range` (an integer that does not fit), `bad_body` (the reserved byte 0xc1, or a
// str that is not UTF-8).
#pragma once

#include <meshmaster/protocol/bytes.hpp>
#include <meshmaster/protocol/error.hpp>

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace meshmaster::protocol::detail {

class msgpack_reader {
public:
    explicit msgpack_reader(bytes_view input) noexcept
        : pos_(input.data()), end_(input.data() + input.size()) {}

    [[nodiscard]] bool at_end() const noexcept { return pos_ == end_; }
    [[nodiscard]] std::size_t remaining() const noexcept { return static_cast<std::size_t>(end_ - pos_); }

    [[nodiscard]] bool next_is_nil() const noexcept;
    errc read_nil() noexcept;
    errc read_bool(bool& out) noexcept;
    /// Any integer encoding whose value is >= 0 (senders differ in which encoding they pick).
    errc read_uint(std::uint64_t& out) noexcept;
    errc read_str(std::string_view& out) noexcept;
    errc read_bin(bytes_view& out) noexcept;
    errc read_array_header(std::uint32_t& count) noexcept;
    errc read_map_header(std::uint32_t& count) noexcept;
    /// Skips one whole value of any type, however deeply nested, without recursion.
    errc skip() noexcept;

private:
    // Reads a big-endian unsigned integer of `width` bytes at pos_ + offset, if present.
    [[nodiscard]] bool load_be(std::size_t offset, std::size_t width, std::uint64_t& out) const noexcept;
    // Reads the container/str/bin length that follows a marker with a `width`-byte length field.
    errc read_length(std::size_t width, std::uint64_t& length, std::size_t& header) const noexcept;
    // Arrays and maps: a fix form (16 ids from `fix_first`), a 16-bit and a 32-bit count form.
    errc read_container_header(std::uint8_t fix_first, std::uint8_t marker16, std::uint8_t marker32,
                               std::uint32_t& count) noexcept;

    const std::byte* pos_;
    const std::byte* end_;
};

/// Whether `text` is well-formed UTF-8 (no overlongs, no surrogates, nothing above U+10FFFF).
[[nodiscard]] bool is_valid_utf8(std::string_view text) noexcept;

}  // namespace meshmaster::protocol::detail
