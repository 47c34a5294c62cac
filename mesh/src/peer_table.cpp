#include "peer_table.hpp"

#include <netinet/in.h>

#include <algorithm>
#include <cstring>

namespace meshmaster::mesh {

bool peer_address::loopback() const noexcept {
    if (raw.ss_family == AF_INET) {
        sockaddr_in a{};
        std::memcpy(&a, &raw, sizeof a);
        return (ntohl(a.sin_addr.s_addr) & 0xFF000000u) == 0x7F000000u;
    }
    if (raw.ss_family == AF_INET6) {
        sockaddr_in6 a{};
        std::memcpy(&a, &raw, sizeof a);
        return IN6_IS_ADDR_LOOPBACK(&a.sin6_addr);
    }
    return false;
}

bool operator==(const peer_address& a, const peer_address& b) noexcept {
    return a.size == b.size && std::memcmp(&a.raw, &b.raw, a.size) == 0;
}

peer_table::peer_table(peer_table_config config, observer& obs, resolver resolve)
    : config_(std::move(config)), obs_(obs), resolve_(std::move(resolve)) {}

peer* peer_table::find(std::string_view id) {
    auto it = peers_.find(id);
    return it == peers_.end() ? nullptr : it->second.get();
}

const peer* peer_table::find(std::string_view id) const {
    auto it = peers_.find(id);
    return it == peers_.end() ? nullptr : it->second.get();
}

peer* peer_table::by_incarnation(std::uint64_t incarnation) {
    auto it = by_incarnation_.find(incarnation);
    return it == by_incarnation_.end() ? nullptr : it->second;
}

void peer_table::add(const peer_record& rec, bool from_probe, bool visiting, mono_time now) {
    if (rec.id == config_.self_id || rec.incarnation == 0) return;
    const bool visitor = from_probe && (visiting || !config_.learn_from_probes);
    if (auto* p = find(rec.id)) {
        if (p->rec.incarnation == rec.incarnation) {
            if (visitor) return;  // a probe from a peer discovery already reported: nothing new
            const bool moved = p->rec.host != rec.host || p->rec.port != rec.port;
            p->rec = rec;
            if (moved) p->address = resolve_(rec);
            if (!from_probe) p->learned = false;  // discovery reports it: not forgotten when silent
            if (p->visitor) {  // discovery now reports it: a member from here on
                p->visitor = false;
                obs_.membership(membership_event::kind::join, rec.id);
                obs_.membership(membership_event::kind::online, rec.id);
            }
            return;
        }
        // Restarted: the old incarnation's requests will never be answered.
        obs_.stop_requests(rec.id, p->rec.incarnation, "the peer restarted");
        by_incarnation_.erase(p->rec.incarnation);
        ++changes_;
        obs_.log("info", "mesh peer " + rec.id + " restarted");
        peers_[rec.id] = make_peer(rec, now);
    } else if (auto gone = departed_.find(rec.id); gone != departed_.end() && gone->second.first->rec.incarnation == rec.incarnation) {
        auto back = std::move(gone->second.first);
        departed_.erase(gone);
        back->rec = rec;
        back->learned = from_probe;
        peers_.emplace(rec.id, std::move(back));
        obs_.log("info", "mesh peer " + rec.id + " is back");
        obs_.membership(membership_event::kind::join, rec.id);
        obs_.membership(membership_event::kind::online, rec.id);
    } else {
        departed_.erase(rec.id);
        auto fresh = make_peer(rec, now);
        fresh->visitor = visitor;
        fresh->learned = from_probe;
        peers_.emplace(rec.id, std::move(fresh));
        if (!visitor) {
            obs_.log("info", "mesh peer " + rec.id + " joined (" + rec.host + ":" + std::to_string(rec.port) + ")");
            obs_.membership(membership_event::kind::join, rec.id);
            obs_.membership(membership_event::kind::online, rec.id);
        }
    }
    by_incarnation_[rec.incarnation] = find(rec.id);
    obs_.changed();
}

void peer_table::remove(std::string_view id, mono_time now) {
    auto it = peers_.find(id);
    if (it == peers_.end()) return;
    const std::string name = it->first;
    obs_.stop_requests(name, it->second->rec.incarnation, "the peer left");
    by_incarnation_.erase(it->second->rec.incarnation);
    ++changes_;
    // Kept for a while: discovery may report the same incarnation back (its slave reconnected to
    // the master, say), and the peer's side of the channel lives on — a fresh one here would not
    // match its sequence numbers.
    departed_[name] = {std::move(it->second), now};
    peers_.erase(it);
    obs_.log("info", "mesh peer " + name + " left");
    obs_.membership(membership_event::kind::offline, name);
    obs_.membership(membership_event::kind::leave, name);
    obs_.changed();
}

void peer_table::forget_visitor(std::string_view id) {
    auto it = peers_.find(id);
    if (it == peers_.end() || !it->second->visitor) return;
    obs_.stop_requests(it->first, it->second->rec.incarnation, "the visitor left");
    by_incarnation_.erase(it->second->rec.incarnation);
    ++changes_;
    peers_.erase(it);
    obs_.changed();
}

void peer_table::heard(peer& p, const peer_address& from, mono_time now) {
    p.last_heard = now;
    if (!p.online && !p.draining) set_online(p, true);
    if (!(p.address == from)) p.address = from;  // it moved (NAT rebinding, a new address)
}

void peer_table::on_bye(peer& p, std::uint8_t reason) {
    if (p.visitor && reason != rpc::bye_draining) {
        forget_visitor(p.rec.id);  // its visit is over: nothing to keep
        return;
    }
    if (reason == rpc::bye_draining) {
        if (!p.draining) obs_.log("info", "mesh peer " + p.rec.id + " is going offline");
        p.draining = true;
        set_online(p, false);
        return;
    }
    p.draining = true;
    set_online(p, false);
    obs_.stop_requests(p.rec.id, p.rec.incarnation, "the peer went offline");
    // Its incarnation is over: nothing more will be acknowledged. A new one comes through
    // discovery (peer_up with a new incarnation).
    p.ch = std::make_unique<channel>(channel_config_for(p.address));
    p.udata.clear();
    obs_.changed();
}

void peer_table::tick(mono_time now) {
    std::vector<std::string> forget, forget_visitors;
    for (auto& [id, p] : peers_) {
        const auto silent = now - std::max(p->last_heard, p->since);
        // A visitor that stopped answering left without a goodbye (a CLI killed, say).
        if (p->visitor && silent >= config_.offline_after) {
            forget_visitors.push_back(id);
        } else if (p->learned && !p->online && silent >= 5 * config_.offline_after) {
            forget.push_back(id);
        }
        if (auto d = p->ch->next_deadline(); d && *d <= now) p->ch->on_timer(now);
        const mono_time quiet_since = std::max(p->last_heard, p->last_probe);
        if (!p->draining && now - quiet_since >= config_.keepalive) p->probe_due = true;
        // Silent for offline_after (since it was last heard, or since discovery reported it if it
        // never was): offline. Probes keep going, so it comes back when it answers.
        if (p->online && silent >= config_.offline_after) set_online(*p, false);
    }
    for (const auto& id : forget) remove(id, now);
    for (const auto& id : forget_visitors) forget_visitor(id);
    std::erase_if(departed_, [&](const auto& d) { return now - d.second.second > std::chrono::minutes(1); });
}

std::optional<mono_time> peer_table::next_deadline() const {
    std::optional<mono_time> next;
    auto earliest = [&](mono_time t) { next = next ? std::min(*next, t) : t; };
    for (const auto& [id, p] : peers_) {
        if (auto d = p->ch->next_deadline()) earliest(*d);
        if (!p->draining) earliest(std::max(p->last_heard, p->last_probe) + config_.keepalive);
    }
    return next;
}

std::vector<peer_record> peer_table::members() const {
    std::vector<peer_record> v;
    for (const auto& [id, p] : peers_) {
        if (!p->visitor) v.push_back(p->rec);
    }
    return v;
}

std::vector<peer_record> peer_table::members_of_type(std::string_view type) const {
    std::vector<peer_record> v;
    for (const auto& [id, p] : peers_) {
        if (p->rec.type == type && !p->visitor) v.push_back(p->rec);
    }
    return v;
}

bool peer_table::is_online(std::string_view id) const {
    const peer* p = find(id);
    return p && p->online;
}

bool peer_table::idle() const {
    return std::ranges::all_of(peers_, [](const auto& e) { return !e.second->online || e.second->ch->idle(); });
}

void peer_table::set_online(peer& p, bool online) {
    if (p.online == online) return;
    p.online = online;
    obs_.log("info", "mesh peer " + p.rec.id + (online ? " is online" : " is offline"));
    obs_.membership(online ? membership_event::kind::online : membership_event::kind::offline, p.rec.id);
    obs_.changed();  // senders waiting for room give up on an offline peer
}

std::unique_ptr<peer> peer_table::make_peer(const peer_record& rec, mono_time now) const {
    auto p = std::make_unique<peer>();
    p->rec = rec;
    p->since = now;
    p->address = resolve_(rec);
    const channel_config cfg = channel_config_for(p->address);
    p->datagram = cfg.max_datagram;
    p->ch = std::make_unique<channel>(cfg);
    return p;
}

// A peer on this host (loopback) gets loopback-sized datagrams: no MTU there worth the name, and
// every datagram costs a trip through the whole network stack.
channel_config peer_table::channel_config_for(const peer_address& a) const {
    channel_config cfg = config_.channel;
    if (config_.loopback_datagram > 0 && a.loopback()) cfg.max_datagram = config_.loopback_datagram;
    return cfg;
}

}  // namespace meshmaster::mesh
