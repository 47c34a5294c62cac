// A simulated world around the supervisor core: slave processes running the slave library's own
// sans-I/O core (slave_core) behind a simulated worker, each connection a real slave_session on
// the master's side, per-connection FIFO byte links in both directions, process exits and a
// clock, all driven by one seeded random generator. Faults (kills, hangs, dropped connections,
// restarts, stops) are injected between deliveries in random order.
//
// Every byte a slave sends is what slave_core produced, and every byte it reads goes through
// slave_core: the handshake (HMAC proofs both ways), grants, epoch checks, state in chunks both
// ways, retained states, checkpoints re-sent after a reconnect, heartbeats at the interval the
// welcome announced. The worker behind each core answers its callbacks later (in random order
// with everything else), runs the shards it was given, processes each shard's events one at a
// time (an upstream numbers them and refuses writers under an older epoch than it has seen), and
// hands back its state when told to stop. sim_slave.cpp holds that side.
//
// After every step it checks the guarantees the product promises:
//   - single owner: no shard is held by two live slaves at once;
//   - epochs only grow: every grant a slave accepts is above every epoch held before;
//   - nothing lost in a handoff: a resumed shard gets exactly the state last handed back, byte
//     for byte, and its event sequence continues exactly where the stopped owner left it (an
//     event processed twice or skipped fails; re-processing after recovery from a checkpoint or
//     a fresh start is the at-least-once replay a lost state implies, and is allowed);
//   - every started migration ends in exactly one terminal record, and every started restart too
//     (its master's, or after a master crash the next master's restart_abandoned), and the event
//     log's replay never finds a restart overdue;
//   - a duplicated frame changes nothing (no table change, nothing but complaints sent);
//   - at a master crash, the event log replays to the live table, and the next master carries on
//     from it (epochs above every one granted, no slave id reused);
//   - with external slaves, a fenced zombie may still believe it holds a shard, but only under a
//     lower epoch than the live holder's (which the upstream, checking epochs, refuses).
// and, once faults stop and everything settles, that every shard is held by exactly one live
// slave, the one (and the epoch) the master's table names.
#pragma once

#include <meshmaster/master/slave_session.hpp>
#include <meshmaster/master/supervisor.hpp>
#include <meshmaster/protocol/frame_decoder.hpp>

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

namespace meshmaster::slave::detail {
class slave_core;
struct callback_request;
}  // namespace meshmaster::slave::detail

namespace meshmaster::master::test {

struct sim_options {
    std::uint32_t shards = 12;
    std::uint32_t slaves = 3;
    bool spawn = true;  // false: external slaves the master cannot spawn or kill
    std::uint32_t steps = 600;
    std::uint32_t concurrency = 3;
    std::uint32_t surge = 1;
    std::uint32_t spares = 0;
    bool faults = true;
    /// SIGKILL the master now and then (also halfway through carrying out its actions) and start a
    /// new one from the event log, as the daemon does; the log must replay to the live table.
    bool master_restarts = false;
    /// Deliver some frames twice, both ways: a duplicate must change nothing.
    bool duplicates = false;
    /// External slaves with ordinary timeouts: one that hangs is fenced and its shards re-granted
    /// while it still believes it holds them; woken (SIGCONT), it must be told to stop them.
    bool fencing = false;
};

class sim_world final : public session_host {
public:
    sim_world(std::uint64_t seed, sim_options options);
    ~sim_world() override;
    sim_world(sim_world&&) noexcept;

    /// Runs the random schedule, then lets things settle. Returns the first violated guarantee,
    /// or nothing when every check held.
    std::optional<std::string> run();

