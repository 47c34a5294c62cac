#include "hex.hpp"

#include <meshmaster/protocol/codec.hpp>
#include <meshmaster/protocol/frame_decoder.hpp>

#include <doctest/doctest.h>

#include <cstring>
#include <functional>
#include <random>

using namespace meshmaster::protocol;
using namespace meshmaster::protocol::test;

namespace {

std::vector<std::byte> header(std::uint32_t event, std::uint32_t length) {
    std::vector<std::byte> bytes(frame_header_size);
    write_frame_header(bytes.data(), {event, length});
    return bytes;
}

std::vector<std::byte> stream_of(std::size_t count) {
    std::vector<std::byte> out;
    std::vector<std::byte> state(300);
    for (std::size_t i = 0; i < count; ++i) {
        for (std::size_t j = 0; j < state.size(); ++j) state[j] = static_cast<std::byte>(i + j);
        const auto size = static_cast<std::uint32_t>(i * 37 % state.size());
        REQUIRE(encode(resume{.shard = static_cast<std::uint32_t>(i), .epoch = i + 1, .migration_id = 5,
                              .state = bytes_view(std::span(state).first(size))},
                       out)
                    .has_value());
    }
    return out;
}

// Decodes every whole frame the decoder holds as a resume and hands it to `sink`.
void drain_resumes(frame_decoder& decoder, const std::function<void(const resume&)>& sink) {
    while (true) {
        auto next = decoder.next();
        REQUIRE(next.has_value());
        if (!next->has_value()) return;
        auto decoded = decode_body<resume>((*next)->body);
        REQUIRE(decoded.has_value());
        sink(*decoded);
    }
}

// Feeds `bytes` in chunks drawn from `split`, collecting every frame's decoded resume.
std::vector<resume> decode_all(frame_decoder& decoder, std::span<const std::byte> bytes,
                               const std::function<std::size_t()>& split,
                               std::vector<std::vector<std::byte>>& states) {
    std::vector<resume> out;
    std::size_t at = 0;
    while (at < bytes.size()) {
        const std::size_t n = std::min(split(), bytes.size() - at);
        decoder.feed(bytes.subspan(at, n));
        at += n;
        drain_resumes(decoder, [&](const resume& r) {
            // Views die with the next call: keep a copy of the state to compare later.
            states.emplace_back(r.state.begin(), r.state.end());
            out.push_back(r);
        });
    }
    return out;
}

}  // namespace

TEST_CASE("frames come out whole whatever the split of the byte stream") {
    const auto bytes = stream_of(50);
    std::mt19937 rng(1234);
    const std::vector<std::pair<const char*, std::function<std::size_t()>>> splits{
        {"one byte at a time", [] { return std::size_t{1}; }},
        {"seven bytes", [] { return std::size_t{7}; }},
        {"everything at once", [&] { return bytes.size(); }},
        {"random", [&] { return std::uniform_int_distribution<std::size_t>(1, 700)(rng); }},
    };
    for (const auto& [name, split] : splits) {
        CAPTURE(name);
        frame_decoder decoder;
        std::vector<std::vector<std::byte>> states;
        const auto frames = decode_all(decoder, bytes, split, states);
        REQUIRE(frames.size() == 50);
        for (std::size_t i = 0; i < frames.size(); ++i) {
            CHECK(frames[i].shard == i);
            CHECK(frames[i].epoch == i + 1);
            const std::size_t size = i * 37 % 300;
            REQUIRE(states[i].size() == size);
            for (std::size_t j = 0; j < size; ++j) CHECK(states[i][j] == static_cast<std::byte>(i + j));
        }
        CHECK(decoder.buffered() == 0);
        CHECK(decoder.finish().has_value());
    }
}

TEST_CASE("socket-style prepare/commit reads into the decoder's own buffer") {
    const auto bytes = stream_of(20);
    frame_decoder decoder;
    std::size_t at = 0;
    std::size_t frames = 0;
    while (at < bytes.size()) {
        auto space = decoder.prepare(64);
        REQUIRE(space.size() >= 64);
        const std::size_t n = std::min<std::size_t>({space.size(), 100, bytes.size() - at});
        std::memcpy(space.data(), bytes.data() + at, n);  // what async_read_some does
        decoder.commit(n);
        at += n;
        drain_resumes(decoder, [&](const resume& r) {
            CHECK(r.shard == frames);
            ++frames;
        });
    }
    CHECK(frames == 20);
}

TEST_CASE("a decoded state points into the frame buffer (no copy between buffer and handler)") {
    std::vector<std::byte> bytes;
    std::vector<std::byte> state(4096, std::byte{0x5a});
    REQUIRE(encode(resume{.shard = 1, .epoch = 2, .migration_id = 3, .state = bytes_view(state)}, bytes)
                .has_value());
    frame_decoder decoder;
    decoder.feed(bytes);
    auto next = decoder.next();
    REQUIRE(next.has_value());
    REQUIRE(next->has_value());
    const frame_view frame = **next;
    auto decoded = decode_body<resume>(frame.body);
    REQUIRE(decoded.has_value());
    CHECK(decoded->state.data() >= frame.body.data());
    CHECK(decoded->state.data() + decoded->state.size() <= frame.body.data() + frame.body.size());
    CHECK(decoded->state == bytes_view(state));
}

