#include <meshmaster/master/supervisor.hpp>

#include "start_limit.hpp"

#include <meshmaster/protocol/codec.hpp>
#include <meshmaster/protocol/state_transfer.hpp>

#include <algorithm>
#include <cassert>
#include <charconv>
#include <fmt/format.h>
#include <limits>
#include <set>
#include <utility>

namespace meshmaster::master {

namespace {

using protocol::shard_epoch;

enum class slave_phase { spawning, soft_starting, ready, running, retiring, lost };
enum class shard_phase { unowned, starting, running, stopping, resuming };
enum class migration_phase { stopping, resuming };
enum class pair_phase { waiting, spawning, soft_starting, migrating, retiring, done };

std::string_view name(slave_phase p) {
    switch (p) {
        case slave_phase::spawning: return "spawning";
        case slave_phase::soft_starting: return "soft_starting";
        case slave_phase::ready: return "ready";
        case slave_phase::running: return "running";
        case slave_phase::retiring: return "retiring";
        case slave_phase::lost: return "lost";
    }
    return "unknown";
}

std::string_view name(shard_phase p) {
    switch (p) {
        case shard_phase::unowned: return "unowned";
        case shard_phase::starting: return "starting";
        case shard_phase::running: return "running";
        case shard_phase::stopping: return "stopping";
        case shard_phase::resuming: return "resuming";
    }
    return "unknown";
}

double ms_between(mono_time from, mono_time to) {
    return std::chrono::duration<double, std::milli>(to - from).count();
}

struct slave_rec {
    std::string id;
    std::optional<std::uint32_t> slot;
    std::uint64_t generation = 0;
    bool ours = false;     // a child of this master
    bool watched = false;  // adopted from a previous master: its pid is watched, it can be killed
    std::int64_t pid = 0;
    std::optional<connection_id> connection;
    std::uint32_t minor = 0;  // protocol minor version it speaks
    std::optional<mesh_node_info> mesh;  // its node in the UDP mesh (1.2)
    bool alive = true;  // false once its process is known to be gone
    slave_phase phase = slave_phase::spawning;
    std::optional<mono_time> deadline;  // of the current phase (spawning, soft_starting, retiring, lost)
    mono_time spawned_at{};
    mono_time last_seen{};
    mono_time next_heartbeat{};
    std::uint64_t progress = 0;  // the slave's event-loop counter, from its heartbeats
    mono_time progress_at{};     // when it last moved, or state bytes last arrived from the slave
    bool spare = false;          // an idle slave kept ready to take over a slot
    std::uint64_t heartbeat_seq = 0;
    bool restart_target = false;
    bool started = false;  // its hello was accepted: a death now is a crash, not a failed start

    [[nodiscard]] bool killable() const { return (ours || watched) && alive && pid > 0; }
    [[nodiscard]] bool usable() const {
        return alive && connection && (phase == slave_phase::running || phase == slave_phase::ready);
    }
};

struct shard_rec {
    std::uint64_t epoch = 0;
    std::string owner;  // who runs it (or is being asked to start, stop or resume it)
    shard_phase phase = shard_phase::unowned;
    std::uint64_t migration = 0;
    mono_time since{};
};

struct migration_rec {
    std::uint64_t id = 0;
    std::uint32_t shard = 0;
    std::string from;
    std::string to;
    migration_phase phase = migration_phase::stopping;
    bool back_to_source = false;  // the target failed: the state goes back to `from` (rollback)
    shared_bytes state;
    mono_time started{};
    mono_time phase_started{};
    std::size_t pair = 0;
    // Not part of a restart: a shard resumed from its checkpoint after its holder died, or a state
    // a slave kept (after a master crash) collected and resumed. Not counted against concurrency.
    bool recovery = false;
    std::uint64_t from_epoch = 0;  // the epoch `from` held the shard under (for handoff_complete)
};

constexpr std::size_t no_pair = SIZE_MAX;

struct pair_rec {
    std::uint32_t slot = 0;
    std::string from;
    std::string to;
    pair_phase phase = pair_phase::waiting;
    bool target_failed = false;
    bool source_dead = false;
    std::uint32_t total = 0;  // shards to move, known once the target is ready
    std::uint32_t moved = 0;
    mono_time soft_start_sent{};
};

struct restart_rec {
    std::uint64_t id = 0;
    mono_time started{};
    std::string reason;
    std::vector<pair_rec> pairs;
    std::size_t next_pair = 0;
    bool failing = false;
    std::string failure;
    std::deque<std::pair<std::size_t, std::uint32_t>> queue;  // (pair, shard) waiting to move
};

struct slot_rec {
    std::string active;  // the slave running this slot's shards
    std::uint32_t failures = 0;
    std::uint64_t spawn_generation = 0;  // generation of the slot's latest spawn
    std::uint32_t spawn_serial = 0;      // spawns in that generation after the first
    std::optional<mono_time> respawn_at;
    start_limit starts;
    bool failed = false;  // given up after too many failed starts, until retried
    std::string failure;
};

}  // namespace

std::string spawned_slave_id(std::uint32_t slot, std::uint64_t generation) {
    return fmt::format("s{}-g{}", slot, generation);
}

namespace {
// "<kind><number>-g<generation>...": the number, if `id` has that shape.
std::optional<std::uint32_t> number_of_spawned_id(std::string_view id, char kind) {
    if (id.size() < 4 || id[0] != kind) return std::nullopt;
    std::uint32_t slot = 0;
    const auto [end, ec] = std::from_chars(id.data() + 1, id.data() + id.size(), slot);
    if (ec != std::errc{} || end == id.data() + 1 || end == id.data() + id.size() || *end != '-' ||
        end + 1 == id.data() + id.size() || end[1] != 'g') {
        return std::nullopt;
    }
    return slot;
}
}  // namespace

std::optional<std::uint32_t> slot_of_spawned_id(std::string_view id) { return number_of_spawned_id(id, 's'); }

std::string spare_slave_id(std::uint32_t n, std::uint64_t generation) { return fmt::format("p{}-g{}", n, generation); }

bool is_spare_id(std::string_view id) { return number_of_spawned_id(id, 'p').has_value(); }

struct supervisor::state {
    supervisor_config config;
    std::vector<action> out;
    std::map<std::string, slave_rec> slaves;
    std::unordered_map<connection_id, std::string> by_connection;
    std::vector<shard_rec> shards;
    std::vector<shared_bytes> checkpoints;  // per shard: the newest state to resume from
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
    std::set<std::string> used_ids;  // by a previous master (seed_ids)
    // Slaves a previous master left running (expect_slaves) that have not said hello yet, and
    // those killed for not coming back, whose exit must be seen before any shard is granted.
    std::map<std::string, std::int64_t> expected;
    bool expecting = false;
    std::map<std::string, mono_time> awaiting_exit;
    std::uint64_t restarts_completed = 0;
    std::uint64_t restarts_failed = 0;
    std::uint32_t in_flight = 0;
    std::uint64_t checkpoints_taken = 0;
    std::uint64_t checkpoints_refused = 0;  // stale epoch or not the holder: ignored
    bool started = false;
    bool stopping = false;
    bool detaching = false;  // stopping, but the slaves stay (request_detach)
    bool exited = false;
    std::optional<mono_time> adopting_until;
    std::vector<supervisor::abandoned_migration> abandoned;
    std::vector<std::uint64_t> abandoned_restarts;
    mono_time now{};

    state(supervisor_config c, std::uint64_t first_id) : config(c), next_id(first_id == 0 ? 1 : first_id) {
        shards.resize(config.shard_count);
        checkpoints.resize(config.shard_count);
        slots.resize(config.slave_count);
    }

    // --- small helpers ------------------------------------------------------------------------

    void log(event_record r) { out.emplace_back(actions::log_event{std::move(r)}); }
    // The state to resume `shard` from, kept here and (through the driver) where a restarted
    // master finds it.
    void set_checkpoint(std::uint32_t shard, shared_bytes state) {
        if (checkpoints[shard] == state) return;
        checkpoints[shard] = state;
        out.emplace_back(actions::store_checkpoint{shard, shards[shard].epoch, std::move(state)});
    }
    void failpoint(std::string_view name) { out.emplace_back(actions::hit_failpoint{name}); }

    // Frames are encoded here, at once: an action then owns its bytes, and nothing in it can
    // outlive the records a message's views point into.
    template <class Message>
    void send(const slave_rec& s, const Message& m) {
        if (!s.connection) return;
        actions::send_frame a{*s.connection, {}};
        if (!protocol::encode(m, a.frames)) {
            log({.event = "frame_not_sent", .slave = s.id, .reason = "message too large to encode"});
            return;
        }
        out.emplace_back(std::move(a));
    }

    // --- the mesh's embedded discovery ---------------------------------------------------------
    // Every slave that runs a mesh node is listed to every such slave, whole, with a version that
    // grows with each change. A node leaves the list when its slave is lost or dead, not when a
    // connection merely drops (a master restart must not make the mesh forget its nodes).

    std::uint64_t mesh_version = 0;  // seeded from first_id: see the constructor

    void send_mesh_members(const slave_rec& to) {
        if (!to.mesh || !to.connection || to.minor < 2) return;
        protocol::mesh_members m{.version = mesh_version, .members = {}};
        std::vector<protocol::string_map> values;  // views into the slaves' records
        values.reserve(slaves.size());
        for (const auto& [id, r] : slaves) {
            if (!r.mesh || !r.alive) continue;
            protocol::string_map& v = values.emplace_back();
            for (const auto& [k, val] : r.mesh->values) v.emplace_back(k, val);
            m.members.push_back({.id = r.id, .type = r.mesh->type, .host = r.mesh->host, .port = r.mesh->port,
                                 .incarnation = r.mesh->incarnation, .values = v});
        }
        send(to, m);
    }

    void mesh_changed() {
        ++mesh_version;
        for (const auto& [id, r] : slaves) {
            if (r.alive && r.connection) send_mesh_members(r);
        }
    }

    void mesh_leave(slave_rec& r) {
        if (!r.mesh) return;
        r.mesh.reset();
        mesh_changed();
    }

    slave_rec* find(const std::string& id) {
        auto it = slaves.find(id);
        return it == slaves.end() ? nullptr : &it->second;
    }

    slave_rec* by_conn(connection_id c) {
        auto it = by_connection.find(c);
        return it == by_connection.end() ? nullptr : find(it->second);
    }

