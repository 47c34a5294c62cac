// The slave library: what a worker embeds to be supervised by meshmaster.
//
//   meshmaster::slave::slave s(io, meshmaster::slave::options::from_environment(), {
//       .start_shard  = [&](shard_grant g, completion<> done) { start(g.shard); done(); },
//       .stop_shard   = [&](shard_grant g, completion<std::vector<std::byte>> done) { done(stop(g.shard)); },
//       .resume_shard = [&](shard_grant g, std::span<const std::byte> state, completion<> done) {
//                           resume(g.shard, state); done(); },
//       .shutdown     = [&](completion<> done) { close_everything(); done(); },
//   });
//   s.start();
//   io.run();
//
// The library connects to the master, authenticates (HMAC challenge-response both ways), reports
// the shards this process already runs, and turns the master's frames into calls of these
// handlers. It refuses frames with stale epochs, so a superseded grant or stop never reaches the
// worker. When the master goes away the worker's shards keep running; the library reconnects with
// jittered backoff and reports them, with their epochs, so the master can adopt them.
//
// Handlers and what they may do:
//  - Each runs on the library's executor (a strand of the io_context given, or the library's own
//    thread) and must not block it; it may finish later, from any thread, through its completion.
//  - soft_start: prepare to take shards (connect upstream, warm caches) but run none yet.
//  - full_start: start normally; start_shard calls follow.
//  - start_shard: run the shard from scratch.
//  - stop_shard: stop processing the shard *before* completing, and hand back its state: after
//    the completion the worker must not process another event of that shard.
//  - resume_shard: run the shard from the state handed back by its previous holder. `state` is
//    valid only during the call: copy what you keep.
//  - shutdown: stop everything; after the completion the library says goodbye and stops.
//  A handler left empty completes at once (stop_shard then hands back an empty state).
//
// Errors, one convention for the whole library:
//  - Mistakes in set-up (MESHMASTER_ADDR missing, no secret, an unreadable TLS CA file) throw
//    std::runtime_error from options::from_environment() or from the constructor, naming the
//    setting at fault. Nothing throws once start() was called.
//  - What goes wrong at run time (the master unreachable or gone, a frame refused, a stale epoch)
//    the library handles itself — it reconnects with backoff, refuses the frame with an error
//    frame to the master — and tells through options::log; the worker's shards keep running.
//  - A worker's own failure goes back through its completion (`done.fail(reason)`, or a
//    completion dropped uncalled): the master logs it with the shard and epoch and decides.
//
// Lifetimes: the `slave` must outlive the io_context's run (or be stopped first); completions may
// outlive it (they then do nothing).
//
// Thread safety: start(), stop(), checkpoint(), update_mesh(), shards(), finished() and heartbeat_rtt()
// may be called from any thread.
// The library never changes signal dispositions; a worker whose stdout is a pipe to meshmaster
// should ignore SIGPIPE so that it survives a master restart.
#pragma once

#include <meshmaster/mesh/discovery.hpp>
#include <meshmaster/protocol/messages.hpp>
#include <meshmaster/slave/completion.hpp>
#include <meshmaster/slave/options.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <vector>

namespace boost::asio {
class io_context;
}

namespace meshmaster::slave {

/// An immutable byte buffer with shared ownership: a state handed to the library without a copy
/// (the same type as the master's `master::shared_bytes`).
using shared_bytes = std::shared_ptr<const std::vector<std::byte>>;

/// A shard granted by the master, and the epoch of that grant.
struct shard_grant {
    std::uint32_t shard = 0;
    std::uint64_t epoch = 0;
    std::uint32_t shard_count = 0;  ///< total shards of the fleet (start_shard only; 0 if unknown)
};

struct handlers {
    std::function<void(completion<>)> soft_start;
    std::function<void(completion<>)> full_start;
    std::function<void(shard_grant, completion<>)> start_shard;
    std::function<void(shard_grant, completion<std::vector<std::byte>>)> stop_shard;
    std::function<void(shard_grant, std::span<const std::byte> state, completion<>)> resume_shard;
    std::function<void(completion<>)> shutdown;
    /// Embedded discovery (with options::mesh set): every other mesh node of the fleet, each time
    /// the master sends a newer list. Hand it to a mesh::membership_sync feeding the mesh::node.
    /// Called on the slave's strand or thread.
    std::function<void(std::vector<mesh::peer_record>)> mesh_members;
};

class slave {
public:
    /// Runs on the worker's io_context (on a strand of it).
    slave(boost::asio::io_context& io, options opts, handlers h);
    /// Runs on a thread of its own; handlers are called on that thread.
    slave(options opts, handlers h);
    ~slave();
    slave(const slave&) = delete;
    slave& operator=(const slave&) = delete;

    /// Starts connecting to the master. Returns at once.
    void start();
    /// Stops talking to the master. The worker's shards are not touched.
    void stop();
    /// Hands the master a running shard's current state. If this process dies, the shard resumes
    /// elsewhere from its latest checkpoint (or from a state handed back since) instead of starting
    /// over. Call it from time to time for each shard, from any thread; it is dropped when the master
    /// is unreachable or the shard is not running here. A checkpoint still waiting to be written when
    /// the shard's next one comes is replaced by it: on a slow link only the newest state of each
    /// shard waits, not a growing backlog. The library keeps the buffer itself (moved in, never
    /// copied): its bytes go to the socket from where they lie, behind a separately encoded header.
    void checkpoint(std::uint32_t shard, std::vector<std::byte> state);
    /// The same, for a state the worker shares with others (its own cache, a second destination):
    /// the library keeps a reference and writes from it; nobody may change the bytes afterwards.
    /// A null pointer is an empty state.
    void checkpoint(std::uint32_t shard, shared_bytes state);
    /// The mesh node's type or values changed (node.set_value, say): the master updates its
    /// record and lists it to everyone. From any thread.
    void update_mesh(mesh::peer_record node);
    /// The shards this process holds, with their epochs.
    [[nodiscard]] std::vector<protocol::shard_epoch> shards() const;
    /// The master asked for a shutdown and the worker completed it.
    [[nodiscard]] bool finished() const;
    /// The last heartbeat round trip to the master and back (protocol 1.3: the master echoes the
    /// newest heartbeat it got and how long it held it, which is left out), measured on this
    /// process's monotonic clock at most once per heartbeat interval. Empty while not connected and
    /// until a 1.3 master has echoed a heartbeat on the current connection.
    [[nodiscard]] std::optional<std::chrono::microseconds> heartbeat_rtt() const;

    struct impl;

private:
    std::shared_ptr<impl> impl_;
};

}  // namespace meshmaster::slave
