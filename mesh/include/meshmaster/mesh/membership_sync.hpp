// Turns whole membership lists (embedded discovery: the master sends the complete list on every
// change) into the peer_up / peer_down calls a discovery_sink takes.
//
// Thread safety: none; call it on the sink's executor.
#pragma once

#include <meshmaster/mesh/discovery.hpp>

#include <map>
#include <string>
#include <vector>

namespace meshmaster::mesh {

class membership_sync {
public:
    /// Reports to `sink` what changed since the previous list: peers new or changed (up), peers
    /// gone (down).
    void apply(const std::vector<peer_record>& now, discovery_sink& sink);
    [[nodiscard]] const std::map<std::string, peer_record, std::less<>>& known() const noexcept { return known_; }

private:
    std::map<std::string, peer_record, std::less<>> known_;
};

}  // namespace meshmaster::mesh