    std::uint32_t home_slot(std::uint32_t shard) const {
        return static_cast<std::uint32_t>(std::uint64_t{shard} * config.slave_count / config.shard_count);
    }

    std::vector<std::uint32_t> shards_of(const std::string& id) const {
        std::vector<std::uint32_t> list;
        for (std::uint32_t s = 0; s < shards.size(); ++s) {
            if (shards[s].owner == id) list.push_back(s);
        }
        return list;
    }

    mono_time ms(milliseconds d) const { return std::chrono::duration_cast<mono_time>(d); }

    pair_rec* pair_of(const std::string& id, std::size_t* index = nullptr) {
        if (!restart) return nullptr;
        for (std::size_t i = 0; i < restart->pairs.size(); ++i) {
            pair_rec& p = restart->pairs[i];
            if (p.phase == pair_phase::waiting || p.phase == pair_phase::done) continue;
            if (p.from == id || p.to == id) {
                if (index) *index = i;
                return &p;
            }
        }
        return nullptr;
    }

    bool adopting() const { return adopting_until.has_value(); }

    // The slave whose answer a migration waits for, if it can still give one (a slave already
    // declared lost is being killed: its timeout has done its job).
    const slave_rec* awaited(const migration_rec& m) const {
        const std::string& id = m.phase == migration_phase::stopping ? m.from : shards[m.shard].owner;
        auto it = slaves.find(id);
        if (it == slaves.end() || !it->second.alive || it->second.phase == slave_phase::lost) return nullptr;
        return &it->second;
    }
    const slave_rec* awaited(const shard_rec& sh) const {
        if (sh.phase != shard_phase::starting) return nullptr;
        auto it = slaves.find(sh.owner);
        if (it == slaves.end() || !it->second.alive || it->second.phase == slave_phase::lost) return nullptr;
        return &it->second;
    }

    // --- grants --------------------------------------------------------------------------------

    void grant(std::uint32_t shard, slave_rec& s) {
        if (checkpoints[shard] && s.minor >= 1) {
            // Its last known state exists: resume from it rather than start over.
            const std::uint64_t id = next_id++;
            migration_rec& m = migrations[id] = migration_rec{.id = id, .shard = shard, .to = s.id,
                                                              .state = checkpoints[shard], .started = now,
                                                              .phase_started = now, .pair = no_pair, .recovery = true,
                                                              .from_epoch = shards[shard].epoch};
            shards[shard].migration = id;
            resume_on(m, s);
            return;
        }
        set_checkpoint(shard, nullptr);  // a fresh start makes any older state meaningless
        shard_rec& sh = shards[shard];
        ++sh.epoch;
        sh.owner = s.id;
        sh.phase = shard_phase::starting;
        sh.migration = 0;
        sh.since = now;
        if (s.phase == slave_phase::ready) s.phase = slave_phase::running;
        log({.event = "shard_granted", .slave = s.id, .shard = shard, .epoch = sh.epoch});  // before it leaves
        send(s, protocol::start_shard{.shard = shard, .epoch = sh.epoch, .shard_count = config.shard_count});
    }

    void resume_on(migration_rec& m, slave_rec& target) {
        shard_rec& sh = shards[m.shard];
        ++sh.epoch;
        sh.owner = target.id;
        sh.phase = shard_phase::resuming;
        sh.since = now;
        m.phase = migration_phase::resuming;
        m.phase_started = now;
        if (target.phase == slave_phase::ready) target.phase = slave_phase::running;
        const std::size_t size = m.state ? m.state->size() : 0;
        const protocol::bytes_view view = m.state ? protocol::bytes_view(*m.state) : protocol::bytes_view{};
        // Logged before it is sent: a master that dies right after sending still leaves the new
        // epoch in its log, and its successor never grants that epoch again.
        log({.event = m.recovery ? "shard_recovering" : m.back_to_source ? "shard_resuming_on_source" : "shard_resuming",
             .slave = target.id,
             .peer = m.back_to_source ? std::string() : m.from,
             .shard = m.shard,
             .epoch = sh.epoch,
             .migration = m.id,
             .state_bytes = size});
        if (target.connection) {
            actions::send_frame a{*target.connection, {}};
            if (protocol::encode_with_state(protocol::resume{.shard = m.shard, .epoch = sh.epoch, .migration_id = m.id},
                                            view, a.frames, config.state_chunk_size)) {
                out.emplace_back(std::move(a));
            }
        }
        failpoint(m.recovery ? "master.recovery.after_resume_sent" : "master.migrate.after_resume_sent");
    }

    // An acknowledgement about a grant that is not current: it changes nothing; log it and tell
    // the slave why.
    void refuse_stale(slave_rec& s, std::string_view what, std::uint32_t shard, std::uint64_t epoch,
                      std::uint64_t migration = 0) {
        const std::string why =
            shard < shards.size()
                ? fmt::format("{} for shard {} at epoch {}: the shard is at epoch {} ({}{})", what, shard, epoch,
                              shards[shard].epoch, shards[shard].owner.empty() ? "unowned" : "held by " + shards[shard].owner,
                              shards[shard].owner == s.id ? ", " + std::string(name(shards[shard].phase)) : "")
                : fmt::format("{} for shard {}: no such shard", what, shard);
        log({.event = "stale_ack_ignored", .slave = s.id, .shard = shard, .epoch = epoch,
             .migration = migration ? std::optional(migration) : std::nullopt, .reason = why});
        send(s, protocol::error_message{.code = "stale_epoch", .message = why, .shard = shard, .epoch = epoch});
    }

    void fence(slave_rec& s, std::uint32_t shard, std::uint64_t stale_epoch, std::string reason) {
        send(s, protocol::stop_shard{.shard = shard, .epoch = stale_epoch, .migration_id = 0});
        log({.event = "shard_fenced", .slave = s.id, .shard = shard, .epoch = stale_epoch, .reason = std::move(reason)});
    }

    // Grants every shard nobody holds to the slave of its home slot, if that slave can take it.
    void grant_orphans() {
        // While a slave that may still hold shards is being killed, nothing is granted: its exit
        // makes the grants safe.
        if (adopting() || stopping || !awaiting_exit.empty()) return;
        for (std::uint32_t s = 0; s < shards.size(); ++s) {
            shard_rec& sh = shards[s];
            if (sh.phase != shard_phase::unowned || sh.migration != 0) continue;
            if (config.slave_count == 0) continue;
            slave_rec* holder = find(slots[home_slot(s)].active);
            if (holder && holder->usable()) grant(s, *holder);
        }
    }

    // --- migrations ----------------------------------------------------------------------------

    void end_migration(std::uint64_t id, std::string_view outcome, std::string reason, bool state_lost) {
        auto it = migrations.find(id);
        if (it == migrations.end()) return;
        migration_rec m = std::move(it->second);
        migrations.erase(it);
        if (!m.recovery) --in_flight;
        shard_rec& sh = shards[m.shard];
        if (sh.migration == id) sh.migration = 0;
        const bool completed = outcome == "migration_completed" || outcome == "migration_rolled_back";
        if (completed && m.state) set_checkpoint(m.shard, m.state);  // the newest known state
        if (completed && !m.from.empty()) {
            // The old holder kept a copy of what it handed back; it may let go of it now.
            if (slave_rec* old = find(m.from); old && old->connection && old->minor >= 1 && m.from != sh.owner) {
                send(*old, protocol::handoff_complete{.shard = m.shard, .epoch = m.from_epoch, .migration_id = m.id});
            }
        }
        // The record names the shard's holder now as `slave`: the target, or the source it went
        // back to (a recovery whose collected state went back where it came from included).
        const bool back_to_source = outcome == "migration_rolled_back";
        if (m.recovery) {
            outcome = completed ? std::string_view("shard_recovered") : std::string_view("recovery_failed");
        }
        const bool forward = outcome == "migration_completed" || (outcome == "shard_recovered" && !back_to_source);
        event_record r{.event = outcome,
                       .slave = forward ? m.to : m.from,
                       .peer = forward ? m.from : m.to,
                       .shard = m.shard,
                       .epoch = sh.epoch,
                       .migration = m.id,
                       .restart = restart ? std::optional(restart->id) : std::nullopt,
                       .duration_ms = ms_between(m.started, now),
                       .reason = std::move(reason)};
        if (outcome != "migration_failed" && outcome != "recovery_failed") r.pause_ms = ms_between(m.started, now);
        if (state_lost) r.state_lost = true;
        log(std::move(r));
        if (!m.recovery && restart && m.pair < restart->pairs.size()) {
            pair_rec& p = restart->pairs[m.pair];
            if (outcome == "migration_completed") ++p.moved;
            check_pair(m.pair);
        }
    }

    void start_migration(std::size_t pair_index, std::uint32_t shard) {
        const pair_rec& p = restart->pairs[pair_index];
        start_move(shard, p.from, p.to, pair_index);
    }

    // A move of a running shard from one live slave to another (`pair`: the restart pair it
    // belongs to, or no_pair).
    void start_move(std::uint32_t shard, const std::string& from, const std::string& to, std::size_t pair_index) {
        shard_rec& sh = shards[shard];
        slave_rec* src = find(from);
        if (!src || !src->alive || sh.owner != from || sh.phase != shard_phase::running) return;
        const std::uint64_t id = next_id++;
        migration_rec m{.id = id, .shard = shard, .from = from, .to = to, .started = now, .phase_started = now,
                        .pair = pair_index, .from_epoch = sh.epoch};
        sh.phase = shard_phase::stopping;
        sh.migration = id;
        sh.since = now;
        ++in_flight;
        migrations.emplace(id, std::move(m));
        log({.event = "migration_started", .slave = from, .peer = to, .shard = shard, .epoch = sh.epoch,
             .migration = id, .restart = restart ? std::optional(restart->id) : std::nullopt});
        failpoint("master.migrate.before_stop");
        send(*src, protocol::stop_shard{.shard = shard, .epoch = sh.epoch, .migration_id = id});
        failpoint("master.migrate.after_stop_sent");
    }

    // --- restarts ------------------------------------------------------------------------------

