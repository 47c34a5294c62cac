// The mesh directory (the mesh's embedded discovery, mesh_directory.cpp): every slave with a mesh node
// gets the whole list, again on each change, and the versions keep growing across masters.
#include "supervisor_fixtures.hpp"

#include <meshmaster/master/supervisor.hpp>

#include <doctest/doctest.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

using namespace meshmaster::master;
using namespace meshmaster::master::test;
using namespace std::chrono_literals;

namespace {
// The mesh_members lists the core sent on `connection`, in order: (version, member ids).
std::vector<std::pair<std::uint64_t, std::vector<std::string>>> mesh_lists_to(const std::vector<action>& acts,
                                                                                connection_id connection) {
    std::vector<std::pair<std::uint64_t, std::vector<std::string>>> out;
    for_each_message_to(acts, connection, [&](meshmaster::protocol::event_id, const meshmaster::protocol::message& m) {
        if (const auto* x = std::get_if<meshmaster::protocol::mesh_members>(&m)) {
            std::vector<std::string> ids;
            for (const auto& member : x->members) ids.emplace_back(member.id);
            out.emplace_back(x->version, std::move(ids));
        }
    });
    return out;
}

mesh_node_info mesh_node(std::uint16_t port, std::string type = "bot") {
    return {.type = std::move(type), .host = "127.0.0.1", .port = port, .incarnation = 1000u + port, .values = {}};
}
}  // namespace

TEST_CASE("embedded discovery: every slave with a mesh node gets the whole list, again on each change") {
    supervisor_config c{.shard_count = 4, .slave_count = 2, .spawn_slaves = false};
    supervisor core(c, 1000);
    core.start(0ns, 0ms);
    (void)core.take_actions();
    core.on_slave_connected(1, {.id = "a", .pid = 11, .version_minor = 2, .mesh = mesh_node(7001)}, 1ms);
    auto acts = core.take_actions();
    REQUIRE(mesh_lists_to(acts, 1).size() == 1);
    CHECK(mesh_lists_to(acts, 1)[0].second == std::vector<std::string>{"a"});

    // A second node joins: both hear of it, with a newer version.
    core.on_slave_connected(2, {.id = "b", .pid = 12, .version_minor = 2, .mesh = mesh_node(7002)}, 2ms);
    acts = core.take_actions();
    const auto to_a = mesh_lists_to(acts, 1), to_b = mesh_lists_to(acts, 2);
    REQUIRE(to_a.size() == 1);
    REQUIRE(to_b.size() == 1);
    CHECK(to_a[0].second == std::vector<std::string>{"a", "b"});
    CHECK(to_b[0] == to_a[0]);
    const std::uint64_t v2 = to_a[0].first;

    // A slave without a mesh node, or speaking 1.1, neither gets lists nor appears in them.
    core.on_slave_connected(3, {.id = "old", .pid = 13, .version_minor = 1, .mesh = mesh_node(7003)}, 3ms);
    acts = core.take_actions();
    CHECK(mesh_lists_to(acts, 3).empty());
    CHECK(mesh_lists_to(acts, 1).empty());

    // Values change at runtime: everyone gets the new list.
    core.on_mesh_update(2, std::string("room"), {{"zone", "eu"}}, 4ms);
    acts = core.take_actions();
    REQUIRE(mesh_lists_to(acts, 1).size() == 1);
    CHECK(mesh_lists_to(acts, 1)[0].first > v2);

    // A slave the master loses (its connection dropped: it is fenced) leaves the list.
    core.on_disconnected(2, 5ms);
    acts = core.take_actions();
    REQUIRE(mesh_lists_to(acts, 1).size() == 1);
    CHECK(mesh_lists_to(acts, 1)[0].second == std::vector<std::string>{"a"});

    // After a master restart the list is rebuilt from the hellos of the slaves that reconnect.
    supervisor next(c, 2000);
    next.start(10ms, 0ms);
    (void)next.take_actions();
    next.on_slave_connected(7, {.id = "a", .pid = 11, .version_minor = 2, .mesh = mesh_node(7001)}, 11ms);
    next.on_slave_connected(8, {.id = "c", .pid = 14, .version_minor = 2, .mesh = mesh_node(7004)}, 12ms);
    acts = next.take_actions();
    const auto rebuilt = mesh_lists_to(acts, 7);
    REQUIRE(rebuilt.size() == 2);
    CHECK(rebuilt[1].second == std::vector<std::string>{"a", "c"});
    CHECK(mesh_lists_to(acts, 8).back() == rebuilt[1]);
    CHECK(rebuilt[0].first > v2);  // versions keep growing across masters: slaves outlive them

    // A slave that dies leaves the list at once.
    next.on_process_exited("a", "killed by signal 9", 13ms);
    acts = next.take_actions();
    const auto after = mesh_lists_to(acts, 8);
    REQUIRE(after.size() == 1);
    CHECK(after[0].second == std::vector<std::string>{"c"});
}
