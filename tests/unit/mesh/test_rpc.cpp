// The rpc layer without sockets or clocks: the message format on the wire, one outcome per
// request whatever arrives and in whatever order, and the answer cache that makes a retried
// request run its handler once.
#include "rpc.hpp"

#include <doctest/doctest.h>

#include <string>

namespace mm = meshmaster::mesh;
namespace rpc = meshmaster::mesh::rpc;
using outcome = mm::outcome;

namespace {

mm::bytes text(std::string_view s) {
    mm::bytes b(s.size());
    for (std::size_t i = 0; i < s.size(); ++i) b[i] = std::byte(static_cast<unsigned char>(s[i]));
    return b;
}

}  // namespace

TEST_CASE("a message is kind, command and request id, little-endian, then the payload") {
    const auto m = rpc::encode_message(rpc::msg_kind::request, 0x0102, 0x1122334455667788ull, text("hi"));
    REQUIRE(m.size() == rpc::msg_header + 2);
    CHECK(m[0] == std::byte{1});
    CHECK(m[1] == std::byte{0x02});
    CHECK(m[2] == std::byte{0x01});
    CHECK(m[3] == std::byte{0x88});
    CHECK(m[10] == std::byte{0x11});
    CHECK(m[11] == std::byte{'h'});
    const auto parsed = rpc::parse_message(m);
    REQUIRE(parsed);
    CHECK(parsed->kind == rpc::msg_kind::request);
    CHECK(parsed->command == 0x0102);
    CHECK(parsed->id == 0x1122334455667788ull);
    CHECK(parsed->payload.size() == 2);
}

TEST_CASE("a message too short or of an unknown kind is refused") {
    auto m = rpc::encode_message(rpc::msg_kind::oneway, 7, 0, {});
    CHECK(rpc::parse_message(m));
    CHECK_FALSE(rpc::parse_message(std::span(m).first(rpc::msg_header - 1)));
    m[0] = std::byte{9};
    CHECK_FALSE(rpc::parse_message(m));
    m[0] = std::byte{0};
    CHECK_FALSE(rpc::parse_message(m));
}

TEST_CASE("responses, errors and stops are outcomes; requests and one-way sends are not") {
    const auto resp = rpc::encode_message(rpc::msg_kind::response, 1, 5, text("body"));
    const auto o = rpc::outcome_of(*rpc::parse_message(resp));
    REQUIRE(o);
    CHECK(o->ok());
    CHECK(o->body == text("body"));
    const auto err = rpc::outcome_of(*rpc::parse_message(rpc::encode_message(rpc::msg_kind::error, 1, 5, text("nope"))));
    REQUIRE(err);
    CHECK(err->what == outcome::kind::error);
    CHECK(err->message == "nope");
    const auto stop = rpc::outcome_of(*rpc::parse_message(rpc::encode_message(rpc::msg_kind::stopped, 1, 5, {})));
    REQUIRE(stop);
    CHECK(stop->what == outcome::kind::stopped);
    CHECK_FALSE(rpc::outcome_of(*rpc::parse_message(rpc::encode_message(rpc::msg_kind::request, 1, 5, {}))));
    CHECK_FALSE(rpc::outcome_of(*rpc::parse_message(rpc::encode_message(rpc::msg_kind::oneway, 1, 0, {}))));
    CHECK(mm::to_string(outcome::kind::timeout) == "timeout");
}

TEST_CASE("request ids are never 0 and never reused") {
    rpc::request_table t;
    const auto a = t.begin("b", 1);
    const auto b = t.begin("b", 1);
    CHECK(a != 0);
    CHECK(b != a);
    t.finish(a);
    CHECK(t.begin("b", 1) != a);
}

