// A simulated world around the supervisor core: slave processes that follow the protocol (the
// behaviour the slave library implements), per-connection FIFO links in both directions, process
// exits and a clock, all driven by one seeded random generator. Faults (kills, hangs, dropped
// connections, restarts, stops) are injected between deliveries in random order.
//
// After every step it checks the guarantees the product promises:
//   - single owner: no shard is held by two live slaves at once;
//   - epochs only grow: every grant a slave accepts is above every epoch held before;
//   - nothing lost in a handoff: a resumed shard gets exactly the state last handed back;
//   - every started migration ends in exactly one terminal record.
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
    std::unique_ptr<supervisor> core_;
    mono_time now_{std::chrono::seconds(1)};
    std::map<std::uint64_t, link> links_;
    std::map<std::string, process> processes_;
    std::deque<std::function<void()>> os_events_;  // spawns completing, exits, reconnects
    std::uint64_t next_link_ = 1;
    std::int64_t next_pid_ = 1000;
    std::uint64_t state_serial_ = 0;
    std::vector<event_record> records_;
    std::map<std::uint32_t, std::uint64_t> max_epoch_held_;
    std::map<std::uint64_t, std::string> handed_;           // state handed back, per migration id
    std::map<std::uint32_t, std::set<std::string>> produced_;  // every state a holder produced, per shard
    std::uint64_t checkpoints_sent_ = 0;
    std::map<std::uint64_t, int> migration_terminals_;  // started migrations → terminal records seen
    std::optional<std::string> violation_;
    bool exited_ = false;
};

}  // namespace meshmaster::master::test