    void begin_restart(std::string reason) {
        ++generation;
        restart_rec r{.id = next_id++, .started = now, .reason = std::move(reason)};
        for (std::uint32_t slot = 0; slot < slots.size(); ++slot) {
            slave_rec* s = find(slots[slot].active);
            if (!s || !s->alive || !s->connection || s->phase != slave_phase::running) {
                log({.event = "restart_slot_skipped", .slave = slots[slot].active, .slot = slot,
                     .reason = s ? "slave not running" : "no slave in slot"});
                continue;
            }
            if (!s->ours && !s->watched) {
                log({.event = "restart_slot_skipped", .slave = s->id, .slot = slot,
                     .reason = "external slave: the master cannot replace it"});
                continue;
            }
            r.pairs.push_back({.slot = slot, .from = s->id});
        }
        restart = std::move(r);
        log({.event = "restart_started", .restart = restart->id, .generation = generation,
             .count = restart->pairs.size(), .reason = restart->reason});
        pump_restart();
    }

    void start_pair(std::size_t index) {
        pair_rec& p = restart->pairs[index];
        slave_rec* from = find(p.from);
        if (!from || !from->alive || slots[p.slot].active != p.from) {
            p.phase = pair_phase::done;
            return;
        }
        p.to = fresh_id(p.slot);
        slave_rec& t = spawn(p.slot, p.to);
        t.restart_target = true;
        p.phase = pair_phase::spawning;
    }

    // Ids are never reused, so the event log tells every process apart: "s0-g2" is slot 0's first
    // slave of generation 2, "s0-g2.1" the one after it in the same generation.
    // Ids a previous master gave out count as used too: their slaves may still be running.
    std::string fresh_id(std::uint32_t slot_index) {
        slot_rec& slot = slots[slot_index];
        std::string id;
        do {
            if (slot.spawn_generation != generation) {
                slot.spawn_generation = generation;
                slot.spawn_serial = 0;
                id = spawned_slave_id(slot_index, generation);
            } else {
                id = fmt::format("{}.{}", spawned_slave_id(slot_index, generation), ++slot.spawn_serial);
            }
        } while (used_ids.contains(id));
        return id;
    }

    std::string fresh_spare_id() {
        std::string id;
        do id = spare_slave_id(spare_serial++, generation);
        while (used_ids.contains(id));
        return id;
    }

    slave_rec& spawn(std::optional<std::uint32_t> slot, std::string id) {
        slave_rec& s = slaves[id];
        s = slave_rec{.id = id, .slot = slot, .generation = generation, .ours = true, .phase = slave_phase::spawning,
                      .deadline = now + ms(config.spawn_timeout), .spawned_at = now, .last_seen = now,
                      .spare = !slot.has_value()};
        out.emplace_back(actions::spawn_slave{.slave = id, .slot = slot, .generation = generation});
        log({.event = s.spare ? "spare_spawned" : "slave_spawned", .slave = id,
             .restart = restart ? std::optional(restart->id) : std::nullopt, .generation = generation, .slot = slot});
        return s;
    }

    // Keeps config.spares idle slaves of the current generation ready.
    void ensure_spares() {
        if (stopping || adopting() || !config.spawn_slaves) return;
        std::uint32_t have = 0;
        std::vector<slave_rec*> idle;
        for (auto& [id, r] : slaves) {
            if (!r.spare || !r.alive || r.phase == slave_phase::lost || r.phase == slave_phase::retiring) continue;
            if (r.generation < generation && !restart) {
                retire(r, "spare of an older generation");
                continue;
            }
            ++have;
            if (r.phase == slave_phase::ready && r.connection) idle.push_back(&r);
        }
        // Fewer spares wanted (a reload lowered slaves.spares): the extra ready ones go.
        for (; have > config.spares && !idle.empty(); --have, idle.pop_back()) {
            retire(*idle.back(), "more spares than slaves.spares");
        }
        // Spares that keep failing to start back off, and give up at the start limit.
        if (spares_failed || (spare_respawn_at && now < *spare_respawn_at)) return;
        spare_respawn_at.reset();
        while (have++ < config.spares) spawn(std::nullopt, fresh_spare_id());
    }

    // A slot lost its slave: a ready spare takes it over at once, and its shards resume there. With
    // external slaves, an idle one without a slot serves as the spare.
    bool promote_spare(std::uint32_t slot_index) {
        for (auto& [id, r] : slaves) {
            const bool idle_external = !config.spawn_slaves && !r.ours && !r.watched && !r.slot &&
                                       r.phase == slave_phase::running && shards_of(r.id).empty();
            const bool ready_spare = r.spare && r.phase == slave_phase::ready;
            if (!(ready_spare || idle_external) || !r.alive || !r.connection) continue;
            r.spare = false;
            r.slot = slot_index;
            slots[slot_index].active = r.id;
            log({.event = "spare_promoted", .slave = r.id, .slot = slot_index});
            return true;
        }
        return false;
    }

    // Pairs using the surge: a retiring one has handed all its shards over, so the next pair may
    // start while the old slave exits.
    std::size_t preparing_pairs() const {
        std::size_t n = 0;
        for (const pair_rec& p : restart->pairs) {
            if (p.phase == pair_phase::spawning || p.phase == pair_phase::soft_starting || p.phase == pair_phase::migrating) ++n;
        }
        return n;
    }
    std::size_t unfinished_pairs() const {
        std::size_t n = 0;
        for (const pair_rec& p : restart->pairs) {
            if (p.phase != pair_phase::waiting && p.phase != pair_phase::done) ++n;
        }
        return n;
    }

    // Slaves a previous master left beside the slot holders (it crashed in the middle of a
    // restart, say) hand their shards to the shards' home slots, a move at a time within the
    // concurrency, and then retire: the fleet converges to slaves.count.
    void drain_surplus() {
        if (restart || stopping || adopting() || !awaiting_exit.empty()) return;
        const std::uint32_t concurrency = std::max<std::uint32_t>(1, config.migration_concurrency);
        for (auto& [id, s] : slaves) {
            if (s.slot || !(s.ours || s.watched) || !s.usable() || s.restart_target) continue;
            const auto held = shards_of(id);
            if (held.empty()) {
                if (!s.spare) retire(s, "surplus slave");  // an idle spare stays one
                continue;
            }
            for (std::uint32_t shard : held) {
                if (in_flight >= concurrency) return;
                if (shards[shard].phase != shard_phase::running || shards[shard].migration) continue;
                const slave_rec* to = config.slave_count ? find(slots[home_slot(shard)].active) : nullptr;
                if (!to || !to->usable() || to->id == id) continue;
                start_move(shard, id, to->id, no_pair);
            }
        }
    }

    void pump_restart() {
        if (!restart) return drain_surplus();
        const std::size_t surge = std::max<std::uint32_t>(1, config.restart_surge);
        while (!restart->failing && !stopping && restart->next_pair < restart->pairs.size() && preparing_pairs() < surge) {
            start_pair(restart->next_pair++);
        }
        while (!stopping && in_flight < std::max<std::uint32_t>(1, config.migration_concurrency) && !restart->queue.empty()) {
            auto [pair_index, shard] = restart->queue.front();
            restart->queue.pop_front();
            if (restart->pairs[pair_index].target_failed) continue;
            start_migration(pair_index, shard);
        }
        for (std::size_t i = 0; i < restart->pairs.size(); ++i) check_pair(i);
        if (!restart) return;
        const bool all_started = restart->failing || stopping || restart->next_pair == restart->pairs.size();
        if (all_started && unfinished_pairs() == 0 && in_flight == 0) finish_restart();
    }

    void finish_restart() {
        restart_rec r = std::move(*restart);
        restart.reset();
        if (r.failing || stopping) {
            ++restarts_failed;
            log({.event = "restart_failed", .restart = r.id, .generation = generation,
                 .duration_ms = ms_between(r.started, now), .reason = r.failing ? r.failure : "master stopping"});
        } else {
            ++restarts_completed;
            std::uint64_t moved = 0;
            for (const pair_rec& p : r.pairs) moved += p.moved;
            log({.event = "restart_completed", .restart = r.id, .generation = generation,
                 .duration_ms = ms_between(r.started, now), .count = moved});
            ensure_spares();  // spares of the new generation replace the old ones
        }
        if (restart_queued && !stopping) {
            restart_queued = false;
            begin_restart(std::move(queued_reason));
        }
    }

    void on_target_ready(std::size_t index) {
        pair_rec& p = restart->pairs[index];
        slave_rec* from = find(p.from);
        slave_rec* to = find(p.to);
        p.phase = pair_phase::migrating;
        std::vector<std::uint32_t> moving;
        if (from && from->alive) {
            for (std::uint32_t s : shards_of(p.from)) {
                if (shards[s].phase == shard_phase::running) moving.push_back(s);
            }
        }
        p.total = static_cast<std::uint32_t>(moving.size());
        log({.event = "soft_start_completed", .slave = p.to, .restart = restart->id,
             .duration_ms = ms_between(p.soft_start_sent, now)});
        if (from && from->connection) {
            send(*from, protocol::shard_migration_start{.restart_id = restart->id, .role = protocol::migration_role::source,
                                                        .peer = p.to, .shard_count = p.total});
        }
        if (to) {
            send(*to, protocol::shard_migration_start{.restart_id = restart->id, .role = protocol::migration_role::target,
                                                      .peer = p.from, .shard_count = p.total});
        }
        for (std::uint32_t s : moving) restart->queue.emplace_back(index, s);
        if (p.source_dead) grant_orphans();
    }

    // Moves a pair forward when its moves are done: retire the source, or finish.
    void check_pair(std::size_t index) {
        if (!restart || index >= restart->pairs.size()) return;
        pair_rec& p = restart->pairs[index];
        if (p.phase == pair_phase::waiting || p.phase == pair_phase::done) return;
        bool moving = false;
        for (const auto& [id, m] : migrations) moving = moving || m.pair == index;
        for (const auto& q : restart->queue) moving = moving || q.first == index;
        if (moving) return;
        slave_rec* from = find(p.from);
        slave_rec* to = find(p.to);
        if (p.target_failed) {
            // Rolled back: done once the target is gone (its shards are back on the source or orphaned).
            if (!to) {
                p.phase = pair_phase::done;
                log({.event = "restart_pair_rolled_back", .slave = p.from, .peer = p.to, .restart = restart->id,
                     .slot = p.slot, .count = p.moved});
            }
            return;
        }
        if (p.phase == pair_phase::migrating) {
            if (!from || !from->alive) {
                p.phase = pair_phase::done;
                slots[p.slot].active = p.to;
                log({.event = "restart_pair_completed", .slave = p.to, .peer = p.from, .restart = restart->id,
                     .slot = p.slot, .count = p.moved, .reason = "source died during the restart"});
                return;
            }
            if (!shards_of(p.from).empty()) {
                // Shards the source picked up meanwhile (or whose move was cancelled): move them too.
                for (std::uint32_t s : shards_of(p.from)) {
                    if (shards[s].phase == shard_phase::running) restart->queue.emplace_back(index, s);
                }
                return;
            }
            slots[p.slot].active = p.to;
            retire(*from, "rolling restart");
            p.phase = pair_phase::retiring;
        }
    }

