// `bytes_view`: a read-only view of bytes whose `==` compares contents.
//
// Message fields of msgpack type `bin` (shard state, nonces, MACs) are bytes_views. After decoding
// they point into the frame buffer, so a 64 KiB state is never copied by the codec; a handler that
// keeps the bytes past the frame's lifetime copies them itself.
#pragma once

#include <algorithm>
#include <cstddef>
#include <span>
#include <string_view>

namespace meshmaster::protocol {

struct bytes_view : std::span<const std::byte> {
    using std::span<const std::byte>::span;
    constexpr bytes_view() noexcept = default;
    constexpr bytes_view(std::span<const std::byte> s) noexcept : std::span<const std::byte>(s) {}

    /// Views the characters of `s` as bytes (tests, literals, text states).
    static bytes_view of(std::string_view s) noexcept {
        return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
    }

    friend bool operator==(bytes_view a, bytes_view b) noexcept { return std::ranges::equal(a, b); }
};

}  // namespace meshmaster::protocol
