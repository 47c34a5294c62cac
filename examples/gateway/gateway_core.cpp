#include "gateway_core.hpp"

#include "json_line.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>

namespace meshmaster::gateway {

namespace {
constexpr std::uint32_t no_slave = UINT32_MAX;
// Emission credit is kept in 1e-12 events: the rate (in 1e-3 events/s) times nanoseconds.
constexpr std::uint64_t credit_per_event = 1'000'000'000'000;
// A stalled loop earns at most this much emission in one tick, so the credit cannot overflow.
constexpr std::int64_t max_tick_gap_ns = 1'000'000'000;
// Bots that misbehave on every ACK would flood the log; the counters in the report stay exact.
constexpr std::uint64_t max_logged_per_kind = 100;

// Whether a HELLO name may be used as-is in logs, reports and the record file.
bool acceptable_name(const hello_name& name) {
    if (name.size == 0 || name.garbage_after_end) return false;
    return std::all_of(name.bytes.begin(), name.bytes.begin() + static_cast<std::ptrdiff_t>(name.size),
                       [](char ch) { return ch > ' ' && ch < 0x7f; });
}
}  // namespace

struct gateway_core::connection {
    connection_id id = 0;
    std::string peer;
    std::uint32_t slave = no_slave;  // the audit's index of the HELLO name; none before HELLO
    bool closing = false;            // the core gave up on it; waiting for the shell to close it
    bool flagged_writable = false;   // listed in effects_.writable
    std::uint32_t attached_shards = 0;
    std::array<unsigned char, record_size> partial{};  // the start of a record split across reads
    std::size_t partial_size = 0;
    std::vector<unsigned char> out;
};

struct gateway_core::shard_state {
    bool started = false;            // its stream started (its first IDENTIFY)
    std::uint64_t base = 0;          // emission index before its first event: seq n is index base + n
    std::uint64_t session = 0;       // the current session; older ones are invalid
    std::uint64_t session_start = 0; // the seq before the session's first event
    std::uint64_t epoch = 0;         // the highest epoch seen in an IDENTIFY or RESUME: the owner's
    connection* attached = nullptr;  // where its events go; none while nobody runs it
    std::uint64_t last_sent = 0;     // the last seq sent to `attached`
};

gateway_core::gateway_core(const gateway_config& config)
    : config_(config),
      milli_events_per_second_(static_cast<std::uint64_t>(std::llround(config.rate * 1000))),
      shards_(config.shards),
      audit_(config.shards) {}

gateway_core::~gateway_core() = default;

// --- connections --------------------------------------------------------------------------------

connection_id gateway_core::open_connection(std::string_view peer) {
    auto conn = std::make_unique<connection>();
    conn->id = next_connection_id_++;
    conn->peer = peer;
    effects_.log.push_back(json_line{}
                               .field("level", "info")
                               .field("event", "connected")
                               .field("conn", conn->id)
                               .field("peer", peer)
                               .str());
    const connection_id id = conn->id;
    connections_.emplace(id, std::move(conn));
    return id;
}

void gateway_core::connection_closed(connection_id id, std::string_view reason) {
    const auto found = connections_.find(id);
    if (found == connections_.end()) return;
    connection& conn = *found->second;
    if (!conn.closing) {
        // Closed by the peer or by I/O; a connection the core dropped was logged when it was.
        json_line line;
        line.field("level", "info").field("event", "disconnected").field("conn", id).field("peer", conn.peer);
        if (conn.slave != no_slave) line.field("name", audit_.slave_name(conn.slave));
        line.field("shards_detached", conn.attached_shards).field("reason", reason);
        effects_.log.push_back(line.str());
        for (std::uint32_t shard = 0; conn.attached_shards != 0 && shard < shards_.size(); ++shard) {
            if (shards_[shard].attached == &conn) detach(shard);
        }
    }
    connections_.erase(found);
}

void gateway_core::fail(connection& conn, std::string reason, bool protocol_error) {
    if (conn.closing) return;
    conn.closing = true;
    protocol_errors_ += protocol_error;
    json_line line;
    line.field("level", "warn")
        .field("event", protocol_error ? "protocol_error" : "dropped")
        .field("conn", conn.id)
        .field("peer", conn.peer);
    if (conn.slave != no_slave) line.field("name", audit_.slave_name(conn.slave));
    line.field("shards_detached", conn.attached_shards).field("reason", reason);
    effects_.log.push_back(line.str());
    for (std::uint32_t shard = 0; conn.attached_shards != 0 && shard < shards_.size(); ++shard) {
        if (shards_[shard].attached == &conn) detach(shard);
    }
    std::vector<unsigned char>{}.swap(conn.out);  // nothing more will be written: free it now
    effects_.closes.push_back({conn.id, std::move(reason)});
}

std::vector<unsigned char>* gateway_core::output(connection_id id) {
    const auto found = connections_.find(id);
    if (found == connections_.end() || found->second->closing) return nullptr;
    return &found->second->out;
}

void gateway_core::clear_effects() noexcept {
    for (const connection_id id : effects_.writable) {
        if (const auto found = connections_.find(id); found != connections_.end()) {
            found->second->flagged_writable = false;
        }
    }
    effects_.writable.clear();
    effects_.closes.clear();
    effects_.log.clear();
}

// --- receiving ----------------------------------------------------------------------------------

void gateway_core::receive(connection_id id, std::span<const unsigned char> bytes, std::int64_t now_ns) {
    const auto found = connections_.find(id);
    if (found == connections_.end()) return;
    connection& conn = *found->second;
    const unsigned char* next = bytes.data();
    std::size_t left = bytes.size();
    if (conn.partial_size != 0 && !conn.closing) {
        const std::size_t take = std::min(left, record_size - conn.partial_size);
        std::memcpy(conn.partial.data() + conn.partial_size, next, take);
        conn.partial_size += take;
        next += take;
        left -= take;
        if (conn.partial_size < record_size) return;
        conn.partial_size = 0;
        handle(conn, read_record(conn.partial.data()), now_ns);
    }
    for (; left >= record_size && !conn.closing; next += record_size, left -= record_size) {
        handle(conn, read_record(next), now_ns);
    }
    if (!conn.closing && left != 0) {
        std::memcpy(conn.partial.data(), next, left);
        conn.partial_size = left;
    }
}

void gateway_core::handle(connection& conn, const record& r, std::int64_t now_ns) {
    if (r.type < bot_op::hello || r.type > bot_op::ack) {
        fail(conn, fmt::format("unknown record type {}", r.type), true);
        return;
    }
    if (r.type == bot_op::hello) {
        handle_hello(conn, r);
        return;
    }
    if (conn.slave == no_slave) {
        fail(conn, fmt::format("record type {} before HELLO", r.type), true);
        return;
    }
    if (r.shard >= shards_.size()) {
        fail(conn, fmt::format("shard {} out of range (the gateway has {} shards)", r.shard, shards_.size()), true);
        return;
    }
    switch (r.type) {
        case bot_op::identify: handle_identify(conn, r); break;
        case bot_op::resume: handle_resume(conn, r); break;
        case bot_op::detach: handle_detach(conn, r); break;
        default: handle_ack(conn, r, now_ns); break;
    }
}

void gateway_core::handle_hello(connection& conn, const record& r) {
    if (conn.slave != no_slave) {
        fail(conn, "second HELLO", true);
        return;
    }
    const hello_name name = read_hello_name(r);
    if (!acceptable_name(name)) {
        fail(conn, "HELLO name must be 1 to 32 printable ASCII bytes without spaces, zero-padded", true);
        return;
    }
    conn.slave = audit_.slave_index(name.view());
    effects_.log.push_back(json_line{}
                               .field("level", "info")
                               .field("event", "hello")
                               .field("conn", conn.id)
                               .field("name", name.view())
                               .str());
}

void gateway_core::refuse_stale(connection& conn, const record& r, std::uint64_t epoch, const char* what) {
    const shard_state& s = shards_[r.shard];
    const std::uint64_t count = r.type == bot_op::ack ? ++fenced_acks_ : ++fenced_attaches_;
    if (count <= max_logged_per_kind) {
        effects_.log.push_back(json_line{}
                                   .field("level", "warn")
                                   .field("event", "fenced")
                                   .field("shard", r.shard)
                                   .field("name", audit_.slave_name(conn.slave))
                                   .field("what", what)
                                   .field("epoch", epoch)
                                   .field("shard_epoch", s.epoch)
                                   .str());
    }
    send(conn, {.type = gateway_op::fenced, .shard = r.shard, .a = s.epoch});
    output_grew(conn);
}

void gateway_core::handle_identify(connection& conn, const record& r) {
    shard_state& s = shards_[r.shard];
    if (s.started && r.a < s.epoch) {
        refuse_stale(conn, r, r.a, "identify");
        return;
    }
    if (!s.started) {
        s.started = true;
        s.base = log_.last_index();
        ++started_shards_;
        base_sum_ += s.base;
    } else {
        // Not an error, but events the old session left unprocessed are now lost for good.
        effects_.log.push_back(json_line{}
                                   .field("level", "info")
                                   .field("event", "session_replaced")
                                   .field("shard", r.shard)
                                   .field("name", audit_.slave_name(conn.slave))
                                   .field("epoch", r.a)
                                   .field("unprocessed", last_emitted(s) - audit_.distinct_processed(r.shard))
                                   .str());
    }
    s.session = new_session_id();
    s.session_start = last_emitted(s);
    s.epoch = r.a;
    ++sessions_;
    audit_.session_started(r.shard, s.session_start);
    attach(r.shard, conn, s.session_start);
    send(conn, {.type = gateway_op::ready, .shard = r.shard, .a = s.session, .b = s.session_start});
    output_grew(conn);
}

void gateway_core::handle_resume(connection& conn, const record& r) {
    shard_state& s = shards_[r.shard];
    const std::uint64_t session = r.a;
    const std::uint64_t position = r.b;
    if (s.started && r.c < s.epoch) {
        refuse_stale(conn, r, r.c, "resume");
        return;
    }
    const char* refusal = nullptr;
    if (!s.started || session == 0 || session != s.session) {
        refusal = "unknown or replaced session";
    } else if (position > last_emitted(s)) {
        refusal = "position ahead of the stream";
    } else if (position < s.session_start) {
        refusal = "position before the session's start";
    } else if (position + 1 < oldest_retained(s)) {
        refusal = "position outside the resume window";
    }
    if (refusal != nullptr) {
        ++invalid_sessions_;
        effects_.log.push_back(json_line{}
                                   .field("level", "warn")
                                   .field("event", "invalid_session")
                                   .field("shard", r.shard)
                                   .field("name", audit_.slave_name(conn.slave))
                                   .field("session", session)
                                   .field("position", position)
                                   .field("epoch", r.c)
                                   .field("reason", refusal)
                                   .str());
        send(conn, {.type = gateway_op::invalid_session, .shard = r.shard, .a = session});
        output_grew(conn);
        return;
    }
    s.epoch = r.c;
    const std::uint64_t last = last_emitted(s);
    attach(r.shard, conn, last);
    send(conn, {.type = gateway_op::resumed, .shard = r.shard, .a = session, .b = position, .c = audit_.committed(r.shard)});
    send_events(conn, r.shard, position + 1, last);
    output_grew(conn);
}

void gateway_core::handle_detach(connection& conn, const record& r) {
    shard_state& s = shards_[r.shard];
    std::uint64_t last_sent = 0;
    if (s.attached == &conn) {
        // (Detaching needs no epoch: it only gives something up.)
        last_sent = s.last_sent;
        detach(r.shard);
    }
    send(conn, {.type = gateway_op::detached, .shard = r.shard, .a = last_sent});
    output_grew(conn);
}

void gateway_core::handle_ack(connection& conn, const record& r, std::int64_t now_ns) {
    const shard_state& s = shards_[r.shard];
    const std::uint64_t first = r.a;
    const std::uint64_t last = r.b;
    if (!s.started) {
        fail(conn, fmt::format("ACK for shard {}, which never had a session", r.shard), true);
        return;
    }
    if (r.d < s.epoch) {
        // A holder that was superseded (a zombie waking up, a partitioned slave): its work is not
        // committed. This is the fence that makes a second holder harmless.
        refuse_stale(conn, r, r.d, "ack");
        return;
    }
    if (first == 0 || first > last || last > last_emitted(s)) {
        fail(conn,
             fmt::format("ACK of {}..{} for shard {}, which has emitted 1..{}", first, last, r.shard,
                         last_emitted(s)),
             true);
        return;
    }
    const ack_outcome outcome = audit_.record({.shard = r.shard,
                                               .first = first,
                                               .last = last,
                                               .checksum = r.c,
                                               .epoch = r.d,
                                               .slave = conn.slave,
                                               .received_ns = now_ns});
    if (outcome.handoff) {
        if (const auto emitted_at = log_.time_of(s.base + first)) audit_.record_event_delay(now_ns - *emitted_at);
    }
    if (outcome.checksum_mismatch && audit_.checksum_mismatches() <= max_logged_per_kind) {
        effects_.log.push_back(json_line{}
                                   .field("level", "warn")
                                   .field("event", "checksum_mismatch")
                                   .field("shard", r.shard)
                                   .field("first", first)
                                   .field("last", last)
                                   .field("name", audit_.slave_name(conn.slave))
                                   .field("epoch", r.d)
                                   .field("checksum", r.c)
                                   .field("expected", outcome.expected_checksum)
                                   .field("suppressing_more", audit_.checksum_mismatches() == max_logged_per_kind)
                                   .str());
    }
    if (outcome.overlap && audit_.overlaps() <= max_logged_per_kind) {
        effects_.log.push_back(json_line{}
                                   .field("level", "warn")
                                   .field("event", "overlap")
                                   .field("shard", r.shard)
                                   .field("first", first)
                                   .field("last", last)
                                   .field("name", audit_.slave_name(conn.slave))
                                   .field("epoch", r.d)
                                   .field("owner", audit_.slave_name(outcome.current_owner))
                                   .field("owner_epoch", outcome.current_epoch)
                                   .field("suppressing_more", audit_.overlaps() == max_logged_per_kind)
                                   .str());
    }
    if (ack_observer_) {
        ack_observer_({.shard = r.shard,
                       .first = first,
                       .last = last,
                       .slave = audit_.slave_name(conn.slave),
                       .epoch = r.d,
                       .received_ns = now_ns});
    }
}

// --- shards and output --------------------------------------------------------------------------

void gateway_core::attach(std::uint32_t shard, connection& conn, std::uint64_t last_sent) {
    shard_state& s = shards_[shard];
    if (s.attached != &conn) {
        if (s.attached != nullptr) {
            ++takeovers_;
            json_line line;
            line.field("level", "warn")
                .field("event", "takeover")
                .field("shard", shard)
                .field("from_conn", s.attached->id);
            if (s.attached->slave != no_slave) line.field("from", audit_.slave_name(s.attached->slave));
            line.field("to_conn", conn.id).field("to", audit_.slave_name(conn.slave)).field("epoch", s.epoch);
            effects_.log.push_back(line.str());
            // Tell the superseded holder, after whatever it was already sent: it owns the shard no more.
            connection& old = *s.attached;
            detach(shard);
            if (!old.closing) {
                send(old, {.type = gateway_op::fenced, .shard = shard, .a = s.epoch});
                output_grew(old);
            }
        }
        s.attached = &conn;
        ++conn.attached_shards;
    }
    s.last_sent = last_sent;
}

void gateway_core::detach(std::uint32_t shard) {
    shard_state& s = shards_[shard];
    if (s.attached == nullptr) return;
    --s.attached->attached_shards;
    s.attached = nullptr;
}

unsigned char* gateway_core::reserve_output(connection& conn, std::size_t records) {
    const std::size_t used = conn.out.size();
    conn.out.resize(used + records * record_size);
    return conn.out.data() + used;
}

void gateway_core::send(connection& conn, const record& r) { write_record(r, reserve_output(conn, 1)); }

void gateway_core::send_events(connection& conn, std::uint32_t shard, std::uint64_t from, std::uint64_t to) {
    if (from > to) return;
    const std::uint64_t base = shards_[shard].base;
    unsigned char* out = reserve_output(conn, to - from + 1);
    log_.for_each(base + from, base + to, [&](std::uint64_t first, std::uint64_t last, std::int64_t time_ns) {
        for (std::uint64_t index = first; index <= last; ++index, out += record_size) {
            const std::uint64_t seq = index - base;
            write_record({.type = gateway_op::event,
                          .shard = shard,
                          .a = seq,
                          .b = payload(shard, seq),
                          .c = static_cast<std::uint64_t>(time_ns)},
                         out);
        }
    });
}

void gateway_core::output_grew(connection& conn) {
    if (conn.closing) return;
    if (conn.out.size() > config_.max_pending_output) {
        fail(conn,
             fmt::format("over {} bytes of output pending: the bot is not reading", config_.max_pending_output),
             false);
        return;
    }
    if (!conn.flagged_writable) {
        conn.flagged_writable = true;
        effects_.writable.push_back(conn.id);
    }
}

// --- emission -----------------------------------------------------------------------------------

void gateway_core::tick(std::int64_t now_ns) {
    if (!ticked_) {
        ticked_ = true;
        last_tick_ns_ = now_ns;
        return;
    }
    const std::int64_t gap = std::clamp<std::int64_t>(now_ns - last_tick_ns_, 0, max_tick_gap_ns);
    last_tick_ns_ = now_ns;
    log_.forget_before(now_ns - config_.resume_window_ns);
    if (paused_ || started_shards_ == 0) return;

    credit_ += milli_events_per_second_ * static_cast<std::uint64_t>(gap);
    const std::uint64_t count = credit_ / credit_per_event;
    credit_ %= credit_per_event;
    if (count == 0) return;
    const std::uint64_t first_new_index = log_.last_index() + 1;
    log_.append(count, now_ns);

    for (std::uint32_t shard = 0; shard < shards_.size(); ++shard) {
        shard_state& s = shards_[shard];
        if (s.attached == nullptr) continue;
        connection& conn = *s.attached;
        const std::uint64_t last = last_emitted(s);
        if (s.base + s.last_sent + 1 >= first_new_index) {
            // The usual case: only this tick's events are new to the connection; all share `now`.
            unsigned char* out = reserve_output(conn, last - s.last_sent);
            for (std::uint64_t seq = s.last_sent + 1; seq <= last; ++seq, out += record_size) {
                write_record({.type = gateway_op::event,
                              .shard = shard,
                              .a = seq,
                              .b = payload(shard, seq),
                              .c = static_cast<std::uint64_t>(now_ns)},
                             out);
            }
        } else {
            send_events(conn, shard, s.last_sent + 1, last);
        }
        s.last_sent = last;
        output_grew(conn);  // may drop the connection, which detaches its other shards too
    }
}

std::uint64_t gateway_core::last_emitted(const shard_state& s) const noexcept {
    return s.started ? log_.last_index() - s.base : 0;
}

std::uint64_t gateway_core::oldest_retained(const shard_state& s) const noexcept {
    const std::uint64_t oldest = log_.oldest_index();
    return oldest > s.base ? oldest - s.base : 1;
}

std::uint64_t gateway_core::new_session_id() noexcept {
    std::uint64_t id = 0;
    while (id == 0) id = splitmix64(config_.session_seed + ++session_counter_);
    return id;
}

std::uint64_t gateway_core::emitted() const noexcept { return started_shards_ * log_.last_index() - base_sum_; }

report gateway_core::make_report() const {
    report r;
    r.shards = static_cast<std::uint32_t>(shards_.size());
    r.emitted = emitted();
    r.lost = unprocessed();
    r.sessions = sessions_;
    r.takeovers = takeovers_;
    r.invalid_sessions = invalid_sessions_;
    r.fenced_acks = fenced_acks_;
    r.fenced_attaches = fenced_attaches_;
    r.protocol_errors = protocol_errors_;
    audit_.fill(r);
    return r;
}

std::string gateway_core::lagging(std::size_t limit) const {
    json_line all;
    std::size_t listed = 0;
    for (std::uint32_t i = 0; i < shards_.size() && listed < limit; ++i) {
        const shard_state& s = shards_[i];
        const std::uint64_t emitted_here = last_emitted(s);
        const std::uint64_t processed_here = audit_.distinct_processed(i);
        if (!s.started || processed_here >= emitted_here) continue;
        ++listed;
        std::string attached;
        if (s.attached && s.attached->slave != no_slave) attached = audit_.slave_name(s.attached->slave);
        all.object(std::to_string(i), json_line{}
                                          .field("emitted", emitted_here)
                                          .field("processed", processed_here)
                                          .field("committed", audit_.committed(i))
                                          .field("last_sent", s.last_sent)
                                          .field("epoch", s.epoch)
                                          .field("session_start", s.session_start)
                                          .field("attached", attached)
                                          .field("connection", s.attached ? s.attached->id : 0));
    }
    return all.str();
}

}  // namespace meshmaster::gateway
