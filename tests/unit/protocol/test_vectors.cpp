// The test vectors in docs/protocol.md are read from the document itself and checked against the
// code in both directions, so the document cannot drift from the implementation.
#include "examples.hpp"
#include "hex.hpp"

#include <meshmaster/protocol/codec.hpp>
#include <meshmaster/protocol/frame_decoder.hpp>

#include <doctest/doctest.h>

#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>

using namespace meshmaster::protocol;
using namespace meshmaster::protocol::test;

namespace {

// Every "```vector <name>" block of the document, by name.
std::map<std::string, std::vector<std::byte>> document_vectors() {
    const std::string path = MESHMASTER_SOURCE_DIR "/docs/protocol.md";
    std::ifstream in(path);
    REQUIRE_MESSAGE(in, "cannot open " << path);
    std::map<std::string, std::vector<std::byte>> vectors;
    std::string line;
    while (std::getline(in, line)) {
        constexpr std::string_view opener = "```vector ";
        if (!line.starts_with(opener)) continue;
        const std::string name = line.substr(opener.size());
        std::string hex;
        while (std::getline(in, line) && !line.starts_with("```")) hex += line + '\n';
        auto bytes = parse_hex(hex);
        REQUIRE_MESSAGE(bytes.has_value(), "vector " << name << " is not valid hex");
        REQUIRE_MESSAGE(vectors.emplace(name, std::move(*bytes)).second, "vector " << name << " appears twice");
    }
    return vectors;
}

std::vector<std::byte> encoded(const message& m) {
    std::vector<std::byte> out;
    REQUIRE(encode(m, out).has_value());
    return out;
}

}  // namespace

TEST_CASE("every event has a test vector in docs/protocol.md and the document has no strays") {
    const auto vectors = document_vectors();
    for (const auto& [name, m] : examples()) {
        CHECK_MESSAGE(vectors.contains(std::string(name)), "docs/protocol.md lacks a vector for " << name);
    }
    for (const auto& [name, bytes] : vectors) {
        bool known = false;
        for (const auto& [example_name, m] : examples()) known = known || example_name == name;
        CHECK_MESSAGE(known, "docs/protocol.md has a vector '" << name << "' the tests do not know");
    }
    // At least one example per control event, so a new event cannot be added without a vector.
    std::set<std::uint32_t> covered;
    for (const auto& [name, m] : examples()) {
        if (!std::holds_alternative<application_frame>(m)) covered.insert(event_of(m));
    }
    for (std::uint32_t id = 1; id <= last_known_event; ++id) {
        CHECK_MESSAGE(covered.contains(id), "no example (so no vector) for event " << id);
    }
    CHECK(covered.size() == last_known_event);
}

TEST_CASE("encoding each example gives exactly the document's bytes") {
    const auto vectors = document_vectors();
    for (const auto& [name, m] : examples()) {
        CAPTURE(name);
        const auto it = vectors.find(std::string(name));
        if (it == vectors.end()) continue;  // reported by the test above
        const auto bytes = encoded(m);
        CHECK_MESSAGE(bytes == it->second,
                      "code encodes " << name << " as\n```vector " << name << "\n"
                                      << format_frame_hex(bytes) << "\n```");
    }
}

TEST_CASE("decoding each document vector, fed one byte at a time, gives the example back") {
    const auto vectors = document_vectors();
    for (const auto& [name, expected] : examples()) {
        CAPTURE(name);
        const auto it = vectors.find(std::string(name));
        if (it == vectors.end()) continue;
        frame_decoder decoder;
        int frames = 0;
        for (const std::byte b : it->second) {
            decoder.feed({&b, 1});
            auto next = decoder.next();
            REQUIRE(next.has_value());
            if (!next->has_value()) continue;
            ++frames;
            auto decoded = decode(**next);
            REQUIRE_MESSAGE(decoded.has_value(), decoded.error().to_string());
            CHECK(*decoded == expected);
        }
        CHECK(frames == 1);
        CHECK(decoder.finish().has_value());
    }
}

TEST_CASE("a frame cut at any point is truncated, never a frame") {
    for (const auto& [name, m] : examples()) {
        CAPTURE(name);
        const auto bytes = encoded(m);
        for (std::size_t cut = 1; cut < bytes.size(); ++cut) {
            CAPTURE(cut);
            frame_decoder decoder;
            decoder.feed(std::span(bytes).first(cut));
            auto next = decoder.next();
            REQUIRE(next.has_value());
            CHECK_FALSE(next->has_value());
            CHECK(decoder.finish().error() == error{errc::truncated});
        }
    }
}

TEST_CASE("a body cut at any point is refused as truncated") {
    for (const auto& [name, m] : examples()) {
        if (std::holds_alternative<application_frame>(m)) continue;  // opaque: nothing to check
        CAPTURE(name);
        const auto bytes = encoded(m);
        const std::span body = std::span(bytes).subspan(frame_header_size);
        for (std::size_t cut = 1; cut < body.size(); ++cut) {
            CAPTURE(cut);
            auto decoded = decode(frame_view{event_of(m), body.first(cut)});
            REQUIRE_FALSE(decoded.has_value());
            CHECK(decoded.error().code == errc::truncated);
        }
    }
}
