// Where the master keeps the state to resume each shard from, so that a master that restarts after
// a crash still has it: a shard whose holder dies while the master is down (or before the
// restarted master hears from it again) resumes from its last checkpoint instead of starting over.
//
// One file per shard, <directory>/shard-<n>.state: "MMCK", format version (u32), epoch (u64), size
// (u64), the state, CRC-32 of all before it — little-endian. Each is written to a temporary file
// and renamed into place, so a reader sees the old state or the new one, never half of one.
// Writes happen behind, on a thread of the store's own, at most once per `min_interval` — except a
// shard's first state of a new epoch, which goes at once, since without it the shard would start
// over. Only the newest state per shard is written, so a flood of checkpoints (10 a second of a
// few MiB each, say) costs one write per shard per interval. An older state of the same epoch is
// as good to resume from as a newer one, only longer to catch up (the upstream replays what came
// after it). There is no fsync: the failure this guards against is the master process dying (the
// kernel still has the data), not the machine — which takes its slaves along anyway.
//
// Thread safety: put(), flush() and load() may be called from one thread (the daemon's); the
// writer thread is internal. The error callback runs on the writer thread.
#pragma once

#include <meshmaster/master/actions.hpp>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace meshmaster::master {

class checkpoint_store {
public:
    /// Creates `directory` if needed; throws std::runtime_error if it cannot.
    explicit checkpoint_store(std::string directory, std::function<void(const std::string&)> on_error = {},
                              std::chrono::milliseconds min_interval = std::chrono::milliseconds(500));
    /// Writes what is queued, then stops the writer.
    ~checkpoint_store();
    checkpoint_store(const checkpoint_store&) = delete;
    checkpoint_store& operator=(const checkpoint_store&) = delete;

    struct loaded {
        std::vector<shared_bytes> states;  ///< per shard; null where there is none
        std::uint32_t found = 0;
        std::uint32_t unreadable = 0;      ///< files that are not a whole, intact state (skipped)
    };
    /// The stored states of shards 0..shard_count-1 (files of other shards are left alone).
    [[nodiscard]] loaded load(std::uint32_t shard_count) const;

    /// Queues the newest state of `shard`; null removes it.
    void put(std::uint32_t shard, std::uint64_t epoch, shared_bytes state);
    /// Returns once everything queued before the call is on disk (or failed).
    void flush();

    [[nodiscard]] const std::string& directory() const noexcept { return directory_; }
    [[nodiscard]] std::string path_of(std::uint32_t shard) const;

private:
    struct pending_state {
        std::uint64_t epoch = 0;
        shared_bytes state;
    };
    void run();
    void write_one(std::uint32_t shard, const pending_state& p);

    std::string directory_;
    std::function<void(const std::string&)> on_error_;
    std::chrono::milliseconds min_interval_;
    std::mutex mutex_;
    std::condition_variable wake_;
    std::condition_variable written_;
    std::map<std::uint32_t, pending_state> pending_;
    std::uint64_t queued_ = 0;   // batches handed over so far
    std::uint64_t done_ = 0;     // batches written so far
    bool stopping_ = false;
    std::uint32_t flushing_ = 0;  // flush() callers waiting: no pause between batches then
    bool urgent_ = false;  // a shard's first state of an epoch is queued: no pause either
    std::map<std::uint32_t, std::uint64_t> epochs_;  // the epoch of each shard's newest queued state
    std::thread writer_;
};

}  // namespace meshmaster::master
