// Body decoding against hand-built msgpack (written with msgpack-c, an encoder independent of ours):
// wrong shapes, wrong types, missing and unknown fields — every failure names what was wrong.
#include <meshmaster/protocol/codec.hpp>
#include <meshmaster/protocol/version.hpp>

#include "body_builder.hpp"

#include <doctest/doctest.h>

#include <string>

using namespace meshmaster::protocol;

TEST_CASE("a body that is valid msgpack of the wrong shape is bad_body") {
    body_builder array;
    array.array(2).value(12).value(41);
    CHECK(decode_error<stop_shard>(array) == error{errc::bad_body});

    body_builder number;
    number.value(12);
    CHECK(decode_error<stop_shard>(number) == error{errc::bad_body});

    body_builder text;
    text.str("stop");
    CHECK(decode_error<stop_shard>(text) == error{errc::bad_body});

    body_builder int_keys;
    int_keys.map(1).value(1).value(12);
    CHECK(decode_error<stop_shard>(int_keys) == error{errc::bad_body});
}

TEST_CASE("a field of the wrong type is wrong_type:<field>") {
    body_builder b;
    b.map(2).key("shard").str("twelve").key("epoch").value(41);
    const error e = decode_error<stop_shard>(b);
    CHECK(e == error{errc::wrong_type, "shard"});
    CHECK(e.to_string() == "wrong_type:shard");

    body_builder state_as_str;
    state_as_str.map(4).key("shard").value(1).key("epoch").value(2).key("migration_id").value(3)
        .key("state").str("not bin");
    CHECK(decode_error<resume>(state_as_str) == error{errc::wrong_type, "state"});

    body_builder float_epoch;
    float_epoch.map(2).key("shard").value(1).key("epoch").value(2.5);
    CHECK(decode_error<stop_shard>(float_epoch) == error{errc::wrong_type, "epoch"});
}

TEST_CASE("a missing required field is missing_field:<field>, an optional one takes its default") {
    body_builder b;
    b.map(1).key("shard").value(12);
    CHECK(decode_error<stop_shard>(b).to_string() == "missing_field:epoch");

    body_builder minimal;
    minimal.map(2).key("epoch").value(41).key("shard").value(12);  // any order
    auto decoded = decode_body<stop_shard>(minimal.bytes());
    REQUIRE(decoded.has_value());
    CHECK(*decoded == stop_shard{.shard = 12, .epoch = 41, .migration_id = 0});
}

TEST_CASE("unknown keys are skipped, however nested, so newer peers interoperate") {
    body_builder b;
    b.map(4).key("future").map(2).key("a").array(3).value(1).str("x").map(0).key("b").bin("zz")
        .key("shard").value(12)
        .key("ext").raw({0xd6, 0x01, 0, 0, 0, 0})  // fixext4
        .key("epoch").value(41);
    auto decoded = decode_body<stop_shard>(b.bytes());
    REQUIRE(decoded.has_value());
    CHECK(decoded->shard == 12);
    CHECK(decoded->epoch == 41);
}

TEST_CASE("integers must fit their field and be non-negative, in any integer encoding") {
    body_builder too_big;
    too_big.map(2).key("shard").value(std::uint64_t{1} << 32).key("epoch").value(1);
    CHECK(decode_error<stop_shard>(too_big) == error{errc::out_of_range, "shard"});

    body_builder negative;
    negative.map(2).key("shard").value(-1).key("epoch").value(1);
    CHECK(decode_error<stop_shard>(negative) == error{errc::out_of_range, "shard"});

    body_builder negative_int64;
    negative_int64.map(2).key("shard").value(1).key("epoch").raw({0xd3, 0xff, 0, 0, 0, 0, 0, 0, 1});
    CHECK(decode_error<stop_shard>(negative_int64) == error{errc::out_of_range, "epoch"});

    // Some encoders write small positive numbers as int8/int64: still a valid unsigned value.
    body_builder signed_encodings;
    signed_encodings.map(2).key("shard").raw({0xd0, 0x0c}).key("epoch").raw({0xd3, 0, 0, 0, 0, 0, 0, 0, 41});
    auto decoded = decode_body<stop_shard>(signed_encodings.bytes());
    REQUIRE(decoded.has_value());
    CHECK(*decoded == stop_shard{.shard = 12, .epoch = 41});

    body_builder max_u64;
    max_u64.map(2).key("shard").value(std::uint32_t{0xffffffff}).key("epoch").value(~std::uint64_t{0});
    decoded = decode_body<stop_shard>(max_u64.bytes());
    REQUIRE(decoded.has_value());
    CHECK(decoded->shard == 0xffffffffu);
    CHECK(decoded->epoch == ~std::uint64_t{0});
}

TEST_CASE("a known field given twice is refused as duplicate_field") {
    body_builder b;
    b.map(3).key("shard").value(1).key("epoch").value(2).key("shard").value(3);
    CHECK(decode_error<stop_shard>(b) == error{errc::duplicate_field, "shard"});
}

TEST_CASE("enumerated strings: an unknown migration role is out_of_range:role") {
    body_builder b;
    b.map(2).key("role").str("sideways").key("shard_count").value(3);
    CHECK(decode_error<shard_migration_start>(b) == error{errc::out_of_range, "role"});
    body_builder ok;
    ok.map(2).key("role").str("target").key("shard_count").value(3);
    auto decoded = decode_body<shard_migration_start>(ok.bytes());
    REQUIRE(decoded.has_value());
    CHECK(decoded->role == migration_role::target);
}