    void retire(slave_rec& s, std::string reason) {
        failpoint("master.retire.before_shutdown");
        s.phase = slave_phase::retiring;
        s.deadline = now + ms(config.shutdown_timeout);
        send(s, protocol::shutdown{.reason = reason, .deadline_ms = static_cast<std::uint32_t>(config.shutdown_timeout.count())});
        log({.event = "slave_retiring", .slave = s.id, .restart = restart ? std::optional(restart->id) : std::nullopt,
             .reason = std::move(reason)});
    }

    // The restart's new slave failed (timed out, disconnected or died): stop the restart and send
    // everything that has not settled on it back to its source.
    void fail_target(std::size_t index, const std::string& reason) {
        pair_rec& p = restart->pairs[index];
        if (p.target_failed) return;
        p.target_failed = true;
        if (!restart->failing) {
            restart->failing = true;
            restart->failure = fmt::format("new slave {} failed: {}", p.to, reason);
        }
        std::erase_if(restart->queue, [&](const auto& q) { return q.first == index; });
        for (auto& [id, m] : migrations) {
            if (m.pair == index && m.phase == migration_phase::stopping) m.back_to_source = true;
        }
    }

    // --- failures ------------------------------------------------------------------------------

    // Something is wrong with a live slave: make sure it is dead (kill it) before anything it holds
    // is granted again. External slaves cannot be killed: they get a grace period to come back.
    void fail_slave(slave_rec& s, const std::string& reason) {
        if (s.phase == slave_phase::lost || !s.alive) return;
        log({.event = "slave_lost", .slave = s.id, .pid = s.pid, .reason = reason});
        mesh_leave(s);
        std::size_t index = 0;
        if (pair_rec* p = pair_of(s.id, &index); p && p->to == s.id) fail_target(index, reason);
        if (s.connection) {
            out.emplace_back(actions::close_connection{*s.connection, "slave_lost", reason});
            by_connection.erase(*s.connection);
            s.connection.reset();
        }
        s.phase = slave_phase::lost;
        if (s.killable()) {
            out.emplace_back(actions::kill_slave{s.id, s.pid});
            log({.event = "slave_killed", .slave = s.id, .pid = s.pid, .reason = reason});
            s.deadline.reset();  // now we wait for its exit
        } else if (s.ours) {
            // Spawned but no pid yet (spawn still in progress): the exit will follow the spawn.
            s.deadline.reset();
        } else {
            // An external slave cannot be killed. One that went silent or stuck is fenced now: its
            // epochs are superseded by the next grants, it refuses stale ones itself, and an
            // upstream that checks epochs refuses its work. One that merely disconnected gets
            // external_grace to come back first.
            const bool unresponsive = reason.find("timeout") != std::string::npos || reason == "progress_stalled";
            s.deadline = now + (unresponsive ? mono_time{0} : ms(config.external_grace));
        }
    }

    // The slave's process is gone (or, for an external slave, presumed gone after its grace):
    // nothing it held runs any more, so its shards may be granted again.
    void slave_dead(const std::string& id, const std::string& reason) {
        slave_rec* sp = find(id);
        if (!sp) return;
        slave_rec& s = *sp;
        s.alive = false;
        mesh_leave(s);
        if (s.connection) {
            out.emplace_back(actions::close_connection{*s.connection, "slave_exited", reason});
            by_connection.erase(*s.connection);
            s.connection.reset();
        }
        log({.event = "slave_exited", .slave = s.id, .pid = s.pid, .reason = reason});

        std::size_t pair_index = 0;
        pair_rec* pair = pair_of(s.id, &pair_index);
        const bool is_target = pair && pair->to == s.id;
        const bool is_source = pair && pair->from == s.id;
        if (is_target) fail_target(pair_index, reason);
        if (is_source) {
            pair->source_dead = true;
            std::erase_if(restart->queue, [&](const auto& q) { return q.first == pair_index; });
            if (!pair->target_failed) slots[pair->slot].active = pair->to;
        }

        for (std::uint32_t shard : shards_of(s.id)) {
            shard_rec& sh = shards[shard];
            auto mig = sh.migration ? migrations.find(sh.migration) : migrations.end();
            if (mig != migrations.end()) {
                migration_rec& m = mig->second;
                slave_rec* source = find(m.from);
                if (sh.phase == shard_phase::resuming && !m.back_to_source && source && source->usable()) {
                    // The target died while resuming: the state is still here, give it back.
                    m.back_to_source = true;
                    resume_on(m, *source);
                    continue;
                }
                const bool was_stopping = sh.phase == shard_phase::stopping;
                if (m.state) set_checkpoint(shard, m.state);  // a handed-back state outlives its target
                sh.owner.clear();
                sh.phase = shard_phase::unowned;
                end_migration(m.id, "migration_failed",
                              was_stopping ? "source died before handing back the state"
                                           : fmt::format("{} died: {}", s.id, reason),
                              !checkpoints[shard]);
                log({.event = "shard_orphaned", .slave = s.id, .shard = shard, .epoch = sh.epoch,
                     .state_lost = !checkpoints[shard]});
                continue;
            }
            sh.owner.clear();
            sh.phase = shard_phase::unowned;
            // With a checkpoint the shard resumes from it; without, it starts over.
            log({.event = "shard_orphaned", .slave = s.id, .shard = shard, .epoch = sh.epoch,
                 .state_lost = !checkpoints[shard]});
        }

        // Migrations stopping on another slave but bound for this one go back to their source.
        for (auto& [mid, m] : migrations) {
            if (m.to == s.id && m.phase == migration_phase::stopping) m.back_to_source = true;
        }

        const bool retired = s.phase == slave_phase::retiring;
        const bool was_spare = s.spare;
        if (s.slot && slots[*s.slot].active == s.id) {
            slot_rec& slot = slots[*s.slot];
            slot.active.clear();
            if (!retired && !stopping && !promote_spare(*s.slot)) schedule_respawn(*s.slot, s, reason);
        }
        if (was_spare && s.ours && !s.started && !stopping) spare_start_failed(s.id, reason);
        if (pair) {
            // A retiring source is done however it went (it may have been killed at its deadline).
            if (is_source && pair->phase == pair_phase::retiring) {
                pair->phase = pair_phase::done;
                log({.event = "slave_retired", .slave = s.id, .restart = restart->id});
                log({.event = "restart_pair_completed", .slave = pair->to, .peer = pair->from,
                     .restart = restart->id, .slot = pair->slot, .count = pair->moved});
            }
        } else if (retired) {
            log({.event = "slave_retired", .slave = s.id});
        }
        slaves.erase(id);
        if (pair) check_pair(pair_index);
        grant_orphans();
        if (was_spare || !retired) ensure_spares();
        pump_restart();
        advance_stop();
    }

    // The delay before the next start after `failures` quick deaths in a row: none after the first,
    // then doubling from respawn_backoff_min up to respawn_backoff_max.
    milliseconds backoff(std::uint32_t failures) const {
        if (failures == 0) return milliseconds(0);
        const auto factor = std::uint64_t{1} << std::min<std::uint32_t>(failures - 1, 20);
        return std::min(config.respawn_backoff_max,
                        milliseconds(config.respawn_backoff_min.count() * static_cast<std::int64_t>(factor)));
    }

    std::string start_limit_failure(std::uint32_t failed_starts, const std::string& last) const {
        return fmt::format("{} starts failed within {} ms (respawn.limit_burst, respawn.limit_interval); the last: {}",
                           failed_starts, config.start_limit_interval.count(), last);
    }

    void schedule_respawn(std::uint32_t slot_index, const slave_rec& dead, const std::string& reason) {
        if (stopping || !config.spawn_slaves) return;
        slot_rec& slot = slots[slot_index];
        if (dead.ours && !dead.started && slot.starts.failed(now, config.start_limit_burst, config.start_limit_interval)) {
            // The command cannot start: retrying forever would only hide it. The slot's shards stay
            // unassigned (status says so) until a reload or `meshmaster restart` retries.
            slot.failed = true;
            slot.respawn_at.reset();
            const std::uint32_t failed_starts = slot.starts.recent(now, config.start_limit_interval);
            slot.failure = start_limit_failure(failed_starts, reason);
            log({.event = "slot_failed", .slave = dead.id, .slot = slot_index,
                 .duration_ms = static_cast<double>(config.start_limit_interval.count()), .count = failed_starts,
                 .reason = reason});
            return;
        }
        const bool quick_death = now - dead.spawned_at < ms(config.stable_after);
        if (!quick_death) slot.failures = 0;
        const milliseconds delay = backoff(slot.failures);
        if (quick_death) ++slot.failures;
        slot.respawn_at = now + ms(delay);
        log({.event = "respawn_scheduled", .slave = dead.id, .slot = slot_index,
             .duration_ms = static_cast<double>(delay.count()), .count = slot.failures});
    }

    // A spare that never came up: back off before the next, and give up at the start limit.
    void spare_start_failed(const std::string& id, const std::string& reason) {
        if (spare_starts.failed(now, config.start_limit_burst, config.start_limit_interval)) {
            spares_failed = true;
            spare_respawn_at.reset();
            const std::uint32_t failed_starts = spare_starts.recent(now, config.start_limit_interval);
            spares_failure = start_limit_failure(failed_starts, reason);
            log({.event = "spares_failed", .slave = id,
                 .duration_ms = static_cast<double>(config.start_limit_interval.count()), .count = failed_starts,
                 .reason = reason});
            return;
        }
        spare_respawn_at = now + ms(backoff(spare_failures++));
    }

