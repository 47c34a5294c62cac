// Rebuilding the supervisor's picture from its event log, for a master that starts after a crash
// and for `meshmaster replay` (a post-mortem: who held which shard under which epoch).
//
// The replay follows the ownership records — shard_started, shard_adopted, migration_completed,
// migration_rolled_back, shard_recovered, shard_orphaned — and migration_started with its terminal
// records. It yields the table as the log says it was, the highest epoch each shard reached (a new
// master continues above it, so no epoch is ever granted twice), the moves a crash left open, the
// generation and slave ids already used (a new master never spawns an id a previous one gave out:
// that slave may still be running), the spawned slaves not known to have exited (a new master
// kills those that do not come back) and whether the log ends with a clean stop.
//
// It also checks the restarts' guarantee: every restart_started gets exactly one terminal record
// (restart_completed, restart_failed or restart_abandoned). A restart still open when the log ends
// is in progress — the master may still be running it, or a master killed mid-restart left it to
// the next one, which closes it once its adoption is over — and a new master adopts it. A restart
// still open where it must have been closed breaks the guarantee: at the master_stopped or
// master_detached of a master, or at the adoption_finished of a later master (the point where a
// new master closes what a previous one left open).
//
// `event_replayer` is sans-I/O (records in, picture out), so the simulation replays the very
// records the core produced; `replay_event_log` feeds it a file.
//
// Thread safety: plain values; one replayer per thread.
#pragma once

#include <boost/json/object.hpp>

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace meshmaster::master {

struct replayed_shard {
    std::string owner;  ///< empty: nobody held it when the log ended
    std::uint64_t epoch = 0;
};

struct open_migration {
    std::uint64_t id = 0;
    std::uint32_t shard = 0;
    std::string from;
    std::string to;
};

/// A restart whose terminal record is missing where the log should have it.
struct unterminated_restart {
    std::uint64_t restart = 0;
    std::uint64_t started_seq = 0;  ///< the seq of its restart_started
    std::string problem;            ///< where it should have ended, in words
};

struct event_replay {
    std::vector<replayed_shard> shards;      ///< the table, per shard
    std::vector<std::uint64_t> max_epochs;   ///< the highest epoch seen, per shard
    std::vector<open_migration> open;        ///< started, never ended
    std::vector<std::uint64_t> open_restarts;  ///< restart_started without a terminal record, by id
    std::vector<unterminated_restart> unterminated_restarts;  ///< of those, the ones overdue (an error)
    std::uint64_t generation = 0;            ///< the highest slave generation seen
    std::set<std::string> spawned_ids;       ///< every slave id a master spawned
    /// Slaves a master spawned (or adopted) whose exit the log does not show: id → pid.
    std::map<std::string, std::int64_t> running_slaves;
    bool clean_stop = true;                  ///< empty log, or it ends with master_stopped
    std::uint64_t records = 0;
    std::uint64_t unreadable = 0;            ///< lines that were not JSON records (a torn write)
};

class event_replayer {
public:
    explicit event_replayer(std::uint32_t shard_count);

    /// One record, as the event log holds it.
    void add(const boost::json::object& record);
    /// One line of the log; a line that is not a JSON object counts as unreadable.
    void add_line(std::string_view line);
    /// The picture after every record so far.
    [[nodiscard]] event_replay result() const;

private:
    void track_restarts(const std::string& event, std::optional<std::uint64_t> restart, std::uint64_t seq);

    event_replay r_;
    std::map<std::uint64_t, open_migration> open_;
    struct restart_opened {
        std::uint64_t seq = 0;
        std::uint64_t master = 0;  // how many master_started came before it
        bool overdue = false;
    };
    std::map<std::uint64_t, restart_opened> open_restarts_;
    std::uint64_t masters_ = 0;
    std::uint64_t master_seq_ = 0;  // the seq of the latest master_started
    std::string last_event_;
};

/// Replays the log at `path` for `shard_count` shards. A missing file is an empty log.
event_replay replay_event_log(const std::string& path, std::uint32_t shard_count);

/// How many shards the log's last master ran: the `count` of its last master_started record, or,
/// after it (a log rotated away takes that record with it), the length of the last
/// epochs_snapshot. Nothing if the log has neither.
std::optional<std::uint32_t> logged_shard_count(const std::string& path);

}  // namespace meshmaster::master
