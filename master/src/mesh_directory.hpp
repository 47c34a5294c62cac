// The mesh's embedded discovery (protocol 1.2): every slave that runs a mesh node is listed to every
// such slave, whole, in a mesh_members frame whose version grows with each change. It owns that
// version, the mesh_directory_rec below (supervisor::state derives from it); the nodes themselves
// are the slaves' records (slave_rec::mesh, one protocol::mesh_node each). The behaviour is in
// mesh_directory.cpp, as members of supervisor::state (supervisor_state.hpp): a node leaves the list
// when its slave is lost or dead, not when a connection merely drops.
//
// Thread safety: none (the supervisor's driver thread only).
#pragma once

#include <cstdint>

namespace meshmaster::master {

struct mesh_directory_rec {
    /// The version of the list last sent; seeded from first_id (see the supervisor's constructor)
    /// so that a restarted master's lists are newer than the old one's.
    std::uint64_t mesh_version = 0;
};

}  // namespace meshmaster::master