    // Slots and spares given up after failed starts get a fresh start limit and start again now.
    supervisor::retried_starts retry_failed_starts(const std::string& reason) {
        supervisor::retried_starts done;
        if (stopping || exited || adopting()) return done;
        for (std::uint32_t i = 0; i < slots.size(); ++i) {
            slot_rec& slot = slots[i];
            if (!slot.failed) continue;
            slot.failed = false;
            slot.failure.clear();
            slot.starts.reset();
            slot.failures = 0;
            log({.event = "slot_retried", .slot = i, .reason = reason});
            done.slots.push_back(i);
            if (slot.active.empty() && !promote_spare(i)) respawn(i);
        }
        if (spares_failed) {
            spares_failed = false;
            spares_failure.clear();
            spare_starts.reset();
            spare_failures = 0;
            log({.event = "spares_retried", .reason = reason});
            done.spares = true;
            ensure_spares();
        }
        grant_orphans();
        return done;
    }

    void respawn(std::uint32_t slot_index) {
        slot_rec& slot = slots[slot_index];
        slot.respawn_at.reset();
        if (!slot.active.empty() || stopping || slot.failed) return;
        std::string id = fresh_id(slot_index);
        slot.active = id;
        spawn(slot_index, id);
    }

    // --- stopping ------------------------------------------------------------------------------

    // A graceful stop or a detach: nothing new starts (no restart, respawn, grant or spare), a
    // running restart stops queueing moves, and advance_stop() takes it from there.
    void begin_stop(bool detach) {
        if (stopping) return;
        stopping = true;
        detaching = detach;
        restart_queued = false;
        for (auto& slot : slots) slot.respawn_at.reset();
        spare_respawn_at.reset();
        if (restart) {
            restart->queue.clear();
            restart->failing = true;
            if (restart->failure.empty()) restart->failure = detach ? "master detaching" : "master stopping";
        }
        log({.event = "master_stopping", .reason = detach ? "detaching: the slaves keep running" : "graceful"});
        pump_restart();
        advance_stop();
    }

    void advance_stop() {
        if (!stopping || exited || in_flight > 0) return;
        if (detaching) {
            // Moves are over: every shard has one holder. A restart ends here, half done (the next
            // master adopts old and new slaves alike and converges). Let go of the slaves; they
            // keep running their shards and reconnect to the next master, which adopts them.
            if (restart) finish_restart();
            std::uint64_t left = 0;
            for (auto& [id, s] : slaves) {
                if (!s.alive) continue;
                ++left;
                if (s.connection) {
                    out.emplace_back(actions::close_connection{*s.connection, "master_detaching",
                                                               "the master is going away; the next one adopts you"});
                }
            }
            exited = true;
            log({.event = "master_detached", .count = left});
            out.emplace_back(actions::exit_daemon{0});
            return;
        }
        for (const auto& [id, s] : slaves) {
            if (s.phase == slave_phase::retiring || (s.alive && s.phase == slave_phase::lost && s.killable())) return;
        }
        // Next slave to shut down: slot order, then spares.
        slave_rec* next = nullptr;
        for (auto& [id, s] : slaves) {
            if (!s.alive || (!s.ours && !s.watched)) continue;
            if (s.phase == slave_phase::spawning && !s.connection) {
                if (s.killable()) {
                    out.emplace_back(actions::kill_slave{s.id, s.pid});
                    s.phase = slave_phase::lost;
                    log({.event = "slave_killed", .slave = s.id, .pid = s.pid, .reason = "master stopping"});
                    return;
                }
                continue;
            }
            if (!next || (s.slot.value_or(UINT32_MAX) < next->slot.value_or(UINT32_MAX))) next = &s;
        }
        if (next) {
            if (next->connection) {
                retire(*next, "master stopping");
            } else {
                fail_slave(*next, "master stopping");
            }
            return;
        }
        for (auto& [id, s] : slaves) {
            if (s.connection) {
                out.emplace_back(actions::close_connection{*s.connection, "master_stopping", "the master is stopping"});
            }
        }
        exited = true;
        log({.event = "master_stopped"});
        out.emplace_back(actions::exit_daemon{0});
    }

    // --- hello ---------------------------------------------------------------------------------

    void reconcile_reported_shards(slave_rec& s, const std::vector<shard_epoch>& reported,
                                   const std::vector<shard_epoch>& kept) {
        std::set<std::uint32_t> seen;
        for (const shard_epoch& k : kept) seen.insert(k.shard);  // stopped, state kept: see below
        for (const shard_epoch& r : reported) {
            if (r.shard >= shards.size() || !seen.insert(r.shard).second) {
                log({.event = "shard_report_ignored", .slave = s.id, .shard = r.shard, .epoch = r.epoch,
                     .reason = r.shard >= shards.size() ? "no such shard" : "reported twice"});
                continue;
            }
            shard_rec& sh = shards[r.shard];
            if (sh.owner == s.id) {
                if (r.epoch == sh.epoch) {
                    // It still holds what we think it holds: an acknowledgement may have been lost
                    // with the old connection.
                    if (sh.phase == shard_phase::starting) {
                        sh.phase = shard_phase::running;
                        log({.event = "shard_started", .slave = s.id, .shard = r.shard, .epoch = r.epoch,
                             .duration_ms = ms_between(sh.since, now), .reason = "confirmed by the slave's hello"});
                        sh.since = now;
                    }
                    if (sh.phase == shard_phase::resuming && sh.migration) {
                        sh.phase = shard_phase::running;
                        auto m = migrations.find(sh.migration);
                        if (m != migrations.end()) {
                            end_migration(m->first, m->second.back_to_source ? "migration_rolled_back" : "migration_completed",
                                          "acknowledged by the slave's hello", false);
                        }
                    }
                    if (sh.phase == shard_phase::stopping) {
                        send(s, protocol::stop_shard{.shard = r.shard, .epoch = sh.epoch, .migration_id = sh.migration});
                    }
                } else if (r.epoch < sh.epoch) {
                    fence(s, r.shard, r.epoch, "a newer epoch is already granted");
                } else {
                    sh.epoch = r.epoch;
                }
                continue;
            }
            if (sh.owner.empty() && sh.phase == shard_phase::unowned && sh.migration == 0 && r.epoch >= sh.epoch) {
                sh.owner = s.id;
                sh.epoch = r.epoch;
                sh.phase = shard_phase::running;
                sh.since = now;
                log({.event = "shard_adopted", .slave = s.id, .shard = r.shard, .epoch = r.epoch});
                continue;
            }
            fence(s, r.shard, r.epoch,
                  sh.owner.empty() ? "the shard is being moved" : fmt::format("held by {} under epoch {}", sh.owner, sh.epoch));
        }
        // The hello is the truth about what the slave runs: what the table gives it but it did not
        // report is not running there (a restarted process, or frames lost with the old connection).
        for (std::uint32_t shard : shards_of(s.id)) {
            if (seen.contains(shard)) continue;
            shard_rec& sh = shards[shard];
            auto mig = sh.migration ? migrations.find(sh.migration) : migrations.end();
            if (sh.phase == shard_phase::resuming && mig != migrations.end()) {
                resume_on(mig->second, s);  // the state is still here: send it again
                continue;
            }
            const bool was_stopping = sh.phase == shard_phase::stopping;
            if (mig != migrations.end() && mig->second.state) set_checkpoint(shard, mig->second.state);
            sh.owner.clear();
            sh.phase = shard_phase::unowned;
            if (mig != migrations.end()) {
                end_migration(mig->first, "migration_failed",
                              was_stopping ? "the old slave lost the shard before handing back its state"
                                           : "the slave lost the shard",
                              !checkpoints[shard]);
            }
            log({.event = "shard_orphaned", .slave = s.id, .shard = shard, .epoch = sh.epoch,
                 .state_lost = !checkpoints[shard], .reason = "not reported in the slave's hello"});
        }
    }

    // States a slave stopped and still keeps (it handed them back, or could not): take them up.
    void reconcile_stopped_shards(slave_rec& s, const std::vector<shard_epoch>& kept) {
        for (const shard_epoch& k : kept) {
            if (k.shard >= shards.size()) continue;
            shard_rec& sh = shards[k.shard];
            if (sh.owner == s.id && sh.phase == shard_phase::stopping && sh.epoch == k.epoch && sh.migration) {
                // Our stop's answer was lost with the old connection: ask again.
                send(s, protocol::stop_shard{.shard = k.shard, .epoch = k.epoch, .migration_id = sh.migration});
                continue;
            }
            if (sh.epoch > k.epoch && (!sh.owner.empty() || sh.migration != 0)) {
                // It runs (or is being resumed) elsewhere under a newer epoch: the copy is not needed.
                if (s.minor >= 1) send(s, protocol::handoff_complete{.shard = k.shard, .epoch = k.epoch});
                continue;
            }
            if (sh.phase != shard_phase::unowned || sh.migration != 0) continue;
            // Nobody runs it (a master that crashed mid-move, or one just restarted): collect the
            // state from the slave that kept it, then resume it on the shard's home slot.
            sh.epoch = std::max(sh.epoch, k.epoch);
            if (sh.epoch != k.epoch) continue;
            const std::uint64_t id = next_id++;
            migrations[id] = migration_rec{.id = id, .shard = k.shard, .from = s.id, .started = now,
                                           .phase_started = now, .pair = no_pair, .recovery = true,
                                           .from_epoch = k.epoch};
            sh.owner = s.id;
            sh.phase = shard_phase::stopping;
            sh.migration = id;
            sh.since = now;
            send(s, protocol::stop_shard{.shard = k.shard, .epoch = k.epoch, .migration_id = id});
            log({.event = "shard_state_collecting", .slave = s.id, .shard = k.shard, .epoch = k.epoch, .migration = id});
        }
    }