TEST_CASE("a length of 0xFFFFFFFF is refused from the header, before any allocation") {
    frame_decoder decoder;
    decoder.feed(header(4, 0xFFFF'FFFFu));
    const std::size_t capacity = decoder.capacity();
    auto next = decoder.next();
    REQUIRE_FALSE(next.has_value());
    CHECK(next.error() == error{errc::frame_too_large});
    CHECK(decoder.capacity() == capacity);
    // The stream is desynchronised for good: the error is sticky.
    decoder.feed(header(4, 0));
    CHECK(decoder.next().error() == error{errc::frame_too_large});
    CHECK(decoder.finish().error() == error{errc::frame_too_large});
}

TEST_CASE("the maximum body size is configurable and inclusive") {
    frame_decoder decoder(100);
    auto at_limit = header(0x8000'0000u, 100);
    at_limit.resize(at_limit.size() + 100);
    decoder.feed(at_limit);
    auto first = decoder.next();
    REQUIRE(first.has_value());
    REQUIRE(first->has_value());
    CHECK((*first)->body.size() == 100);

    decoder.feed(header(0x8000'0000u, 101));
    CHECK(decoder.next().error() == error{errc::frame_too_large});
}

TEST_CASE("the buffer grows for a large frame only once its header is known and allowed") {
    frame_decoder decoder;
    decoder.feed(header(5, 1u << 20));
    auto next = decoder.next();
    REQUIRE(next.has_value());
    CHECK_FALSE(next->has_value());
    // Room for the whole frame is reserved now, so the rest arrives in place.
    CHECK(decoder.prepare(1).size() >= (1u << 20));
}

TEST_CASE("garbage after a valid frame does not corrupt the frame before it") {
    std::vector<std::byte> bytes;
    REQUIRE(encode(stop_shard{.shard = 3, .epoch = 9}, bytes).has_value());
    const std::size_t valid = bytes.size();

    SUBCASE("a short tail is truncated at end of stream") {
        for (const char c : std::string_view("\x01\x02\x03")) bytes.push_back(static_cast<std::byte>(c));
        frame_decoder decoder;
        decoder.feed(bytes);
        auto first = decoder.next();
        REQUIRE(first.has_value());
        REQUIRE(first->has_value());
        CHECK(decode(**first)->index() == message(stop_shard{}).index());
        auto second = decoder.next();
        REQUIRE(second.has_value());
        CHECK_FALSE(second->has_value());
        CHECK(decoder.buffered() == bytes.size() - valid);
        CHECK(decoder.finish().error() == error{errc::truncated});
    }
    SUBCASE("a tail that parses as a header of an unknown event is unknown_event") {
        const auto tail = header(0x4000'0000u, 2);
        bytes.insert(bytes.end(), tail.begin(), tail.end());
        bytes.push_back(std::byte{0x80});
        bytes.push_back(std::byte{0x80});
        frame_decoder decoder;
        decoder.feed(bytes);
        REQUIRE(decoder.next()->has_value());
        auto second = decoder.next();
        REQUIRE(second.has_value());
        REQUIRE(second->has_value());
        CHECK(decode(**second).error() == error{errc::unknown_event});
    }
    SUBCASE("a tail with an absurd length is frame_too_large") {
        const auto tail = header(4, 0x7FFF'FFFFu);
        bytes.insert(bytes.end(), tail.begin(), tail.end());
        frame_decoder decoder;
        decoder.feed(bytes);
        REQUIRE(decoder.next()->has_value());
        CHECK(decoder.next().error() == error{errc::frame_too_large});
    }
    SUBCASE("garbage inside the body after its value is trailing_bytes") {
        bytes.push_back(std::byte{0xc0});
        write_frame_header(bytes.data(), {4, static_cast<std::uint32_t>(bytes.size() - frame_header_size)});
        frame_decoder decoder;
        decoder.feed(bytes);
        auto frame = decoder.next();
        REQUIRE(frame.has_value());
        REQUIRE(frame->has_value());
        CHECK(decode(**frame).error() == error{errc::trailing_bytes});
    }
}

TEST_CASE("an empty stream finishes cleanly and event id 0 is unknown") {
    frame_decoder decoder;
    CHECK(decoder.finish().has_value());
    decoder.feed(header(0, 0));
    auto frame = decoder.next();
    REQUIRE(frame->has_value());
    CHECK(decode(**frame).error() == error{errc::unknown_event});
}

TEST_CASE("a partial frame says how much of it arrived and, once its header is in, how big it is") {
    frame_decoder decoder;
    CHECK_FALSE(decoder.partial().has_value());
    const auto head = header(12, 100);
    decoder.feed(std::span(head).first(3));
    auto p = decoder.partial();
    REQUIRE(p.has_value());
    CHECK(p->received == 3);
    CHECK_FALSE(p->size.has_value());
    decoder.feed(std::span(head).subspan(3));
    decoder.feed(std::vector<std::byte>(40));
    REQUIRE(decoder.next().has_value());
    p = decoder.partial();
    REQUIRE(p.has_value());
    CHECK(p->received == 48);
    CHECK(p->size == 108u);
    CHECK(p->event == 12u);
    decoder.feed(std::vector<std::byte>(60));  // whole now: not partial, next() returns it
    CHECK_FALSE(decoder.partial().has_value());
    auto frame = decoder.next();
    REQUIRE(frame->has_value());
    CHECK_FALSE(decoder.partial().has_value());
}
