// The slave side of sim_world: each simulated slave process is the slave library's slave_core,
// glued to its link the way the Asio shell (slave/src/slave.cpp) glues it to a socket, with a
// simulated worker behind it that answers the core's callbacks, runs shards and processes their
// events. See sim_world.hpp for the guarantees checked.
#include "sim_world.hpp"

#include "slave_core.hpp"

#include <meshmaster/protocol/codec.hpp>
#include <meshmaster/protocol/frame.hpp>
#include <meshmaster/protocol/state_transfer.hpp>

#include <fmt/format.h>

#include <cstdio>

namespace meshmaster::master::test {

namespace p = meshmaster::protocol;
namespace sd = meshmaster::slave::detail;
using namespace std::chrono_literals;

namespace {

// The slaves' simulated wall clock: 2026-12-07T05:30:00Z plus the simulated time.
constexpr std::chrono::microseconds sim_wall_epoch{1'796'621'400'000'000};

std::vector<std::byte> bytes_of(std::string_view text) {
    std::vector<std::byte> out(text.size());
    for (std::size_t i = 0; i < text.size(); ++i) out[i] = static_cast<std::byte>(text[i]);
    return out;
}

std::string text_of(std::span<const std::byte> bytes) {
    return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
}

// What an event does to a shard's state: deterministic in (shard, seq), so that replaying the
// same events after a recovery reproduces the same digest.
std::uint64_t digest_after(std::uint64_t digest, std::uint32_t shard, std::uint64_t seq) {
    return (digest ^ (std::uint64_t{shard} * 1'000'003 + seq)) * 0x100000001b3ull;
}

}  // namespace

// A worker's state of a shard, as bytes: its event count and digest, and a serial that makes each
// state handed out distinct (a resume must get exactly the one handed back, not an equal twin).
std::string sim_world::state_text(std::uint32_t shard, const worker_shard& s) {
    return fmt::format("shard {} seq {} digest {:016x} #{}", shard, s.seq, s.digest, ++state_serial_);
}

sim_world::process& sim_world::add_process(std::string id, std::uint64_t generation, bool external) {
    process& proc = processes_[id];
    proc = process{};
    proc.id = std::move(id);
    proc.pid = next_pid_++;
    proc.generation = generation;
    proc.external = external;
    sd::core_config c{.slave_id = proc.id,
                      .secret = session_settings_.secret,
                      .generation = generation,
                      .pid = proc.pid,
                      .max_state_size = session_settings_.max_state_size,
                      .state_chunk_size = 16,  // states are ~50 bytes: every state handed back comes in chunks
                      // Simulated time for both clocks: runs replay exactly, and the pauses the
                      // slaves measure (stop to resume, wall clock) are checked against the master's.
                      .steady_now = [this] { return std::chrono::steady_clock::time_point(now_); },
                      .wall_now = [this] { return std::chrono::system_clock::time_point(sim_wall_epoch + now_); }};
    proc.core = std::make_unique<sd::slave_core>(std::move(c));
    return proc;
}

std::map<std::uint32_t, std::uint64_t> sim_world::held_by(const process& proc) const {
    std::map<std::uint32_t, std::uint64_t> held;
    for (const auto& se : proc.core->shards()) held[se.shard] = se.epoch;
    return held;
}

// The shell reconnects after a backoff; in the simulation, as an OS event.
std::function<void()> sim_world::reconnect_later(const std::string& id) {
    return [this, id] {
        auto it = processes_.find(id);
        if (it == processes_.end()) return;
        process& proc = it->second;
        if (!proc.alive || proc.hung || proc.link || proc.core->finished()) return;
        connect(proc);
    };
}

// The slave sees EOF after the frames already sent; a live slave then reconnects. A hung one does
// all that when it wakes.
std::function<void()> sim_world::eof_to_slave(std::uint64_t link_id) {
    return [this, link_id] {
        auto lit = links_.find(link_id);
        if (lit == links_.end()) return;
        link& l = lit->second;
        auto pit = processes_.find(l.slave);
        if (pit == processes_.end()) return;
        process& proc = pit->second;
        if (!proc.alive || proc.hung) return;
        while (!l.to_slave.empty() && proc.alive && !proc.hung && proc.link == link_id) deliver_to_slave(l);
        if (!proc.alive || proc.hung || proc.link != link_id) return;
        slave_link_down(proc, link_id);
        if (proc.reconnects < 200 && !proc.core->finished()) {
            ++proc.reconnects;
            connect(proc);
        }
    };
}

void sim_world::slave_link_down(process& proc, std::uint64_t link_id) {
    if (proc.link != link_id) return;
    proc.link.reset();
    proc.core->on_disconnected();
}

// A new connection: the master's slave_session opens the handshake; the slave's core answers it.
void sim_world::connect(process& proc) {
    const std::uint64_t id = next_link_++;
    if (tracing) {
        std::string shards;
        for (const auto& [shard, epoch] : held_by(proc)) shards += fmt::format(" {}@{}", shard, epoch);
        trace(fmt::format("{} connects (link {}), holding{}", proc.id, id, shards));
    }
    link& l = links_[id];
    l.id = id;
    l.slave = proc.id;
    l.opened = now_;
    proc.link = id;
    proc.core->on_connected();
    proc.next_heartbeat = now_ + 50ms;  // the shell checks every 50 ms until authenticated
    l.session = std::make_unique<slave_session>(id, fmt::format("192.0.2.{}:{}", proc.pid % 250, 40000 + id),
                                                session_settings_, *this);
    l.session->start();
}

bool sim_world::can_deliver(const link& l) const {
    if (l.to_slave.empty()) return false;
    auto pit = processes_.find(l.slave);
    return pit == processes_.end() || !pit->second.alive || !pit->second.hung;  // a hung slave reads nothing
}

// The shell's read loop: every whole frame to the core, the worker callbacks it asks for invoked
// at once, what it wrote sent; then, if the core wants the connection closed, closed.
void sim_world::deliver_to_slave(link& l) {
    auto pit = processes_.find(l.slave);
    if (pit != processes_.end() && pit->second.alive && pit->second.hung) return;
    piece got = std::move(l.to_slave.front());
    l.to_slave.pop_front();
    if (pit == processes_.end() || !pit->second.alive || pit->second.link != l.id) return;
    process& proc = pit->second;
    const auto before = held_by(proc);
    l.slave_decoder.feed(got.bytes);
    while (true) {
        auto next = l.slave_decoder.next();
        if (!next) {
            proc.core->on_stream_error(next.error());
            fail("the core sent a broken frame stream: " + next.error().to_string());
            break;
        }
        if (!*next) break;
        if (tracing) {
            if (auto m = p::decode(**next)) {
                std::string what;
                if (const auto* x = std::get_if<p::start_shard>(&*m)) what = fmt::format("start_shard {}@{}", x->shard, x->epoch);
                else if (const auto* x = std::get_if<p::stop_shard>(&*m)) what = fmt::format("stop_shard {}@{} m{}", x->shard, x->epoch, x->migration_id);
                else if (const auto* x = std::get_if<p::resume>(&*m)) what = fmt::format("resume {}@{} m{}", x->shard, x->epoch, x->migration_id);
                if (!what.empty()) trace(fmt::format("{} (link {}) reads {}", proc.id, l.id, what));
            }
        }
        proc.core->on_frame(**next);
        after_core(proc);  // callbacks see resume states while the frame is still in the buffer
    }
    after_core(proc);
    check_holdings(proc, before);
    if (proc.core->close_reason() && proc.link == l.id) {
        trace(fmt::format("{} closes link {}: {}", proc.id, l.id, *proc.core->close_reason()));
        if (l.open) {
            l.open = false;
            l.to_slave.clear();
            l.to_master.push_back({.eof = true});
        }
        slave_link_down(proc, l.id);
        if (!proc.core->finished()) os_events_.push_back(reconnect_later(proc.id));
    }
}

void sim_world::after_core(process& proc) {
    for (const auto& r : proc.core->take_requests()) invoke(proc, r);
    flush(proc);
}

// The worker's callback is invoked now; it completes later (complete_callback), in random order
// with everything else that happens.
void sim_world::invoke(process& proc, const sd::callback_request& r) {
    pending_callback call{.op = r.op, .kind = static_cast<int>(r.kind), .shard = r.shard, .epoch = r.epoch};
    switch (r.kind) {
        case sd::op_kind::start_shard:
            // From scratch: whatever the shard's events did before is gone (the master logs the loss),
            // so the upstream replays them.
            proc.shards[r.shard] = worker_shard{.recovered = true};
            break;
        case sd::op_kind::resume_shard: {
            call.state.assign(r.state.begin(), r.state.end());
            worker_shard s;
            const auto mig = resume_migration_.find({r.shard, r.epoch});
            const auto handed = mig == resume_migration_.end() ? handed_.end() : handed_.find(mig->second);
            if (handed != handed_.end()) {
                if (call.state != handed->second) {
                    fail(fmt::format("shard {} resumed with state '{}', but '{}' was handed back for migration {}", r.shard,
                                     text_of(call.state), text_of(handed->second), mig->second));
                }
            } else {
                if (!produced_[r.shard].contains(call.state)) {
                    fail(fmt::format("shard {} recovered from state '{}', which no holder ever produced", r.shard,
                                     text_of(call.state)));
                }
                s.recovered = true;  // a checkpoint: events after it are processed again
            }
            unsigned shard = 0;
            unsigned long long seq = 0, digest = 0;
            const std::string text = text_of(call.state);
            if (std::sscanf(text.c_str(), "shard %u seq %llu digest %llx", &shard, &seq, &digest) != 3 || shard != r.shard) {
                fail(fmt::format("shard {} resumed with a state that is not one of its own: '{}'", r.shard, text));
            }
            s.seq = seq;
            s.digest = digest;
            proc.shards[r.shard] = s;
            break;
        }
        case sd::op_kind::stop_shard:
            stop_asked_[r.shard] = now_;
            if (auto it = proc.shards.find(r.shard); it != proc.shards.end()) it->second.stopping = true;
            else fail(fmt::format("{} is asked to stop shard {}, which its worker does not run", proc.id, r.shard));
            break;
        default:
            break;
    }
    proc.callbacks.push_back(std::move(call));
}

// A shard starts running: its worker claims the upstream with its epoch (from then on writers
// under older epochs are refused) and the upstream goes on from the worker's state. After a
// handoff that is exactly where the stopped owner left off, unless a new owner that took the
// events since has died (a target killed mid-resume, the shard rolled back): then, as after a
// recovery from a checkpoint or a fresh start, the upstream rewinds and those events are
// processed again. A live process that took them means two owners: a duplicate.
void sim_world::claim(std::uint32_t shard, std::uint64_t epoch, const worker_shard& s) {
    upstream& u = upstreams_[shard];
    if (epoch < u.epoch) return;  // a stale grant read late by a fenced zombie: refused
    if (!s.recovered && s.seq + 1 > u.next) {
        fail(fmt::format("shard {} is handed over at event {}, but its events are only at {}", shard, s.seq + 1, u.next));
    }
    if (!s.recovered && s.seq + 1 < u.next) {
        for (const auto& [id, other] : processes_) {
            if (other.pid != u.writer || !other.alive) continue;
            // A fenced external zombie (it cannot be killed) is refused from now on.
            const auto held = held_by(other);
            const auto it = held.find(shard);
            if (other.external && (it == held.end() || it->second < epoch)) continue;
            fail(fmt::format("shard {} is handed over at event {}, but {} (alive) processed events up to {}", shard,
                             s.seq + 1, id, u.next - 1));
        }
    }
    if (u.next > s.seq + 1) events_replayed_ += u.next - (s.seq + 1);
    u.epoch = epoch;
    u.next = s.seq + 1;
    u.writer = 0;
}

bool sim_world::complete_callback(process& proc) {
    if (proc.callbacks.empty() || !proc.alive || proc.hung) return false;
    pending_callback call = std::move(proc.callbacks.front());
    proc.callbacks.pop_front();
    slave::outcome result;
    switch (static_cast<sd::op_kind>(call.kind)) {
        case sd::op_kind::start_shard:
        case sd::op_kind::resume_shard:
            if (auto it = proc.shards.find(call.shard); it != proc.shards.end()) {
                it->second.running = true;
                claim(call.shard, call.epoch, it->second);
            }
            break;
        case sd::op_kind::stop_shard: {
            auto it = proc.shards.find(call.shard);
            if (it == proc.shards.end()) break;
            const std::string text = state_text(call.shard, it->second);
            result.state = bytes_of(text);
            produced_[call.shard].insert(result.state);
            proc.shards.erase(it);
            break;
        }
        default:
            break;
    }
    proc.core->complete(call.op, std::move(result));
    after_core(proc);
    return true;
}

// What the core wrote goes on the link, one message per piece (a state's chunks with the frame
// that closes them); a handed-back state is remembered per migration, for the resume to match.
void sim_world::flush(process& proc) {
    std::vector<std::byte> out = proc.core->take_output();
    (void)proc.core->take_after_write();
    link* l = nullptr;
    if (proc.link) {
        auto it = links_.find(*proc.link);
        if (it != links_.end() && it->second.open) l = &it->second;
    }
    if (l && !out.empty()) {
        p::state_assembler assembler(std::uint64_t{1} << 30);
        std::size_t from = 0;
        for (std::size_t at = 0; at + p::frame_header_size <= out.size();) {
            const p::frame_header h = p::read_frame_header(out.data() + at);
            const std::size_t end = at + p::frame_header_size + h.body_size;
            const auto event = static_cast<p::event_id>(h.event);
            const p::frame_view frame{.event = h.event, .body = std::span<const std::byte>(out).subspan(at + p::frame_header_size, h.body_size)};
            if (event == p::event_id::state_chunk) {
                if (auto m = p::decode(frame); m) (void)assembler.add(std::get<p::state_chunk>(*m));
                at = end;
                continue;
            }
            if (event == p::event_id::shard_stopped) {
                auto m = p::decode(frame);
                if (!m) return fail("the slave core wrote a shard_stopped that does not decode");
                const auto& stopped = std::get<p::shard_stopped>(*m);
                auto whole = assembler.finish(stopped.migration_id, stopped.shard, stopped.state, stopped.state_size);
                if (!whole) return fail("the slave core wrote a chunked state that does not reassemble");
                if (stopped.migration_id != 0) handed_[stopped.migration_id] = std::move(*whole);
            }
            if (event == p::event_id::checkpoint) ++checkpoints_sent_;
            const bool handshake = event == p::event_id::slave_hello || event == p::event_id::auth_proof;
            l->to_master.push_back({.bytes = std::vector<std::byte>(out.begin() + static_cast<std::ptrdiff_t>(from),
                                                                    out.begin() + static_cast<std::ptrdiff_t>(end)),
                                    .duplicable = !handshake});
            from = at = end;
        }
    }
    if (proc.core->finished() && !proc.exiting) {
        // Shut down by the master: the process exits once its last frame is out.
        proc.exiting = true;
        os_events_.push_back([this, id = proc.id] {
            if (auto it = processes_.find(id); it != processes_.end() && it->second.alive) die(it->second);
        });
    }
}

// The app processes the next event of one of the shards it runs; the upstream takes it only from
// a writer at the highest epoch it has seen.
void sim_world::process_event(process& proc) {
    std::vector<std::uint32_t> running;
    for (const auto& [shard, s] : proc.shards) {
        if (s.running && !s.stopping) running.push_back(shard);
    }
    if (running.empty()) return;
    const std::uint32_t shard = running[rng_() % running.size()];
    worker_shard& s = proc.shards.at(shard);
    const auto held = held_by(proc);
    const auto it = held.find(shard);
    if (it == held.end()) {
        return fail(fmt::format("{}'s worker runs shard {}, which the slave library no longer holds", proc.id, shard));
    }
    upstream& u = upstreams_[shard];
    if (it->second < u.epoch) {
        ++events_refused_;  // a fenced zombie: the upstream refuses it
        return;
    }
    const std::uint64_t seq = s.seq + 1;
    if (seq < u.next) {
        return fail(fmt::format("shard {}: event {} processed twice ({} at epoch {}, its events are at {})", shard, seq,
                                proc.id, it->second, u.next));
    }
    if (seq > u.next) {
        return fail(fmt::format("shard {}: events {}..{} lost ({} at epoch {} processed {})", shard, u.next, seq - 1,
                                proc.id, it->second, seq));
    }
    u.next = seq + 1;
    u.epoch = it->second;
    u.writer = proc.pid;
    s.seq = seq;
    s.digest = digest_after(s.digest, shard, seq);
    ++events_processed_;
}

// A live slave hands the master a copy of one of its shards' state, as the worker would from time to
// time. The master keeps it only if it is the current holder under the current epoch.
void sim_world::send_checkpoint() {
    std::vector<std::pair<process*, std::uint32_t>> candidates;
    for (auto& [id, proc] : processes_) {
        if (!proc.alive || proc.hung || !proc.link) continue;
        for (const auto& [shard, s] : proc.shards) {
            if (s.running && !s.stopping) candidates.emplace_back(&proc, shard);
        }
    }
    if (candidates.empty()) return;
    auto [proc, shard] = candidates[rng_() % candidates.size()];
    std::vector<std::byte> state = bytes_of(state_text(shard, proc->shards.at(shard)));
    if (!proc->core->checkpoint(shard, state)) return;  // a copy: the world keeps the original
    produced_[shard].insert(std::move(state));
    flush(*proc);
}

void sim_world::check_holdings(process& proc, const std::map<std::uint32_t, std::uint64_t>& before) {
    for (const auto& [shard, epoch] : held_by(proc)) {
        auto it = before.find(shard);
        if (it == before.end() || it->second != epoch) hold(proc, shard, epoch);
    }
}

// `proc` just took `shard` under `epoch` (its core accepted a grant).
void sim_world::hold(process& proc, std::uint32_t shard, std::uint64_t epoch) {
    for (const auto& [id, other] : processes_) {
        if (id == proc.id || !other.alive) continue;
        const auto held = held_by(other);
        const auto it = held.find(shard);
        if (it == held.end()) continue;
        // An external slave the master fenced (it cannot kill it) may still believe it holds
        // the shard, under an epoch the new grant supersedes.
        if (other.external && it->second < epoch) continue;
        // The same, the other way round: a woken external zombie reads a grant sent to it
        // before it froze, long superseded.
        if (proc.external && epoch < it->second) continue;
        fail(fmt::format("shard {} granted to {} at epoch {} while {} still holds it at epoch {}", shard, proc.id, epoch,
                         id, it->second));
    }
    if (epoch <= max_epoch_held_[shard] && !proc.external) {
        // (An external zombie may read a stale grant late: the master never reused the epoch —
        // that is checked when grants are sent — and an upstream checking epochs refuses it.)
        fail(fmt::format("shard {} granted at epoch {} after epoch {} was held", shard, epoch, max_epoch_held_[shard]));
    }
    max_epoch_held_[shard] = std::max(max_epoch_held_[shard], epoch);
}

void sim_world::die(process& proc) {
    proc.alive = false;
    proc.shards.clear();
    proc.callbacks.clear();
    if (proc.link) {
        auto it = links_.find(*proc.link);
        if (it != links_.end()) {
            link& l = it->second;
            l.to_slave.clear();
            if (l.open) {
                l.open = false;
                // Frames the slave sent before dying arrive first, then EOF.
                l.to_master.push_back({.eof = true});
            }
        }
    }
    if (!proc.external) {
        os_events_.push_back([this, id = proc.id] {
            core_->on_process_exited(id, "killed by signal 9", now_);
            take_and_apply();
        });
    }
}

std::vector<sim_world::process*> sim_world::workers_with_callbacks() {
    std::vector<process*> out;
    for (auto& [id, proc] : processes_) {
        if (proc.alive && !proc.hung && !proc.callbacks.empty()) out.push_back(&proc);
    }
    return out;
}

void sim_world::kill(const std::string& slave) {
    trace("FAULT kill " + slave);
    auto it = processes_.find(slave);
    if (it != processes_.end() && it->second.alive) die(it->second);
}

void sim_world::hang(const std::string& slave) {
    trace("FAULT hang " + slave);
    auto it = processes_.find(slave);
    if (it != processes_.end()) it->second.hung = true;
}

void sim_world::wake(const std::string& slave) {
    auto it = processes_.find(slave);
    if (it == processes_.end() || !it->second.alive || !it->second.hung) return;
    process& proc = it->second;
    proc.hung = false;
    ++wakes_;
    trace("FAULT wake " + slave);
    if (!proc.link) {
        connect(proc);
    } else if (auto lit = links_.find(*proc.link); lit != links_.end() && !lit->second.open) {
        os_events_.push_back(eof_to_slave(lit->first));  // it reads what piled up, then the EOF
    }
}

void sim_world::drop_connection(const std::string& slave) {
    trace("FAULT drop connection of " + slave);
    auto it = processes_.find(slave);
    if (it == processes_.end() || !it->second.link) return;
    auto lit = links_.find(*it->second.link);
    if (lit == links_.end() || !lit->second.open) return;
    link& l = lit->second;
    l.open = false;
    l.to_slave.clear();
    slave_link_down(it->second, l.id);
    // The master sees the connection end; the slave library reconnects promptly on its own (the
    // two may reach the master in either order), still holding its shards.
    l.to_master.push_back({.eof = true});
    os_events_.push_back(reconnect_later(slave));
}

std::vector<std::string> sim_world::live_slaves() const {
    std::vector<std::string> ids;
    for (const auto& [id, proc] : processes_) {
        if (proc.alive) ids.push_back(id);
    }
    return ids;
}

std::map<std::string, std::map<std::uint32_t, std::uint64_t>> sim_world::holdings() const {
    std::map<std::string, std::map<std::uint32_t, std::uint64_t>> out;
    for (const auto& [id, proc] : processes_) {
        if (proc.alive) out[id] = held_by(proc);
    }
    return out;
}

}  // namespace meshmaster::master::test
