// Test bodies built with msgpack-c, an encoder independent of ours, for the decoder tests.
#pragma once

#include <meshmaster/protocol/bytes.hpp>
#include <meshmaster/protocol/codec.hpp>

#include <doctest/doctest.h>
#include <msgpack.hpp>

#include <cstdint>
#include <initializer_list>
#include <string_view>

namespace meshmaster::protocol {

// Builds a body with msgpack-c.
struct body_builder {
    msgpack::sbuffer buffer;
    msgpack::packer<msgpack::sbuffer> pk{buffer};

    body_builder& map(std::uint32_t n) { pk.pack_map(n); return *this; }
    body_builder& array(std::uint32_t n) { pk.pack_array(n); return *this; }
    body_builder& key(std::string_view k) { return str(k); }
    body_builder& str(std::string_view s) {
        pk.pack_str(static_cast<std::uint32_t>(s.size()));
        pk.pack_str_body(s.data(), static_cast<std::uint32_t>(s.size()));
        return *this;
    }
    body_builder& bin(std::string_view s) {
        pk.pack_bin(static_cast<std::uint32_t>(s.size()));
        pk.pack_bin_body(s.data(), static_cast<std::uint32_t>(s.size()));
        return *this;
    }
    template <class T>
    body_builder& value(const T& v) { pk.pack(v); return *this; }
    body_builder& nil() { pk.pack_nil(); return *this; }
    body_builder& raw(std::initializer_list<unsigned> bytes) {
        for (unsigned b : bytes) {
            const char c = static_cast<char>(b);
            buffer.write(&c, 1);
        }
        return *this;
    }
    // A mesh member, [id, type, host, port, incarnation, {}] (protocol 1.2).
    body_builder& member(std::string_view id, std::string_view host = "10.0.0.1", std::uint64_t port = 7946,
                         std::uint64_t incarnation = 1) {
        return array(6).str(id).str("bot").str(host).value(port).value(incarnation).map(0);
    }
    bytes_view bytes() const { return {reinterpret_cast<const std::byte*>(buffer.data()), buffer.size()}; }
};

/// The body decoded as an M; the test stops, naming the error, if it does not decode.
template <class M>
M decoded(const body_builder& b) {
    auto r = decode_body<M>(b.bytes());
    REQUIRE_MESSAGE(r.has_value(), r.error().to_string());
    return *r;
}

/// The error decoding the body as an M gives; the test stops if it decodes.
template <class M>
error decode_error(const body_builder& b) {
    auto r = decode_body<M>(b.bytes());
    REQUIRE_FALSE(r.has_value());
    return r.error();
}

}  // namespace meshmaster::protocol
