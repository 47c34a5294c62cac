// The mesh's embedded discovery (protocol 1.2): every slave that runs a mesh node is listed to
// every such slave, whole, with a version that grows with each change. A node leaves the list when
// its slave is lost or dead, not when a connection merely drops (a master restart must not make the
// mesh forget its nodes). Members of supervisor::state (supervisor_state.hpp); its record is in
// mesh_directory.hpp.
#include "mesh_directory.hpp"
#include "supervisor_state.hpp"

#include <iterator>
#include <utility>

namespace meshmaster::master {

void supervisor::state::send_mesh_members(const slave_rec& to) {
    if (!to.mesh || !to.connection || to.minor < 2) return;
    protocol::mesh_members m{.version = mesh_version, .members = {}};
    for (const auto& [id, r] : slaves) {
        if (!r.mesh || !r.alive) continue;
        m.members.push_back(protocol::to_member(*r.mesh));  // views into the slaves' records
        m.members.back().id = r.id;  // the slave's id, whatever the record says
    }
    send(to, m);
}

void supervisor::state::mesh_changed() {
    ++mesh_version;
    for (const auto& [id, r] : slaves) {
        if (r.alive && r.connection) send_mesh_members(r);
    }
}

void supervisor::state::mesh_leave(slave_rec& r) {
    if (!r.mesh) return;
    r.mesh.reset();
    mesh_changed();
}

void supervisor::on_mesh_update(connection_id connection, std::optional<std::string> type,
                                std::vector<std::pair<std::string, std::string>> values, mono_time now) {
    auto& s = *s_;
    s.now = now;
    if (s.exited) return;
    slave_rec* r = s.by_conn(connection);
    if (!r || !r->mesh) return;  // no node announced: nothing to update
    mesh_node_info updated = *r->mesh;
    if (type) updated.type = std::move(*type);
    updated.values = {std::make_move_iterator(values.begin()), std::make_move_iterator(values.end())};
    if (updated == *r->mesh) return;
    r->mesh = std::move(updated);
    s.mesh_changed();
}

}  // namespace meshmaster::master
