#include "msgpack_reader.hpp"

#include <limits>

namespace meshmaster::protocol::detail {

namespace {

constexpr std::uint8_t u8(std::byte b) noexcept { return static_cast<std::uint8_t>(b); }

// Marker bytes of the msgpack specification.
enum marker : std::uint8_t {
    nil = 0xc0, never_used = 0xc1, false_ = 0xc2, true_ = 0xc3,
    bin8 = 0xc4, bin16 = 0xc5, bin32 = 0xc6,
    ext8 = 0xc7, ext16 = 0xc8, ext32 = 0xc9,
    float32 = 0xca, float64 = 0xcb,
    uint8 = 0xcc, uint16 = 0xcd, uint32 = 0xce, uint64 = 0xcf,
    int8 = 0xd0, int16 = 0xd1, int32 = 0xd2, int64 = 0xd3,
    fixext1 = 0xd4, fixext2 = 0xd5, fixext4 = 0xd6, fixext8 = 0xd7, fixext16 = 0xd8,
    str8 = 0xd9, str16 = 0xda, str32 = 0xdb,
    array16 = 0xdc, array32 = 0xdd,
    map16 = 0xde, map32 = 0xdf,
};

}  // namespace

bool msgpack_reader::load_be(std::size_t offset, std::size_t width, std::uint64_t& out) const noexcept {
    if (remaining() < offset + width) return false;
    std::uint64_t value = 0;
    for (std::size_t i = 0; i < width; ++i) value = (value << 8) | u8(pos_[offset + i]);
    out = value;
    return true;
}

errc msgpack_reader::read_length(std::size_t width, std::uint64_t& length, std::size_t& header) const noexcept {
    if (!load_be(1, width, length)) return errc::truncated;
    header = 1 + width;
    return errc::ok;
}

bool msgpack_reader::next_is_nil() const noexcept { return !at_end() && u8(*pos_) == nil; }

errc msgpack_reader::read_nil() noexcept {
    if (at_end()) return errc::truncated;
    if (u8(*pos_) != nil) return errc::wrong_type;
    ++pos_;
    return errc::ok;
}

errc msgpack_reader::read_bool(bool& out) noexcept {
    if (at_end()) return errc::truncated;
    const std::uint8_t m = u8(*pos_);
    if (m != false_ && m != true_) return m == never_used ? errc::bad_body : errc::wrong_type;
    out = m == true_;
    ++pos_;
    return errc::ok;
}

errc msgpack_reader::read_uint(std::uint64_t& out) noexcept {
    if (at_end()) return errc::truncated;
    const std::uint8_t m = u8(*pos_);
    if (m <= 0x7f) {
        out = m;
        ++pos_;
        return errc::ok;
    }
    if (m >= 0xe0) return errc::out_of_range;  // negative fixint
    std::size_t width = 0;
    bool is_signed = false;
    switch (m) {
        case uint8: width = 1; break;
        case uint16: width = 2; break;
        case uint32: width = 4; break;
        case uint64: width = 8; break;
        case int8: width = 1; is_signed = true; break;
        case int16: width = 2; is_signed = true; break;
        case int32: width = 4; is_signed = true; break;
        case int64: width = 8; is_signed = true; break;
        case never_used: return errc::bad_body;
        default: return errc::wrong_type;
    }
    std::uint64_t raw = 0;
    if (!load_be(1, width, raw)) return errc::truncated;
    // A signed encoding is fine as long as its value is not negative: test its sign bit.
    if (is_signed && (raw >> (width * 8 - 1)) != 0) return errc::out_of_range;
    out = raw;
    pos_ += 1 + width;
    return errc::ok;
}

errc msgpack_reader::read_str(std::string_view& out) noexcept {
    if (at_end()) return errc::truncated;
    const std::uint8_t m = u8(*pos_);
    std::uint64_t length = 0;
    std::size_t header = 1;
    if (m >= 0xa0 && m <= 0xbf) {
        length = m & 0x1fu;
    } else if (m == str8 || m == str16 || m == str32) {
        const errc e = read_length(m == str8 ? 1 : m == str16 ? 2 : 4, length, header);
        if (e != errc::ok) return e;
    } else {
        return m == never_used ? errc::bad_body : errc::wrong_type;
    }
    if (remaining() - header < length) return errc::truncated;
    const std::string_view text(reinterpret_cast<const char*>(pos_ + header), length);
    if (!is_valid_utf8(text)) return errc::bad_body;
    out = text;
    pos_ += header + length;
    return errc::ok;
}

errc msgpack_reader::read_bin(bytes_view& out) noexcept {
    if (at_end()) return errc::truncated;
    const std::uint8_t m = u8(*pos_);
    if (m != bin8 && m != bin16 && m != bin32) return m == never_used ? errc::bad_body : errc::wrong_type;
    std::uint64_t length = 0;
    std::size_t header = 1;
    const errc e = read_length(m == bin8 ? 1 : m == bin16 ? 2 : 4, length, header);
    if (e != errc::ok) return e;
    if (remaining() - header < length) return errc::truncated;
    out = bytes_view(pos_ + header, length);
    pos_ += header + length;
    return errc::ok;
}

errc msgpack_reader::read_container_header(std::uint8_t fix_first, std::uint8_t marker16,
                                            std::uint8_t marker32, std::uint32_t& count) noexcept {
    if (at_end()) return errc::truncated;
    const std::uint8_t m = u8(*pos_);
    std::uint64_t n = 0;
    std::size_t header = 1;
    if (m >= fix_first && m <= fix_first + 0x0f) {
        n = m & 0x0fu;
    } else if (m == marker16 || m == marker32) {
        const errc e = read_length(m == marker16 ? 2 : 4, n, header);
        if (e != errc::ok) return e;
    } else {
        return m == never_used ? errc::bad_body : errc::wrong_type;
    }
    count = static_cast<std::uint32_t>(n);
    pos_ += header;
    return errc::ok;
}

errc msgpack_reader::read_array_header(std::uint32_t& count) noexcept {
    return read_container_header(0x90, array16, array32, count);
}

errc msgpack_reader::read_map_header(std::uint32_t& count) noexcept {
    return read_container_header(0x80, map16, map32, count);
}

errc msgpack_reader::skip() noexcept {
    // Containers only add to the number of values still to skip, so no stack is needed. Every
    // value takes at least one byte: more pending values than bytes left means truncation, which
    // also keeps `pending` far from overflowing.
    const std::byte* const start = pos_;
    std::uint64_t pending = 1;
    while (pending != 0) {
        if (pending > remaining()) {
            pos_ = start;
            return errc::truncated;
        }
        const std::uint8_t m = u8(*pos_);
        std::uint64_t payload = 0;  // bytes after the header
        std::uint64_t children = 0;
        std::size_t header = 1;
        errc e = errc::ok;
        if (m <= 0x7f || m >= 0xe0 || m == nil || m == false_ || m == true_) {
            // single-byte value
        } else if (m >= 0x80 && m <= 0x8f) {
            children = 2u * (m & 0x0fu);
        } else if (m >= 0x90 && m <= 0x9f) {
            children = m & 0x0fu;
        } else if (m >= 0xa0 && m <= 0xbf) {
            payload = m & 0x1fu;
        } else {
            switch (m) {
                case bin8: case str8: e = read_length(1, payload, header); break;
                case bin16: case str16: e = read_length(2, payload, header); break;
                case bin32: case str32: e = read_length(4, payload, header); break;
                case ext8: e = read_length(1, payload, header); ++payload; break;   // + type byte
                case ext16: e = read_length(2, payload, header); ++payload; break;
                case ext32: e = read_length(4, payload, header); ++payload; break;
                case float32: case uint32: case int32: payload = 4; break;
                case float64: case uint64: case int64: payload = 8; break;
                case uint8: case int8: payload = 1; break;
                case uint16: case int16: payload = 2; break;
                case fixext1: payload = 2; break;
                case fixext2: payload = 3; break;
                case fixext4: payload = 5; break;
                case fixext8: payload = 9; break;
                case fixext16: payload = 17; break;
                case array16: e = read_length(2, children, header); break;
                case array32: e = read_length(4, children, header); break;
                case map16: e = read_length(2, children, header); children *= 2; break;
                case map32: e = read_length(4, children, header); children *= 2; break;
                default: e = errc::bad_body; break;  // 0xc1
            }
        }
        if (e == errc::ok && remaining() - header < payload) e = errc::truncated;
        if (e != errc::ok) {
            pos_ = start;
            return e;
        }
        pos_ += header + payload;
        pending = pending - 1 + children;
    }
    return errc::ok;
}

bool is_valid_utf8(std::string_view text) noexcept {
    const auto* p = reinterpret_cast<const unsigned char*>(text.data());
    const auto* const end = p + text.size();
    while (p != end) {
        const unsigned char c = *p;
        if (c < 0x80) {
            ++p;
            continue;
        }
        std::size_t extra = 0;
        std::uint32_t cp = 0;
        if (c >= 0xc2 && c <= 0xdf) { extra = 1; cp = c & 0x1fu; }
        else if (c >= 0xe0 && c <= 0xef) { extra = 2; cp = c & 0x0fu; }
        else if (c >= 0xf0 && c <= 0xf4) { extra = 3; cp = c & 0x07u; }
        else return false;  // continuation byte first, overlong lead (c0, c1), or beyond f4
        if (static_cast<std::size_t>(end - p) <= extra) return false;
        for (std::size_t i = 1; i <= extra; ++i) {
            if ((p[i] & 0xc0u) != 0x80u) return false;
            cp = (cp << 6) | (p[i] & 0x3fu);
        }
        if ((extra == 2 && cp < 0x800) || (extra == 3 && cp < 0x10000)) return false;  // overlong
        if ((cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff) return false;            // surrogate, too big
        p += extra + 1;
    }
    return true;
}

}  // namespace meshmaster::protocol::detail
