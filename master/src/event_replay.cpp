#include "event_replay.hpp"

#include <meshmaster/master/supervisor.hpp>

#include <boost/json/parse.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <fstream>
#include <optional>

namespace meshmaster::master {

namespace json = boost::json;

event_replayer::event_replayer(std::uint32_t shard_count) {
    r_.shards.resize(shard_count);
    r_.max_epochs.resize(shard_count);
}

void event_replayer::add_line(std::string_view line) {
    boost::system::error_code ec;
    json::value v = json::parse(line, ec);
    if (ec || !v.is_object()) {
        ++r_.unreadable;
        return;
    }
    add(v.as_object());
}

void event_replayer::add(const json::object& o) {
    const auto shard_count = static_cast<std::uint32_t>(r_.shards.size());
    ++r_.records;
    auto text = [&](const char* key) -> std::string {
        const auto* f = o.if_contains(key);
        return f && f->is_string() ? std::string(f->as_string()) : std::string();
    };
    auto number = [&](const char* key) -> std::optional<std::uint64_t> {
        const auto* f = o.if_contains(key);
        if (!f || !f->is_number()) return std::nullopt;
        boost::system::error_code nec;
        const auto n = f->to_number<std::uint64_t>(nec);
        return nec ? std::nullopt : std::optional(n);
    };
    const std::string event = text("event");
    last_event_ = event;
    track_restarts(event, number("restart"), number("seq").value_or(0));
    // Generations the masters chose themselves (a slave's hello may carry anything).
    if (event == event_id("master_started") || event == event_id("restart_started") || event == event_id("slave_spawned") || event == event_id("spare_spawned")) {
        if (const auto generation = number("generation")) r_.generation = std::max(r_.generation, *generation);
    }
    if (event == event_id("slave_spawned") || event == event_id("spare_spawned")) r_.spawned_ids.insert(text("slave"));
    if (event == event_id("slave_process_started") || event == event_id("slave_adopted") || event == event_id("slave_connected")) {
        const std::string slave = text("slave");
        const auto pid = number("pid");
        if (pid && *pid > 0 && (slot_of_spawned_id(slave) || is_spare_id(slave))) {
            r_.running_slaves[slave] = static_cast<std::int64_t>(*pid);
        }
    } else if (event == event_id("slave_exited")) {
        r_.running_slaves.erase(text("slave"));
    }
    if (event == event_id("epochs_snapshot")) {
        if (const auto* list = o.if_contains("epochs"); list && list->is_array()) {
            const auto& a = list->as_array();
            for (std::size_t i = 0; i < a.size() && i < shard_count; ++i) {
                boost::system::error_code nec;
                const auto e = a[i].to_number<std::uint64_t>(nec);
                if (!nec) r_.max_epochs[i] = std::max(r_.max_epochs[i], e);
            }
        }
        return;
    }
    const auto shard = number("shard");
    const auto epoch = number("epoch");
    if (shard && *shard < shard_count && epoch) r_.max_epochs[*shard] = std::max(r_.max_epochs[*shard], *epoch);
    const auto migration = number("migration");
    if (event == event_id("migration_started") && migration && shard) {
        open_[*migration] = {*migration, static_cast<std::uint32_t>(*shard), text("slave"), text("peer")};
    } else if (migration && (event == event_id("migration_completed") || event == event_id("migration_rolled_back") ||
                             event == event_id("migration_failed") || event == event_id("migration_abandoned"))) {
        open_.erase(*migration);
    }
    if (!shard || *shard >= shard_count) return;
    replayed_shard& s = r_.shards[*shard];
    // The records that change who holds a shard, and the epoch they hold it under.
    if (event == event_id("shard_started") || event == event_id("shard_adopted") || event == event_id("migration_completed") ||
        event == event_id("migration_rolled_back") || event == event_id("shard_recovered")) {
        s.owner = text("slave");
        if (epoch) s.epoch = *epoch;
    } else if (event == event_id("shard_orphaned") || (event == event_id("shard_stopped") && s.owner == text("slave"))) {
        s.owner.clear();
    }
}

void event_replayer::track_restarts(const std::string& event, std::optional<std::uint64_t> restart, std::uint64_t seq) {
    if (event == event_id("master_started")) {
        ++masters_;
        master_seq_ = seq;
    } else if (event == event_id("restart_started") && restart) {
        open_restarts_[*restart] = {.seq = seq, .master = masters_};
    } else if (restart && (event == event_id("restart_completed") || event == event_id("restart_failed") || event == event_id("restart_abandoned"))) {
        open_restarts_.erase(*restart);
    }
    auto overdue = [&](bool earlier_masters_only, const std::string& problem) {
        for (auto& [id, opened] : open_restarts_) {
            if (opened.overdue || (earlier_masters_only && opened.master >= masters_)) continue;
            opened.overdue = true;
            r_.unterminated_restarts.push_back({.restart = id, .started_seq = opened.seq, .problem = problem});
        }
    };
    if (event == event_id("adoption_finished")) {
        overdue(true, fmt::format("the master started at seq {} finished adopting (seq {}) without closing it", master_seq_, seq));
    } else if (event == event_id("master_stopped") || event == event_id("master_detached")) {
        overdue(false, fmt::format("still open at {} (seq {})", event, seq));
    }
}

event_replay event_replayer::result() const {
    event_replay r = r_;
    for (const auto& [id, m] : open_) r.open.push_back(m);
    for (const auto& [id, opened] : open_restarts_) r.open_restarts.push_back(id);
    r.clean_stop = r.records == 0 || last_event_ == event_id("master_stopped");
    return r;
}

std::optional<std::uint32_t> logged_shard_count(const std::string& path) {
    std::optional<std::uint32_t> count;
    std::ifstream in(path);
    std::string line;
    while (in && std::getline(in, line)) {
        // Most records are neither: skip them before parsing.
        const bool started = line.find("\"master_started\"") != std::string::npos;
        if (!started && line.find("\"epochs_snapshot\"") == std::string::npos) continue;
        boost::system::error_code ec;
        const json::value v = json::parse(line, ec);
        const json::object* o = ec ? nullptr : v.if_object();
        const json::value* event = o ? o->if_contains("event") : nullptr;
        if (!event || !event->is_string()) continue;
        if (event->as_string() == event_id("master_started")) {
            const json::value* n = o->if_contains("count");
            boost::system::error_code nec;
            const auto shards = n && n->is_number() ? n->to_number<std::uint32_t>(nec) : 0;
            if (n && n->is_number() && !nec && shards > 0) count = shards;
        } else if (event->as_string() == event_id("epochs_snapshot")) {
            const json::value* epochs = o->if_contains("epochs");
            if (epochs && epochs->is_array() && !epochs->as_array().empty()) {
                count = static_cast<std::uint32_t>(epochs->as_array().size());
            }
        }
    }
    return count;
}

event_replay replay_event_log(const std::string& path, std::uint32_t shard_count) {
    event_replayer replayer(shard_count);
    std::ifstream in(path);
    std::string line;
    while (in && std::getline(in, line)) replayer.add_line(line);
    return replayer.result();
}

}  // namespace meshmaster::master
