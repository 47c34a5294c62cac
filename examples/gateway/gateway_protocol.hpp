// The fake gateway's wire protocol: fixed 40-byte little-endian records over TCP, shared by the
// gateway and the example bot.
//
// One record, whichever direction it travels:
//
//   offset  size  field
//        0     1  type      (bot_op::* from a bot, gateway_op::* from the gateway)
//        1     3  reserved  (written as zero, ignored on receipt)
//        4     4  shard     u32 LE
//        8     8  a         u64 LE
//       16     8  b         u64 LE
//       24     8  c         u64 LE
//       32     8  d         u64 LE
//
// What a, b, c and d mean depends on the type (see the constants below). Records are always
// (de)serialized field by field, never by copying a struct, so padding and host byte order never
// reach the wire.
//
// Events carry a deterministic payload, `payload(shard, seq)`, so neither side has to store one: a
// bot folds every payload it processes into a running checksum with `fold`, hands that checksum
// over with the rest of its state when a shard moves, and reports it in its ACKs. The gateway
// recomputes the same fold and so proves that the state survived every handoff byte for byte.
//
// Dependency-free on purpose (standard headers and Boost.Endian only): the bot includes it too.
// Thread safety: pure functions and plain values.
#pragma once

#include <boost/endian/conversion.hpp>

#include <array>
#include <cstdint>
#include <cstring>
#include <string_view>

namespace meshmaster::gateway {

inline constexpr std::size_t record_size = 40;

/// Record types a bot sends.
namespace bot_op {
/// a,b,c,d = the bot's name (its slave id), up to 32 bytes, zero-padded. Once, first.
inline constexpr std::uint8_t hello = 1;
/// shard; a = epoch. Starts a new session; the gateway answers READY.
inline constexpr std::uint8_t identify = 2;
/// shard; a = session, b = last seq processed, c = epoch. Answered by RESUMED then the missed
/// events, or by INVALID_SESSION.
inline constexpr std::uint8_t resume = 3;
/// shard. Stop sending this shard here; the session stays resumable. Answered by DETACHED.
inline constexpr std::uint8_t detach = 4;
/// shard; a = first seq, b = last seq (inclusive, processed in order), c = checksum after b,
/// d = epoch.
inline constexpr std::uint8_t ack = 5;
}  // namespace bot_op

/// Record types the gateway sends.
namespace gateway_op {
/// shard; a = seq, b = payload(shard, seq), c = emit time (gateway steady clock, ns).
inline constexpr std::uint8_t event = 1;
/// shard; a = the new session id, b = the seq just before the session's first event (also the
/// committed position: nothing of the new session is committed yet).
inline constexpr std::uint8_t ready = 2;
/// shard; a = session, b = the seq the bot resumes after (its RESUME's b), c = the committed
/// position: the last seq whose ACK the gateway accepted, in order, in this session. A bot whose
/// state is behind it applies the replayed events up to it without acknowledging them again; a
/// bot whose state is ahead acknowledges c+1..b at once. Either way every event is committed once.
inline constexpr std::uint8_t resumed = 3;
/// shard; a = the session the bot asked to resume.
inline constexpr std::uint8_t invalid_session = 4;
/// shard; a = the last seq sent on this connection for the shard (0 if it was not attached here).
inline constexpr std::uint8_t detached = 5;
/// shard; a = the shard's current epoch. This connection no longer owns the shard: a newer epoch
/// took it over, or its IDENTIFY/RESUME carried an older epoch. Its ACKs for the shard are refused.
inline constexpr std::uint8_t fenced = 6;
}  // namespace gateway_op

struct record {
    std::uint8_t type = 0;
    std::uint32_t shard = 0;
    std::uint64_t a = 0;
    std::uint64_t b = 0;
    std::uint64_t c = 0;
    std::uint64_t d = 0;

