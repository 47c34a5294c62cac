// Shard states of any size over bounded frames: split by the sender, reassembled by the receiver.
#include <meshmaster/protocol/codec.hpp>
#include <meshmaster/protocol/frame_decoder.hpp>
#include <meshmaster/protocol/state_transfer.hpp>

#include <doctest/doctest.h>

using namespace meshmaster::protocol;

namespace {

std::vector<std::byte> pattern(std::size_t n) {
    std::vector<std::byte> v(n);
    for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<std::byte>(i * 7 + 3);
    return v;
}

// Decodes a stream of chunks + one closing resume through an assembler, as a slave would.
std::vector<std::byte> receive(const std::vector<std::byte>& wire, int& chunks) {
    frame_decoder decoder;
    state_assembler assembler(1 << 20);
    decoder.feed(wire);
    chunks = 0;
    while (auto frame = decoder.next().value()) {
        auto m = decode(*frame).value();
        if (auto* c = std::get_if<state_chunk>(&m)) {
            ++chunks;
            REQUIRE(assembler.add(*c).has_value());
        } else {
            auto& r = std::get<resume>(m);
            CHECK(r.epoch == 8);
            auto whole = assembler.finish(r.migration_id, r.shard, r.state, r.state_size);
            REQUIRE(whole.has_value());
            CHECK(assembler.pending() == 0);
            return *whole;
        }
    }
    FAIL("no closing frame");
    return {};
}

}  // namespace

TEST_CASE("a state larger than a chunk travels as chunks plus the closing frame, and comes back whole") {
    for (const std::size_t size : {std::size_t{0}, std::size_t{1}, std::size_t{999}, std::size_t{1000},
                                   std::size_t{1001}, std::size_t{5000}}) {
        CAPTURE(size);
        const auto state = pattern(size);
        std::vector<std::byte> wire;
        REQUIRE(encode_with_state(resume{.shard = 3, .epoch = 8, .migration_id = 77}, bytes_view(state), wire, 1000)
                    .has_value());
        int chunks = 0;
        CHECK(receive(wire, chunks) == state);
        CHECK(chunks == static_cast<int>(size == 0 ? 0 : (size - 1) / 1000));
    }
}

TEST_CASE("the assembler refuses gaps, a wrong total and states over its limit") {
    const auto data = pattern(100);
    state_assembler assembler(150);
    REQUIRE(assembler.add({.migration_id = 1, .shard = 2, .epoch = 3, .offset = 0, .data = bytes_view(data)}).has_value());
    CHECK(assembler.add({.migration_id = 1, .shard = 2, .epoch = 3, .offset = 50, .data = bytes_view(data)}).error() ==
          error{errc::out_of_range, "offset"});
    CHECK(assembler.pending() == 0);  // the broken state is dropped

    REQUIRE(assembler.add({.migration_id = 1, .shard = 2, .epoch = 3, .offset = 0, .data = bytes_view(data)}).has_value());
    CHECK(assembler.add({.migration_id = 1, .shard = 2, .epoch = 3, .offset = 100, .data = bytes_view(data)}).error() ==
          error{errc::frame_too_large});

    REQUIRE(assembler.add({.migration_id = 4, .shard = 2, .epoch = 3, .offset = 0, .data = bytes_view(data)}).has_value());
    CHECK(assembler.finish(4, 2, bytes_view(data).first(10), 111).error() == error{errc::out_of_range, "state_size"});
    CHECK(assembler.finish(9, 9, bytes_view(data), std::nullopt).value().size() == 100);
}
