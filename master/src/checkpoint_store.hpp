// Where the master keeps the state to resume each shard from, so that a master that restarts after
// a crash still has it: a shard whose holder dies while the master is down (or before the
// restarted master hears from it again) resumes from its last checkpoint instead of starting over.
//
// One append-only log, <directory>/checkpoints.log, of records (little-endian):
//   "MMCL", format version (u32), shard (u32), flags (u32; 1 = tombstone: the shard's state was
//   removed), epoch (u64), size (u64), CRC-32 of those 32 bytes (u32), the state (size bytes),
//   CRC-32 of the state (u32).
// The newest record of a shard wins. Thousands of shards cost one file, not one file per shard
// (creating and renaming 16,384 files in a directory is where a rolling restart spent its CPU).
// Writes happen behind, on a thread of the store's own, in batches — each batch one writev at the
// end of the log (or a few: IOV_MAX = 1,024 buffers, 3 a record, at a time) — at most once per
// `min_interval`, except when a shard's first state of a new epoch (or a removal) is queued: then
// the batch goes at once, since without that state the shard would start over. Only the newest state per shard is written, so a flood of
// checkpoints costs one record per shard per interval. An older state of the same epoch is as good
// to resume from as a newer one, only longer to catch up (the upstream replays what came after it).
//
// Reading: the header's own CRC makes its size trustworthy, so a record whose state is damaged is
// skipped (the shard has no state, as if its file had been damaged) and the scan goes on; a header
// that is damaged, or a record cut short (a crash mid-append), ends the log there: what follows is
// unreadable and is cut off before anything is appended, so new records never follow garbage.
// Compaction: once the log is past twice its live bytes (and past `compact_floor`), the live
// records are copied to <log>.compact, which is renamed over the log — on the writer thread, so
// put() never waits for it. A crash before the rename leaves the old log (the leftover is removed
// on open), after it the new one.
// Durability (`sync`): `none` writes into the kernel only — a master process that dies loses only
// what was still queued, a machine that crashes may also lose what the kernel had not written back; `batch` adds fdatasync after every batch and an fsync of the directory after a compaction.
// Upgrade: per-shard files of the previous version (<directory>/shard-<n>.state: "MMCK", version 1,
// epoch, size, state, CRC-32) are read on open; those of shards the log has no record of are
// appended to it, the log is fdatasync'ed whatever `sync` says, and then every per-shard file is
// removed.
//
// Errors: the constructor throws std::runtime_error naming the directory or the log it cannot
// create, open or read. Everything after that goes to the `on_error` callback, naming the path: a
// batch that cannot be written is cut back off the log and its states queued again (unless newer
// ones came), so the next batch retries them; at destruction what still cannot be written is
// reported as lost.
//
// Thread safety: put(), flush(), load() and statistics() may be called from one thread (the
// daemon's); the writer thread is internal. The error callback runs on the writer thread (and on
// the calling thread for what the constructor and load() find).
#pragma once

#include <meshmaster/master/actions.hpp>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace meshmaster::master {

/// How hard the store pushes its writes to stable storage (config key `checkpoint_sync`).
enum class checkpoint_sync_mode {
    none,   ///< into the kernel only: survives the master process dying, not the machine crashing
    batch,  ///< fdatasync after every batch, fsync of the directory after a compaction's rename
};
/// "none" or "batch"; nullopt for anything else.
std::optional<checkpoint_sync_mode> parse_checkpoint_sync(std::string_view text);

struct checkpoint_store_settings {
    std::chrono::milliseconds min_interval{500};  ///< least time between two batches (but see above)
    checkpoint_sync_mode sync = checkpoint_sync_mode::none;
    /// No compaction below this many log bytes: a small fleet's log is not rewritten every few
    /// batches, and 8 MiB is still rewritten in milliseconds.
    std::uint64_t compact_floor = std::uint64_t{8} << 20;
};

class checkpoint_store {
public:
    using settings = checkpoint_store_settings;

