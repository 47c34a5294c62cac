// A simulated world around the supervisor core: slave processes that follow the protocol (the
// behaviour the slave library implements), per-connection FIFO links in both directions, process
// exits and a clock, all driven by one seeded random generator. Faults (kills, hangs, dropped
// connections, restarts, stops) are injected between deliveries in random order.
//
// After every step it checks the guarantees the product promises:
//   - single owner: no shard is held by two live slaves at once;
//   - epochs only grow: every grant a slave accepts is above every epoch held before;
//   - nothing lost in a handoff: a resumed shard gets exactly the state last handed back;
//   - every started migration ends in exactly one terminal record, and every started restart too
//     (its master's, or after a master crash the next master's restart_abandoned), and the event
//     log's replay never finds a restart overdue;
//   - a duplicated frame changes nothing (no table change, nothing but complaints sent);
//   - at a master crash, the event log replays to the live table, and the next master carries on
//     from it (epochs above every one granted, no slave id reused);
//   - with external slaves, a fenced zombie may still believe it holds a shard, but only under a
//     lower epoch than the live holder's (which an upstream checking epochs refuses).
// and, once faults stop and everything settles, that every shard is held by exactly one live
// slave, the one (and the epoch) the master's table names.
#pragma once

#include <meshmaster/master/supervisor.hpp>

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

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

class sim_world {
public:
    sim_world(std::uint64_t seed, sim_options options);

    /// Runs the random schedule, then lets things settle. Returns the first violated guarantee,
    /// or nothing when every check held.
    std::optional<std::string> run();

    // Used by the scripted tests too.
    void step_deliver_all(int max_rounds = 10'000);
    /// Delivers one pending thing in a fixed order (OS events, then frames to slaves, then frames
    /// to the master); false when nothing is pending.
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
    /// Slave id → shards it holds (shard → epoch), live slaves only.
    std::map<std::string, std::map<std::uint32_t, std::uint64_t>> holdings() const;
    /// Operator requests, with the resulting actions carried out.
    void request_restart(std::string reason = "test");
    void request_stop(bool immediate);
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

private:
    struct link {
        std::uint64_t id = 0;
        std::string slave;
        bool open = true;                                 // false once either side closed
        std::deque<std::vector<std::byte>> to_slave;      // encoded frames from the master
        std::deque<std::function<void()>> to_master;      // core inputs, in send order
    };
    struct process {
        std::string id;
        std::int64_t pid = 0;
        std::uint64_t generation = 0;
        bool alive = true;
        bool hung = false;
        bool external = false;
        std::optional<std::uint64_t> link;
        std::map<std::uint32_t, std::uint64_t> held;  // shard → epoch
        // Stopped shards whose handed-back state it keeps until handoff_complete: shard → (epoch, state)
        std::map<std::uint32_t, std::pair<std::uint64_t, std::string>> kept;
        bool soft_started = false;
        std::uint32_t reconnects = 0;
        std::uint64_t progress = 0;  // its event loop's turns, sent with heartbeats
    };

    void apply(std::vector<action> actions);
    void take_and_apply();
    void deliver_to_master(link& l);
    bool can_deliver(const link& l) const;
    std::function<void()> eof_to_slave(std::uint64_t link_id);
    void check_replay();
    void successor_if_detached();
    void check_grants(const std::string& slave, const std::vector<std::byte>& frames);
    void trace(std::string_view what) const;
    void apply_one(action& a);
    void connect(process& p);
    void deliver_to_slave(link& l);
    void slave_receives(process& p, link& l, const protocol::message& m);
    void reply(link& l, std::function<void()> input);
    void die(process& p);
    void hold(process& p, std::uint32_t shard, std::uint64_t epoch);
    void check_invariants();
    void fail(std::string what);
    void random_step();
    void fault_step();
    void send_checkpoint();
    std::string state_for(std::uint32_t shard, std::uint64_t epoch, std::uint64_t serial);

    std::mt19937_64 rng_;
    sim_options options_;
    supervisor_config config_;
    std::unique_ptr<supervisor> core_;
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
    std::map<std::uint64_t, std::string> handed_;           // state handed back, per migration id
    std::map<std::uint32_t, std::set<std::string>> produced_;  // every state a holder produced, per shard
    std::uint64_t checkpoints_sent_ = 0;
    std::map<std::uint32_t, shared_bytes> disk_;  // the checkpoint store a restarted master reads
    std::map<std::uint64_t, int> migration_terminals_;  // started migrations → terminal records seen
    std::map<std::uint64_t, int> restart_terminals_;    // started restarts → terminal records seen
    std::optional<std::string> violation_;
    bool exited_ = false;
    bool adopting_ = false;
    bool detaching_ = false;  // the master was asked to detach; a successor starts once it exits  // a master waits for the slaves of the one before it
    std::uint64_t duplicates_delivered_ = 0;
    std::uint64_t master_restarts_ = 0;
    std::uint64_t wakes_ = 0;

public:
    std::uint64_t duplicates_delivered() const { return duplicates_delivered_; }
    std::uint64_t master_restarts() const { return master_restarts_; }
    std::uint64_t wakes() const { return wakes_; }
};

}  // namespace meshmaster::master::test
