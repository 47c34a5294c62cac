// libFuzzer target over the frame decoder and every body decoder.
//
// For each input it checks properties, not just "no crash":
//  - the frame decoder yields the same frames whether the input arrives at once or in small splits;
//  - whatever decodes re-encodes canonically: decode(encode(m)) == m, and encoding twice gives
//    identical bytes;
//  - differential: any body our decoder accepts is one well-formed msgpack value to msgpack-c too.
// Any violation aborts, which libFuzzer reports as a finding.
#include <meshmaster/protocol/codec.hpp>
#include <meshmaster/protocol/frame_decoder.hpp>

#include <msgpack.hpp>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

using namespace meshmaster::protocol;

namespace {

// The fuzzer keeps inputs small; a small maximum also exercises frame_too_large.
constexpr std::size_t max_body = 64 * 1024;

[[noreturn]] void violated(const char* what) {
    std::fprintf(stderr, "property violated: %s\n", what);
    std::abort();
}

struct owned_frame {
    std::uint32_t event;
    std::vector<std::byte> body;
    bool operator==(const owned_frame&) const = default;
};

// All frames of `input`, fed in chunks of `split` bytes (0: all at once), and the final status.
std::vector<owned_frame> frames_of(bytes_view input, std::size_t split, error& status) {
    frame_decoder decoder(max_body);
    std::vector<owned_frame> frames;
    std::size_t at = 0;
    status = {};
    while (at < input.size()) {
        const std::size_t n = split == 0 ? input.size() : std::min(split, input.size() - at);
        decoder.feed(input.subspan(at, n));
        at += n;
        while (true) {
            auto next = decoder.next();
            if (!next) {
                status = next.error();
                return frames;
            }
            if (!*next) break;
            frames.push_back({(*next)->event, {(*next)->body.begin(), (*next)->body.end()}});
        }
    }
    if (auto end = decoder.finish(); !end) status = end.error();
    return frames;
}

// msgpack-c's verdict on `body` as one value: 1 valid, 0 invalid, -1 no verdict (a size or depth
// limit we impose to keep msgpack-c's eager allocations bounded).
int msgpack_c_verdict(bytes_view body) {
    if (body.size() > 4096) return -1;
    const auto n = body.size();
    const msgpack::unpack_limit limits(n, n, n, n, n, 32);
    msgpack::zone zone;
    std::size_t offset = 0;
    try {
        msgpack::unpack(zone, reinterpret_cast<const char*>(body.data()), n, offset, nullptr, nullptr, limits);
    } catch (const msgpack::size_overflow&) {
        return -1;
    } catch (const msgpack::depth_size_overflow&) {
        return -1;
    } catch (const std::exception&) {
        return 0;
    }
    return offset == n ? 1 : 0;
}

void check_round_trip(const message& decoded) {
    std::vector<std::byte> first;
    if (!encode(decoded, first, max_body * 2)) violated("a decoded message does not encode");
    auto again = decode(frame_view{event_of(decoded), bytes_view(first).subspan(frame_header_size)});
    if (!again) violated("an encoded message does not decode");
    if (!(*again == decoded)) violated("decode(encode(m)) != m");
    std::vector<std::byte> second;
    if (!encode(*again, second, max_body * 2) || second != first) violated("encoding is not canonical");
}

void check_body(std::uint32_t event, bytes_view body) {
    auto decoded = decode(frame_view{event, body});
    if (!decoded) return;
    check_round_trip(*decoded);
    if (!is_application_event(event) && !body.empty() && msgpack_c_verdict(body) == 0) {
        violated("we accepted a body msgpack-c rejects");
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const bytes_view input(reinterpret_cast<const std::byte*>(data), size);

    error whole_status, split_status;
    const auto whole = frames_of(input, 0, whole_status);
    const std::size_t split = size == 0 ? 1 : (data[0] % 13) + 1;
    const auto pieces = frames_of(input, split, split_status);
    if (whole != pieces) violated("frames depend on how the stream is split");
    if (!(whole_status == split_status)) violated("stream status depends on how it is split");

    for (const owned_frame& f : whole) check_body(f.event, bytes_view(f.body));

    // Every body decoder, on the input after a would-be header: each event's decoder sees bodies
    // shaped for the others too.
    if (size > frame_header_size) {
        const bytes_view body = input.subspan(frame_header_size);
        for (std::uint32_t id = 1; id <= last_known_event; ++id) check_body(id, body);
    }
    return 0;
}
