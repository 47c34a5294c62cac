#include "event_replay.hpp"

#include <boost/json/parse.hpp>

#include <algorithm>
#include <fstream>
#include <map>

namespace meshmaster::master {

namespace json = boost::json;

event_replay replay_event_log(const std::string& path, std::uint32_t shard_count) {
    event_replay r;
    r.shards.resize(shard_count);
    r.max_epochs.resize(shard_count);
    std::ifstream in(path);
    if (!in) return r;
    std::map<std::uint64_t, open_migration> open;
    std::string line;
    std::string last_event;
    while (std::getline(in, line)) {
        boost::system::error_code ec;
        json::value v = json::parse(line, ec);
        if (ec || !v.is_object()) {
            ++r.unreadable;
            continue;
        }
        const json::object& o = v.as_object();
        ++r.records;
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
        last_event = event;
        if (event == "epochs_snapshot") {
            if (const auto* list = o.if_contains("epochs"); list && list->is_array()) {
                const auto& a = list->as_array();
                for (std::size_t i = 0; i < a.size() && i < shard_count; ++i) {
                    boost::system::error_code nec;
                    r.max_epochs[i] = std::max(r.max_epochs[i], a[i].to_number<std::uint64_t>(nec));
                }
            }
            continue;
        }
        const auto shard = number("shard");
        const auto epoch = number("epoch");
        if (shard && *shard < shard_count && epoch) r.max_epochs[*shard] = std::max(r.max_epochs[*shard], *epoch);
        const auto migration = number("migration");
        if (event == "migration_started" && migration && shard) {
            open[*migration] = {*migration, static_cast<std::uint32_t>(*shard), text("slave"), text("peer")};
        } else if (migration && (event == "migration_completed" || event == "migration_rolled_back" ||
                                 event == "migration_failed" || event == "migration_abandoned")) {
            open.erase(*migration);
        }
        if (!shard || *shard >= shard_count) continue;
        replayed_shard& s = r.shards[*shard];
        // The records that change who holds a shard, and the epoch they hold it under.
        if (event == "shard_started" || event == "shard_adopted" || event == "migration_completed" ||
            event == "migration_rolled_back" || event == "shard_recovered") {
            s.owner = text("slave");
            if (epoch) s.epoch = *epoch;
        } else if (event == "shard_orphaned" || (event == "shard_stopped" && s.owner == text("slave"))) {
            s.owner.clear();
        }
    }
    for (auto& [id, m] : open) r.open.push_back(m);
    r.clean_stop = r.records == 0 || last_event == "master_stopped";
    return r;
}

}  // namespace meshmaster::master
