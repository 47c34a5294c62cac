// What a discovery backend knows about a node, and where it reports what it sees.
//
// Backends (embedded in meshmaster, Redis, a static list) publish the local node's record and
// report peers appearing and disappearing to a discovery_sink — the node. They never talk to peers
// themselves; the node decides what "online" means from the datagrams it gets.
//
// Thread safety: a sink is called on the node's executor only.
#pragma once

#include <meshmaster/protocol/messages.hpp>

#include <string_view>

namespace meshmaster::mesh {

/// One node as discovery sees it: the protocol's node record (defined once, in protocol, and used
/// by the master too): id, type, host, port, incarnation and values.
using peer_record = protocol::mesh_node;

class discovery_sink {
public:
    virtual ~discovery_sink() = default;
    /// A peer appeared, or its record changed (a new incarnation, new values, a new endpoint).
    virtual void peer_up(const peer_record& peer) = 0;
    /// A peer left (gracefully, or its record expired).
    virtual void peer_down(std::string_view id) = 0;
};

}  // namespace meshmaster::mesh