    friend bool operator==(const record&, const record&) = default;
};

/// Writes `r` into the `record_size` bytes at `out`.
inline void write_record(const record& r, unsigned char* out) noexcept {
    out[0] = r.type;
    out[1] = out[2] = out[3] = 0;
    boost::endian::store_little_u32(out + 4, r.shard);
    boost::endian::store_little_u64(out + 8, r.a);
    boost::endian::store_little_u64(out + 16, r.b);
    boost::endian::store_little_u64(out + 24, r.c);
    boost::endian::store_little_u64(out + 32, r.d);
}

/// Reads a record from the `record_size` bytes at `in`. Never fails: every byte pattern is a
/// record; whether its type and fields make sense is the receiver's business.
[[nodiscard]] inline record read_record(const unsigned char* in) noexcept {
    return {.type = in[0],
            .shard = boost::endian::load_little_u32(in + 4),
            .a = boost::endian::load_little_u64(in + 8),
            .b = boost::endian::load_little_u64(in + 16),
            .c = boost::endian::load_little_u64(in + 24),
            .d = boost::endian::load_little_u64(in + 32)};
}

// --- HELLO names --------------------------------------------------------------------------------

/// The longest name a HELLO carries. The name's bytes sit in order at record offsets 8..39 (that is,
/// a holds bytes 0..7 as a little-endian u64, and so on), zero-padded.
inline constexpr std::size_t max_name_size = 32;

/// A HELLO carrying `name`; bytes past `max_name_size` are cut off.
[[nodiscard]] inline record hello_record(std::string_view name) noexcept {
    std::array<unsigned char, max_name_size> bytes{};
    std::memcpy(bytes.data(), name.data(), name.size() < max_name_size ? name.size() : max_name_size);
    return {.type = bot_op::hello,
            .a = boost::endian::load_little_u64(bytes.data()),
            .b = boost::endian::load_little_u64(bytes.data() + 8),
            .c = boost::endian::load_little_u64(bytes.data() + 16),
            .d = boost::endian::load_little_u64(bytes.data() + 24)};
}

/// The name a HELLO carries, as raw bytes: everything before the first zero byte. Whether those
/// bytes make an acceptable name is the receiver's decision.
struct hello_name {
    std::array<char, max_name_size> bytes{};
    std::size_t size = 0;
    /// True when a non-zero byte follows the first zero (the padding is not all zeros).
    bool garbage_after_end = false;

    [[nodiscard]] std::string_view view() const noexcept { return {bytes.data(), size}; }
};

[[nodiscard]] inline hello_name read_hello_name(const record& r) noexcept {
    hello_name name;
    std::array<unsigned char, max_name_size> raw{};
    boost::endian::store_little_u64(raw.data(), r.a);
    boost::endian::store_little_u64(raw.data() + 8, r.b);
    boost::endian::store_little_u64(raw.data() + 16, r.c);
    boost::endian::store_little_u64(raw.data() + 24, r.d);
    bool ended = false;
    for (const unsigned char byte : raw) {
        if (byte == 0) {
            ended = true;
        } else if (ended) {
            name.garbage_after_end = true;
        } else {
            name.bytes[name.size++] = static_cast<char>(byte);
        }
    }
    return name;
}

// --- Payloads and checksums ---------------------------------------------------------------------

/// SplitMix64's output for the state `x`: one step of the generator (add the golden gamma, then
/// mix). A bijection on 64-bit values, so distinct inputs never collide.
[[nodiscard]] constexpr std::uint64_t splitmix64(std::uint64_t x) noexcept {
    x += 0x9e3779b97f4a7c15;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9;
    x = (x ^ (x >> 27)) * 0x94d049bb133111eb;
    return x ^ (x >> 31);
}

/// The payload of event `seq` of `shard`. Recomputable anywhere, so no one stores payloads.
[[nodiscard]] constexpr std::uint64_t payload(std::uint32_t shard, std::uint64_t seq) noexcept {
    return splitmix64((std::uint64_t{shard} << 40) ^ seq);
}

/// The checksum after processing a payload: FNV-1a's step on whole 64-bit words (wraps around).
/// A session's checksum starts at 0; order matters, so a skipped, repeated or reordered event
/// changes every later checksum.
[[nodiscard]] constexpr std::uint64_t fold(std::uint64_t checksum, std::uint64_t payload) noexcept {
    return (checksum ^ payload) * 0x100000001b3;
}

/// `checksum` folded with the payloads of events first..last of `shard`, in order.
[[nodiscard]] constexpr std::uint64_t fold_range(std::uint64_t checksum, std::uint32_t shard,
                                                 std::uint64_t first, std::uint64_t last) noexcept {
    // `seq != 0` stops at wraparound, so last = UINT64_MAX cannot loop forever.
    for (std::uint64_t seq = first; seq <= last && seq != 0; ++seq) {
        checksum = fold(checksum, payload(shard, seq));
    }
    return checksum;
}

// A fixed vector, so a reimplementation (the Python test, another bot) can check itself.
static_assert(splitmix64(0) == 0xe220a8397b1dcdaf);
static_assert(fold(0, 1) == 0x100000001b3);

}  // namespace meshmaster::gateway