TEST_CASE("std::optional fields: nil and absent are empty, present values round-trip") {
    body_builder b;
    b.map(3).key("code").str("x").key("shard").nil().key("epoch").value(9);
    auto decoded = decode_body<error_message>(b.bytes());
    REQUIRE(decoded.has_value());
    CHECK_FALSE(decoded->shard.has_value());
    CHECK(decoded->epoch == std::optional<std::uint64_t>{9});

    std::vector<std::byte> frame;
    REQUIRE(encode(error_message{.code = "x"}, frame).has_value());
    auto again = decode_body<error_message>(bytes_view(frame).subspan(frame_header_size));
    REQUIRE(again.has_value());
    CHECK_FALSE(again->shard.has_value());
    CHECK_FALSE(again->epoch.has_value());
}

TEST_CASE("strings must be UTF-8") {
    body_builder b;
    b.map(1).key("code").raw({0xa2, 0xc3, 0x28});  // invalid 2-byte sequence
    CHECK(decode_error<error_message>(b) == error{errc::bad_body, "code"});
    body_builder overlong;
    overlong.map(1).key("code").raw({0xa2, 0xc0, 0xaf});
    CHECK(decode_error<error_message>(overlong) == error{errc::bad_body, "code"});
    body_builder surrogate;
    surrogate.map(1).key("code").raw({0xa3, 0xed, 0xa0, 0x80});
    CHECK(decode_error<error_message>(surrogate) == error{errc::bad_body, "code"});
    body_builder good;
    good.map(1).key("code").str("grüße ✓ 🚀");
    CHECK(decode_body<error_message>(good.bytes()).has_value());
}

TEST_CASE("the reserved byte 0xc1 is bad_body wherever it appears") {
    body_builder in_value;
    in_value.map(2).key("shard").raw({0xc1}).key("epoch").value(1);
    CHECK(decode_error<stop_shard>(in_value).code == errc::bad_body);
    body_builder in_unknown;
    in_unknown.map(1).key("zzz").raw({0xc1});
    CHECK(decode_error<stop_shard>(in_unknown).code == errc::bad_body);
    body_builder as_body;
    as_body.raw({0xc1});
    CHECK(decode_error<stop_shard>(as_body) == error{errc::bad_body});
}

TEST_CASE("the shard list of slave_hello: pairs only, counts checked before reserving") {
    auto hello = [](body_builder& b) -> body_builder& {
        return b.key("version_major").value(1).key("version_minor").value(0).key("slave_id").str("s")
            .key("nonce").bin("n");
    };
    body_builder good;
    hello(good.map(5)).key("shards").array(2).array(2).value(0).value(3).array(2).value(7).value(9);
    auto decoded = decode_body<slave_hello>(good.bytes());
    REQUIRE(decoded.has_value());
    CHECK(decoded->shards == std::vector<shard_epoch>{{0, 3}, {7, 9}});

    body_builder triple;
    hello(triple.map(5)).key("shards").array(1).array(3).value(0).value(3).value(4);
    CHECK(decode_error<slave_hello>(triple) == error{errc::wrong_type, "shards"});

    body_builder huge_count;
    hello(huge_count.map(5)).key("shards").raw({0xdd, 0xff, 0xff, 0xff, 0xff, 0x92, 0x00, 0x00});
    CHECK(decode_error<slave_hello>(huge_count) == error{errc::truncated, "shards"});
}

TEST_CASE("an empty body is an empty map (YAGPDB sends bodiless events)") {
    CHECK(decode_body<soft_start>({}).has_value());
    CHECK(decode_body<shutdown_complete>({}).has_value());
    CHECK(decode_error<stop_shard>(body_builder{}) == error{errc::missing_field, "shard"});
}

TEST_CASE("application frames pass through undecoded") {
    const std::string body = "\xc1 not msgpack at all";
    auto decoded = decode(frame_view{0x9000'0000u, bytes_view::of(body)});
    REQUIRE(decoded.has_value());
    const auto& app = std::get<application_frame>(*decoded);
    CHECK(app.event == 0x9000'0000u);
    CHECK(app.body.data() == reinterpret_cast<const std::byte*>(body.data()));
}

TEST_CASE("encode refuses a body over the limit and leaves the output untouched") {
    std::vector<std::byte> out;
    REQUIRE(encode(heartbeat{.seq = 1}, out).has_value());
    const auto before = out;
    const std::vector<std::byte> state(2000);
    auto r = encode(resume{.shard = 1, .epoch = 1, .migration_id = 1, .state = bytes_view(state)}, out, 1024);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error() == error{errc::frame_too_large});
    CHECK(out == before);
}

TEST_CASE("protocol versions: same major talks, another major is refused by name") {
    CHECK(check_compatible({1, 0}).has_value());
    CHECK(check_compatible({1, 7}).has_value());
    auto refused = check_compatible({2, 0});
    REQUIRE_FALSE(refused.has_value());
    CHECK(refused.error().to_string() == "unsupported_version:version_major");
    CHECK(check_compatible({0, 9}).error().code == errc::unsupported_version);
}

TEST_CASE("protocol errors convert to boost::system::error_code") {
    const boost::system::error_code ec = errc::frame_too_large;
    CHECK(ec.category() == protocol_category());
    CHECK(ec.message() == "frame_too_large");
    CHECK(std::string(protocol_category().name()) == "meshmaster.protocol");
}
