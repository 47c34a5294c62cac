// What a discovery backend knows about a node, and where it reports what it sees.
//
// Backends (embedded in meshmaster, Redis, a static list) publish the local node's record and
// report peers appearing and disappearing to a discovery_sink — the node. They never talk to peers
// themselves; the node decides what "online" means from the datagrams it gets.
//
// Thread safety: a sink is called on the node's executor only.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>

namespace meshmaster::mesh {

/// One node as discovery sees it.
struct peer_record {
    std::string id;               ///< unique in the cluster (a slave id, a host name, a uuid)
    std::string type;             ///< what the node is ("bot", "room", …): nodes_by_type()
    std::string host;             ///< IP address the node's UDP socket is bound to (v4 or v6)
    std::uint16_t port = 0;
    std::uint64_t incarnation = 0;  ///< random per start of the node: a restart is a new peer
    std::map<std::string, std::string> values;  ///< key/value metadata peers can read

    friend bool operator==(const peer_record&, const peer_record&) = default;
};

class discovery_sink {
public:
    virtual ~discovery_sink() = default;
    /// A peer appeared, or its record changed (a new incarnation, new values, a new endpoint).
    virtual void peer_up(const peer_record& peer) = 0;
    /// A peer left (gracefully, or its record expired).
    virtual void peer_down(std::string_view id) = 0;
};

}  // namespace meshmaster::mesh
