// The test master for slave_core: encodes frames into the core as the master would and decodes
// what the core writes back (test_slave_core.cpp, test_slave_measurements.cpp).
#pragma once

#include "slave_core.hpp"

#include <meshmaster/protocol/auth.hpp>
#include <meshmaster/protocol/codec.hpp>
#include <meshmaster/protocol/frame_decoder.hpp>

#include <doctest/doctest.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace meshmaster::slave::test {

namespace p = meshmaster::protocol;
using namespace meshmaster::slave::detail;

inline const std::string secret = "a shared secret for the tests";

// Plays the master: encodes frames into the core, decodes what the core writes back.
inline core_config test_config() {
    return {.slave_id = "s0-g1", .secret = secret, .generation = 1, .pid = 77, .state_chunk_size = 64};
}

struct master_side {
    explicit master_side(core_config config = test_config()) : core(std::move(config)) {}
    slave_core core;
    p::nonce master_nonce = p::random_nonce();
    std::vector<std::string> log;

    template <class M>
    void deliver(const M& m) {
        std::vector<std::byte> bytes;
        REQUIRE(p::encode(m, bytes).has_value());
        p::frame_decoder d;
        d.feed(bytes);
        while (auto f = d.next().value()) core.on_frame(*f);
    }

    // Everything the slave wrote since the last call, decoded (views into `last_output`).
    std::vector<p::message> written() {
        last_output = core.take_output();
        decoder = p::frame_decoder();
        decoder.feed(last_output);
        std::vector<p::message> out;
        frames.clear();
        while (auto f = decoder.next().value()) {
            frames.emplace_back((*f).body.begin(), (*f).body.end());
            out.push_back(p::decode(p::frame_view{(*f).event, p::bytes_view(frames.back())}).value());
        }
        return out;
    }

    // Connects as a master speaking 1.`minor` and completes the handshake; returns the hello the
    // slave sent.
    p::slave_hello connect(std::uint32_t minor = 0) {
        core.on_connected();
        deliver(p::auth_challenge{.version_major = 1, .version_minor = minor, .nonce = p::bytes_view(master_nonce)});
        auto out = written();
        REQUIRE(out.size() == 2);
        hello = std::get<p::slave_hello>(out[0]);
        hello_shards = hello.shards;
        slave_nonce.assign(hello.nonce.begin(), hello.nonce.end());
        const auto proof = std::get<p::auth_proof>(out[1]);
        CHECK(p::proofs_equal(p::slave_proof(secret, p::bytes_view(master_nonce), p::bytes_view(slave_nonce), "s0-g1"), proof.mac));
        const auto mine = p::master_proof(secret, p::bytes_view(master_nonce), p::bytes_view(slave_nonce), "s0-g1");
        deliver(p::welcome{.mac = p::bytes_view(mine), .heartbeat_interval_ms = 100});
        REQUIRE(core.authenticated());
        return hello;
    }

    std::vector<std::byte> last_output;
    std::vector<std::vector<std::byte>> frames;
    p::frame_decoder decoder;
    p::slave_hello hello;
    std::vector<p::shard_epoch> hello_shards;
    std::vector<std::byte> slave_nonce;
};

inline std::vector<std::byte> bytes_of(std::string_view s) { return {reinterpret_cast<const std::byte*>(s.data()), reinterpret_cast<const std::byte*>(s.data()) + s.size()}; }

}  // namespace meshmaster::slave::test
