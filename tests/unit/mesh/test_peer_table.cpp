// The peer table without sockets or clocks: who is a member, who only visits, and when a peer is
// judged offline, forgotten or back — with time passed in as values.
#include "peer_table.hpp"

#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstring>
#include <string>
#include <vector>

namespace mm = meshmaster::mesh;
using namespace std::chrono_literals;
using kind = mm::membership_event::kind;
using mm::mono_time;

namespace {

struct recorder final : mm::peer_table::observer {
    std::vector<std::string> events;  // "join a", "offline a", ...
    std::vector<std::string> stopped;  // "a/7: why"
    int changes = 0;
    void log(std::string_view, std::string_view) override {}
    void membership(kind k, const std::string& id) override {
        const char* names[] = {"join", "leave", "online", "offline"};
        events.push_back(std::string(names[static_cast<int>(k)]) + " " + id);
    }
    void stop_requests(const std::string& id, std::uint64_t incarnation, const std::string& why) override {
        stopped.push_back(id + "/" + std::to_string(incarnation) + ": " + why);
    }
    void changed() override { ++changes; }
    std::vector<std::string> take() { return std::exchange(events, {}); }
};

mm::peer_address v4(const std::string& host, std::uint16_t port) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    ::inet_pton(AF_INET, host.c_str(), &a.sin_addr);
    mm::peer_address p;
    std::memcpy(&p.raw, &a, sizeof a);
    p.size = sizeof a;
    return p;
}

mm::peer_table_config config(bool learn = true) {
    mm::channel_config ch;
    ch.max_datagram = 1400;
    return {.self_id = "self", .learn_from_probes = learn, .channel = ch, .loopback_datagram = 65000,
            .keepalive = 250ms, .offline_after = 2000ms};
}

mm::peer_record rec(std::string id, std::uint64_t incarnation, std::string host = "10.0.0.2") {
    return {.id = std::move(id), .type = "bot", .host = std::move(host), .port = 7400, .incarnation = incarnation, .values = {}};
}

struct fixture {
    recorder obs;
    mm::peer_table table;
    explicit fixture(bool learn = true)
        : table(config(learn), obs, [](const mm::peer_record& r) { return v4(r.host, r.port); }) {}
};

}  // namespace

TEST_CASE("a peer discovery reports is a member, online, reachable by incarnation") {
    fixture f;
    f.table.add(rec("a", 7), false, false, 1s);
    CHECK(f.obs.take() == std::vector<std::string>{"join a", "online a"});
    REQUIRE(f.table.find("a"));
    CHECK(f.table.by_incarnation(7) == f.table.find("a"));
    CHECK(f.table.is_online("a"));
    CHECK(f.table.members().size() == 1);
    CHECK(f.table.members_of_type("bot").size() == 1);
    CHECK(f.table.members_of_type("room").empty());
    CHECK(f.table.find("a")->datagram == 1400);
    // This node itself, or a record without incarnation, is never a peer.
    f.table.add(rec("self", 9), false, false, 1s);
    f.table.add(rec("b", 0), false, false, 1s);
    CHECK(f.table.all().size() == 1);
}

TEST_CASE("a peer on loopback gets loopback-sized datagrams") {
    fixture f;
    f.table.add(rec("a", 7, "127.0.0.1"), false, false, 1s);
    CHECK(f.table.find("a")->datagram == 65000);
    CHECK(v4("127.0.0.5", 1).loopback());
    CHECK_FALSE(v4("10.0.0.1", 1).loopback());
}

TEST_CASE("silence past offline_after makes a peer offline; being heard makes it online again") {
    fixture f;
    f.table.add(rec("a", 7), false, false, 10s);
    f.obs.take();
    f.table.tick(11s);
    CHECK(f.table.is_online("a"));
    CHECK(f.table.find("a")->probe_due);  // quiet past keepalive: probe it
    f.table.tick(12s);
    CHECK_FALSE(f.table.is_online("a"));
    CHECK(f.obs.take() == std::vector<std::string>{"offline a"});
    f.table.heard(*f.table.find("a"), v4("10.0.0.3", 7400), 13s);
    CHECK(f.table.is_online("a"));
    CHECK(f.table.find("a")->address == v4("10.0.0.3", 7400));  // it moved
    CHECK(f.obs.take() == std::vector<std::string>{"online a"});
    // Heard at 13 s: online until 15 s.
    f.table.tick(14s);
    CHECK(f.table.is_online("a"));
    CHECK(f.table.next_deadline());
}

