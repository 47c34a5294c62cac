// examples/bot: the state handed from one owner of a shard to the next — session, position,
// checksum, then padding whose bytes derive from the checksum, so the receiver can verify the
// whole blob arrived intact. Plain data; no I/O.
#pragma once

#include <boost/endian/conversion.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

namespace meshmaster::example_bot {

struct shard_state {
    std::uint64_t session = 0;
    std::uint64_t seq = 0;
    std::uint64_t checksum = 0;
    std::size_t padding = 0;

    std::vector<std::byte> encode() const {
        std::vector<std::byte> out(28 + padding);
        auto* p = reinterpret_cast<unsigned char*>(out.data());
        boost::endian::store_little_u64(p, session);
        boost::endian::store_little_u64(p + 8, seq);
        boost::endian::store_little_u64(p + 16, checksum);
        boost::endian::store_little_u32(p + 24, static_cast<std::uint32_t>(padding));
        for (std::size_t i = 0; i < padding; ++i) p[28 + i] = pad_byte(i);
        return out;
    }
    static std::optional<shard_state> decode(std::span<const std::byte> in) {
        if (in.size() < 28) return std::nullopt;
        const auto* p = reinterpret_cast<const unsigned char*>(in.data());
        shard_state s{.session = boost::endian::load_little_u64(p),
                      .seq = boost::endian::load_little_u64(p + 8),
                      .checksum = boost::endian::load_little_u64(p + 16),
                      .padding = boost::endian::load_little_u32(p + 24)};
        if (in.size() != 28 + s.padding) return std::nullopt;
        for (std::size_t i = 0; i < s.padding; ++i) {
            if (p[28 + i] != s.pad_byte(i)) return std::nullopt;
        }
        return s;
    }
    unsigned char pad_byte(std::size_t i) const { return static_cast<unsigned char>((checksum >> (8 * (i % 8))) ^ i); }
};

}  // namespace meshmaster::example_bot
