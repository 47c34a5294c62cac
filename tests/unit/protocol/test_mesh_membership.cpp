// Protocol 1.2, the mesh's embedded discovery: slave_hello's mesh_* fields, mesh_members (22) and
// mesh_update (23). Bodies are hand-built with msgpack-c (an encoder independent of ours).
#include <meshmaster/protocol/codec.hpp>
#include <meshmaster/protocol/frame_decoder.hpp>
#include <meshmaster/protocol/version.hpp>

#include "body_builder.hpp"

#include <doctest/doctest.h>

#include <array>
#include <string>

using namespace meshmaster::protocol;

namespace {

// The decoding error as text, or "ok". (body_builder can be neither copied nor moved: its packer
// refers to its buffer, so helpers build into one they own and report only the outcome.)
template <class M>
std::string outcome(const body_builder& b) {
    auto r = decode_body<M>(b.bytes());
    return r ? std::string("ok") : r.error().to_string();
}

// The required fields of a hello, as the first 4 entries of a map of `4 + extra` entries.
body_builder& hello_head(body_builder& b, std::uint32_t extra) {
    return b.map(4 + extra).key("version_major").value(1).key("version_minor").value(2).key("slave_id").str("slave-3")
        .key("nonce").bin("0123456789abcdef");
}

// A mesh_members body whose members array is written by `members`.
template <class F>
body_builder& members_head(body_builder& b, F&& members) {
    b.map(2).key("version").value(5).key("members");
    members(b);
    return b;
}
// How a mesh_members body whose members array is written by `members` decodes.
template <class F>
std::string members_outcome(F&& members) {
    body_builder b;
    return outcome<mesh_members>(members_head(b, members));
}

constexpr std::array<std::byte, 4> nonce{std::byte{1}, std::byte{2}, std::byte{3}, std::byte{4}};

// Encodes `m`, feeds the frame one byte at a time, and checks that exactly `m` decodes (compared while
// the decoder, whose buffer the decoded views point into, is still alive).
bool byte_at_a_time(const message& m) {
    std::vector<std::byte> out;
    REQUIRE(encode(m, out).has_value());
    frame_decoder decoder;
    int frames = 0;
    bool same = false;
    for (const std::byte b : out) {
        decoder.feed({&b, 1});
        auto next = decoder.next();
        REQUIRE(next.has_value());
        if (!next->has_value()) continue;
        ++frames;
        auto d = decode(**next);
        REQUIRE_MESSAGE(d.has_value(), d.error().to_string());
        same = *d == m;
    }
    return frames == 1 && same;
}

}  // namespace

TEST_CASE("protocol 1.2 knows events 22 and 23") {
    CHECK(current_version >= protocol_version{1, 2});  // 1.3 added fields only (test_measurements.cpp)
    CHECK(is_compatible({1, 1}));
    CHECK(is_compatible({1, 0}));
    CHECK(last_known_event == 23);
    CHECK(known_event(22) == event_id::mesh_members);
    CHECK(known_event(23) == event_id::mesh_update);
    CHECK_FALSE(known_event(24).has_value());
    CHECK(to_string(event_id::mesh_members) == "mesh_members");
    CHECK(to_string(event_id::mesh_update) == "mesh_update");
}

TEST_CASE("mesh messages round-trip, decoded one byte at a time") {
    const std::string host = "fd00::3";  // decoded views point into the frame, not at these
    const slave_hello hello{.version_major = 1, .version_minor = 2, .slave_id = "slave-3", .pid = 7,
                            .nonce = bytes_view(nonce), .mesh_host = host, .mesh_port = 65535,
                            .mesh_incarnation = ~std::uint64_t{0}, .mesh_type = "",
                            .mesh_values = string_map{{"", ""}, {"zone", "eu-1"}, {"ключ", "значение"}}};
    CHECK(byte_at_a_time(hello));

    const mesh_members members{
        .version = std::uint64_t{1} << 40,
        .members = {{.id = "slave-3", .type = "bot", .host = "10.0.0.3", .port = 1, .incarnation = 3,
                     .values = {{"zone", "eu-1"}, {"load", "0.5"}}},
                    {.id = "slave-4", .type = "", .host = "::1", .port = 65535, .incarnation = 1, .values = {}}}};
    CHECK(byte_at_a_time(members));
    CHECK(byte_at_a_time(mesh_members{.version = 0, .members = {}}));

    const mesh_update update{.mesh_type = "room", .mesh_values = {{"players", "12"}}};
    CHECK(byte_at_a_time(update));
    const mesh_update values_only{.mesh_type = std::nullopt, .mesh_values = {}};
    CHECK(byte_at_a_time(values_only));
}

