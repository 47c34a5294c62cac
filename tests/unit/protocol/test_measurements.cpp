// Protocol 1.3: the heartbeat echo and the slave-measured handoff pause are optional fields, so a
// 1.2 peer's frames still decode (absent = empty) and a 1.3 frame decodes on a 1.2 peer (unknown
// keys are skipped). Bodies are built with msgpack-c, an encoder independent of ours.
#include <meshmaster/protocol/codec.hpp>
#include <meshmaster/protocol/version.hpp>

#include "body_builder.hpp"

#include <doctest/doctest.h>

#include <cstdint>

using namespace meshmaster::protocol;

TEST_CASE("protocol 1.3 adds fields, no events, and still talks to 1.0-1.2 peers") {
    CHECK(current_version == protocol_version{1, 3});
    CHECK(is_compatible({1, 2}));
    CHECK(is_compatible({1, 0}));
    CHECK_FALSE(is_compatible({2, 3}));
}

TEST_CASE("a 1.2 heartbeat, stop, resume and resumed decode with the 1.3 fields empty") {
    body_builder hb;
    hb.map(2).key("seq").value(5).key("progress").value(9);
    const auto h = decoded<heartbeat>(hb);
    CHECK(h.seq == 5);
    CHECK_FALSE(h.echo_seq.has_value());
    CHECK_FALSE(h.echo_delay_us.has_value());

    body_builder stopped;
    stopped.map(3).key("shard").value(1).key("epoch").value(2).key("state").bin("s");
    CHECK_FALSE(decoded<shard_stopped>(stopped).stopped_at_us.has_value());

    body_builder res;
    res.map(4).key("shard").value(1).key("epoch").value(3).key("migration_id").value(7).key("state").bin("s");
    CHECK_FALSE(decoded<resume>(res).stopped_at_us.has_value());

    body_builder done;
    done.map(3).key("shard").value(1).key("epoch").value(3).key("migration_id").value(7);
    CHECK_FALSE(decoded<resumed>(done).pause_us.has_value());
}

TEST_CASE("the 1.3 fields round-trip at full width, and nil reads as absent") {
    const heartbeat h{.seq = 1, .progress = 2, .echo_seq = UINT64_MAX, .echo_delay_us = 0};
    std::vector<std::byte> out;
    REQUIRE(encode(message{h}, out).has_value());
    auto back = decode(frame_view{event_of(message{h}), std::span(out).subspan(frame_header_size)});
    REQUIRE(back.has_value());
    CHECK(std::get<heartbeat>(*back) == h);

    body_builder nil_echo;
    nil_echo.map(3).key("seq").value(5).key("echo_seq").nil().key("echo_delay_us").nil();
    const auto n = decoded<heartbeat>(nil_echo);
    CHECK_FALSE(n.echo_seq.has_value());
    CHECK_FALSE(n.echo_delay_us.has_value());

    const resumed r{.shard = 1, .epoch = 3, .migration_id = 7, .pause_us = 0};  // 0 is a value, not absent
    out.clear();
    REQUIRE(encode(message{r}, out).has_value());
    back = decode(frame_view{event_of(message{r}), std::span(out).subspan(frame_header_size)});
    REQUIRE(back.has_value());
    CHECK(std::get<resumed>(*back).pause_us == std::optional<std::uint64_t>(0));
}

TEST_CASE("a 1.3 field of the wrong type or out of range is refused by its name") {
    body_builder text_echo;
    text_echo.map(2).key("seq").value(5).key("echo_seq").str("4");
    CHECK(decode_error<heartbeat>(text_echo) == error{errc::wrong_type, "echo_seq"});

    body_builder negative_delay;
    negative_delay.map(3).key("seq").value(5).key("echo_seq").value(4).key("echo_delay_us").value(-1);
    CHECK(decode_error<heartbeat>(negative_delay) == error{errc::out_of_range, "echo_delay_us"});

    body_builder float_stamp;
    float_stamp.map(4).key("shard").value(1).key("epoch").value(2).key("state").bin("s").key("stopped_at_us").value(1.5);
    CHECK(decode_error<shard_stopped>(float_stamp) == error{errc::wrong_type, "stopped_at_us"});

    body_builder negative_pause;
    negative_pause.map(4).key("shard").value(1).key("epoch").value(3).key("migration_id").value(7).key("pause_us").value(-3);
    CHECK(decode_error<resumed>(negative_pause) == error{errc::out_of_range, "pause_us"});
}
