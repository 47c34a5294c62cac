// What the supervisor's unit tests share: a settled simulated fleet, and reading what a core did
// out of its actions (its log records, the frames it sent on a connection, decoded). Each supervisor
// unit has its test file (test_shard_table.cpp, test_migration_pipeline.cpp, ...); they drive the
// core through its public entry points, without sockets or clocks.
#pragma once

#include "sim_world.hpp"

#include <meshmaster/master/supervisor.hpp>
#include <meshmaster/protocol/codec.hpp>
#include <meshmaster/protocol/frame_decoder.hpp>

#include <doctest/doctest.h>

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <variant>
#include <vector>

namespace meshmaster::master::test {

/// The ids of the slaves in a holdings() map.
inline std::set<std::string> ids_of(const std::map<std::string, std::map<std::uint32_t, std::uint64_t>>& held) {
    std::set<std::string> ids;
    for (const auto& [id, shards] : held) ids.insert(id);
    return ids;
}

/// A fleet without faults, brought up until every shard runs.
inline sim_world settled_world(sim_options options = {}) {
    options.faults = false;
    sim_world w(1, options);
    REQUIRE(w.settle());
    REQUIRE_FALSE(w.violation());
    return w;
}

/// "g2" of "s0-g2".
inline std::string generation_of(const std::string& id) { return id.substr(id.find('-') + 1); }

/// The log records among `acts`, in order.
inline std::vector<event_record> records_in(const std::vector<action>& acts) {
    std::vector<event_record> out;
    for (const auto& a : acts) {
        if (const auto* l = std::get_if<actions::log_event>(&a)) out.push_back(l->record);
    }
    return out;
}

/// Their event names, in order.
inline std::vector<std::string> names_of(const std::vector<event_record>& records) {
    std::vector<std::string> out;
    for (const auto& r : records) out.emplace_back(r.event);
    return out;
}

/// The frames a core sent on a connection, decoded and kept as (event name, shard, epoch, migration).
struct sent_frame {
    std::string event;
    std::uint32_t shard = 0;
    std::uint64_t epoch = 0;
    std::uint64_t migration = 0;
};

/// Calls f(event id, message) for each frame the core sent on `connection`, decoded.
template <class F>
void for_each_message_to(const std::vector<action>& acts, connection_id connection, F f) {
    for (const auto& a : acts) {
        const auto* send = std::get_if<actions::send_frame>(&a);
        if (!send || send->connection != connection) continue;
        meshmaster::protocol::frame_decoder d;
        d.feed(send->frames);
        while (true) {
            auto next = d.next();
            if (!next || !*next) break;
            auto m = meshmaster::protocol::decode(**next);
            if (m) f(static_cast<meshmaster::protocol::event_id>((**next).event), *m);
        }
    }
}

inline std::vector<sent_frame> frames_to(const std::vector<action>& acts, connection_id connection) {
    std::vector<sent_frame> out;
    for_each_message_to(acts, connection, [&](meshmaster::protocol::event_id event, const meshmaster::protocol::message& m) {
        sent_frame f{.event = std::string(meshmaster::protocol::to_string(event))};
        if (const auto* x = std::get_if<meshmaster::protocol::stop_shard>(&m)) f = {f.event, x->shard, x->epoch, x->migration_id};
        if (const auto* x = std::get_if<meshmaster::protocol::resume>(&m)) f = {f.event, x->shard, x->epoch, x->migration_id};
        if (const auto* x = std::get_if<meshmaster::protocol::start_shard>(&m)) f = {f.event, x->shard, x->epoch, 0};
        out.push_back(f);
    });
    return out;
}

}  // namespace meshmaster::master::test
