// The private msgpack reader at the heart of body decoding.
#include "msgpack_reader.hpp"

#include <doctest/doctest.h>
#include <msgpack.hpp>

#include <vector>

using meshmaster::protocol::bytes_view;
using meshmaster::protocol::errc;
using meshmaster::protocol::detail::is_valid_utf8;
using meshmaster::protocol::detail::msgpack_reader;

namespace {
std::vector<std::byte> bytes(std::initializer_list<unsigned> list) {
    std::vector<std::byte> out;
    for (unsigned b : list) out.push_back(static_cast<std::byte>(b));
    return out;
}
}  // namespace

TEST_CASE("skip walks arbitrarily deep nesting without recursion") {
    // 100,000 nested one-element arrays around a nil: a recursive skipper would blow the stack.
    std::vector<std::byte> deep(100'000, std::byte{0x91});
    deep.push_back(std::byte{0xc0});
    msgpack_reader r{bytes_view(deep)};
    CHECK(r.skip() == errc::ok);
    CHECK(r.at_end());

    deep.pop_back();  // now the innermost value is missing
    msgpack_reader cut{bytes_view(deep)};
    CHECK(cut.skip() == errc::truncated);
    CHECK(cut.remaining() == deep.size());  // a failed read does not move
}

TEST_CASE("skip refuses containers claiming more elements than bytes remain") {
    const auto huge_map = bytes({0xdf, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00});
    msgpack_reader r{bytes_view(huge_map)};
    CHECK(r.skip() == errc::truncated);
}

TEST_CASE("skip agrees with msgpack-c on every kind of value") {
    msgpack::sbuffer buffer;
    msgpack::packer pk(buffer);
    pk.pack_nil(); pk.pack_true(); pk.pack_false();
    pk.pack(0); pk.pack(127); pk.pack(128); pk.pack(65536); pk.pack(std::uint64_t{1} << 40);
    pk.pack(-1); pk.pack(-33); pk.pack(-40000); pk.pack(std::int64_t{-1} << 40);
    pk.pack(1.5f); pk.pack(2.5);
    pk.pack(std::string(31, 'a')); pk.pack(std::string(300, 'b')); pk.pack(std::string(70000, 'c'));
    pk.pack_bin(3); pk.pack_bin_body("xyz", 3);
    pk.pack_bin(70000); pk.pack_bin_body(std::string(70000, 'd').data(), 70000);
    for (std::uint32_t size : {1u, 2u, 4u, 8u, 16u, 3u, 300u, 70000u}) {
        pk.pack_ext(size, 5);
        const std::string data(size, 'e');
        pk.pack_ext_body(data.data(), size);
    }
    pk.pack_array(20);
    for (int i = 0; i < 20; ++i) pk.pack(i);
    pk.pack_map(20);
    for (int i = 0; i < 20; ++i) { pk.pack(i); pk.pack_array(0); }

    const bytes_view all(reinterpret_cast<const std::byte*>(buffer.data()), buffer.size());
    std::size_t offset = 0;
    msgpack_reader r{all};
    while (offset < buffer.size()) {
        const std::size_t before = offset;
        msgpack::object_handle handle = msgpack::unpack(buffer.data(), buffer.size(), offset);
        (void)handle;
        REQUIRE(r.skip() == errc::ok);
        CHECK(all.size() - r.remaining() == offset);
        CHECK(offset > before);
    }
    CHECK(r.at_end());
}

TEST_CASE("typed reads leave the position unchanged on failure") {
    const auto data = bytes({0xa3, 'a', 'b'});  // str of 3 with only 2 bytes
    msgpack_reader r{bytes_view(data)};
    std::uint64_t n = 0;
    CHECK(r.read_uint(n) == errc::wrong_type);
    std::string_view s;
    CHECK(r.read_str(s) == errc::truncated);
    CHECK(r.remaining() == 3);
}

TEST_CASE("UTF-8 validation") {
    CHECK(is_valid_utf8(""));
    CHECK(is_valid_utf8("plain ascii"));
    CHECK(is_valid_utf8("\xf0\x9f\x9a\x80"));        // U+1F680
    CHECK_FALSE(is_valid_utf8("\xf4\x90\x80\x80"));  // above U+10FFFF
    CHECK_FALSE(is_valid_utf8("\xe0\x80\xaf"));      // overlong
    CHECK_FALSE(is_valid_utf8("\x80"));              // lone continuation
    CHECK_FALSE(is_valid_utf8("\xe2\x82"));          // cut short
}