    // A slave whose hello has been accepted starts its work.
    void activate(slave_rec& s, bool reported_anything, bool soft_started) {
        std::size_t index = 0;
        if (s.restart_target) {
            pair_rec* p = pair_of(s.id, &index);
            if (p && p->to == s.id && !p->target_failed) {
                s.phase = slave_phase::soft_starting;
                s.deadline = now + ms(config.soft_start_timeout);
                p->phase = pair_phase::soft_starting;
                p->soft_start_sent = now;
                send(s, protocol::soft_start{.restart_id = restart->id});
                return;
            }
        }
        if (s.spare && shards_of(s.id).empty()) {
            // Warm it up (connect upstream, fill caches) so it can take shards the moment it must.
            s.phase = slave_phase::soft_starting;
            s.deadline = now + ms(config.soft_start_timeout);
            send(s, protocol::soft_start{});
            return;
        }
        s.phase = slave_phase::running;
        s.deadline.reset();
        if (!s.slot) {
            // Neither a slot holder nor a spare we want: one we (or a previous master) spawned is
            // surplus, shut it down.
            if ((s.ours || s.watched) && shards_of(s.id).empty()) retire(s, "surplus slave");
            return;
        }
        if (!reported_anything && !soft_started) send(s, protocol::full_start{});
        grant_orphans();
    }

