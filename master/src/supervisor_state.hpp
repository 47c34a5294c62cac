// The supervisor's private state: what the units that make up the supervisor core share. Each unit
// has a header and a source of its own, with a preamble saying what it owns; it defines its part of
// the behaviour as members of supervisor::state, in its source (the declarations below are grouped
// by that file, since a struct is declared in one place):
//   shard_table        shards, their holders and fencing epochs, grants, checkpoints, hello reconciling
//   migration_pipeline one move of a shard's state (stop, hand back, resume or roll back), recoveries
//   rolling_restart    restarts: pairs of old and new slaves, the queue of moves, the surge
//   slave_pool         slaves and slots: ids, spawns, respawn backoff and start limits, spares, retiring
//   failure_handling   deadlines and heartbeats (detection), a lost slave, a dead one
//   deadlines          failure_handling's timers (deadline_queue.hpp): each record's earliest deadline,
//                      arming, the next deadline of all; and self_check of the indexes below
//   adoption           start-up, a slave's hello, slaves and moves left by a previous master
//   stop_detach        graceful stop, immediate stop, detach
//   mesh_directory     the mesh's embedded discovery (mesh_members)
//   status_projection  supervisor_status, for `meshmaster status` and the control socket
// The records a unit owns are in its header; the state holds the tables of them, and derives from
// the units' records that are plain fields (adoption_rec, stop_rec, mesh_directory_rec), so that
// every unit reads them as the state's own. supervisor.cpp composes the units: the public entry
// points that belong to no one unit.
//
// The work per input must not grow with the fleet (issue 14: 16,384 shards on 64 slaves cost what
// 256 on 4 do per move), so what the hot paths need is indexed rather than walked: slaves by id and
// by connection (hashes to the record), each slave's shards (slave_rec::held) and each shard's holder
// (shard_rec::holder), each restart pair's queued and moving counts, the shards free to grant
// (orphans), and every deadline (timers). Each index changes in one place beside what it indexes
// (add_slave/erase_slave, set_owner, queue_move/start_move/end_migration, orphaned, arm), and
// supervisor::self_check compares them all with the tables.
//
// Thread safety: none (the supervisor's driver thread only).
#pragma once

#include "adoption.hpp"
#include "deadline_queue.hpp"
#include "failure_handling.hpp"
#include "mesh_directory.hpp"
#include "migration_pipeline.hpp"
#include "rolling_restart.hpp"
#include "shard_table.hpp"
#include "slave_pool.hpp"
#include "start_limit.hpp"
#include "status_projection.hpp"
#include "stop_detach.hpp"

#include <meshmaster/master/supervisor.hpp>
#include <meshmaster/protocol/codec.hpp>

#include <chrono>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace meshmaster::master {

inline double ms_between(mono_time from, mono_time to) {
    return std::chrono::duration<double, std::milli>(to - from).count();
}

struct supervisor::state : adoption_rec, stop_rec, mesh_directory_rec {
    supervisor_config config;
    std::vector<action> out;
    // Ordered by id: every walk over the slaves (and so the event log) follows that order. The
    // records never move (map nodes), so the indexes below hold pointers: a lookup on a hot path
    // (every frame, every move) is a hash of the id or of the connection, not a walk of string
    // compares. add_slave and erase_slave keep them with the map.
    std::map<std::string, slave_rec> slaves;
    std::unordered_map<std::string, slave_rec*> slave_index;
    std::unordered_map<std::uint64_t, slave_rec*> slave_by_key;  // slave_rec::key → record
    std::uint64_t slave_serial = 0;
    std::unordered_map<connection_id, slave_rec*> by_connection;
    std::vector<shard_rec> shards;
    std::vector<shared_bytes> checkpoints;  // per shard: the newest state to resume from
    // Shards that may be free to grant (unowned, no migration): grant_orphans' worklist, so that it
    // looks at those rather than at every shard. Whatever leaves a shard unowned adds it (orphaned);
    // grant_orphans drops what is no longer free.
    std::set<std::uint32_t> orphans;
    std::vector<slot_rec> slots;
    std::map<std::uint64_t, migration_rec> migrations;
    std::optional<restart_rec> restart;
    bool restart_queued = false;
    std::string queued_reason;
    std::uint64_t next_id;
    std::uint64_t generation = 1;
    std::uint32_t spare_serial = 0;
    // Spares that fail to start back off and give up like a slot (start limit); they have no slot.
    start_limit spare_starts;
    std::uint32_t spare_failures = 0;
    std::optional<mono_time> spare_respawn_at;
    bool spares_failed = false;
    std::string spares_failure;
    std::uint64_t restarts_completed = 0;
    std::uint64_t restarts_failed = 0;
    std::uint32_t in_flight = 0;
    std::uint64_t checkpoints_taken = 0;
    std::uint64_t checkpoints_refused = 0;  // stale epoch or not the holder: ignored
    bool started = false;
    mono_time now{};
    // Every slot's, slave's, migration's and shard's deadline (deadlines.cpp arms them, on_tick
    // fires them). Whatever moves a record's deadline earlier arms it; later needs nothing.
    deadline_queue timers;

