// libFuzzer target over the mesh's packet handling: header, authentication, frame parsing,
// reassembly and the reliability channel, fed arbitrary datagrams.
//
// Input: byte 0 picks the mode — even: datagrams go in as they are (almost all fail the header or
// the tag, which is the point: nothing unauthenticated gets further); odd: the harness seals each
// one with the cluster key first, as an authenticated but arbitrary peer would. Then datagrams,
// each a u16 LE length and that many bytes (the header is filled in by the harness in odd mode,
// so the fuzzer's bytes are frames). The channel has messages of its own in flight, so fuzzed
// acknowledgements exercise the sender too. Properties, besides no crash / leak / UB and the
// allocation limit run_fuzzer.sh sets:
//  - a datagram whose tag does not verify changes nothing;
//  - the receiver holds at most its window plus one message, and every message it delivers is
//    within the maximum size;
//  - the sender never has more in flight than its window.
#include <meshmaster/mesh/channel.hpp>
#include <meshmaster/mesh/packet_auth.hpp>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace mm = meshmaster::mesh;

namespace {
[[noreturn]] void violated(const char* what) {
    std::fprintf(stderr, "property violated: %s\n", what);
    std::abort();
}
constexpr std::uint64_t self = 0x5E1F, peer = 0x9EE5;
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1) return 0;
    static mm::packet_auth auth("fuzzing-cluster-secret-0123");
    const bool seal = (data[0] & 1) != 0;
    mm::channel_config cfg;
    cfg.receive_window = 32;
    cfg.send_window = 16;
    cfg.max_message_size = 8192;
    mm::channel ch(cfg);
    const std::vector<std::byte> mine(3000, std::byte{7});
    for (int i = 0; i < 4; ++i) (void)ch.send(mine);
    mm::mono_time now{};
    std::array<std::byte, 1400> out{};
    std::uint64_t out_number = 0, in_number = 0;
    mm::replay_window replay;
    std::size_t at = 1;
    while (at + 2 <= size) {
        const std::size_t n = std::min<std::size_t>(data[at] | (data[at + 1] << 8), size - at - 2);
        at += 2;
        std::vector<std::byte> d;
        if (seal) {
            // An authenticated peer's datagram around the fuzzer's frames.
            std::vector<std::byte> buffer(mm::header_size + n + mm::tag_size);
            mm::packet_writer w(buffer, {.keyed = true, .sender = peer, .receiver = self, .number = ++in_number});
            std::memcpy(buffer.data() + mm::header_size, data + at, n);
            d = buffer;
            auth.seal(d, peer);
        } else {
            d.assign(reinterpret_cast<const std::byte*>(data + at), reinterpret_cast<const std::byte*>(data + at + n));
        }
        at += n;
        now += std::chrono::microseconds(300);

        const std::uint64_t before = ch.stats().segments_received;
        mm::drop_reason why{};
        auto h = mm::read_header(d, why);
        const bool verified = h && auth.verify(d, *h);
        if (!seal && verified) violated("an unsealed datagram verified");
        if (verified && h->receiver == self && replay.accept(h->number)) {
            mm::frame_reader r(d);
            mm::frame_reader::frame f;
            while (r.next(f, ch.data_reference(), ch.ack_reference())) {
                if (f.type == mm::frame_type::ack) ch.on_ack(f.ack, now);
                if (f.type == mm::frame_type::data) (void)ch.on_data(f.data, now);
            }
        } else if (ch.stats().segments_received != before) {
            violated("a refused datagram reached the channel");
        }
        if (ch.held_segments() > cfg.receive_window + cfg.max_message_size / cfg.segment_payload() + 1) {
            violated("the receiver holds more than its window");
        }
        while (auto m = ch.take_message()) {
            if (m->size() > cfg.max_message_size) violated("a message above the maximum size");
        }
        if (auto deadline = ch.next_deadline(); deadline && *deadline <= now) ch.on_timer(now);
        for (int i = 0; i < 64 && ch.wants_output(now); ++i) {
            mm::packet_writer w(out, {.keyed = true, .sender = self, .receiver = peer, .number = ++out_number});
            if (!ch.write(w, now)) break;
            auth.seal(w.finish(), self);
        }
        if (ch.in_flight() > cfg.send_window) violated("more in flight than the send window");
    }
    return 0;
}
