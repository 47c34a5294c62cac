// Hex helpers for tests: bytes ↔ the spaced hex used in docs/protocol.md.
#pragma once

#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace meshmaster::protocol::test {

/// Parses hex digits, ignoring whitespace; nothing on an odd digit count or a non-hex character.
std::optional<std::vector<std::byte>> parse_hex(std::string_view text);

/// A frame as docs/protocol.md prints it: the 8 header bytes on one line, then the body in rows
/// of 16 bytes.
std::string format_frame_hex(std::span<const std::byte> frame);

inline std::vector<std::byte> to_bytes(std::string_view text) {
    const auto* p = reinterpret_cast<const std::byte*>(text.data());
    return {p, p + text.size()};
}

}  // namespace meshmaster::protocol::test