TEST_CASE("a hello without mesh fields (1.0 / 1.1) still decodes, and encodes without them") {
    body_builder b;
    b.map(9).key("version_major").value(1).key("version_minor").value(1).key("slave_id").str("slave-3")
        .key("pid").value(4242).key("generation").value(2).key("nonce").bin("0123")
        .key("shards").array(1).array(2).value(0).value(3).key("soft_started").value(false)
        .key("stopped").array(0);
    auto decoded = decode_body<slave_hello>(b.bytes());
    REQUIRE_MESSAGE(decoded.has_value(), decoded.error().to_string());
    CHECK_FALSE(decoded->has_mesh_node());
    CHECK_FALSE(decoded->mesh_port.has_value());
    CHECK_FALSE(decoded->mesh_incarnation.has_value());
    CHECK_FALSE(decoded->mesh_type.has_value());
    CHECK_FALSE(decoded->mesh_values.has_value());
    CHECK(decoded->shards == std::vector<shard_epoch>{{0, 3}});

    // Re-encoded, no mesh key appears: an old master sees exactly the hello it knows.
    std::vector<std::byte> out;
    REQUIRE(encode(*decoded, out).has_value());
    const std::string text(reinterpret_cast<const char*>(out.data()), out.size());
    CHECK(text.find("mesh") == std::string::npos);
}

TEST_CASE("a hello's mesh node needs host, port and incarnation, each valid") {
    body_builder type_only;
    hello_head(type_only, 1).key("mesh_type").str("bot");
    CHECK(decode_error<slave_hello>(type_only).to_string() == "missing_field:mesh_host");

    body_builder no_port;
    hello_head(no_port, 2).key("mesh_host").str("10.0.0.3").key("mesh_incarnation").value(9);
    CHECK(decode_error<slave_hello>(no_port).to_string() == "missing_field:mesh_port");

    body_builder no_incarnation;
    hello_head(no_incarnation, 2).key("mesh_host").str("10.0.0.3").key("mesh_port").value(7946);
    CHECK(decode_error<slave_hello>(no_incarnation).to_string() == "missing_field:mesh_incarnation");

    const auto node = [](std::string_view host, std::uint64_t port, std::uint64_t incarnation) {
        body_builder b;
        hello_head(b, 3).key("mesh_host").str(host).key("mesh_port").value(port).key("mesh_incarnation").value(incarnation);
        return outcome<slave_hello>(b);
    };
    CHECK(node("10.0.0.3", 7946, 9) == "ok");
    CHECK(node("2001:db8::7", 1, 1) == "ok");
    CHECK(node("10.0.0.3", 0, 9) == "out_of_range:mesh_port");
    CHECK(node("10.0.0.3", 65536, 9) == "out_of_range:mesh_port");
    CHECK(node("10.0.0.3", 7946, 0) == "out_of_range:mesh_incarnation");
    CHECK(node("mesh.example", 7946, 9) == "out_of_range:mesh_host");
    CHECK(node("10.0.0.256", 7946, 9) == "out_of_range:mesh_host");
    CHECK(node("", 7946, 9) == "out_of_range:mesh_host");
    CHECK(node(std::string_view("10.0.0.3\0x", 10), 7946, 9) == "out_of_range:mesh_host");

    body_builder negative_port;
    hello_head(negative_port, 3).key("mesh_host").str("10.0.0.3").key("mesh_port").value(-1).key("mesh_incarnation").value(1);
    CHECK(decode_error<slave_hello>(negative_port).to_string() == "out_of_range:mesh_port");

    body_builder port_as_str;
    hello_head(port_as_str, 3).key("mesh_host").str("10.0.0.3").key("mesh_port").str("7946").key("mesh_incarnation").value(1);
    CHECK(decode_error<slave_hello>(port_as_str).to_string() == "wrong_type:mesh_port");

    body_builder host_as_bin;
    hello_head(host_as_bin, 3).key("mesh_host").bin("10.0.0.3").key("mesh_port").value(1).key("mesh_incarnation").value(1);
    CHECK(decode_error<slave_hello>(host_as_bin).to_string() == "wrong_type:mesh_host");
}

