#include <meshmaster/mesh/membership_sync.hpp>

namespace meshmaster::mesh {

void membership_sync::apply(const std::vector<peer_record>& now, discovery_sink& sink) {
    std::map<std::string, peer_record, std::less<>> next;
    for (const auto& r : now) next.emplace(r.id, r);
    for (const auto& [id, r] : known_) {
        if (!next.contains(id)) sink.peer_down(id);
    }
    for (const auto& [id, r] : next) {
        auto it = known_.find(id);
        if (it == known_.end() || it->second != r) sink.peer_up(r);
    }
    known_ = std::move(next);
}

}  // namespace meshmaster::mesh
