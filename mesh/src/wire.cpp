#include <meshmaster/mesh/wire.hpp>

#include <boost/endian/conversion.hpp>

#include <algorithm>
#include <cstring>

namespace meshmaster::mesh {
namespace {

constexpr std::byte magic0{0x4D};
constexpr std::byte magic1{0x31};

template <class T>
void put(std::byte* p, T v) noexcept {
    boost::endian::endian_store<T, sizeof(T), boost::endian::order::little>(reinterpret_cast<unsigned char*>(p), v);
}
template <class T>
T get(const std::byte* p) noexcept {
    return boost::endian::endian_load<T, sizeof(T), boost::endian::order::little>(reinterpret_cast<const unsigned char*>(p));
}

// Consumes fixed-size fields from a span; any read past the end sets `bad`.
struct cursor {
    std::span<const std::byte> s;
    bool bad = false;
    template <class T>
    T take() noexcept {
        if (s.size() < sizeof(T)) {
            bad = true;
            s = {};
            return T{};
        }
        T v = get<T>(s.data());
        s = s.subspan(sizeof(T));
        return v;
    }
    std::span<const std::byte> bytes(std::size_t n) noexcept {
        if (s.size() < n) {
            bad = true;
            s = {};
            return {};
        }
        auto v = s.first(n);
        s = s.subspan(n);
        return v;
    }
};

}  // namespace

std::string_view to_string(drop_reason r) noexcept {
    switch (r) {
        case drop_reason::truncated: return "truncated";
        case drop_reason::bad_magic: return "bad_magic";
        case drop_reason::bad_frame: return "bad_frame";
        case drop_reason::bad_tag: return "bad_tag";
        case drop_reason::replayed: return "replayed";
        case drop_reason::wrong_receiver: return "wrong_receiver";
    }
    return "unknown";
}

std::uint64_t widen(std::uint32_t wire, std::uint64_t reference) noexcept {
    // The candidate with the same low 32 bits closest to the reference (QUIC's packet number
    // decoding, with a symmetric window of 2^31 on each side).
    const std::uint64_t base = reference & ~std::uint64_t{0xFFFF'FFFF};
    const std::uint64_t candidate = base | wire;
    constexpr std::uint64_t span = std::uint64_t{1} << 32;
    constexpr std::uint64_t half = span / 2;
    if (candidate + half <= reference && candidate <= UINT64_MAX - span) return candidate + span;
    if (candidate > reference + half && candidate >= span) return candidate - span;
    return candidate;
}

packet_writer::packet_writer(std::span<std::byte> buffer, const packet_header& h)
    : buf_(buffer), used_(header_size), keyed_(h.keyed) {
    limit_ = buf_.size() - (keyed_ ? tag_size : 0);
    std::byte* p = buf_.data();
    p[0] = magic0;
    p[1] = magic1;
    p[2] = std::byte{keyed_ ? flag_keyed : std::uint8_t{0}};
    p[3] = std::byte{0};
    put<std::uint64_t>(p + 4, h.sender);
    put<std::uint64_t>(p + 12, h.receiver);
    put<std::uint64_t>(p + 20, h.number);
}

std::size_t packet_writer::room() const noexcept { return limit_ > used_ ? limit_ - used_ : 0; }

bool packet_writer::ack(std::uint64_t cumulative, std::uint32_t window, std::span<const sack_range> ranges) {
    if (ranges.size() > max_sack_ranges || room() < ack_frame_size(ranges.size())) return false;
    std::byte* p = buf_.data() + used_;
    p[0] = std::byte{static_cast<std::uint8_t>(frame_type::ack)};
    put<std::uint32_t>(p + 1, static_cast<std::uint32_t>(cumulative));
    put<std::uint32_t>(p + 5, window);
    p[9] = std::byte{static_cast<std::uint8_t>(ranges.size())};
    p += 10;
    for (const auto& r : ranges) {
        put<std::uint32_t>(p, static_cast<std::uint32_t>(r.first));
        put<std::uint16_t>(p + 4, static_cast<std::uint16_t>(r.count));
        p += 6;
    }
    used_ += ack_frame_size(ranges.size());
    ++frames_;
    return true;
}

bool packet_writer::data(const data_frame& f) {
    const std::size_t need = data_frame_overhead(f.first) + f.bytes.size();
    if (f.bytes.size() > 0xFFFF || room() < need) return false;
    std::byte* p = buf_.data() + used_;
    p[0] = std::byte{static_cast<std::uint8_t>(frame_type::data)};
    p[1] = std::byte{static_cast<std::uint8_t>((f.first ? 1 : 0) | (f.last ? 2 : 0))};
    put<std::uint32_t>(p + 2, static_cast<std::uint32_t>(f.sequence));
    p += 6;
    if (f.first) {
        put<std::uint32_t>(p, f.message_size);
        p += 4;
    }
    put<std::uint16_t>(p, static_cast<std::uint16_t>(f.bytes.size()));
    if (!f.bytes.empty()) std::memcpy(p + 2, f.bytes.data(), f.bytes.size());
    used_ += need;
    ++frames_;
    return true;
}

bool packet_writer::udata(std::span<const std::byte> bytes) {
    const std::size_t need = udata_frame_overhead + bytes.size();
    if (bytes.size() > 0xFFFF || room() < need) return false;
    std::byte* p = buf_.data() + used_;
    p[0] = std::byte{static_cast<std::uint8_t>(frame_type::udata)};
    put<std::uint16_t>(p + 1, static_cast<std::uint16_t>(bytes.size()));
    if (!bytes.empty()) std::memcpy(p + 3, bytes.data(), bytes.size());
    used_ += need;
    ++frames_;
    return true;
}

bool packet_writer::probe(frame_type type, std::uint64_t token, std::string_view id, std::string_view node_type) {
    const std::size_t need = 1 + 8 + 1 + id.size() + 1 + node_type.size();
    if (id.size() > 255 || node_type.size() > 255 || room() < need) return false;
    std::byte* p = buf_.data() + used_;
    p[0] = std::byte{static_cast<std::uint8_t>(type)};
    put<std::uint64_t>(p + 1, token);
    p[9] = std::byte{static_cast<std::uint8_t>(id.size())};
    std::memcpy(p + 10, id.data(), id.size());
    p[10 + id.size()] = std::byte{static_cast<std::uint8_t>(node_type.size())};
    std::memcpy(p + 11 + id.size(), node_type.data(), node_type.size());
    used_ += need;
    ++frames_;
    return true;
}

bool packet_writer::bye(std::uint8_t reason) {
    if (room() < 2) return false;
    std::byte* p = buf_.data() + used_;
    p[0] = std::byte{static_cast<std::uint8_t>(frame_type::bye)};
    p[1] = std::byte{reason};
    used_ += 2;
    ++frames_;
    return true;
}

void packet_writer::pad() noexcept {
    if (used_ < limit_) std::memset(buf_.data() + used_, 0, limit_ - used_);
    used_ = std::max(used_, limit_);
}

std::span<std::byte> packet_writer::finish() noexcept { return buf_.first(used_ + (keyed_ ? tag_size : 0)); }

std::optional<packet_header> read_header(std::span<const std::byte> d, drop_reason& why) noexcept {
    if (d.size() < header_size) {
        why = drop_reason::truncated;
        return std::nullopt;
    }
    if (d[0] != magic0 || d[1] != magic1 || (static_cast<std::uint8_t>(d[2]) & ~flag_keyed) != 0 || d[3] != std::byte{0}) {
        why = drop_reason::bad_magic;
        return std::nullopt;
    }
    packet_header h;
    h.keyed = (static_cast<std::uint8_t>(d[2]) & flag_keyed) != 0;
    if (h.keyed && d.size() < header_size + tag_size) {
        why = drop_reason::truncated;
        return std::nullopt;
    }
    h.sender = get<std::uint64_t>(d.data() + 4);
    h.receiver = get<std::uint64_t>(d.data() + 12);
    h.number = get<std::uint64_t>(d.data() + 20);
    if (h.sender == 0 || h.number == 0) {
        why = drop_reason::bad_magic;
        return std::nullopt;
    }
    return h;
}

frame_reader::frame_reader(std::span<const std::byte> datagram) noexcept {
    const bool keyed = (static_cast<std::uint8_t>(datagram[2]) & flag_keyed) != 0;
    rest_ = datagram.subspan(header_size, datagram.size() - header_size - (keyed ? tag_size : 0));
}

bool frame_reader::next(frame& out, std::uint64_t data_reference, std::uint64_t ack_reference) {
    if (error_ || rest_.empty()) return false;
    cursor c{rest_};
    const auto type = c.take<std::uint8_t>();
    out.type = static_cast<frame_type>(type);
    switch (out.type) {
        case frame_type::padding:
            // The rest is zeros, or the datagram is malformed.
            if (std::any_of(rest_.begin(), rest_.end(), [](std::byte b) { return b != std::byte{0}; })) {
                error_ = true;
            }
            rest_ = {};
            return false;
        case frame_type::ack: {
            out.ack.cumulative = widen(c.take<std::uint32_t>(), ack_reference);
            out.ack.window = c.take<std::uint32_t>();
            const auto n = c.take<std::uint8_t>();
            out.ack.ranges.clear();
            for (std::uint8_t i = 0; i < n && !c.bad; ++i) {
                const auto first = c.take<std::uint32_t>();
                const auto count = c.take<std::uint16_t>();
                if (count == 0) c.bad = true;
                out.ack.ranges.push_back({widen(first, out.ack.cumulative), count});
            }
            break;
        }
        case frame_type::data: {
            const auto flags = c.take<std::uint8_t>();
            if ((flags & ~3u) != 0) c.bad = true;
            out.data.first = (flags & 1) != 0;
            out.data.last = (flags & 2) != 0;
            out.data.sequence = widen(c.take<std::uint32_t>(), data_reference);
            out.data.message_size = out.data.first ? c.take<std::uint32_t>() : 0;
            const auto n = c.take<std::uint16_t>();
            out.data.bytes = c.bytes(n);
            // A segment carries bytes unless it is the whole of an empty message.
            if (n == 0 && !(out.data.first && out.data.last)) c.bad = true;
            if (out.data.first && out.data.last && out.data.message_size != n) c.bad = true;
            if (out.data.first && out.data.message_size < n) c.bad = true;
            break;
        }
        case frame_type::udata: out.bytes = c.bytes(c.take<std::uint16_t>()); break;
        case frame_type::probe:
        case frame_type::visit:
        case frame_type::reply: {
            out.token = c.take<std::uint64_t>();
            auto id = c.bytes(c.take<std::uint8_t>());
            out.id = {reinterpret_cast<const char*>(id.data()), id.size()};
            auto type = c.bytes(c.take<std::uint8_t>());
            out.node_type = {reinterpret_cast<const char*>(type.data()), type.size()};
            break;
        }
        case frame_type::bye: out.reason = c.take<std::uint8_t>(); break;
        default: c.bad = true;
    }
    if (c.bad) {
        error_ = true;
        rest_ = {};
        return false;
    }
    rest_ = c.s;
    return true;
}

}  // namespace meshmaster::mesh
