// The fake gateway's state machine, with no I/O: connections, shard sessions, event emission, the
// resume window and the exactly-once audit.
//
// Inputs: a connection opened or closed, bytes received on a connection (in any split), a tick,
// pause/unpause. Time is always passed in (nanoseconds of a steady clock); nothing here reads a
// clock, opens a socket or prints, so the shell decides what "now" is and what to do with output.
//
// Outputs, collected until the shell calls `clear_effects()`:
//   - each connection's pending bytes, in `output(id)`. The shell takes them by swapping in an empty
//     buffer, so buffers are reused and emitting allocates nothing in steady state. Everything a
//     connection gets within one input (a tick's events, a reply and its replay) is one batch.
//   - `effects().writable`: connections whose pending output grew, each listed once;
//   - `effects().closes`: connections the core gave up on (protocol error, output backlog), with a
//     reason. The core has already detached their shards and dropped their output; the shell closes
//     the socket and later reports `connection_closed` as for any other connection.
//   - `effects().log`: notable happenings as JSON lines (no newline).
// An observer set with `on_ack` sees every valid ACK (the shell writes them to the --record file).
//
// Emission: every started shard emits the same number of events per tick, `rate` per second on
// average (fractional remainders carry over between ticks). A shard's stream starts at its first
// IDENTIFY and then never stops, attached to a connection or not; seqs start at 1 and continue
// across sessions.
//
// Thread safety: none; one instance, used from the gateway's only thread.
#pragma once

#include "audit.hpp"
#include "emission_log.hpp"
#include "gateway_protocol.hpp"
#include "report.hpp"

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace meshmaster::gateway {

struct gateway_config {
    std::uint32_t shards = 256;
    double rate = 100;  ///< events per second per shard
    std::int64_t resume_window_ns = std::int64_t{30'000} * 1'000'000;
    /// A connection whose unsent output grows beyond this is dropped: the bot is not keeping up.
    std::size_t max_pending_output = std::size_t{64} << 20;
    std::uint64_t session_seed = 0;  ///< session ids derive from it (the shell passes randomness)
};

using connection_id = std::uint64_t;

struct close_request {
    connection_id id = 0;
    std::string reason;
};

struct core_effects {
    std::vector<connection_id> writable;
    std::vector<close_request> closes;
    std::vector<std::string> log;
};

/// An accepted ACK, as the --record file stores it. `slave` is valid during the callback only.
struct ack_note {
    std::uint32_t shard = 0;
    std::uint64_t first = 0;
    std::uint64_t last = 0;
    std::string_view slave;
    std::uint64_t epoch = 0;
    std::int64_t received_ns = 0;
};

class gateway_core {
public:
    explicit gateway_core(const gateway_config& config);
    ~gateway_core();
    gateway_core(const gateway_core&) = delete;
    gateway_core& operator=(const gateway_core&) = delete;

    /// A bot connected from `peer` (for logs).
    connection_id open_connection(std::string_view peer);
    /// The connection is gone (peer closed, I/O error, or the shell closed it after a close
    /// request): its shards are detached, their sessions stay resumable. Unknown ids are ignored.
    void connection_closed(connection_id id, std::string_view reason);
    /// Bytes from a bot, in any split; whole records are handled at once, a partial one is kept.
    void receive(connection_id id, std::span<const unsigned char> bytes, std::int64_t now_ns);
    /// Emits what the rate allows since the last tick and forgets history older than the window.
    void tick(std::int64_t now_ns);
    /// While paused, ticks emit nothing (and the time paused earns no events).
    void set_paused(bool paused) noexcept { paused_ = paused; }

    /// Pending output of a live connection; null once it is closed or closing.
    [[nodiscard]] std::vector<unsigned char>* output(connection_id id);

    [[nodiscard]] const core_effects& effects() const noexcept { return effects_; }
    void clear_effects() noexcept;

    void on_ack(std::function<void(const ack_note&)> observer) { ack_observer_ = std::move(observer); }

    /// Emitted events not yet processed by anyone.
    [[nodiscard]] std::uint64_t unprocessed() const noexcept { return emitted() - audit_.distinct_processed(); }
    [[nodiscard]] std::uint64_t emitted() const noexcept;
    [[nodiscard]] report make_report() const;
    /// The shards with emitted events nobody processed yet, and why they might be stuck: one JSON
    /// object keyed by shard, {"3":{"emitted":..,"processed":..,"committed":..,"epoch":..,
    /// "attached":"bot name"|"",...},...}, at most `limit` of them.
    [[nodiscard]] std::string lagging(std::size_t limit) const;

private:
    struct connection;
    struct shard_state;

    void handle(connection& conn, const record& r, std::int64_t now_ns);
    void handle_hello(connection& conn, const record& r);
    void handle_identify(connection& conn, const record& r);
    void handle_resume(connection& conn, const record& r);
    void handle_detach(connection& conn, const record& r);
    void handle_ack(connection& conn, const record& r, std::int64_t now_ns);

    /// Closes `conn` from this side: logs, detaches its shards, asks the shell to close it.
    void fail(connection& conn, std::string reason, bool protocol_error);
    void attach(std::uint32_t shard, connection& conn, std::uint64_t last_sent);
    void detach(std::uint32_t shard);
    void send(connection& conn, const record& r);
    /// Refuses an IDENTIFY, RESUME or ACK whose epoch is older than the shard's.
    void refuse_stale(connection& conn, const record& r, std::uint64_t epoch, const char* what);
    /// Sends events from..to of `shard` to `conn`, with their emit times from the log.
    void send_events(connection& conn, std::uint32_t shard, std::uint64_t from, std::uint64_t to);
    /// Makes room for `n` records at the end of `conn`'s output; returns where they go.
    unsigned char* reserve_output(connection& conn, std::size_t records);
    /// After output grew: flags `conn` writable, or drops it if the bot fell too far behind.
    void output_grew(connection& conn);

    [[nodiscard]] std::uint64_t last_emitted(const shard_state& s) const noexcept;
    [[nodiscard]] std::uint64_t oldest_retained(const shard_state& s) const noexcept;
    std::uint64_t new_session_id() noexcept;

    gateway_config config_;
    std::uint64_t milli_events_per_second_;  // the rate in thousandths of an event, per shard
    std::vector<shard_state> shards_;
    std::unordered_map<connection_id, std::unique_ptr<connection>> connections_;
    connection_id next_connection_id_ = 1;

    emission_log log_;
    std::uint64_t started_shards_ = 0;
    std::uint64_t base_sum_ = 0;          // sum of started shards' bases (emitted() in O(1))
    std::uint64_t credit_ = 0;            // emission owed, in 1e-12 events per shard
    std::int64_t last_tick_ns_ = 0;
    bool ticked_ = false;
    bool paused_ = false;
    std::uint64_t session_counter_ = 0;

    audit audit_;
    std::uint64_t sessions_ = 0;
    std::uint64_t takeovers_ = 0;
    std::uint64_t invalid_sessions_ = 0;
    std::uint64_t fenced_acks_ = 0;     // ACKs refused: their epoch was superseded
    std::uint64_t fenced_attaches_ = 0; // IDENTIFY/RESUME refused for a superseded epoch
    std::uint64_t protocol_errors_ = 0;

    core_effects effects_;
    std::function<void(const ack_note&)> ack_observer_;
};

}  // namespace meshmaster::gateway