    void end_adoption() {
        adopting_until.reset();
        log({.event = "adoption_finished"});
        // A slave of a previous master that did not come back may be frozen or cut off while still
        // believing it holds shards: kill it (by the pid the log gave) and wait for the exit.
        for (const auto& [id, pid] : std::exchange(expected, {})) {
            out.emplace_back(actions::watch_process{id, pid});
            out.emplace_back(actions::kill_slave{id, pid});
            log({.event = "slave_killed", .slave = id, .pid = pid,
                 .reason = "it did not come back after the master restarted and may still hold shards"});
            awaiting_exit[id] = now + ms(config.stop_timeout);
        }
        // The previous master's unfinished moves end here, with where each shard is now.
        for (const auto& m : std::exchange(abandoned, {})) {
            const shard_rec& sh = m.shard < shards.size() ? shards[m.shard] : shard_rec{};
            log({.event = "migration_abandoned", .slave = sh.owner, .peer = m.from, .shard = m.shard, .epoch = sh.epoch,
                 .migration = m.id,
                 .reason = fmt::format("the master restarted mid-move ({} → {}); the shard is {}", m.from, m.to,
                                       sh.owner.empty() ? std::string("being recovered") : "with " + sh.owner)});
        }
        for (std::uint32_t i = 0; i < slots.size(); ++i) {
            if (slots[i].active.empty() && config.spawn_slaves && !promote_spare(i)) respawn(i);
        }
        grant_orphans();
        ensure_spares();
    }
};

// ==============================================================================================

supervisor::supervisor(supervisor_config config, std::uint64_t first_id)
    : s_(std::make_unique<state>(config, first_id)) {
    // Slaves ignore a membership list older than one they applied, and they outlive masters: the
    // next master's versions must start above this one's (first_id grows with the wall clock).
    s_->mesh_version = first_id;
}
supervisor::~supervisor() = default;

const supervisor_config& supervisor::config() const noexcept { return s_->config; }

std::vector<action> supervisor::take_actions() { return std::exchange(s_->out, {}); }

void supervisor::start(mono_time now, std::chrono::milliseconds adopt_window) {
    auto& s = *s_;
    s.now = now;
    if (s.started) return;
    s.started = true;
    s.log({.event = "master_started", .generation = s.generation, .count = s.config.shard_count});
    // A restart its predecessor was killed in the middle of ends here, before anything else happens:
    // this master does not carry on the old plan (see adopt_open_restarts).
    for (const std::uint64_t id : std::exchange(s.abandoned_restarts, {})) {
        s.log({.event = "restart_abandoned", .restart = id,
               .reason = "the master running it was killed mid-restart; this one does not carry it on: it adopts "
                         "the slaves of both generations and converges the fleet"});
    }
    if (adopt_window.count() > 0) {
        s.adopting_until = now + s.ms(adopt_window);
        s.log({.event = "adoption_started", .duration_ms = static_cast<double>(adopt_window.count())});
        return;
    }
    s.end_adoption();
}

void supervisor::on_spawned(const std::string& slave, std::int64_t pid, mono_time now) {
    auto& s = *s_;
    s.now = now;
    if (s.exited) return;
    slave_rec* r = s.find(slave);
    if (!r) return;
    r->pid = pid;
    s.log({.event = "slave_process_started", .slave = slave, .pid = pid});
    // Killed while the spawn was in flight (e.g. the master is stopping): finish the job.
    if (r->phase == slave_phase::lost && r->alive) s.out.emplace_back(actions::kill_slave{r->id, pid});
}

void supervisor::on_spawn_failed(const std::string& slave, std::string reason, mono_time now) {
    auto& s = *s_;
    s.now = now;
    if (s.exited) return;
    s.log({.event = "spawn_failed", .slave = slave, .reason = reason});
    s.slave_dead(slave, "spawn failed: " + reason);
}

void supervisor::on_slave_connected(connection_id connection, const slave_hello_info& hello, mono_time now) {
    auto& s = *s_;
    s.now = now;
    if (s.exited) return;
    if (s.awaiting_exit.contains(hello.id)) {
        s.out.emplace_back(actions::close_connection{connection, "slave_lost", "it came back too late and is being killed"});
        return;
    }
    s.expected.erase(hello.id);
    slave_rec* r = s.find(hello.id);
    if (r && !r->alive) r = nullptr;
    if (r) {
        if (r->connection && *r->connection != connection) {
            s.out.emplace_back(actions::close_connection{*r->connection, "replaced", "the slave connected again"});
            s.by_connection.erase(*r->connection);
        }
        if (r->phase == slave_phase::lost && (r->ours || r->watched)) {
            // We already decided it is gone and are killing it; do not let it back in.
            s.out.emplace_back(actions::close_connection{connection, "slave_lost", "this slave is being replaced"});
            return;
        }
    } else {
        slave_rec fresh{.id = hello.id, .generation = hello.generation, .pid = hello.pid, .spawned_at = now};
        const auto slot = slot_of_spawned_id(hello.id);
        fresh.spare = is_spare_id(hello.id);
        fresh.watched = (slot.has_value() || fresh.spare) && hello.pid > 0;  // spawned by a previous master
        if (fresh.spare && !hello.shards.empty() && s.config.slave_count) {
            // A spare the previous master promoted: it runs its shards for their home slot.
            const std::uint32_t home = s.home_slot(hello.shards.front().shard % s.config.shard_count);
            if (s.slots[home].active.empty()) {
                fresh.spare = false;
                fresh.slot = home;
            }
        } else if (slot && *slot < s.slots.size() && s.slots[*slot].active.empty()) {
            fresh.slot = slot;
        } else if (!slot && !s.config.spawn_slaves) {
            for (std::uint32_t i = 0; i < s.slots.size(); ++i) {
                if (s.slots[i].active.empty()) {
                    fresh.slot = i;
                    break;
                }
            }
        }
        if (fresh.slot) s.slots[*fresh.slot].active = fresh.id;
        r = &s.slaves.emplace(hello.id, std::move(fresh)).first->second;
        if (r->watched) s.out.emplace_back(actions::watch_process{r->id, r->pid});
        s.log({.event = r->watched ? "slave_adopted" : "slave_joined", .slave = r->id, .generation = hello.generation,
               .slot = r->slot, .pid = hello.pid, .count = hello.shards.size()});
    }
    if (hello.pid > 0) r->pid = hello.pid;
    if (!r->started) {
        // It started: the start limit of its slot (or of the spares) counts afresh.
        r->started = true;
        if (r->slot && *r->slot < s.slots.size() && s.slots[*r->slot].active == r->id) s.slots[*r->slot].starts.reset();
        if (r->spare) {
            s.spare_starts.reset();
            s.spare_failures = 0;
        }
    }
    r->minor = hello.version_minor;
    r->connection = connection;
    // Its mesh node joins (or changed, or is gone); either way it gets the list now, since it may
    // have missed changes while it was away.
    const std::optional<mesh_node_info> mesh = hello.version_minor >= 2 ? hello.mesh : std::nullopt;
    const bool mesh_changed_now = r->mesh != mesh;
    r->mesh = mesh;
    r->last_seen = now;
    // Stuck is judged from this connection on: a slave back from a cut (an external one within
    // external_grace) must not be lost for the progress it last reported before it left.
    r->progress_at = now;
    r->next_heartbeat = now + s.ms(s.config.heartbeat_interval);
    s.by_connection[connection] = r->id;
    s.log({.event = "slave_connected", .slave = r->id, .generation = r->generation, .slot = r->slot, .pid = r->pid,
           .count = hello.shards.size()});

    if (mesh_changed_now) {
        s.mesh_changed();
    } else {
        s.send_mesh_members(*r);
    }
    s.reconcile_reported_shards(*r, hello.shards, hello.stopped);
    s.reconcile_stopped_shards(*r, hello.stopped);
    switch (r->phase) {
        case slave_phase::spawning:
            s.activate(*r, !hello.shards.empty(), hello.soft_started);
            break;
        case slave_phase::retiring:
            s.retire(*r, "shutdown requested before the reconnect");
            break;
        case slave_phase::soft_starting:
            // The soft_start may have been lost with the old connection.
            if (s.restart) s.send(*r, protocol::soft_start{.restart_id = s.restart->id});
            break;
        case slave_phase::lost:  // an external slave back within its grace
            r->phase = slave_phase::running;
            r->deadline.reset();
            s.grant_orphans();
            break;
        case slave_phase::ready:
        case slave_phase::running:
            s.grant_orphans();
            break;
    }
    if (s.adopting()) {
        // Over as soon as everyone is accounted for: every slot and shard has its slave again, or
        // every slave the log says was running is back (what nobody reports is nobody's).
        bool complete = true;
        for (const auto& slot : s.slots) complete = complete && !slot.active.empty();
        for (const auto& sh : s.shards) complete = complete && sh.phase != shard_phase::unowned;
        if (complete || (s.expecting && s.expected.empty())) s.end_adoption();
    }
    s.pump_restart();
}

void supervisor::on_disconnected(connection_id connection, mono_time now) {
    auto& s = *s_;
    s.now = now;
    if (s.exited) return;
    slave_rec* r = s.by_conn(connection);
    if (!r) return;
    s.by_connection.erase(connection);
    r->connection.reset();
    if (r->phase == slave_phase::retiring) {
        s.log({.event = "slave_disconnected", .slave = r->id, .reason = "retiring"});
        return;  // it is exiting; its exit (or the shutdown deadline) finishes the job
    }
    s.fail_slave(*r, "connection lost");
}

void supervisor::on_process_exited(const std::string& slave, std::string status, mono_time now) {
    auto& s = *s_;
    s.now = now;
    if (s.exited) return;
    if (s.awaiting_exit.erase(slave) > 0) {
        s.log({.event = "slave_exited", .slave = slave, .reason = status});
        s.grant_orphans();
        return;
    }
    if (!s.find(slave)) return;
    s.slave_dead(slave, status);
}

void supervisor::on_soft_start_complete(connection_id connection, mono_time now) {
    auto& s = *s_;
    s.now = now;
    if (s.exited) return;
    slave_rec* r = s.by_conn(connection);
    if (!r) return;
    r->last_seen = now;
    if (r->phase != slave_phase::soft_starting) {
        s.log({.event = "stale_ack_ignored", .slave = r->id, .reason = "soft_start_complete without soft_start"});
        return;
    }
    r->phase = slave_phase::ready;
    r->deadline.reset();
    if (r->spare) s.log({.event = "spare_ready", .slave = r->id});
    std::size_t index = 0;
    pair_rec* p = s.pair_of(r->id, &index);
    if (p && p->to == r->id && !p->target_failed) s.on_target_ready(index);
    s.pump_restart();
}

void supervisor::on_shard_started(connection_id connection, std::uint32_t shard, std::uint64_t epoch, mono_time now) {
    auto& s = *s_;
    s.now = now;
    if (s.exited) return;
    slave_rec* r = s.by_conn(connection);
    if (!r) return;
    r->last_seen = now;
    if (shard >= s.shards.size() || s.shards[shard].owner != r->id || s.shards[shard].epoch != epoch ||
        s.shards[shard].phase != shard_phase::starting) {
        s.refuse_stale(*r, "shard_started", shard, epoch);
        return;
    }
    shard_rec& sh = s.shards[shard];
    sh.phase = shard_phase::running;
    s.log({.event = "shard_started", .slave = r->id, .shard = shard, .epoch = epoch,
           .duration_ms = ms_between(sh.since, now)});
    sh.since = now;
}

void supervisor::on_shard_stopped(connection_id connection, std::uint32_t shard, std::uint64_t epoch,
                                  std::uint64_t migration, shared_bytes state, mono_time now) {
    auto& s = *s_;
    s.now = now;
    if (s.exited) return;
    slave_rec* r = s.by_conn(connection);
    if (!r) return;
    r->last_seen = now;
    const bool current = shard < s.shards.size() && s.shards[shard].owner == r->id && s.shards[shard].epoch == epoch &&
                         s.shards[shard].phase == shard_phase::stopping && migration != 0 &&
                         s.shards[shard].migration == migration && s.migrations.contains(migration);
    if (!current) {
        if (migration == 0) {
            s.log({.event = "fence_acknowledged", .slave = r->id, .shard = shard, .epoch = epoch});
        } else {
            s.refuse_stale(*r, "shard_stopped", shard, epoch, migration);
        }
        return;
    }
    shard_rec& sh = s.shards[shard];
    migration_rec& m = s.migrations.at(migration);
    m.state = state ? std::move(state) : std::make_shared<const std::vector<std::byte>>();
    s.failpoint("master.migrate.after_state_received");
    sh.owner.clear();
    s.log({.event = "shard_stopped", .slave = r->id, .shard = shard, .epoch = epoch, .migration = migration,
           .duration_ms = ms_between(m.phase_started, now), .state_bytes = m.state->size()});
    if (m.recovery && m.to.empty()) {
        // A collected state: it goes to the shard's home slot, or waits there as a checkpoint.
        slave_rec* home = s.config.slave_count ? s.find(s.slots[s.home_slot(shard)].active) : nullptr;
        if (home && home->usable() && home->minor >= 1) {
            m.to = home->id;
            s.resume_on(m, *home);
        } else {
            s.set_checkpoint(shard, m.state);
            sh.phase = shard_phase::unowned;
            s.end_migration(migration, "migration_failed", "no slave to resume the collected state on yet", false);
            s.grant_orphans();
        }
        return;
    }
    slave_rec* target = m.back_to_source ? nullptr : s.find(m.to);
    if (target && target->usable()) {
        s.resume_on(m, *target);
    } else {
        m.back_to_source = true;
        s.resume_on(m, *r);
    }
}

void supervisor::on_resumed(connection_id connection, std::uint32_t shard, std::uint64_t epoch,
                            std::uint64_t migration, mono_time now) {
    auto& s = *s_;
    s.now = now;
    if (s.exited) return;
    slave_rec* r = s.by_conn(connection);
    if (!r) return;
    r->last_seen = now;
    if (shard >= s.shards.size() || s.shards[shard].owner != r->id || s.shards[shard].epoch != epoch ||
        s.shards[shard].phase != shard_phase::resuming || s.shards[shard].migration != migration ||
        !s.migrations.contains(migration)) {
        s.refuse_stale(*r, "resumed", shard, epoch, migration);
        return;
    }
    shard_rec& sh = s.shards[shard];
    sh.phase = shard_phase::running;
    sh.since = now;
    const bool rollback = s.migrations.at(migration).back_to_source;
    s.end_migration(migration, rollback ? "migration_rolled_back" : "migration_completed",
                    rollback ? "the new slave failed" : "", false);
    s.failpoint("master.migrate.after_resumed");
    s.pump_restart();
    s.advance_stop();
}

void supervisor::on_shutdown_complete(connection_id connection, mono_time now) {
    auto& s = *s_;
    s.now = now;
    if (s.exited) return;
    slave_rec* r = s.by_conn(connection);
    if (!r) return;
    r->last_seen = now;
    s.log({.event = "shutdown_acknowledged", .slave = r->id});
}

void supervisor::adopt_open_migrations(std::vector<abandoned_migration> open) {
    s_->abandoned = std::move(open);
}

void supervisor::adopt_open_restarts(std::vector<std::uint64_t> restarts) {
    s_->abandoned_restarts = std::move(restarts);
}

void supervisor::seed_ids(std::uint64_t generation, std::set<std::string> used_ids) {
    auto& s = *s_;
    s.generation = std::max(s.generation, generation);
    s.used_ids = std::move(used_ids);
}

void supervisor::seed_checkpoints(std::vector<shared_bytes> states) {
    auto& s = *s_;
    for (std::size_t i = 0; i < states.size() && i < s.checkpoints.size(); ++i) {
        if (states[i]) s.checkpoints[i] = std::move(states[i]);
    }
}

void supervisor::expect_slaves(std::vector<previous_slave> slaves) {
    auto& s = *s_;
    for (auto& p : slaves) {
        if (p.pid > 0) s.expected[p.id] = p.pid;
    }
    s.expecting = !s.expected.empty();
}

void supervisor::seed_epochs(const std::vector<std::uint64_t>& epochs) {
    auto& s = *s_;
    for (std::size_t i = 0; i < epochs.size() && i < s.shards.size(); ++i) {
        s.shards[i].epoch = std::max(s.shards[i].epoch, epochs[i]);
    }
}

void supervisor::on_checkpoint(connection_id connection, std::uint32_t shard, std::uint64_t epoch, shared_bytes state,
                               mono_time now) {
    auto& s = *s_;
    s.now = now;
    if (s.exited) return;
    slave_rec* r = s.by_conn(connection);
    if (!r || !state) return;
    r->last_seen = now;
    // Only the current holder's state, under the current epoch, of a shard at rest is worth keeping.
    if (shard < s.shards.size() && s.shards[shard].owner == r->id && s.shards[shard].epoch == epoch &&
        s.shards[shard].phase == shard_phase::running) {
        s.set_checkpoint(shard, std::move(state));
        ++s.checkpoints_taken;
    } else {
        ++s.checkpoints_refused;
    }
}

void supervisor::on_heartbeat(connection_id connection, std::uint64_t progress, mono_time now) {
    auto& s = *s_;
    s.now = now;
    if (s.exited) return;
    slave_rec* r = s.by_conn(connection);
    if (!r) return;
    r->last_seen = now;
    if (progress != r->progress) {
        r->progress = progress;
        r->progress_at = now;
    }
}

void supervisor::on_state_received(connection_id connection, mono_time now) {
    auto& s = *s_;
    s.now = now;
    if (s.exited) return;
    slave_rec* r = s.by_conn(connection);
    if (!r) return;
    // Its heartbeats may wait behind these bytes in its socket, for long on a busy machine: a slave
    // whose states still flow is slow, not hung. A frozen one sends no state either.
    r->last_seen = now;
    r->progress_at = now;
}

void supervisor::on_slave_error(connection_id connection, std::string code, std::string message, mono_time now) {
    auto& s = *s_;
    s.now = now;
    if (s.exited) return;
    slave_rec* r = s.by_conn(connection);
    if (!r) return;
    r->last_seen = now;
    s.log({.event = "slave_reported_error", .slave = r->id, .reason = code + ": " + message});
}

void supervisor::on_mesh_update(connection_id connection, std::optional<std::string> type,
                                std::vector<std::pair<std::string, std::string>> values, mono_time now) {
    auto& s = *s_;
    s.now = now;
    if (s.exited) return;
    slave_rec* r = s.by_conn(connection);
    if (!r || !r->mesh) return;  // no node announced: nothing to update
    mesh_node_info updated = *r->mesh;
    if (type) updated.type = std::move(*type);
    updated.values = std::move(values);
    if (updated == *r->mesh) return;
    r->mesh = std::move(updated);
    s.mesh_changed();
}

void supervisor::on_tick(mono_time now) {
    auto& s = *s_;
    s.now = now;
    if (s.exited) return;
    if (s.adopting_until && now >= *s.adopting_until) s.end_adoption();
    if (std::erase_if(s.awaiting_exit, [&](const auto& entry) {
            if (now < entry.second) return false;
            s.log({.event = "slave_exited", .slave = entry.first,
                   .reason = "no exit seen within stop_timeout after the kill: presumed gone"});
            return true;
        }) > 0) {
        s.grant_orphans();
    }

    for (std::uint32_t i = 0; i < s.slots.size(); ++i) {
        if (s.slots[i].respawn_at && now >= *s.slots[i].respawn_at) s.respawn(i);
    }
    if (s.spare_respawn_at && now >= *s.spare_respawn_at) {
        s.spare_respawn_at.reset();
        s.ensure_spares();
    }

    // Collect first: failing a slave changes the maps being walked.
    std::vector<std::pair<std::string, std::string>> to_fail;
    std::vector<std::string> to_kill;
    std::vector<std::string> to_bury;
    const mono_time silence = s.ms(s.config.heartbeat_interval) * s.config.heartbeat_misses;
    for (auto& [id, r] : s.slaves) {
        if (!r.alive) continue;
        if (r.deadline && now >= *r.deadline) {
            switch (r.phase) {
                case slave_phase::spawning: to_fail.emplace_back(id, "no hello before spawn_timeout"); break;
                case slave_phase::soft_starting: to_fail.emplace_back(id, "soft_start_timeout"); break;
                case slave_phase::retiring: to_kill.push_back(id); break;
                case slave_phase::lost: to_bury.push_back(id); break;
                default: break;
            }
            continue;
        }
        if (r.connection && r.phase != slave_phase::lost) {
            if (now - r.last_seen > silence) {
                to_fail.emplace_back(id, "heartbeat_timeout");
                continue;
            }
            // Heartbeats that keep coming while the event loop stands still: stuck, not idle.
            if (r.progress != 0 && now - r.progress_at > silence) {
                to_fail.emplace_back(id, "progress_stalled");
                continue;
            }
            if (now >= r.next_heartbeat) {
                s.send(r, protocol::heartbeat{.seq = ++r.heartbeat_seq});
                r.next_heartbeat = now + s.ms(s.config.heartbeat_interval);
            }
        }
    }
    for (const auto& [id, m] : s.migrations) {
        const bool stopping = m.phase == migration_phase::stopping;
        const milliseconds limit = stopping ? s.config.stop_timeout : s.config.resume_timeout;
        const slave_rec* who = s.awaited(m);
        if (who && now - m.phase_started >= s.ms(limit)) {
            to_fail.emplace_back(who->id, stopping ? "stop_timeout" : "resume_timeout");
        }
    }
    for (const auto& sh : s.shards) {
        const slave_rec* who = s.awaited(sh);
        if (who && now - sh.since >= s.ms(s.config.start_timeout)) to_fail.emplace_back(who->id, "start_timeout");
    }
    for (const auto& id : to_kill) {
        if (slave_rec* r = s.find(id); r && r->alive && r->phase == slave_phase::retiring) {
            r->deadline.reset();
            if (r->killable()) {
                s.out.emplace_back(actions::kill_slave{r->id, r->pid});
                s.log({.event = "slave_killed", .slave = r->id, .pid = r->pid, .reason = "shutdown_timeout"});
            } else {
                s.slave_dead(id, "did not exit after shutdown");
            }
        }
    }
    for (const auto& [id, reason] : to_fail) {
        if (slave_rec* r = s.find(id)) s.fail_slave(*r, reason);
    }
    for (const auto& id : to_bury) {
        if (slave_rec* r = s.find(id); r && r->phase == slave_phase::lost && r->deadline && now >= *r->deadline) {
            s.slave_dead(id, "external slave did not come back within external_grace");
        }
    }
    s.pump_restart();
    s.advance_stop();
}

std::optional<mono_time> supervisor::next_deadline() const {
    const auto& s = *s_;
    std::optional<mono_time> next;
    auto consider = [&](mono_time t) {
        if (!next || t < *next) next = t;
    };
    if (s.exited) return std::nullopt;
    if (s.adopting_until) consider(*s.adopting_until);
    for (const auto& [id, deadline] : s.awaiting_exit) consider(deadline);
    for (const auto& slot : s.slots) {
        if (slot.respawn_at) consider(*slot.respawn_at);
    }
    if (s.spare_respawn_at) consider(*s.spare_respawn_at);
    const mono_time silence = s.ms(s.config.heartbeat_interval) * s.config.heartbeat_misses;
    for (const auto& [id, r] : s.slaves) {
        if (!r.alive) continue;
        if (r.deadline) consider(*r.deadline);
        if (r.connection && r.phase != slave_phase::lost) {
            consider(r.last_seen + silence);
            consider(r.next_heartbeat);
            if (r.progress != 0) consider(r.progress_at + silence);
        }
    }
    for (const auto& [id, m] : s.migrations) {
        if (!s.awaited(m)) continue;
        consider(m.phase_started + s.ms(m.phase == migration_phase::stopping ? s.config.stop_timeout : s.config.resume_timeout));
    }
    for (const auto& sh : s.shards) {
        if (s.awaited(sh)) consider(sh.since + s.ms(s.config.start_timeout));
    }
    return next;
}

supervisor::restart_request supervisor::request_restart(mono_time now, std::string reason) {
    auto& s = *s_;
    s.now = now;
    restart_request result;
    if (s.stopping || s.exited) {
        result.result = restart_request::outcome::refused;
        result.refusal = s.detaching ? "the master is detaching (stop --leave-slaves): it exits, leaving the slaves running"
                                     : "the master is stopping";
        s.log({.event = "restart_refused", .reason = result.refusal});
        return result;
    }
    if (s.restart) {
        result.restart = s.restart->id;
        if (s.restart_queued) {
            result.result = restart_request::outcome::already_queued;
            s.log({.event = "restart_already_queued", .restart = s.restart->id, .reason = reason});
        } else {
            result.result = restart_request::outcome::queued;
            s.restart_queued = true;
            s.queued_reason = reason;
            s.log({.event = "restart_queued", .restart = s.restart->id, .reason = reason});
        }
    } else {
        result.restart = s.next_id;  // the id begin_restart gives it
        s.begin_restart(std::move(reason));
    }
    // After begin_restart: slots started again now belong to the new generation.
    result.retried = s.retry_failed_starts("restart requested");
    return result;
}

supervisor::retried_starts supervisor::retry_failed_starts(mono_time now, std::string reason) {
    auto& s = *s_;
    s.now = now;
    return s.retry_failed_starts(reason);
}

void supervisor::request_stop(mono_time now, bool immediate) {
    auto& s = *s_;
    s.now = now;
    if (s.exited) return;
    if (immediate) {
        s.log({.event = "master_stopping", .reason = "immediate"});
        for (auto& [id, r] : s.slaves) {
            if (r.killable()) {
                s.out.emplace_back(actions::kill_slave{r.id, r.pid});
                s.log({.event = "slave_killed", .slave = r.id, .pid = r.pid, .reason = "master stopping immediately"});
            }
        }
        if (s.restart) {
            // Its slaves are being killed: the restart ends here, before the log does.
            s.stopping = true;
            s.restart->failure = s.restart->failing ? s.restart->failure + "; then the master stopped immediately"
                                                    : "master stopping immediately";
            s.restart->failing = true;
            s.finish_restart();
        }
        s.exited = true;
        s.log({.event = "master_stopped", .reason = "immediate"});
        s.out.emplace_back(actions::exit_daemon{0});
        return;
    }
    s.begin_stop(false);
}

void supervisor::request_detach(mono_time now) {
    auto& s = *s_;
    s.now = now;
    if (s.exited) return;
    s.begin_stop(true);
}

void supervisor::apply_config(const supervisor_config& config, mono_time now) {
    auto& s = *s_;
    s.now = now;
    supervisor_config next = config;
    next.shard_count = s.config.shard_count;
    next.slave_count = s.config.slave_count;
    next.spawn_slaves = s.config.spawn_slaves;
    s.config = next;
    s.pump_restart();
    s.ensure_spares();  // slaves.spares may have changed
}

supervisor_status supervisor::status(mono_time now) const {
    const auto& s = *s_;
    supervisor_status st;
    st.generation = s.generation;
    st.restarts_completed = s.restarts_completed;
    st.restarts_failed = s.restarts_failed;
    st.restart_queued = s.restart_queued;
    st.stopping = s.stopping;
    st.detaching = s.detaching;
    if (s.adopting_until) st.adopting_ms = std::max(0.0, ms_between(now, *s.adopting_until));
    st.spares = s.config.spares;
    st.spares_failed = s.spares_failed;
    st.spares_failure = s.spares_failure;
    for (std::uint32_t i = 0; i < s.slots.size(); ++i) {
        const slot_rec& slot = s.slots[i];
        slot_status ss{.slot = i, .slave = slot.active, .failed = slot.failed,
                       .failed_starts = slot.starts.recent(now, s.config.start_limit_interval), .failure = slot.failure};
        if (slot.respawn_at) ss.respawn_in_ms = std::max(0.0, ms_between(now, *slot.respawn_at));
        st.slots.push_back(std::move(ss));
    }
    std::vector<bool> seen_slot(s.slots.size(), false);
    std::map<std::string, std::uint32_t> counts;
    for (std::uint32_t i = 0; i < s.shards.size(); ++i) {
        const shard_rec& sh = s.shards[i];
        auto m = sh.migration ? s.migrations.find(sh.migration) : s.migrations.end();
        const bool moving = m != s.migrations.end() && !m->second.recovery &&
                            (sh.phase == shard_phase::stopping || sh.phase == shard_phase::resuming);
        st.shards.push_back({.shard = i, .owner = sh.owner, .epoch = sh.epoch, .phase = name(sh.phase), .moving = moving});
        if (!sh.owner.empty()) ++counts[sh.owner];
        if (sh.phase == shard_phase::running) ++st.shards_running;
        if (s.checkpoints[i]) ++st.shards_checkpointed;
        if (!s.slots.empty()) {
            const std::uint32_t home = s.home_slot(i);
            if (!seen_slot[home]) st.slots[home].first_shard = i;
            seen_slot[home] = true;
            st.slots[home].last_shard = i;
        }
    }
    for (const auto& [id, r] : s.slaves) {
        st.slaves.push_back({.id = id, .slot = r.slot, .generation = r.generation, .pid = r.pid, .phase = name(r.phase),
                             .connected = r.connection.has_value(), .spawned_here = r.ours, .shards = counts[id],
                             .mesh = r.mesh ? fmt::format("{}:{}", r.mesh->host, r.mesh->port) : std::string()});
    }
    if (s.restart) {
        restart_status rs{.id = s.restart->id, .in_flight = s.in_flight, .elapsed_ms = ms_between(s.restart->started, now),
                          .failing = s.restart->failing};
        for (const pair_rec& p : s.restart->pairs) {
            ++rs.slaves_total;
            if (p.phase == pair_phase::done) ++rs.slaves_done;
            rs.migrations_done += p.moved;
            rs.migrations_total += p.total;
        }
        st.restart = rs;
    }
    return st;
}

}  // namespace meshmaster::master