    // Used by the scripted tests too.
    void step_deliver_all(int max_rounds = 10'000);
    /// Delivers one pending thing in a fixed order (OS events, worker completions, bytes to
    /// slaves, then bytes to the master); false when nothing is pending.
    bool deliver_one();
    /// Delivers one thing at a time until `done()` holds (or nothing is left); true if it held.
    bool run_until(const std::function<bool()>& done, int max_steps = 100'000);
    /// Delivers and advances time (in `tick` steps) until settled(), within `limit` of sim time.
    bool settle(std::chrono::milliseconds tick = std::chrono::milliseconds(50),
                std::chrono::milliseconds limit = std::chrono::milliseconds(120'000));
    bool exited() const { return exited_; }
    std::size_t count(std::string_view event) const;
    void advance(std::chrono::milliseconds dt);
    supervisor& core() { return *core_; }
    mono_time now() const { return now_; }
    std::vector<std::string> log_names() const;
    const std::vector<event_record>& records() const { return records_; }
    std::optional<std::string> violation() const { return violation_; }
    /// Slave id → shards its slave_core holds (shard → epoch), live slaves only.
    std::map<std::string, std::map<std::uint32_t, std::uint64_t>> holdings() const;
    /// Operator requests, with the resulting actions carried out.
    void request_restart(std::string reason = "test");
    supervisor::drain_request request_drain(const std::string& slave, std::string reason = "test drain");
    void request_stop(bool immediate, std::string requested_by = {});
    void kill(const std::string& slave);
    void hang(const std::string& slave);
    void drop_connection(const std::string& slave);
    /// SIGCONT for a hung slave: it reads what piled up and carries on.
    void wake(const std::string& slave);
    /// SIGKILL for the master, then a new one from the event log. `carried_out`: how many of the
    /// old master's pending actions were carried out before it died (all of them by default).
    void restart_master(std::optional<std::size_t> carried_out = std::nullopt);
    std::vector<std::string> live_slaves() const;
    bool settled();

    // --- session_host: what the master's slave_sessions ask for ---
    void to_core(connection_id connection, const std::function<void(supervisor&, mono_time)>& input) override;
    const supervisor_config& core_config() const override { return core_->config(); }
    void log(event_record record) override;
    void write(connection_id connection, std::span<const std::byte> bytes) override;
    void close_after_write(connection_id connection) override;

private:
    // What one side wrote that the other has not read yet: whole frames, one message per entry
    // (a state's chunks travel with the frame that closes them), or the end of the stream.
    struct piece {
        std::vector<std::byte> bytes;
        bool eof = false;
        bool duplicable = false;  // a supervisor message (to a slave) or a slave's (not the handshake)
    };
    struct link {
        std::uint64_t id = 0;
        std::string slave;
        bool open = true;          // false once either side closed
        mono_time opened{};        // for the daemon's handshake timeout
        std::deque<piece> to_slave;
        std::deque<piece> to_master;
        std::unique_ptr<slave_session> session;  // the master's end (of the master that accepted it)
        protocol::frame_decoder slave_decoder;   // the slave shell's read side
    };
    // One shard as the worker runs it: the application's state is how many of the shard's events
    // it processed (seq) and a digest over them.
    struct worker_shard {
        std::uint64_t seq = 0;
        std::uint64_t digest = 0;
        bool running = false;    // its start or resume callback completed
        bool stopping = false;   // asked to stop: it processes nothing more
        bool recovered = false;  // started fresh or from a checkpoint: replaying events is expected
    };
    struct pending_callback {
        std::uint64_t op = 0;
        int kind = 0;  // slave::detail::op_kind
        std::uint32_t shard = 0;
        std::uint64_t epoch = 0;
        std::vector<std::byte> state;  // resume: a copy (the request's view dies with the call)
        bool recovered = false;
    };
    struct process {
        std::string id;
        std::int64_t pid = 0;
        std::uint64_t generation = 0;
        bool alive = true;
        bool hung = false;
        bool external = false;
        bool exiting = false;  // finished (shutdown): exits once its last frame is out
        std::optional<std::uint64_t> link;
        std::unique_ptr<slave::detail::slave_core> core;
        std::map<std::uint32_t, worker_shard> shards;  // the worker's
        std::deque<pending_callback> callbacks;        // invoked, not yet completed
        std::uint32_t reconnects = 0;
        std::uint64_t progress = 0;  // its event loop's turns, sent with heartbeats
        mono_time next_heartbeat{};
    };
    // The upstream a shard's events come from: it numbers them and takes each from the writer
    // with the highest epoch it has seen.
    struct upstream {
        std::uint64_t next = 1;
        std::uint64_t epoch = 0;
        std::int64_t writer = 0;  // the pid of the process that took the last event
    };

    // --- master side (sim_world.cpp) ---
    void apply(std::vector<action> actions);
    void take_and_apply();
    void apply_one(action& a);
    void record(const event_record& r);
    void deliver_to_master(link& l);
    void feed_master(link& l, const piece& p);
    void check_replay();
    void successor_if_detached();
    void check_grants(const std::string& slave, const std::vector<std::byte>& frames);
    void trace(std::string_view what) const;
    static const bool tracing;  // MESHMASTER_SIM_TRACE is set
    void check_invariants();
    void fail(std::string what);
    void random_step();
    void deliver_twice_to_master(link& l);
    void fault_step();

    // --- slave side (sim_slave.cpp) ---
    process& add_process(std::string id, std::uint64_t generation, bool external);
    std::function<void()> reconnect_later(const std::string& id);
    std::function<void()> eof_to_slave(std::uint64_t link_id);
    void connect(process& p);
    bool can_deliver(const link& l) const;
    void deliver_to_slave(link& l);
    void after_core(process& p);
    void invoke(process& p, const slave::detail::callback_request& r);
    void flush(process& p);
    void slave_link_down(process& p, std::uint64_t link_id);
    bool complete_callback(process& p);
    void claim(std::uint32_t shard, std::uint64_t epoch, const worker_shard& s);
    void process_event(process& p);
    void send_checkpoint();
    void check_holdings(process& p, const std::map<std::uint32_t, std::uint64_t>& before);
    void hold(process& p, std::uint32_t shard, std::uint64_t epoch);
    void die(process& p);
    std::map<std::uint32_t, std::uint64_t> held_by(const process& p) const;
    std::string state_text(std::uint32_t shard, const worker_shard& s);
    std::vector<process*> workers_with_callbacks();

    std::mt19937_64 rng_;
    sim_options options_;
    supervisor_config config_;
    session_settings session_settings_;
    std::unique_ptr<supervisor> core_;
    bool deferring_ = false;  // to_core leaves the core's actions for the caller to inspect
    std::uint64_t master_lives_ = 1;
    mono_time now_{std::chrono::seconds(1)};
    std::map<std::uint64_t, link> links_;
    std::map<std::string, process> processes_;
    std::deque<std::function<void()>> os_events_;  // spawns completing, exits, reconnects
    std::uint64_t next_link_ = 1;
    std::int64_t next_pid_ = 1000;
    std::uint64_t state_serial_ = 0;
    std::vector<event_record> records_;
    std::map<std::uint32_t, std::uint64_t> max_epoch_held_;
    std::map<std::uint32_t, std::pair<std::uint64_t, std::string>> granted_;  // shard → last grant sent
    std::map<std::pair<std::uint32_t, std::uint64_t>, std::uint64_t> resume_migration_;  // (shard, epoch) → migration
    std::map<std::uint64_t, std::vector<std::byte>> handed_;  // state handed back, per migration id
    std::map<std::uint32_t, std::set<std::vector<std::byte>>> produced_;  // every state a holder produced
    std::map<std::uint32_t, mono_time> stop_asked_;  // per shard: when a worker was last told to stop it
    std::map<std::uint32_t, upstream> upstreams_;
    std::uint64_t checkpoints_sent_ = 0;
    std::uint64_t events_processed_ = 0;
    std::uint64_t events_replayed_ = 0;
    std::uint64_t events_refused_ = 0;
    std::map<std::uint32_t, shared_bytes> disk_;  // the checkpoint store a restarted master reads
    std::map<std::uint64_t, int> migration_terminals_;  // started migrations → terminal records seen
    std::map<std::uint64_t, int> restart_terminals_;    // started restarts → terminal records seen
    std::optional<std::string> violation_;
    bool exited_ = false;
    bool adopting_ = false;
    bool detaching_ = false;  // the master was asked to detach; a successor starts once it exits
    std::uint64_t duplicates_delivered_ = 0;
    std::uint64_t restored_checkpoints_ = 0;  // identical checkpoints stored again after a duplicate
    std::uint64_t master_restarts_ = 0;
    std::uint64_t wakes_ = 0;

public:
    std::uint64_t duplicates_delivered() const { return duplicates_delivered_; }
    std::uint64_t master_restarts() const { return master_restarts_; }
    std::uint64_t wakes() const { return wakes_; }
    std::uint64_t restored_checkpoints() const { return restored_checkpoints_; }
    /// Events the shards' owners processed (the upstream took them), taken again after a recovery
    /// rewound the upstream, and refused (a fenced zombie's, under an older epoch).
    std::uint64_t events_processed() const { return events_processed_; }
    std::uint64_t events_replayed() const { return events_replayed_; }
    std::uint64_t events_refused() const { return events_refused_; }
};

}  // namespace meshmaster::master::test
