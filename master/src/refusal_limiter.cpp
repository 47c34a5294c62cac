#include "refusal_limiter.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <iterator>

namespace meshmaster::master {

namespace {

constexpr std::string_view overflow_peer = "*";

double ms_of(mono_time d) { return std::chrono::duration<double, std::milli>(d).count(); }

}  // namespace

refusal_limiter::refusal_limiter(refusal_limits limits) : limits_(limits) {
    limits_.burst = std::max<std::uint32_t>(limits_.burst, 1);
}

void refusal_limiter::set_limits(refusal_limits limits) {
    limits_ = limits;
    limits_.burst = std::max<std::uint32_t>(limits_.burst, 1);
    // The window's length moved every due time.
    due_.clear();
    for (auto& [key, p] : peers_) {
        if (p.held == 0) continue;
        p.due_at = p.written.empty() ? p.first_held : p.written.front() + limits_.window;
        due_.emplace(p.due_at, key);
    }
}

std::string refusal_limiter::peer_of(const event_record& r) {
    if (r.address.empty()) return r.slave.empty() ? std::string(overflow_peer) : r.slave;
    std::string_view host = r.address;
    if (const auto colon = host.rfind(':'); colon != std::string_view::npos) host = host.substr(0, colon);
    if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
    return std::string(host);
}

void refusal_limiter::expire(peer_state& p, mono_time now) const {
    while (!p.written.empty() && p.written.front() + limits_.window <= now) p.written.pop_front();
}

void refusal_limiter::hold(const std::string& key, peer_state& p, const event_record& r, mono_time now) {
    if (p.held++ == 0) {
        p.first_held = now;
        p.due_at = p.written.empty() ? now : p.written.front() + limits_.window;
        due_.emplace(p.due_at, key);
    }
    ++p.kinds[r.event];
}

event_record refusal_limiter::summary(const std::string& key, peer_state& p, mono_time now) {
    std::string kinds;
    for (const auto& [event, n] : p.kinds) kinds += fmt::format("{}{}: {}", kinds.empty() ? "" : ", ", event, n);
    const std::string from = key == overflow_peer
                                 ? fmt::format("peers beyond the {} tracked", limits_.max_peers)
                                 : key;
    event_record s{.event = event_kind::refusals_suppressed,
                   .duration_ms = ms_of(now - p.first_held),
                   .reason = fmt::format("{} more refusals from {} not logged one by one ({})", p.held, from, kinds),
                   .suppressed = p.held};
    if (p.by_address) {
        s.address = key;
    } else {
        s.slave = key;
    }
    due_.erase({p.due_at, key});
    p.held = 0;
    p.kinds.clear();
    p.written.push_back(now);  // a summary takes its place in the window
    return s;
}

void refusal_limiter::forget_idle(mono_time now) {
    next_sweep_ = now + limits_.window;
    for (auto it = peers_.begin(); it != peers_.end();) {
        expire(it->second, now);
        it = it->second.held == 0 && it->second.written.empty() ? peers_.erase(it) : std::next(it);
    }
}

std::vector<event_record> refusal_limiter::offer(event_record refusal, mono_time now) {
    if (now >= next_sweep_) forget_idle(now);
    std::string key = peer_of(refusal);
    auto it = peers_.find(key);
    if (it == peers_.end()) {
        if (peers_.size() >= limits_.max_peers) forget_idle(now);
        if (peers_.size() >= limits_.max_peers) key = std::string(overflow_peer);  // (a move: g++ 12 warns on assign)
        it = peers_.try_emplace(key).first;
        it->second.by_address = !refusal.address.empty() || key == overflow_peer;
    }
    peer_state& p = it->second;
    expire(p, now);
    std::vector<event_record> out;
    if (p.held > 0 && p.written.size() < limits_.burst) out.push_back(summary(key, p, now));
    if (p.written.size() < limits_.burst) {
        p.written.push_back(now);
        out.push_back(std::move(refusal));
    } else {
        hold(key, p, refusal, now);
    }
    return out;
}

std::vector<event_record> refusal_limiter::due(mono_time now) {
    std::vector<event_record> out;
    while (!due_.empty() && due_.begin()->first <= now) {
        const std::string key = due_.begin()->second;
        peer_state& p = peers_.at(key);
        expire(p, now);
        if (p.written.size() < limits_.burst) {
            out.push_back(summary(key, p, now));
        } else {
            // Not yet (the limits changed under it): when the oldest record leaves the window.
            due_.erase(due_.begin());
            p.due_at = p.written.front() + limits_.window;
            due_.emplace(p.due_at, key);
        }
    }
    return out;
}

std::vector<event_record> refusal_limiter::flush(mono_time now) {
    std::vector<event_record> out;
    for (auto& [key, p] : peers_) {
        if (p.held > 0) out.push_back(summary(key, p, now));
    }
    return out;
}

std::optional<mono_time> refusal_limiter::next_due() const {
    if (due_.empty()) return std::nullopt;
    return due_.begin()->first;
}

}  // namespace meshmaster::master