TEST_CASE("a request has exactly one outcome: the first that comes") {
    rpc::request_table t;
    int woken = 0;
    const auto id = t.begin("b", 42, [&] { ++woken; });
    // From another node, or from an earlier incarnation of b: not an answer to this request.
    CHECK_FALSE(t.complete(id, "c", 42, {.what = outcome::kind::response}));
    CHECK_FALSE(t.complete(id, "b", 41, {.what = outcome::kind::response}));
    CHECK(woken == 0);
    CHECK(t.complete(id, "b", 42, {.what = outcome::kind::error, .message = "first"}));
    CHECK(woken == 1);
    CHECK_FALSE(t.complete(id, "b", 42, {.what = outcome::kind::response}));
    CHECK_FALSE(t.settle(id, {.what = outcome::kind::stopped}));
    t.stop_to("b", 42, "gone");
    t.stop_all("shutdown");
    CHECK(woken == 1);
    const auto o = t.finish(id);
    CHECK(o.what == outcome::kind::error);
    CHECK(o.message == "first");
    CHECK(t.size() == 0);
    // An answer after the request finished finds nothing.
    CHECK_FALSE(t.complete(id, "b", 42, {.what = outcome::kind::response}));
}

TEST_CASE("a request with no answer by its deadline is a timeout") {
    rpc::request_table t;
    const auto id = t.begin("b", 1);
    t.set_deadline(id, mm::mono_time(std::chrono::seconds(5)));
    REQUIRE(t.find(id));
    CHECK(t.find(id)->deadline == mm::mono_time(std::chrono::seconds(5)));
    CHECK_FALSE(t.find(id)->result);
    CHECK(t.finish(id).what == outcome::kind::timeout);
}

TEST_CASE("a peer going offline stops its requests; the shutdown stops every one") {
    rpc::request_table t;
    const auto to_b = t.begin("b", 1);
    const auto to_b_old = t.begin("b", 0);
    const auto to_c = t.begin("c", 2);
    t.stop_to("b", 1, "the peer went offline");
    CHECK(t.find(to_b)->result->what == outcome::kind::stopped);
    CHECK(t.find(to_b)->result->message == "the peer went offline");
    CHECK_FALSE(t.find(to_b_old)->result);
    CHECK_FALSE(t.find(to_c)->result);
    t.stop_all("the node was destroyed");
    CHECK(t.finish(to_c).message == "the node was destroyed");
    CHECK(t.finish(to_b_old).what == outcome::kind::stopped);
    CHECK(t.finish(to_b).message == "the peer went offline");
}

TEST_CASE("the answer cache remembers ids and keeps answers within its byte budget") {
    rpc::answer_cache c;
    CHECK(c.find(1) == nullptr);
    c.remember(1, std::nullopt);  // the handler runs
    REQUIRE(c.find(1));
    CHECK_FALSE(*c.find(1));
    c.remember(1, text("answer"));
    REQUIRE(c.find(1));
    REQUIRE(*c.find(1));
    CHECK(**c.find(1) == text("answer"));
    CHECK(c.bytes_held() == 6);
    c.forget(1);  // the handler gave no answer: a retry may run it again
    CHECK(c.find(1) == nullptr);
    CHECK(c.bytes_held() == 0);

    // Answers past the budget let the oldest go; their ids stay (the handler ran once).
    const mm::bytes big(rpc::answer_cache::bytes_kept / 2 + 1);
    c.remember(10, big);
    c.remember(11, big);
    REQUIRE(c.find(10));
    CHECK_FALSE(*c.find(10));
    REQUIRE(c.find(11));
    CHECK(*c.find(11));
    CHECK(c.bytes_held() <= rpc::answer_cache::bytes_kept);
    // An answer larger than the whole budget is not kept at all.
    c.remember(12, mm::bytes(rpc::answer_cache::bytes_kept + 1));
    REQUIRE(c.find(12));
    CHECK_FALSE(*c.find(12));
}

TEST_CASE("the answer cache keeps the last 4096 ids") {
    rpc::answer_cache c;
    for (std::uint64_t id = 1; id <= rpc::answer_cache::ids_kept + 10; ++id) c.remember(id, text("x"));
    CHECK(c.size() == rpc::answer_cache::ids_kept);
    CHECK(c.find(1) == nullptr);
    CHECK(c.find(10) == nullptr);
    CHECK(c.find(11) != nullptr);
    CHECK(c.find(rpc::answer_cache::ids_kept + 10) != nullptr);
    CHECK(c.bytes_held() == rpc::answer_cache::ids_kept);
}