TEST_CASE("mesh_values is a map of str to str without duplicate keys") {
    const auto head = [](body_builder& b) -> body_builder& {
        return hello_head(b, 4).key("mesh_host").str("10.0.0.3").key("mesh_port").value(7946)
            .key("mesh_incarnation").value(1).key("mesh_values");
    };
    const auto with_values = [&](const auto& write_values) {
        body_builder b;
        write_values(head(b));
        return outcome<slave_hello>(b);
    };
    body_builder two;
    head(two).map(2).key("b").str("1").key("a").str("2");
    auto ok = decode_body<slave_hello>(two.bytes());
    REQUIRE(ok.has_value());
    CHECK(ok->mesh_values == string_map{{"b", "1"}, {"a", "2"}});  // the sender's order is kept

    CHECK(with_values([](body_builder& b) { b.map(2).key("a").str("1").key("a").str("2"); })
          == "duplicate_field:mesh_values");
    CHECK(with_values([](body_builder& b) { b.array(0); }) == "wrong_type:mesh_values");
    CHECK(with_values([](body_builder& b) { b.map(1).key("a").value(1); }) == "wrong_type:mesh_values");
    CHECK(with_values([](body_builder& b) { b.map(1).value(1).str("a"); }) == "wrong_type:mesh_values");
    CHECK(with_values([](body_builder& b) { b.map(1).key("a").bin("1"); }) == "wrong_type:mesh_values");
    CHECK(with_values([](body_builder& b) { b.map(1).key("a").raw({0xa1, 0xff}); }) == "bad_body:mesh_values");

    // Long maps take the sorting path of the duplicate check.
    const auto long_map = [](bool duplicate) {
        return [duplicate](body_builder& b) {
            b.map(40);
            for (int i = 0; i < 40; ++i) b.key("k" + std::to_string(duplicate && i == 39 ? 3 : i)).str("v");
        };
    };
    body_builder forty_body;
    long_map(false)(head(forty_body));
    auto forty = decode_body<slave_hello>(forty_body.bytes());
    REQUIRE(forty.has_value());
    CHECK(forty->mesh_values->size() == 40);
    CHECK(with_values(long_map(true)) == "duplicate_field:mesh_values");
}

TEST_CASE("mesh_members refuses malformed members with the precise error") {
    CHECK(decode_error<mesh_members>(body_builder{}.map(1).key("version").value(1)).to_string() == "missing_field:members");
    CHECK(decode_error<mesh_members>(body_builder{}.map(1).key("members").array(0)).to_string() == "missing_field:version");
    CHECK(members_outcome([](body_builder& b) { b.map(0); }) == "wrong_type:members");
    CHECK(members_outcome([](body_builder& b) { b.array(1).str("slave-3"); }) == "wrong_type:members");
    CHECK(members_outcome([](body_builder& b) {
              b.array(1).array(5).str("s").str("bot").str("10.0.0.1").value(1).value(1);
          }) == "wrong_type:members");
    CHECK(members_outcome([](body_builder& b) {
              b.array(1).array(6).str("s").str("bot").str("10.0.0.1").str("7946").value(1).map(0);
          }) == "wrong_type:members");
    CHECK(members_outcome([](body_builder& b) {
              b.array(1).array(6).str("s").str("bot").str("10.0.0.1").value(7946).value(1).map(1).key("a").value(2);
          }) == "wrong_type:members");
    CHECK(members_outcome([](body_builder& b) { b.array(1).member("s", "10.0.0.1", 0); })
          == "out_of_range:members");
    CHECK(members_outcome([](body_builder& b) { b.array(1).member("s", "10.0.0.1", 65536); })
          == "out_of_range:members");
    CHECK(members_outcome([](body_builder& b) { b.array(1).member("s", "10.0.0.1", 7946, 0); })
          == "out_of_range:members");
    CHECK(members_outcome([](body_builder& b) { b.array(1).member("s", "localhost"); })
          == "out_of_range:members");
    CHECK(members_outcome([](body_builder& b) {
              b.array(1).array(6).str("s").str("bot").str("10.0.0.1").value(7946).value(1)
                  .map(2).key("a").str("1").key("a").str("1");
          }) == "duplicate_field:members");
    CHECK(members_outcome([](body_builder& b) { b.array(2).member("s").member("s", "10.0.0.2"); })
          == "duplicate_field:members");
    CHECK(members_outcome([](body_builder& b) {
              b.array(20);
              for (int i = 0; i < 20; ++i) b.member("s" + std::to_string(i == 19 ? 0 : i));
          }) == "duplicate_field:members");
    body_builder twice;
    twice.map(3).key("version").value(1).key("members").array(0).key("members").array(0);
    CHECK(decode_error<mesh_members>(twice).to_string() == "duplicate_field:members");
}

