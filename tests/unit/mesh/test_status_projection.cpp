// The status projection without sockets or clocks: a peer's line of the status list, and the JSON
// the status command answers with — members listed, visitors only counted.
#include "status_projection.hpp"

#include <doctest/doctest.h>

#include <boost/json/parse.hpp>

namespace mm = meshmaster::mesh;
namespace json = boost::json;
using namespace std::chrono_literals;

namespace {

struct quiet final : mm::peer_table::observer {
    void log(std::string_view, std::string_view) override {}
    void membership(mm::membership_event::kind, const std::string&) override {}
    void stop_requests(const std::string&, std::uint64_t, const std::string&) override {}
    void changed() override {}
};

mm::peer_record rec(std::string id, std::uint64_t incarnation) {
    return {.id = std::move(id), .type = "bot", .host = "10.0.0.2", .port = 7400, .incarnation = incarnation,
            .values = {{"zone", "eu"}}};
}

}  // namespace

TEST_CASE("a peer's status line: its record, state and counters, last heard as an age") {
    quiet q;
    mm::peer_table table({.self_id = "self"}, q, [](const mm::peer_record&) { return mm::peer_address{}; });
    table.add(rec("a", 7), false, false, 1s);
    auto& p = *table.find("a");
    p.packets_in = 3;
    p.bytes_out = 99;
    auto st = mm::status_of(p, 5s);
    CHECK(st.record == rec("a", 7));
    CHECK(st.member);
    CHECK(st.online);
    CHECK(st.packets_in == 3);
    CHECK(st.bytes_out == 99);
    CHECK(st.loss == 0.0);
    CHECK_FALSE(st.rtt);
    CHECK(st.last_heard == -1ms);  // never heard
    table.heard(p, p.address, 4s);
    CHECK(mm::status_of(p, 5s).last_heard == 1000ms);
    CHECK(mm::status_list(table, 5s).size() == 1);
}

TEST_CASE("the status JSON lists members, counts visitors, and says what this node dropped") {
    quiet q;
    mm::peer_table table({.self_id = "self"}, q, [](const mm::peer_record&) { return mm::peer_address{}; });
    table.add(rec("a", 7), false, false, 1s);
    table.add(rec("tool", 8), true, true, 1s);  // a visitor
    mm::node_counters c;
    c.bad_tag = 2;
    c.gso_sends = 5;
    const mm::peer_record self{.id = "self", .type = "room", .host = "127.0.0.1", .port = 7000, .incarnation = 1, .values = {}};
    const auto text = mm::status_json({.record = self, .online = true, .authenticated = true, .gso = true, .gro = false},
                                      mm::status_list(table, 2s), c);
    const json::value v = json::parse(text);
    const auto& o = v.as_object();
    CHECK(o.at("visitors").to_number<int>() == 1);
    const auto& peers = o.at("peers").as_array();
    REQUIRE(peers.size() == 1);
    const auto& a = peers[0].as_object();
    CHECK(a.at("id").as_string() == "a");
    CHECK(a.at("incarnation").as_string() == "7");  // a string: JSON readers lose 64-bit integers
    CHECK(a.at("values").as_object().at("zone").as_string() == "eu");
    CHECK(a.at("member").as_bool());
    CHECK(a.at("online").as_bool());
    CHECK(a.at("rtt_us").is_null());
    CHECK(a.at("last_heard_ms").to_number<int>() == -1);
    for (const char* key : {"loss", "packets_in", "packets_out", "bytes_in", "bytes_out", "messages_in", "messages_out",
                            "retransmitted", "timeouts", "duplicates_dropped", "beyond_window_dropped"}) {
        CHECK_MESSAGE(a.contains(key), key);
    }
    const auto& me = o.at("self").as_object();
    CHECK(me.at("id").as_string() == "self");
    CHECK(me.at("type").as_string() == "room");
    CHECK(me.at("online").as_bool());
    CHECK(me.at("authenticated").as_bool());
    CHECK(me.at("offload").as_object().at("gso").as_bool());
    CHECK(me.at("offload").as_object().at("gso_sends").to_number<int>() == 5);
    const auto& dropped = o.at("dropped").as_object();
    CHECK(dropped.at("bad_tag").to_number<int>() == 2);
    CHECK(dropped.size() == 8);
}