    /// Creates `directory` if needed, opens the log, reads it and any per-shard files of the previous
    /// version (see above); throws std::runtime_error if it cannot.
    explicit checkpoint_store(std::string directory, std::function<void(const std::string&)> on_error = {},
                              settings config = {});
    /// Writes what is queued, then stops the writer.
    ~checkpoint_store();
    checkpoint_store(const checkpoint_store&) = delete;
    checkpoint_store& operator=(const checkpoint_store&) = delete;

    struct loaded {
        std::vector<shared_bytes> states;  ///< per shard; null where there is none
        std::uint32_t found = 0;
        /// Damaged records that are a shard's newest (that shard has no state), plus one for a log
        /// whose end had to be cut off when the store opened.
        std::uint32_t unreadable = 0;
    };
    /// The stored states of shards 0..shard_count-1, read from the log (records of other shards are
    /// left alone: kept, not loaded).
    [[nodiscard]] loaded load(std::uint32_t shard_count) const;

    /// Queues the newest state of `shard`; null removes it.
    void put(std::uint32_t shard, std::uint64_t epoch, shared_bytes state);
    /// Returns once everything queued before the call has been written (or failed, and is queued
    /// again), and the compaction it may have started is done.
    void flush();

    struct counters {
        std::uint64_t log_bytes = 0;   ///< the log's size
        std::uint64_t live_bytes = 0;  ///< of which records that are some shard's newest state
        std::uint64_t batches = 0;     ///< appended
        std::uint64_t compactions = 0;
        std::uint64_t syncs = 0;       ///< fdatasync/fsync calls made
    };
    [[nodiscard]] counters statistics() const;

    [[nodiscard]] const std::string& directory() const noexcept { return directory_; }
    [[nodiscard]] const std::string& log_path() const noexcept { return log_path_; }

private:
    struct pending_state {
        std::uint64_t epoch = 0;
        shared_bytes state;
    };
    struct record_place {  // a shard's newest intact record in the log
        std::uint64_t offset = 0;
        std::uint64_t size = 0;  // of the state
    };
    struct batch_entry {
        std::uint32_t shard;
        pending_state p;
    };

    std::unordered_set<std::uint32_t> recover();  // the shards the log has any record of
    void carry_legacy_files(const std::unordered_set<std::uint32_t>& in_log);
    void run();
    bool append(const std::vector<batch_entry>& batch);
    void compact();
    bool sync_file(int fd, const std::string& path);
    bool sync_directory();
    void report(const std::string& problem) const;

    std::string directory_;
    std::string log_path_;
    std::function<void(const std::string&)> on_error_;
    settings config_;

    // The daemon's side and the writer's hand-over.
    std::mutex mutex_;
    std::condition_variable wake_;
    std::condition_variable written_;
    std::unordered_map<std::uint32_t, pending_state> pending_;
    std::uint64_t queued_ = 0;   // states handed over so far
    std::uint64_t done_ = 0;     // of them, written (or failed) so far
    bool stopping_ = false;
    std::uint64_t flush_target_ = 0;  // what flush() callers wait for: no pause between batches before it
    bool urgent_ = false;  // a shard's first state of an epoch is queued: no pause either
    std::unordered_map<std::uint32_t, std::uint64_t> epochs_;  // the epoch of each shard's newest queued state

    // The log: written by the writer thread, read by load() and statistics().
    mutable std::mutex file_mutex_;
    int fd_ = -1;
    std::unordered_map<std::uint32_t, record_place> live_;
    std::set<std::uint32_t> damaged_;  // shards whose newest record (or per-shard file) was damaged at open
    bool tail_cut_ = false;
    bool needs_truncate_ = false;  // a failed append may have left part of a batch behind log_bytes
    std::uint64_t compact_blocked_until_ = 0;  // after a failed compaction: not before the log is this big
    counters counters_;

    std::thread writer_;
};

}  // namespace meshmaster::master