    state(supervisor_config c, std::uint64_t first_id) : config(c), next_id(first_id == 0 ? 1 : first_id) {
        shards.resize(config.shard_count);
        checkpoints.resize(config.shard_count);
        slots.resize(config.slave_count);
        for (std::uint32_t i = 0; i < config.shard_count; ++i) orphans.insert(orphans.end(), i);
    }

    // --- small helpers ------------------------------------------------------------------------

    void log(event_record r) { out.emplace_back(actions::log_event{std::move(r)}); }
    void failpoint(std::string_view name) { out.emplace_back(actions::hit_failpoint{name}); }

    // Frames are encoded here, at once: an action then owns its bytes, and nothing in it can
    // outlive the records a message's views point into.
    template <class Message>
    void send(const slave_rec& s, const Message& m) {
        if (!s.connection) return;
        actions::send_frame a{*s.connection, {}};
        if (!protocol::encode(m, a.frames)) {
            log({.event = event_kind::frame_not_sent, .slave = s.id, .reason = "message too large to encode"});
            return;
        }
        out.emplace_back(std::move(a));
    }

    slave_rec* find(const std::string& id) const {
        if (id.empty()) return nullptr;
        auto it = slave_index.find(id);
        return it == slave_index.end() ? nullptr : it->second;
    }

    slave_rec* by_conn(connection_id c) {
        auto it = by_connection.find(c);
        return it == by_connection.end() ? nullptr : it->second;
    }
    /// A frame from `c` arrived at `at`: time advances, and its sender, unless the master is on
    /// its way out or does not know the connection, was heard (last_seen). Null when there is
    /// nothing more to do with the frame.
    slave_rec* heard_from(connection_id c, mono_time at) {
        now = at;
        if (exited) return nullptr;
        slave_rec* r = by_conn(c);
        if (r) r->last_seen = at;
        return r;
    }

    std::uint32_t home_slot(std::uint32_t shard) const {
        return static_cast<std::uint32_t>(std::uint64_t{shard} * config.slave_count / config.shard_count);
    }

    // The shards `id` holds, ascending: its index (slave_rec::held), not a walk of the table. A
    // copy, since the callers change owners as they go.
    std::vector<std::uint32_t> shards_of(const std::string& id) const {
        const slave_rec* s = find(id);
        return s ? std::vector<std::uint32_t>(s->held.begin(), s->held.end()) : std::vector<std::uint32_t>{};
    }

    mono_time ms(milliseconds d) const { return std::chrono::duration_cast<mono_time>(d); }

    // --- shard_table.cpp ---------------------------------------------------------------------
    void set_owner(std::uint32_t shard, slave_rec* holder);
    void orphaned(std::uint32_t shard) { orphans.insert(shard); }
    void set_checkpoint(std::uint32_t shard, shared_bytes state);
    void grant(std::uint32_t shard, slave_rec& s);
    void refuse_stale(slave_rec& s, std::string_view what, std::uint32_t shard, std::uint64_t epoch,
                      std::uint64_t migration = 0);
    void fence(slave_rec& s, std::uint32_t shard, std::uint64_t stale_epoch, std::string reason);
    void grant_orphans();
    void reconcile_reported_shards(slave_rec& s, const std::vector<protocol::shard_epoch>& reported,
                                   const std::vector<protocol::shard_epoch>& kept);
    void reconcile_stopped_shards(slave_rec& s, const std::vector<protocol::shard_epoch>& kept);

