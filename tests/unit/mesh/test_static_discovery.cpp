// Static discovery without sockets or clocks: which configured addresses are probed, what an
// answer makes of them, and how soon the next round comes.
#include "static_discovery.hpp"

#include <doctest/doctest.h>

namespace mm = meshmaster::mesh;
using namespace std::chrono_literals;

TEST_CASE("the configured list: IPv4 and IPv6 addresses with a port; anything else is reported") {
    mm::static_discovery d({"127.0.0.1:7400", "::1:7401", "fe80::1%eth0:7402", "localhost:7403", "nocolon"},
                           "self");
    REQUIRE(d.targets().size() == 3);
    CHECK(d.targets()[0].host == "127.0.0.1");
    CHECK(d.targets()[0].port == 7400);
    CHECK(d.targets()[1].host == "::1");
    CHECK(d.targets()[1].port == 7401);
    CHECK(d.targets()[2].host == "fe80::1%eth0");
    CHECK(d.invalid() == std::vector<std::string>{"localhost:7403", "nocolon"});
    // Written the way the node writes addresses (canonical text).
    CHECK(mm::static_discovery::parse("0:0:0:0:0:0:0:1:9")->host == "::1");
}

TEST_CASE("an answer is a member to report; silence makes the next round come quickly") {
    mm::static_discovery d({"127.0.0.1:7400", "127.0.0.1:7401"}, "self");
    d.begin_round();
    const auto& a = d.targets()[0];
    const auto& b = d.targets()[1];
    const auto r = d.answered(a, mm::probe_result{.id = "a", .type = "bot", .incarnation = 7, .rtt = {}});
    REQUIRE(r);
    CHECK(*r == mm::peer_record{.id = "a", .type = "bot", .host = "127.0.0.1", .port = 7400, .incarnation = 7, .values = {}});
    CHECK(d.pause(2000ms) == 2000ms);
    CHECK_FALSE(d.answered(b, std::nullopt));
    CHECK(d.pause(2000ms) == mm::static_discovery::retry);
    d.begin_round();
    CHECK(d.pause(2000ms) == 2000ms);
    // The list may name this node: its own answer reports nothing, and counts as answered.
    CHECK_FALSE(d.answered(b, mm::probe_result{.id = "self", .type = "", .incarnation = 3, .rtt = {}}));
    CHECK(d.pause(2000ms) == 2000ms);
}
