// The slave side of the protocol as a state machine, without sockets or timers: the handshake,
// epoch checks, state transfer in chunks, and the bookkeeping of which shards this process runs.
// The Asio shell (slave_shell.cpp) feeds it frames and callback outcomes and carries out what it asks:
// bytes to write, worker callbacks to invoke, a connection to close.
//
// Shards survive the connection: when the master goes away the worker keeps running them, and the
// next hello reports them with their epochs so the (possibly restarted) master can adopt them.
//
// Thread safety: none; the shell uses it from one executor.
#pragma once

#include <meshmaster/protocol/auth.hpp>
#include <meshmaster/protocol/codec.hpp>
#include <meshmaster/protocol/frame.hpp>
#include <meshmaster/mesh/discovery.hpp>
#include <meshmaster/protocol/messages.hpp>
#include <meshmaster/protocol/state_transfer.hpp>
#include <meshmaster/slave/completion.hpp>
#include <meshmaster/slave/slave.hpp>

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <span>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace meshmaster::slave::detail {

enum class op_kind { soft_start, full_start, start_shard, stop_shard, resume_shard, shutdown };

/// A worker callback the core wants invoked. `state` (resume only) is valid until the next call
/// into the core: the shell invokes the callback at once.
struct callback_request {
    std::uint64_t op = 0;
    op_kind kind = op_kind::soft_start;
    std::uint32_t shard = 0;
    std::uint64_t epoch = 0;
    std::uint32_t shard_count = 0;
    protocol::bytes_view state;
};

/// Frames to write. The states in them are not copied behind their headers: the frames' pieces view
/// the buffers in `states`, which the batch keeps alive until it is written (a newer checkpoint may
/// replace one in the core meanwhile).
struct write_batch {
    protocol::gathered_frames frames;
    std::vector<shared_bytes> states;
    [[nodiscard]] bool empty() const noexcept { return frames.empty(); }
};

struct core_config {
    std::string slave_id;
    std::string secret;
    std::uint64_t generation = 0;
    std::int64_t pid = 0;
    std::uint64_t max_state_size = std::uint64_t{256} << 20;
    std::size_t state_chunk_size = protocol::default_state_chunk_size;
    /// Where the core reports what the operator should know ("info"/"warn"/"error", text).
    std::function<void(std::string_view level, std::string text)> log;
    /// This process's node in the UDP mesh, announced in every hello (protocol 1.2); unset: none.
    std::optional<mesh::peer_record> mesh;
    /// The mesh's membership (every other node), each time the master sends a newer list.
    std::function<void(std::vector<mesh::peer_record>)> mesh_members;
    /// The clocks (tests and the simulation give their own; empty: the system's). Monotonic for the
    /// heartbeat round trip; wall for a stop's time and a handoff's pause (protocol 1.3), since the
    /// old and the new holder of a shard share no monotonic clock.
    std::function<std::chrono::steady_clock::time_point()> steady_now;
    std::function<std::chrono::system_clock::time_point()> wall_now;
};

class slave_core {
public:
    explicit slave_core(core_config config);

    // --- connection ---
    void on_connected();
    void on_disconnected();
    /// A whole frame from the master (views valid for the duration of the call).
    void on_frame(const protocol::frame_view& frame);
    /// The frame stream itself broke (oversized or truncated frame): report and close.
    void on_stream_error(const protocol::error& e);

    // --- worker callbacks ---
    void complete(std::uint64_t op, outcome result);

    /// The worker's current state of a shard it runs, for the master to keep in case this process
    /// dies. False (and nothing sent) when not connected or the shard is not running here. Takes
    /// the buffer itself (moved in from slave::checkpoint) and writes from it: no copy.
    bool checkpoint(std::uint32_t shard, std::vector<std::byte> state);
    bool checkpoint(std::uint32_t shard, shared_bytes state);
    /// The mesh node's type or values changed: remembered for later hellos, and sent now
    /// (mesh_update) if the link is up. True if a frame was queued.
    bool update_mesh(const mesh::peer_record& node);

    /// Called every heartbeat interval: sends a heartbeat when authenticated.
    void tick(std::uint64_t progress);

    // --- outputs ---
    /// The frames to write, with the checkpoints due appended (the newest of each running shard):
    /// what the shell writes, states in place (a gathered write).
    [[nodiscard]] write_batch take_batch();
    /// The same bytes in one buffer: a copy of every state, for tests and the simulation.
    [[nodiscard]] std::vector<std::byte> take_output() { return take_batch().frames.flatten(); }
    [[nodiscard]] bool has_output() const noexcept { return !out_.empty() || !checkpoints_due_.empty(); }
    [[nodiscard]] std::vector<callback_request> take_requests() { return std::exchange(requests_, {}); }
    /// Failpoints to trigger once what is queued now has been written (see protocol/failpoint.hpp).
    [[nodiscard]] std::vector<std::string_view> take_after_write() { return std::exchange(after_write_, {}); }
    /// Set when the connection must be closed (bad master, protocol error); cleared by on_connected.
    [[nodiscard]] const std::optional<std::string>& close_reason() const noexcept { return close_reason_; }
    /// The master asked for shutdown and the worker completed it: stop and do not reconnect.
    [[nodiscard]] bool finished() const noexcept { return finished_; }
    [[nodiscard]] bool authenticated() const noexcept { return link_ == link_state::ready; }
    [[nodiscard]] std::chrono::milliseconds heartbeat_interval() const noexcept { return heartbeat_interval_; }
    /// The last heartbeat round trip to the master and back, less the time the master held the echo
    /// (protocol 1.3); empty until a 1.3 master has echoed one on this connection.
    [[nodiscard]] std::optional<std::chrono::microseconds> heartbeat_rtt() const noexcept { return heartbeat_rtt_; }
    /// Shards this process holds (running, starting, resuming or stopping).
    [[nodiscard]] std::vector<protocol::shard_epoch> shards() const;
    /// Shards it stopped whose handed-back state it keeps until the master confirms the handoff.
    [[nodiscard]] std::vector<protocol::shard_epoch> retained() const;

private:
    enum class link_state { disconnected, awaiting_challenge, awaiting_welcome, ready };
    enum class shard_phase { starting, resuming, running, stopping };
    struct shard_entry {
        std::uint64_t epoch = 0;
        shard_phase phase = shard_phase::starting;
        std::uint64_t migration = 0;         // of the stop in progress
        std::optional<protocol::stop_shard> deferred_stop;  // arrived while starting/resuming
        // Wall clock, Unix µs (1.3): when the worker was told to stop it (the stop in progress), and
        // the previous holder's stop that the resume in progress relayed (for resumed.pause_us).
        std::optional<std::uint64_t> stopping_since_us;
        std::optional<std::uint64_t> resume_stopped_at_us;
    };
    // A grant under a newer epoch that arrived while the worker was still starting, resuming or
    // stopping the shard under the older one: carried out once that callback is done (the stop
    // first, so that the old state is handed back or kept before the new grant replaces it).
    struct deferred_grant {
        std::optional<protocol::start_shard> start;
        std::optional<protocol::resume> resume;  // its `state` views `state` below
        std::vector<std::byte> state;
    };
    // A stopped shard's state, kept after it was handed back (or while the master is away) until
    // the master confirms with handoff_complete that it runs elsewhere: a master that crashed
    // mid-handoff finds it in the next hello and asks for it again.
    struct retained_state {
        std::uint64_t epoch = 0;
        std::uint64_t migration = 0;
        shared_bytes state;  // never null; shared with the batches that write it
        std::optional<std::uint64_t> stopped_at_us;  // wall clock, Unix µs: sent again with it
    };
    struct pending_op {
        op_kind kind;
        std::uint32_t shard = 0;
        std::uint64_t epoch = 0;
        std::uint64_t migration = 0;
    };

    template <class Message>
    void send(const Message& m);
    void send_error(std::string code, std::string message, std::optional<std::uint32_t> shard = {},
                    std::optional<std::uint64_t> epoch = {}, bool fatal = false);
    void close(std::string reason);
    void request(op_kind kind, std::uint32_t shard = 0, std::uint64_t epoch = 0, std::uint32_t shard_count = 0,
                 protocol::bytes_view state = {}, std::uint64_t migration = 0);
    void log(std::string_view level, std::string text) const;
    [[nodiscard]] std::chrono::steady_clock::time_point steady_now() const;
    [[nodiscard]] std::uint64_t wall_now_us() const;
    void on_heartbeat(const protocol::heartbeat& m);

    void handle(const protocol::auth_challenge& m);
    void handle(const protocol::welcome& m);
    void handle(const protocol::start_shard& m);
    void handle(const protocol::stop_shard& m);
    void handle(const protocol::resume& m, protocol::bytes_view whole_state);
    void send_stopped(std::uint32_t shard, const retained_state& r);
    void defer(std::uint32_t shard, deferred_grant grant);
    void run_deferred_grant(std::uint32_t shard);

    core_config config_;
    std::uint64_t mesh_version_ = 0;  // of the newest membership list applied
    link_state link_ = link_state::disconnected;
    protocol::nonce slave_nonce_{};
    std::vector<std::byte> master_nonce_;
    protocol::gathered_frames out_;
    std::vector<shared_bytes> out_states_;  // the buffers out_'s pieces view
    std::vector<callback_request> requests_;
    std::vector<std::string_view> after_write_;
    std::optional<std::string> close_reason_;
    std::map<std::uint32_t, shard_entry> shards_;
    std::map<std::uint32_t, retained_state> retained_;
    std::map<std::uint32_t, deferred_grant> deferred_grants_;
    // The last checkpoint sent per running shard: sent again right after authenticating to a
    // (possibly restarted) master, which would otherwise have none until the worker's next one.
    std::map<std::uint32_t, std::pair<std::uint64_t, shared_bytes>> last_checkpoint_;
    // Shards whose last checkpoint is still to be written: encoded at take_batch().
    std::set<std::uint32_t> checkpoints_due_;
    std::map<std::uint64_t, pending_op> ops_;
    std::uint64_t next_op_ = 1;
    std::uint64_t heartbeat_seq_ = 0;
    std::chrono::milliseconds heartbeat_interval_{250};
    std::uint32_t master_minor_ = 0;  // from auth_challenge: 1.3 masters get and give heartbeat echoes
    // Per connection (1.3): our last heartbeats' send times at seq % size, the newest master
    // heartbeat received (echoed back) and when, and the last round trip measured.
    struct sent_heartbeat {
        std::uint64_t seq = 0;
        std::chrono::steady_clock::time_point at{};
    };
    std::array<sent_heartbeat, 16> sent_heartbeats_{};
    std::optional<std::pair<std::uint64_t, std::chrono::steady_clock::time_point>> received_heartbeat_;
    std::optional<std::chrono::microseconds> heartbeat_rtt_;
    protocol::state_assembler assembler_;
    std::vector<std::byte> assembled_;  // a reassembled state, alive until the next frame
    bool soft_started_ = false;
    bool shutting_down_ = false;
    bool finished_ = false;
};

}  // namespace meshmaster::slave::detail
