// The status projection of a node, sans I/O: each peer's line of the status list (state, round
// trip, loss, traffic counters, how long ago it was heard) and the JSON text the status command
// answers with (what `meshmaster mesh nodes HOST:PORT` shows). Reads a peer table and the node's
// counters; changes nothing. The time is passed in.
//
// Thread safety: none needed; call it where the table lives (the node's executor).
#pragma once

#include "peer_table.hpp"

#include <meshmaster/mesh/node_types.hpp>

#include <string>
#include <vector>

namespace meshmaster::mesh {

/// One line of the status list for `p` at `now`.
peer_status status_of(const peer& p, mono_time now);
/// Every peer's line, members and visitors, in id order.
std::vector<peer_status> status_list(const peer_table& table, mono_time now);

/// What the JSON says about the node itself.
struct self_status {
    const peer_record& record;
    bool online = false;
    bool authenticated = false;
    bool gso = false, gro = false;
};

/// {"self": {...}, "peers": [{...}, ...], "visitors": N, "dropped": {...}}: `peers` holds the
/// members only; visitors (a tool asking for this very list) are counted.
std::string status_json(const self_status& self, const std::vector<peer_status>& peers, const node_counters& counters);

}  // namespace meshmaster::mesh
