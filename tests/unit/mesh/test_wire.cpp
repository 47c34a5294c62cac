// The datagram format: frames round-trip, sequence numbers widen across 2^32, and malformed input
// is refused with a reason instead of read past its end.
#include <meshmaster/mesh/membership_sync.hpp>
#include <meshmaster/mesh/packet_auth.hpp>
#include <meshmaster/mesh/wire.hpp>

#include <doctest/doctest.h>

#include <array>
#include <cstring>
#include <vector>

namespace mm = meshmaster::mesh;

namespace {
std::vector<std::byte> bytes_of(const char* text) {
    std::vector<std::byte> v(std::strlen(text));
    std::memcpy(v.data(), text, v.size());
    return v;
}
}  // namespace

TEST_CASE("widen: the value with the same low 32 bits nearest the reference") {
    CHECK(mm::widen(5, 0) == 5);
    CHECK(mm::widen(0xFFFF'FFF0u, 0x1'0000'0005ull) == 0xFFFF'FFF0ull);       // just below a wrap
    CHECK(mm::widen(3, 0xFFFF'FFF0ull) == 0x1'0000'0003ull);                 // just past one
    CHECK(mm::widen(0x8000'0000u, 0) == 0x8000'0000ull);                     // nothing below zero
    CHECK(mm::widen(7, 0x5'0000'0007ull) == 0x5'0000'0007ull);
}

TEST_CASE("every frame type round-trips through a datagram") {
    std::array<std::byte, 1400> buffer{};
    const mm::packet_header h{.keyed = false, .sender = 0x1122334455667788ull, .receiver = 42, .number = 7};
    mm::packet_writer w(buffer, h);
    const std::vector<mm::sack_range> ranges{{0x1'0000'0010ull, 3}, {0x1'0000'0020ull, 1}};
    const auto payload = bytes_of("hello, mesh");
    REQUIRE(w.ack(0x1'0000'0002ull, 512, ranges));
    REQUIRE(w.data({.first = true, .last = false, .sequence = 0x1'0000'0005ull, .message_size = 4000, .bytes = payload}));
    REQUIRE(w.data({.first = false, .last = true, .sequence = 0x1'0000'0006ull, .bytes = payload}));
    REQUIRE(w.udata(payload));
    REQUIRE(w.probe(mm::frame_type::probe, 99, "", ""));
    REQUIRE(w.probe(mm::frame_type::reply, 100, "s0-g1", "bot"));
    REQUIRE(w.probe(mm::frame_type::visit, 101, "meshmaster-cli-7", "cli"));
    REQUIRE(w.bye(2));
    const auto datagram = w.finish();

    mm::drop_reason why{};
    const auto header = mm::read_header(datagram, why);
    REQUIRE(header);
    CHECK(header->sender == h.sender);
    CHECK(header->receiver == 42);
    CHECK(header->number == 7);
    mm::frame_reader r(datagram);
    mm::frame_reader::frame f;
    const std::uint64_t reference = 0x1'0000'0000ull;
    REQUIRE(r.next(f, reference, reference));
    CHECK(f.type == mm::frame_type::ack);
    CHECK(f.ack.cumulative == 0x1'0000'0002ull);
    CHECK(f.ack.window == 512);
    CHECK(f.ack.ranges == ranges);
    REQUIRE(r.next(f, reference, reference));
    CHECK((f.type == mm::frame_type::data && f.data.first && !f.data.last && f.data.message_size == 4000));
    CHECK(f.data.sequence == 0x1'0000'0005ull);
    CHECK(std::vector<std::byte>(f.data.bytes.begin(), f.data.bytes.end()) == payload);
    REQUIRE(r.next(f, reference, reference));
    CHECK((f.type == mm::frame_type::data && f.data.last && f.data.sequence == 0x1'0000'0006ull));
    REQUIRE(r.next(f, reference, reference));
    CHECK((f.type == mm::frame_type::udata && f.bytes.size() == payload.size()));
    REQUIRE(r.next(f, reference, reference));
    CHECK((f.type == mm::frame_type::probe && f.token == 99 && f.id.empty()));
    REQUIRE(r.next(f, reference, reference));
    CHECK((f.type == mm::frame_type::reply && f.token == 100 && f.id == "s0-g1" && f.node_type == "bot"));
    REQUIRE(r.next(f, reference, reference));
    CHECK((f.type == mm::frame_type::visit && f.token == 101 && f.id == "meshmaster-cli-7" && f.node_type == "cli"));
    REQUIRE(r.next(f, reference, reference));
    CHECK((f.type == mm::frame_type::bye && f.reason == 2));
    CHECK_FALSE(r.next(f, reference, reference));
    CHECK_FALSE(r.error());
}

TEST_CASE("a frame that does not fit is refused whole, and the datagram stays valid") {
    std::array<std::byte, 100> buffer{};
    mm::packet_writer w(buffer, {.keyed = true, .sender = 1, .receiver = 2, .number = 3});
    CHECK(w.room() == 100 - mm::header_size - mm::tag_size);
    const std::vector<std::byte> big(w.room());
    CHECK_FALSE(w.udata(big));
    CHECK(w.empty());
    CHECK(w.finish().size() == mm::header_size + mm::tag_size);
}

TEST_CASE("padding fills a datagram to its size and ends the frames; anything but zeros after it is malformed") {
    std::array<std::byte, 200> buffer{};
    buffer.fill(std::byte{0xEE});  // a reused slot: padding must overwrite what was there
    mm::packet_writer w(buffer, {.keyed = true, .sender = 1, .receiver = 2, .number = 3});
    REQUIRE(w.bye(2));
    w.pad();
    CHECK(w.room() == 0);
    auto d = w.finish();
    CHECK(d.size() == buffer.size());  // the whole buffer, tag included: one size for GSO
    mm::frame_reader r(d);
    mm::frame_reader::frame f;
    REQUIRE(r.next(f, 0, 0));
    CHECK(f.type == mm::frame_type::bye);
    CHECK_FALSE(r.next(f, 0, 0));  // the padding: the end
    CHECK_FALSE(r.error());

    d[mm::header_size + 10] = std::byte{1};  // inside the padding
    mm::frame_reader bad(d);
    REQUIRE(bad.next(f, 0, 0));
    CHECK_FALSE(bad.next(f, 0, 0));
    CHECK(bad.error());
}

TEST_CASE("malformed datagrams: each is refused with its reason, never read past the end") {
    mm::drop_reason why{};
    std::array<std::byte, 1400> buffer{};
    SUBCASE("shorter than a header") {
        CHECK_FALSE(mm::read_header(std::span(buffer).first(mm::header_size - 1), why));
        CHECK(why == mm::drop_reason::truncated);
    }
    SUBCASE("not ours") {
        CHECK_FALSE(mm::read_header(buffer, why));
        CHECK(why == mm::drop_reason::bad_magic);
    }
    SUBCASE("keyed but no room for the tag") {
        mm::packet_writer w(buffer, {.keyed = true, .sender = 1, .receiver = 0, .number = 1});
        CHECK_FALSE(mm::read_header(std::span(buffer).first(mm::header_size + 3), why));
        CHECK(why == mm::drop_reason::truncated);
    }
    SUBCASE("frames that run past the end, or lie") {
        auto frames_of = [&](std::vector<std::uint8_t> tail) {
            mm::packet_writer w(buffer, {.keyed = false, .sender = 1, .receiver = 0, .number = 1});
            auto d = w.finish();
            std::vector<std::byte> datagram(d.begin(), d.end());
            for (auto b : tail) datagram.push_back(std::byte{b});
            mm::frame_reader r(datagram);
            mm::frame_reader::frame f;
            while (r.next(f, 0, 0)) {
            }
            return r.error();
        };
        CHECK(frames_of({0x02, 0x01, 0, 0, 0, 0, 10, 0, 0, 0, 5, 0, 'a'}));  // data: 5 bytes announced, 1 there
        CHECK(frames_of({0x01, 0, 0, 0}));                                  // ack cut short
        CHECK(frames_of({0x01, 0, 0, 0, 0, 0, 0, 0, 0, 1, 5, 0, 0, 0, 0, 0}));  // a range of 0 segments
        CHECK(frames_of({0x09}));                                           // unknown type
        CHECK(frames_of({0x02, 0x03, 0, 0, 0, 0, 9, 0, 0, 0, 1, 0, 'a'}));   // whole message of 9 bytes in 1
        CHECK(frames_of({0x02, 0x00, 0, 0, 0, 0, 0, 0}));                   // an empty middle segment
        CHECK(frames_of({0x02, 0x04, 0, 0, 0, 0, 1, 0, 'a'}));              // unknown data flags
        CHECK_FALSE(frames_of({0x02, 0x03, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}));  // an empty message is fine
    }
}

TEST_CASE("packet tags: the right key verifies, and a flipped bit, another key or another receiver does not") {
    mm::packet_auth alice("cluster-secret-0123456789");
    mm::packet_auth bob("cluster-secret-0123456789");
    mm::packet_auth mallory("another-secret-0123456789");
    std::array<std::byte, 200> buffer{};
    const mm::packet_header h{.keyed = true, .sender = 0xA11CE, .receiver = 0xB0B, .number = 1};
    mm::packet_writer w(buffer, h);
    REQUIRE(w.udata(bytes_of("transfer 100 to bob")));
    auto datagram = w.finish();
    alice.seal(datagram, h.sender);
    CHECK(bob.verify(datagram, h));
    CHECK_FALSE(mallory.verify(datagram, h));
    for (std::size_t i : {std::size_t{4}, std::size_t{12}, std::size_t{20}, mm::header_size + 5, datagram.size() - 1}) {
        std::vector<std::byte> tampered(datagram.begin(), datagram.end());
        tampered[i] ^= std::byte{0x01};
        mm::drop_reason why{};
        auto th = mm::read_header(tampered, why);
        if (th) CHECK_FALSE(bob.verify(tampered, *th));
    }
    CHECK_FALSE(bob.verify(datagram, {.keyed = false, .sender = h.sender, .receiver = h.receiver, .number = 1}));
    CHECK_THROWS(mm::packet_auth("short"));
}

TEST_CASE("replay window: each number once, old ones refused, gaps and jumps handled") {
    mm::replay_window w;
    CHECK(w.accept(1));
    CHECK_FALSE(w.accept(1));
    CHECK(w.accept(3));
    CHECK(w.accept(2));
    CHECK_FALSE(w.accept(2));
    CHECK(w.accept(10'000));
    CHECK_FALSE(w.accept(3));                                  // older than the window
    CHECK(w.accept(10'000 - mm::replay_window::size + 1));     // the oldest still inside
    CHECK_FALSE(w.accept(10'000 - mm::replay_window::size));
    CHECK(w.accept(9'999));
    CHECK_FALSE(w.accept(9'999));
    CHECK(w.accept(10'001));
    CHECK(w.highest() == 10'001);
}

TEST_CASE("membership_sync: whole lists become the ups and downs in between") {
    struct recorder : mm::discovery_sink {
        std::vector<std::string> events;
        void peer_up(const mm::peer_record& p) override { events.push_back("up " + p.id + " " + std::to_string(p.incarnation)); }
        void peer_down(std::string_view id) override { events.push_back("down " + std::string(id)); }
    } sink;
    mm::membership_sync sync;
    const mm::peer_record a{.id = "a", .host = "10.0.0.1", .port = 1, .incarnation = 1};
    const mm::peer_record b{.id = "b", .host = "10.0.0.2", .port = 2, .incarnation = 2};
    sync.apply({a, b}, sink);
    CHECK(sink.events == std::vector<std::string>{"up a 1", "up b 2"});
    sink.events.clear();
    sync.apply({a, b}, sink);  // the same list again: nothing
    CHECK(sink.events.empty());
    mm::peer_record b2 = b;
    b2.incarnation = 3;  // b restarted
    mm::peer_record a2 = a;
    a2.values["zone"] = "eu";
    sync.apply({a2, b2}, sink);
    CHECK(sink.events == std::vector<std::string>{"up a 1", "up b 3"});
    sink.events.clear();
    sync.apply({b2}, sink);
    CHECK(sink.events == std::vector<std::string>{"down a"});
}