TEST_CASE("mesh_members skips elements a later version appends to a member") {
    body_builder b;
    members_head(b, [](body_builder& m) {
        m.array(1).array(8).str("s").str("bot").str("10.0.0.1").value(7946).value(3).map(1).key("k").str("v")
            .map(1).key("x").array(1).value(1).str("y");
    });
    auto decoded = decode_body<mesh_members>(b.bytes());
    REQUIRE_MESSAGE(decoded.has_value(), decoded.error().to_string());
    REQUIRE(decoded->members.size() == 1);
    CHECK(decoded->members[0] == mesh_member{.id = "s", .type = "bot", .host = "10.0.0.1", .port = 7946,
                                             .incarnation = 3, .values = {{"k", "v"}}});
}

TEST_CASE("counts claiming more entries than the body holds fail fast, without a huge allocation") {
    // array32 / map32 headers claiming 2^32 - 1 entries, followed by a handful of bytes. Reserving for
    // the claim would ask for hundreds of GiB (and abort under ASan); the decoder must refuse first.
    CHECK(members_outcome([](body_builder& b) { b.raw({0xdd, 0xff, 0xff, 0xff, 0xff}).member("s"); })
          == "truncated:members");
    CHECK(members_outcome([](body_builder& b) {
              b.array(1).array(6).str("s").str("bot").str("10.0.0.1").value(7946).value(1)
                  .raw({0xdf, 0xff, 0xff, 0xff, 0xff}).str("k").str("v");
          }) == "truncated:members");

    body_builder update;
    update.map(1).key("mesh_values").raw({0xdf, 0x7f, 0xff, 0xff, 0xff}).str("k").str("v");
    CHECK(decode_error<mesh_update>(update).to_string() == "truncated:mesh_values");

    // A claim that just fits the remaining bytes still fails on the real content, not on memory.
    CHECK(members_outcome([](body_builder& b) { b.array(2).raw({0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}); })
          == "wrong_type:members");
}

TEST_CASE("mesh_update needs mesh_values; mesh_type is optional") {
    CHECK(decode_error<mesh_update>(body_builder{}.map(1).key("mesh_type").str("bot")).to_string() == "missing_field:mesh_values");
    auto values_only = decode_body<mesh_update>(body_builder{}.map(1).key("mesh_values").map(0).bytes());
    REQUIRE(values_only.has_value());
    CHECK_FALSE(values_only->mesh_type.has_value());
    CHECK(values_only->mesh_values.empty());
    CHECK(decode_error<mesh_update>(body_builder{}.map(1).key("mesh_values").map(2).key("a").str("").key("a").str("")).to_string()
          == "duplicate_field:mesh_values");
    CHECK(decode_error<mesh_update>(body_builder{}.map(2).key("mesh_type").value(1).key("mesh_values").map(0)).to_string()
          == "wrong_type:mesh_type");
}
