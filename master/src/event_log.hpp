// The append-only event log: one JSON line per state change of the supervisor.
//
//   {"seq":812,"time":"2026-11-23T10:04:05.123456Z","mono_ms":5123.456,"event":"migration_completed",
//    "slave":"s0-g2","peer":"s0-g1","shard":12,"epoch":42,"migration":9001,"duration_ms":1.2,...}
//
// Each record is written with one write(2) on a descriptor opened with O_APPEND, so a crash never
// leaves half a line behind a complete one and readers may follow the file while it grows.
// Sequence numbers continue from the last record of an existing file. SIGUSR1 → reopen() after
// logrotate moved the file away. Every event name is explained in docs/events.md.
//
// Thread safety: none; the daemon writes from its one thread.
#pragma once

#include <meshmaster/master/event_record.hpp>

#include <boost/json/object.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

namespace meshmaster::master {

class event_log {
public:
    /// Opens (creating) the file. Throws std::runtime_error if it cannot.
    explicit event_log(std::string path);
    ~event_log();
    event_log(const event_log&) = delete;
    event_log& operator=(const event_log&) = delete;

    /// Writes the record as the next line; returns that line (without its newline), which the
    /// daemon also keeps in its event feed.
    std::string write(const event_record& r, std::chrono::system_clock::time_point wall, double mono_ms);
    /// Reopens the path (after a rotation). On failure keeps writing to the old file and says why.
    std::optional<std::string> reopen();

    [[nodiscard]] const std::string& path() const noexcept { return path_; }
    [[nodiscard]] std::uint64_t last_seq() const noexcept { return seq_; }

    /// The JSON object of a record (also used by the control socket).
    static boost::json::object to_json(const event_record& r);
    /// The last complete record of the file at `path`, if any (for continuing sequence numbers
    /// and telling a crash from a clean stop).
    static std::optional<boost::json::object> last_record(const std::string& path);

private:
    std::string path_;
    int fd_ = -1;
    std::uint64_t seq_ = 0;
};

/// "2026-11-23T10:04:05.123456Z"
std::string iso8601(std::chrono::system_clock::time_point t);

}  // namespace meshmaster::master