TEST_CASE("a peer that left is kept a minute: the same incarnation comes back, a new one restarts") {
    fixture f;
    f.table.add(rec("a", 7), false, false, 1s);
    f.obs.take();
    f.table.remove("a", 2s);
    CHECK(f.obs.take() == std::vector<std::string>{"offline a", "leave a"});
    CHECK(f.obs.stopped == std::vector<std::string>{"a/7: the peer left"});
    CHECK(f.table.find("a") == nullptr);
    CHECK(f.table.by_incarnation(7) == nullptr);
    CHECK(f.table.departed() == 1);
    f.table.add(rec("a", 7), false, false, 3s);
    CHECK(f.obs.take() == std::vector<std::string>{"join a", "online a"});
    CHECK(f.table.departed() == 0);

    const auto before = f.table.changes();
    f.table.add(rec("a", 8), false, false, 4s);  // restarted
    CHECK(f.table.changes() > before);
    CHECK(f.obs.stopped.back() == "a/7: the peer restarted");
    CHECK(f.table.by_incarnation(8) == f.table.find("a"));
    CHECK(f.table.by_incarnation(7) == nullptr);

    f.table.remove("a", 5s);
    f.table.tick(5s + 61s);  // departed for over a minute: let go
    CHECK(f.table.departed() == 0);
}

TEST_CASE("a prober is a member when learning from probes; a visitor otherwise, without events") {
    SUBCASE("learning") {
        fixture f(true);
        f.table.add(rec("a", 7), true, false, 1s);
        CHECK(f.obs.take() == std::vector<std::string>{"join a", "online a"});
        CHECK(f.table.members().size() == 1);
        // A learned peer long silent is forgotten.
        f.table.tick(1s + 2s);
        CHECK_FALSE(f.table.is_online("a"));
        f.table.tick(1s + 10s);
        CHECK(f.table.find("a") == nullptr);
    }
}

TEST_CASE("a visitor talks but is no member: no events, forgotten when silent or on goodbye") {
    for (const bool learn : {true, false}) {
        fixture f(learn);
        // learn_from_probes off: any prober visits; on: only one whose probe says it visits.
        f.table.add(rec("v", 9), true, learn, 1s);
        REQUIRE(f.table.find("v"));
        CHECK(f.table.find("v")->visitor);
        CHECK(f.table.members().empty());
        CHECK(f.obs.take().empty());
        f.table.tick(1s + 2s);
        CHECK(f.table.find("v") == nullptr);
        // Neither joined nor left (the silence judgement may still call it offline on the way out).
        for (const auto& e : f.obs.take()) CHECK(e == "offline v");

        f.table.add(rec("w", 10), true, true, 5s);
        f.table.on_bye(*f.table.find("w"), meshmaster::mesh::rpc::bye_gone);
        CHECK(f.table.find("w") == nullptr);
        CHECK(f.obs.take().empty());
        CHECK(f.table.departed() == 0);
    }
}

TEST_CASE("a visitor discovery then reports becomes a member") {
    fixture f(false);
    f.table.add(rec("a", 7), true, false, 1s);
    CHECK(f.obs.take().empty());
    f.table.add(rec("a", 7), false, false, 2s);
    CHECK(f.obs.take() == std::vector<std::string>{"join a", "online a"});
    CHECK_FALSE(f.table.find("a")->visitor);
    CHECK(f.table.members().size() == 1);
}

TEST_CASE("a peer saying goodbye: draining first (answers still come), then gone") {
    fixture f;
    f.table.add(rec("a", 7), false, false, 1s);
    f.obs.take();
    auto& p = *f.table.find("a");
    f.table.on_bye(p, meshmaster::mesh::rpc::bye_draining);
    CHECK(p.draining);
    CHECK_FALSE(f.table.is_online("a"));
    CHECK(f.obs.take() == std::vector<std::string>{"offline a"});
    CHECK(f.obs.stopped.empty());
    // Draining: neither heard datagrams nor probes make it online, and no keepalive is due.
    f.table.heard(p, p.address, 2s);
    CHECK_FALSE(f.table.is_online("a"));
    f.table.tick(5s);
    CHECK_FALSE(p.probe_due);
    f.table.on_bye(p, meshmaster::mesh::rpc::bye_gone);
    CHECK(f.obs.stopped == std::vector<std::string>{"a/7: the peer went offline"});
    CHECK(f.table.idle());
    CHECK(f.table.members().size() == 1);  // still a member until discovery says it left
}