    // --- migration_pipeline.cpp --------------------------------------------------------------
    void resume_on(migration_rec& m, slave_rec& target);
    void end_migration(std::uint64_t id, event_kind outcome, std::string reason, bool state_lost);
    void start_move(std::uint32_t shard, const std::string& from, const std::string& to, std::size_t pair_index);
    void drain_surplus();

    // --- rolling_restart.cpp -----------------------------------------------------------------
    void queue_move(std::size_t pair_index, std::uint32_t shard);
    void unqueue_pair(std::size_t pair_index);
    pair_rec* pair_of(const std::string& id, std::size_t* index = nullptr);
    /// A rolling restart of every slot, or of `only_slot` alone (a drain).
    void begin_restart(std::string reason, std::optional<std::uint32_t> only_slot = std::nullopt);
    void start_pair(std::size_t index);
    void start_migration(std::size_t pair_index, std::uint32_t shard);
    std::size_t preparing_pairs() const;
    std::size_t unfinished_pairs() const;
    void pump_restart();
    void finish_restart();
    void on_target_ready(std::size_t index);
    void check_pair(std::size_t index);
    void fail_target(std::size_t index, const std::string& reason);

    // --- slave_pool.cpp ----------------------------------------------------------------------
    slave_rec& add_slave(slave_rec r);
    void erase_slave(const std::string& id);
    std::string fresh_id(std::uint32_t slot_index);
    std::string fresh_spare_id();
    slave_rec& spawn(std::optional<std::uint32_t> slot, std::string id);
    void ensure_spares();
    bool promote_spare(std::uint32_t slot_index);
    void retire(slave_rec& s, std::string reason);
    void respawn(std::uint32_t slot_index);
    milliseconds backoff(std::uint32_t failures) const;
    std::string start_limit_failure(std::uint32_t failed_starts, const std::string& last) const;
    void schedule_respawn(std::uint32_t slot_index, const slave_rec& dead, const std::string& reason);
    void spare_start_failed(const std::string& id, const std::string& reason);
    supervisor::retried_starts retry_failed_starts(const std::string& reason);

    // --- failure_handling.cpp (its rules, free of state, in failure_handling.hpp) -------------
    const slave_rec* awaited(const migration_rec& m) const;
    const slave_rec* awaited(const shard_rec& sh) const;
    void fail_slave(slave_rec& s, const std::string& reason);
    void slave_dead(const std::string& id, const std::string& reason);
    void send_heartbeat(slave_rec& r, mono_time at);
    void heartbeat_echo(slave_rec& r, const heartbeat_info& info, mono_time at);

    // --- deadlines.cpp (the timers of failure_handling) --------------------------------------
    std::optional<mono_time> slave_due(const slave_rec& r) const;
    std::optional<mono_time> migration_due(const migration_rec& m) const;
    std::optional<mono_time> shard_due(std::uint32_t shard) const;
    deadline_slot timer_slot(deadline_kind kind, std::uint64_t key);
    void arm(slave_rec& r);
    void arm(migration_rec& m);
    void arm_shard(std::uint32_t shard);
    void arm_slot(std::uint32_t slot);
    void arm_around(slave_rec& r);
    void arm_all();
    std::optional<mono_time> next_deadline();
    std::optional<mono_time> scan_next_deadline() const;
    std::string check_indexes() const;

    // --- adoption.cpp ------------------------------------------------------------------------
    void activate(slave_rec& s, bool reported_anything, bool soft_started);
    void end_adoption();

    // --- stop_detach.cpp ---------------------------------------------------------------------
    void begin_stop(bool detach, const std::string& requested_by);
    void advance_stop();

    // --- mesh_directory.cpp ------------------------------------------------------------------
    void send_mesh_members(const slave_rec& to);
    void mesh_changed();
    void mesh_leave(slave_rec& r);
};

}  // namespace meshmaster::master
