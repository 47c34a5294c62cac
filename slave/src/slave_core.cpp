#include "slave_core.hpp"

#include <meshmaster/protocol/codec.hpp>
#include <meshmaster/protocol/failpoint.hpp>
#include <meshmaster/protocol/version.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <cstdint>

namespace meshmaster::slave::detail {

namespace p = meshmaster::protocol;

slave_core::slave_core(core_config config) : config_(std::move(config)), assembler_(config_.max_state_size) {}

std::chrono::steady_clock::time_point slave_core::steady_now() const {
    return config_.steady_now ? config_.steady_now() : std::chrono::steady_clock::now();
}

std::uint64_t slave_core::wall_now_us() const {
    const auto now = config_.wall_now ? config_.wall_now() : std::chrono::system_clock::now();
    const auto us = std::chrono::duration_cast<std::chrono::microseconds>(now.time_since_epoch()).count();
    return us > 0 ? static_cast<std::uint64_t>(us) : 0;  // a clock set before 1970 says "at the epoch"
}

void slave_core::log(std::string_view level, std::string text) const {
    if (config_.log) config_.log(level, std::move(text));
}

template <class Message>
void slave_core::send(const Message& m) {
    if (link_ == link_state::disconnected) return;
    if (!p::encode(m, out_.bytes)) log("error", fmt::format("could not encode a {} frame", p::to_string(Message::id)));
}

void slave_core::send_error(std::string code, std::string message, std::optional<std::uint32_t> shard,
                            std::optional<std::uint64_t> epoch, bool fatal) {
    log(fatal ? "error" : "warn", fmt::format("refusing a frame from the master: {} ({})", code, message));
    send(p::error_message{.code = code, .message = message, .shard = shard, .epoch = epoch, .fatal = fatal});
}

void slave_core::close(std::string reason) {
    if (!close_reason_) close_reason_ = std::move(reason);
}

void slave_core::request(op_kind kind, std::uint32_t shard, std::uint64_t epoch, std::uint32_t shard_count,
                         p::bytes_view state, std::uint64_t migration) {
    const std::uint64_t op = next_op_++;
    ops_[op] = pending_op{kind, shard, epoch, migration};
    requests_.push_back({.op = op, .kind = kind, .shard = shard, .epoch = epoch, .shard_count = shard_count, .state = state});
}

std::vector<p::shard_epoch> slave_core::shards() const {
    std::vector<p::shard_epoch> held;
    for (const auto& [shard, e] : shards_) held.push_back({shard, e.epoch});
    return held;
}

std::vector<p::shard_epoch> slave_core::retained() const {
    std::vector<p::shard_epoch> kept;
    for (const auto& [shard, r] : retained_) kept.push_back({shard, r.epoch});
    return kept;
}

bool slave_core::checkpoint(std::uint32_t shard, std::vector<std::byte> state) {
    // The worker's buffer itself, moved under a shared owner: no copy.
    return checkpoint(shard, std::make_shared<const std::vector<std::byte>>(std::move(state)));
}

bool slave_core::checkpoint(std::uint32_t shard, shared_bytes state) {
    const auto it = shards_.find(shard);
    if (link_ != link_state::ready || it == shards_.end() || it->second.phase != shard_phase::running) return false;
    if (!state) state = std::make_shared<const std::vector<std::byte>>();
    if (state->size() > config_.max_state_size) {
        log("warn", fmt::format("checkpoint of shard {} not sent: {} bytes, the limit is {}", shard, state->size(),
                                config_.max_state_size));
        return false;
    }
    last_checkpoint_[shard] = {it->second.epoch, std::move(state)};
    checkpoints_due_.insert(shard);
    return true;
}

write_batch slave_core::take_batch() {
    // Encoded only now, when the writer is ready for more: a newer checkpoint of a shard replaces
    // one that waited, so on a slow link the backlog stays at one state per shard instead of
    // growing without bound (with every reply and heartbeat queued behind it).
    for (const std::uint32_t shard : checkpoints_due_) {
        const auto cp = last_checkpoint_.find(shard);
        const auto held = shards_.find(shard);
        // A shard that began stopping since hands back its state with shard_stopped instead.
        if (cp == last_checkpoint_.end() || held == shards_.end() || held->second.phase != shard_phase::running ||
            held->second.epoch != cp->second.first) {
            continue;
        }
        // Only the header and fields are encoded; the frame's state piece views the buffer, which
        // the batch keeps alive while it is written.
        if (p::encode_with_state(p::checkpoint{.shard = shard, .epoch = cp->second.first}, p::bytes_view(*cp->second.second),
                                 out_, config_.state_chunk_size)) {
            out_states_.push_back(cp->second.second);
        }
    }
    checkpoints_due_.clear();
    return {.frames = std::exchange(out_, {}), .states = std::exchange(out_states_, {})};
}

// --- connection ------------------------------------------------------------------------------

void slave_core::on_connected() {
    link_ = link_state::awaiting_challenge;
    close_reason_.reset();
    out_.clear();
    out_states_.clear();
    checkpoints_due_.clear();
    assembler_.clear();
    slave_nonce_ = p::random_nonce();
    // Echoes are per connection: a new master (or the same one anew) starts the count over.
    sent_heartbeats_ = {};
    received_heartbeat_.reset();
    heartbeat_rtt_.reset();
}

void slave_core::on_disconnected() {
    link_ = link_state::disconnected;
    out_.clear();
    out_states_.clear();
    checkpoints_due_.clear();
    assembler_.clear();
}

void slave_core::on_stream_error(const p::error& e) {
    send_error(e.to_string(), "the frame stream from the master is broken", {}, {}, true);
    close("broken frame stream: " + e.to_string());
}

void slave_core::on_frame(const p::frame_view& frame) {
    assembled_.clear();
    auto decoded = p::decode(frame);
    if (!decoded) {
        send_error(decoded.error().to_string(), fmt::format("event {}", frame.event));
        return;
    }
    p::message& m = *decoded;
    if (link_ != link_state::ready) {
        if (auto* challenge = std::get_if<p::auth_challenge>(&m); challenge && link_ == link_state::awaiting_challenge) {
            handle(*challenge);
        } else if (auto* w = std::get_if<p::welcome>(&m); w && link_ == link_state::awaiting_welcome) {
            handle(*w);
        } else if (auto* err = std::get_if<p::error_message>(&m)) {
            log("error", fmt::format("the master refused us: {} {}", err->code, err->message));
            close(fmt::format("refused by the master: {}", err->code));
        } else {
            send_error("not_authenticated", fmt::format("event {} before the handshake finished", frame.event), {}, {}, true);
            close("the master skipped the handshake");
        }
        return;
    }
    std::visit(
        [&](auto& msg) {
            using T = std::decay_t<decltype(msg)>;
            if constexpr (std::is_same_v<T, p::soft_start>) {
                request(op_kind::soft_start);
            } else if constexpr (std::is_same_v<T, p::full_start>) {
                request(op_kind::full_start);
            } else if constexpr (std::is_same_v<T, p::start_shard>) {
                handle(msg);
            } else if constexpr (std::is_same_v<T, p::stop_shard>) {
                handle(msg);
            } else if constexpr (std::is_same_v<T, p::state_chunk>) {
                if (auto r = assembler_.add(msg); !r) {
                    send_error(r.error().to_string(), "state chunk refused", msg.shard, msg.epoch);
                }
            } else if constexpr (std::is_same_v<T, p::resume>) {
                auto whole = assembler_.finish(msg.migration_id, msg.shard, msg.state, msg.state_size);
                if (!whole) {
                    send_error(whole.error().to_string(), "resume state refused", msg.shard, msg.epoch);
                    return;
                }
                if (msg.state_size) {
                    assembled_ = std::move(*whole);  // chunked: keep the reassembled bytes for the call
                    handle(msg, p::bytes_view(assembled_));
                } else {
                    handle(msg, msg.state);  // a view into the frame: no copy
                }
            } else if constexpr (std::is_same_v<T, p::shutdown>) {
                if (!shutting_down_) {
                    shutting_down_ = true;
                    log("info", fmt::format("shutdown requested: {}", msg.reason));
                    request(op_kind::shutdown);
                }
            } else if constexpr (std::is_same_v<T, p::handoff_complete>) {
                if (auto r = retained_.find(msg.shard); r != retained_.end() && r->second.epoch == msg.epoch) retained_.erase(r);
            } else if constexpr (std::is_same_v<T, p::heartbeat>) {
                on_heartbeat(msg);
            } else if constexpr (std::is_same_v<T, p::shard_migration_start>) {
                // The migration notice needs no answer.
            } else if constexpr (std::is_same_v<T, p::mesh_members>) {
                // Lists can cross (a master restart): only a newer one replaces what was applied.
                if (msg.version <= mesh_version_) return;
                mesh_version_ = msg.version;
                if (!config_.mesh_members) return;
                std::vector<mesh::peer_record> others;
                for (const auto& m : msg.members) {
                    if (config_.mesh && m.incarnation == config_.mesh->incarnation) continue;  // this node
                    mesh::peer_record r{.id = std::string(m.id), .type = std::string(m.type), .host = std::string(m.host),
                                        .port = m.port, .incarnation = m.incarnation, .values = {}};
                    for (const auto& [k, v] : m.values) r.values.emplace(std::string(k), std::string(v));
                    others.push_back(std::move(r));
                }
                config_.mesh_members(std::move(others));
            } else if constexpr (std::is_same_v<T, p::error_message>) {
                // A detaching master is an expected goodbye, not a failure: the shards stay here.
                const bool goodbye = msg.code == "master_detaching";
                log(goodbye ? "info" : msg.fatal ? "error" : "warn", fmt::format("the master reports: {} {}", msg.code, msg.message));
                if (msg.fatal) close(fmt::format("the master reported a fatal error: {}", msg.code));
            } else {
                send_error("unexpected_event", fmt::format("{} is not sent to slaves", frame.event));
            }
        },
        m);
}

bool slave_core::update_mesh(const mesh::peer_record& node) {
    config_.mesh = node;
    if (link_ != link_state::ready) return false;  // the next hello carries it
    p::string_map values;
    for (const auto& [k, v] : node.values) values.emplace_back(k, v);
    send(p::mesh_update{.mesh_type = std::string_view(node.type), .mesh_values = values});
    return true;
}

void slave_core::handle(const p::auth_challenge& m) {
    if (auto compatible = p::check_compatible({m.version_major, m.version_minor}); !compatible) {
        send_error(compatible.error().to_string(),
                   fmt::format("this slave speaks protocol {}.{}, the master {}.{}", p::current_version.major,
                               p::current_version.minor, m.version_major, m.version_minor),
                   {}, {}, true);
        close("incompatible protocol version");
        return;
    }
    // A short nonce would let a replayed proof pass: docs/protocol.md fixes it at 32 bytes.
    if (m.nonce.size() != p::nonce_size) {
        send_error("auth_failed", fmt::format("the challenge's nonce is {} bytes, not {}", m.nonce.size(), p::nonce_size),
                   {}, {}, true);
        close("the master sent a malformed challenge");
        return;
    }
    master_nonce_.assign(m.nonce.begin(), m.nonce.end());
    master_minor_ = m.version_minor;
    const std::vector<p::shard_epoch> held = shards();
    const std::vector<p::shard_epoch> kept = retained();
    p::slave_hello hello{.version_major = p::current_version.major,
                         .version_minor = p::current_version.minor,
                         .slave_id = config_.slave_id,
                         .pid = static_cast<std::uint32_t>(config_.pid),
                         .generation = config_.generation,
                         .nonce = p::bytes_view(slave_nonce_),
                         .shards = held,
                         .soft_started = soft_started_,
                         .stopped = kept};
    p::string_map mesh_values;
    if (const auto& node = config_.mesh) {
        hello.mesh_host = node->host;
        hello.mesh_port = node->port;
        hello.mesh_incarnation = node->incarnation;
        hello.mesh_type = node->type;
        for (const auto& [k, v] : node->values) mesh_values.emplace_back(k, v);
        hello.mesh_values = mesh_values;
    }
    send(hello);
    const p::proof mac = p::slave_proof(config_.secret, m.nonce, p::bytes_view(slave_nonce_), config_.slave_id);
    send(p::auth_proof{.mac = p::bytes_view(mac)});
    link_ = link_state::awaiting_welcome;
}

void slave_core::handle(const p::welcome& m) {
    const p::proof expected =
        p::master_proof(config_.secret, p::bytes_view(master_nonce_), p::bytes_view(slave_nonce_), config_.slave_id);
    if (!p::proofs_equal(expected, m.mac)) {
        send_error("auth_failed", "the master did not prove it knows the secret", {}, {}, true);
        close("the master failed authentication");
        return;
    }
    link_ = link_state::ready;
    if (m.heartbeat_interval_ms > 0) heartbeat_interval_ = std::chrono::milliseconds(m.heartbeat_interval_ms);
    log("info", fmt::format("authenticated; running {} shards", shards_.size()));
    // A restarted master knows no checkpoint: hand it the last ones at once.
    std::erase_if(last_checkpoint_, [&](const auto& kv) {
        const auto it = shards_.find(kv.first);
        return it == shards_.end() || it->second.epoch != kv.second.first;
    });
    for (const auto& [shard, cp] : last_checkpoint_) checkpoints_due_.insert(shard);
    // A shard stopped while the master was away is still reported in the hello; the master asks
    // for it again with stop_shard, and the state goes out then (see handle(stop_shard)).
}

void slave_core::handle(const p::start_shard& m) {
    auto it = shards_.find(m.shard);
    if (it != shards_.end()) {
        if (it->second.epoch >= m.epoch) {
            send_error("stale_epoch", fmt::format("start_shard {} at epoch {}: held at epoch {}", m.shard, m.epoch, it->second.epoch),
                       m.shard, m.epoch);
            return;
        }
        if (it->second.phase == shard_phase::running) {
            // Already running here: the master re-granted it under a newer epoch.
            it->second.epoch = m.epoch;
            send(p::shard_started{.shard = m.shard, .epoch = m.epoch});
            return;
        }
        defer(m.shard, {.start = m});
        return;
    }
    std::erase_if(retained_, [&](const auto& kv) { return kv.first == m.shard && kv.second.epoch < m.epoch; });
    shards_[m.shard] = shard_entry{.epoch = m.epoch, .phase = shard_phase::starting};
    request(op_kind::start_shard, m.shard, m.epoch, m.shard_count);
}

void slave_core::handle(const p::stop_shard& m) {
    if (auto kept = retained_.find(m.shard); kept != retained_.end() && kept->second.epoch == m.epoch &&
                                               shards_.find(m.shard) == shards_.end()) {
        // Already stopped: the master asks again (it lost the first answer, or restarted).
        kept->second.migration = m.migration_id;
        send_stopped(m.shard, kept->second);
        return;
    }
    auto it = shards_.find(m.shard);
    if (it == shards_.end() || it->second.epoch != m.epoch) {
        send_error("stale_epoch",
                   it == shards_.end() ? fmt::format("stop_shard {}: not held here", m.shard)
                                       : fmt::format("stop_shard {} at epoch {}: held at epoch {}", m.shard, m.epoch, it->second.epoch),
                   m.shard, m.epoch);
        return;
    }
    shard_entry& e = it->second;
    switch (e.phase) {
        case shard_phase::starting:
        case shard_phase::resuming:
            e.deferred_stop = m;  // runs once the shard is up
            return;
        case shard_phase::stopping:
            return;  // already on its way (a repeated stop after a reconnect)
        case shard_phase::running:
            p::failpoint("slave.stop.before_callback");
            e.phase = shard_phase::stopping;
            e.migration = m.migration_id;
            // From the callback on, the worker handles none of the shard's events: the pause begins.
            e.stopping_since_us = wall_now_us();
            request(op_kind::stop_shard, m.shard, m.epoch, 0, {}, m.migration_id);
            return;
    }
}

void slave_core::handle(const p::resume& m, p::bytes_view whole_state) {
    auto it = shards_.find(m.shard);
    if (it != shards_.end() && it->second.epoch >= m.epoch) {
        send_error("stale_epoch", fmt::format("resume {} at epoch {}: held at epoch {}", m.shard, m.epoch, it->second.epoch),
                   m.shard, m.epoch);
        return;
    }
    if (it != shards_.end() && it->second.phase != shard_phase::running) {
        deferred_grant grant{.resume = m};
        if (!whole_state.empty() && whole_state.data() == assembled_.data()) {
            grant.state = std::move(assembled_);  // reassembled here already: kept as it is
        } else {
            grant.state.assign(whole_state.begin(), whole_state.end());  // a view into the frame, which goes
        }
        grant.resume->state = p::bytes_view(grant.state);
        grant.resume->state_size.reset();
        defer(m.shard, std::move(grant));
        return;
    }
    std::erase_if(retained_, [&](const auto& kv) { return kv.first == m.shard && kv.second.epoch < m.epoch; });
    p::failpoint("slave.resume.before_callback");
    shards_[m.shard] = shard_entry{.epoch = m.epoch, .phase = shard_phase::resuming, .migration = m.migration_id,
                                   .resume_stopped_at_us = m.stopped_at_us};
    request(op_kind::resume_shard, m.shard, m.epoch, 0, whole_state, m.migration_id);
}

void slave_core::defer(std::uint32_t shard, deferred_grant grant) {
    // Only the newest grant matters: an older deferred one is superseded.
    const std::uint64_t epoch = grant.start ? grant.start->epoch : grant.resume->epoch;
    if (auto it = deferred_grants_.find(shard); it != deferred_grants_.end()) {
        const std::uint64_t waiting = it->second.start ? it->second.start->epoch : it->second.resume->epoch;
        if (waiting >= epoch) {
            send_error("stale_epoch", fmt::format("shard {} at epoch {}: epoch {} is already waiting", shard, epoch, waiting),
                       shard, epoch);
            return;
        }
    }
    log("info", fmt::format("shard {} is granted at epoch {} while its last callback runs: it follows that one",
                            shard, epoch));
    auto& stored = deferred_grants_[shard] = std::move(grant);
    if (stored.resume) stored.resume->state = p::bytes_view(stored.state);  // the vector moved
}

// The shard's callback finished: a grant that waited for it is handled now, as if it had just
// arrived (its epoch is checked again).
void slave_core::run_deferred_grant(std::uint32_t shard) {
    auto it = deferred_grants_.find(shard);
    if (it == deferred_grants_.end()) return;
    if (auto held = shards_.find(shard); held != shards_.end() && held->second.phase != shard_phase::running) return;
    deferred_grant grant = std::move(it->second);
    deferred_grants_.erase(it);
    if (grant.start) {
        handle(*grant.start);
    } else {
        // The worker's callback sees the state until the next call into the core, like a
        // reassembled one.
        assembled_ = std::move(grant.state);
        p::resume m = *grant.resume;
        m.state = p::bytes_view(assembled_);
        handle(m, m.state);
    }
}

void slave_core::send_stopped(std::uint32_t shard, const retained_state& r) {
    if (link_ == link_state::disconnected) return;  // the next hello lists it under `stopped`
    // The state stays in its buffer: the frames' pieces view it, and the batch keeps it alive.
    p::shard_stopped stopped{.shard = shard, .epoch = r.epoch, .migration_id = r.migration};
    if (master_minor_ >= 3) stopped.stopped_at_us = r.stopped_at_us;  // older masters do not know it
    if (!p::encode_with_state(stopped, p::bytes_view(*r.state), out_, config_.state_chunk_size)) {
        log("error", fmt::format("could not encode the state of shard {} ({} bytes)", shard, r.state->size()));
        return;
    }
    out_states_.push_back(r.state);
}

// --- callbacks ----------------------------------------------------------------------------------

void slave_core::complete(std::uint64_t op, outcome result) {
    auto it = ops_.find(op);
    if (it == ops_.end()) return;
    const pending_op pending = it->second;
    ops_.erase(it);
    const auto shard = shards_.find(pending.shard);
    switch (pending.kind) {
        case op_kind::soft_start:
            if (!result.ok) {
                send_error("soft_start_failed", result.error);
                return;
            }
            soft_started_ = true;
            p::failpoint("slave.soft_start.before_ack");
            send(p::soft_start_complete{});
            return;
        case op_kind::full_start:
            if (!result.ok) send_error("full_start_failed", result.error);
            return;
        case op_kind::shutdown:
            if (!result.ok) log("warn", fmt::format("the shutdown callback failed: {}", result.error));
            p::failpoint("slave.shutdown.before_ack");
            send(p::shutdown_complete{});
            finished_ = true;
            return;
        case op_kind::start_shard:
        case op_kind::resume_shard: {
            if (shard == shards_.end() || shard->second.epoch != pending.epoch) return;  // superseded meanwhile
            shard_entry& e = shard->second;
            const bool resuming = pending.kind == op_kind::resume_shard;
            if (!result.ok) {
                send_error(resuming ? "resume_failed" : "start_failed", result.error, pending.shard, pending.epoch);
                shards_.erase(shard);
                run_deferred_grant(pending.shard);
                return;
            }
            e.phase = shard_phase::running;
            if (resuming) {
                p::failpoint("slave.resume.after_callback");
                p::resumed done{.shard = pending.shard, .epoch = pending.epoch, .migration_id = pending.migration};
                if (e.resume_stopped_at_us) {
                    // Both stamps are wall clocks, of two hosts maybe: a clock behind the other's
                    // could make it negative, which is no pause at all.
                    const std::uint64_t at = wall_now_us();
                    done.pause_us = at > *e.resume_stopped_at_us ? at - *e.resume_stopped_at_us : 0;
                    e.resume_stopped_at_us.reset();
                }
                send(done);
                after_write_.push_back("slave.resume.after_send");
            } else {
                p::failpoint("slave.start.after_callback");
                send(p::shard_started{.shard = pending.shard, .epoch = pending.epoch});
            }
            if (e.deferred_stop) {
                const p::stop_shard stop = *e.deferred_stop;
                e.deferred_stop.reset();
                handle(stop);
            }
            run_deferred_grant(pending.shard);
            return;
        }
        case op_kind::stop_shard: {
            if (shard == shards_.end() || shard->second.epoch != pending.epoch || shard->second.phase != shard_phase::stopping) {
                return;
            }
            shard_entry& e = shard->second;
            if (!result.ok) {
                // The worker could not stop it: it keeps running here, the master decides what next.
                e.phase = shard_phase::running;
                send_error("stop_failed", result.error, pending.shard, pending.epoch);
                run_deferred_grant(pending.shard);
                return;
            }
            if (result.state.size() > config_.max_state_size) {
                e.phase = shard_phase::running;
                send_error("state_too_large",
                           fmt::format("{} bytes, the limit is {}", result.state.size(), config_.max_state_size),
                           pending.shard, pending.epoch);
                run_deferred_grant(pending.shard);
                return;
            }
            p::failpoint("slave.stop.after_callback");
            // Kept until the master confirms the handoff; sent now if the master is there, and
            // listed in the next hello if it is not.
            // The worker's buffer itself, moved under a shared owner: no copy.
            retained_state& kept = retained_[pending.shard] = {
                .epoch = e.epoch, .migration = e.migration,
                .state = std::make_shared<const std::vector<std::byte>>(std::move(result.state)),
                .stopped_at_us = e.stopping_since_us};
            shards_.erase(shard);
            if (link_ == link_state::ready) {
                send_stopped(pending.shard, kept);
                after_write_.push_back("slave.stop.after_send");
            }
            run_deferred_grant(pending.shard);
            return;
        }
    }
}

void slave_core::tick(std::uint64_t progress) {
    if (link_ != link_state::ready) return;
    p::heartbeat hb{.seq = ++heartbeat_seq_, .progress = progress};
    if (master_minor_ >= 3) {  // the echo, only to a master that reads it (1.3)
        const auto now = steady_now();
        sent_heartbeats_[hb.seq % sent_heartbeats_.size()] = {.seq = hb.seq, .at = now};
        if (received_heartbeat_) {
            hb.echo_seq = received_heartbeat_->first;
            hb.echo_delay_us = static_cast<std::uint64_t>(
                std::chrono::duration_cast<std::chrono::microseconds>(now - received_heartbeat_->second).count());
        }
    }
    send(hb);
}

// A heartbeat from a 1.3 master: its seq is echoed in our next one, and its echo of one of ours
// measures the round trip (now − our send time − the time the master held it). An echo of a
// heartbeat no longer in the ring, or of none we sent, measures nothing.
void slave_core::on_heartbeat(const p::heartbeat& m) {
    if (master_minor_ < 3) return;
    const auto now = steady_now();
    if (!received_heartbeat_ || m.seq >= received_heartbeat_->first) received_heartbeat_.emplace(m.seq, now);
    if (!m.echo_seq || !m.echo_delay_us) return;
    const sent_heartbeat& sent = sent_heartbeats_[*m.echo_seq % sent_heartbeats_.size()];
    if (sent.seq == 0 || sent.seq != *m.echo_seq) return;
    const auto elapsed = std::chrono::duration_cast<std::chrono::microseconds>(now - sent.at).count();
    const auto held = static_cast<std::int64_t>(std::min<std::uint64_t>(*m.echo_delay_us, INT64_MAX));
    heartbeat_rtt_ = std::chrono::microseconds(elapsed > held ? elapsed - held : 0);
}

}  // namespace meshmaster::slave::detail
