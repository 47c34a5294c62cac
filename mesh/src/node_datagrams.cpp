// The node's datagram engine (see node_impl.hpp): datagrams built per peer and sent in batches,
// one timer for every deadline, datagrams read in batches and taken apart frame by frame, messages
// dispatched to their handlers (async ones as coroutines) and answered. The decisions are the
// sans-I/O pieces' (channel, peer table, rpc); this file moves bytes between them and the socket.
#include "node_impl.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>

#include <algorithm>

namespace meshmaster::mesh {

packet_writer node::impl::writer(std::uint64_t receiver, std::size_t size) {
    return packet_writer(io.slot(size), {.keyed = auth != nullptr, .sender = self.incarnation, .receiver = receiver,
                                         .number = ++packet_number});
}

// Queues the datagram `w` built (in the current slot) for `to`.
void node::impl::transmit(packet_writer& w, const peer_address& to, peer* p) {
    auto d = w.finish();
    if (auth) auth->seal(d, self.incarnation);
    io.queue(d, to, p);
}

bool node::impl::wants_output(peer& p, mono_time now) {
    return p.ch->wants_output(now) || !p.udata.empty() || p.probe_due || p.bye;
}

void node::impl::flush_peer(peer& p, mono_time now) {
    bool more = wants_output(p, now);
    for (int guard = 0; guard < 4096 && more; ++guard) {
        packet_writer w = writer(p.rec.incarnation, p.datagram);
        if (p.bye && w.bye(*p.bye)) p.bye.reset();
        if (p.probe_due && w.probe(p.visiting ? frame_type::visit : frame_type::probe, 0, self.id, self.type)) {
            p.probe_due = false;
            p.last_probe = now;
        }
        p.ch->write(w, now);
        while (!p.udata.empty() && w.udata(p.udata.front())) p.udata.pop_front();
        if (w.empty()) {
            if (!p.udata.empty()) p.udata.pop_front();  // cannot fit any datagram (usend checks)
            break;
        }
        // More follows for this peer: full size, so that the run can go as one GSO send.
        more = wants_output(p, now);
        if (more && io.gso_worth(p.datagram)) w.pad();
        transmit(w, p.address, &p);
    }
}

void node::impl::flush_all() {
    flush_posted = false;
    if (closed) return;
    const mono_time now = now_mono();
    for (auto& [id, p] : table.all()) flush_peer(*p, now);
    io.send();
    arm_timer(now);
}

void node::impl::schedule_flush() {
    if (flush_posted || closed) return;
    flush_posted = true;
    asio::post(executor, [this, a = alive] {
        if (*a) flush_all();
    });
}

// One timer for every deadline: channels' (acks, retransmissions, probes) and keepalives.
void node::impl::arm_timer(mono_time now) {
    const std::optional<mono_time> next = table.next_deadline();
    if (!next) return;
    if (timer_at && *timer_at <= *next && *timer_at > now) return;  // already armed earlier
    timer_at = std::max(*next, now);
    timer.expires_at(time_point_of(*timer_at));
    timer.async_wait([this, a = alive](boost::system::error_code ec) {
        if (!*a || ec == asio::error::operation_aborted) return;
        timer_at.reset();
        table.tick(now_mono());
        flush_all();
    });
}

bool node::impl::send_message(peer& p, msg_kind kind, std::uint16_t command, std::uint64_t id, std::span<const std::byte> payload) {
    if (p.ch->send(rpc::encode_header(kind, command, id), payload) != send_status::queued) return false;
    schedule_flush();
    return true;
}

void node::impl::answer(const std::string& peer_id, std::uint64_t incarnation, std::uint64_t id, std::uint16_t command, const reply& r) {
    peer* p = table.find(peer_id);
    if (!p || p->rec.incarnation != incarnation) return;  // it left or restarted meanwhile
    if (r.what == reply::kind::none) {
        p->answered.forget(id);
        return;
    }
    bytes m = r.what == reply::kind::response ? rpc::encode_message(msg_kind::response, command, id, r.body)
                                               : rpc::encode_message(msg_kind::error, command, id, as_bytes(r.message));
    p->answered.remember(id, m);
    if (p->ch->send(m) == send_status::queued) schedule_flush();
}

void node::impl::dispatch(peer& p, std::span<const std::byte> raw) {
    const auto m = rpc::parse_message(raw);
    if (!m) {
        ++counters.bad_frame;
        return;
    }
    if (auto o = rpc::outcome_of(*m)) {
        requests.complete(m->id, p.rec.id, p.rec.incarnation, std::move(*o));
        return;
    }
    const bool is_request = m->kind == msg_kind::request;
    if (is_request) {
        if (going_offline) {
            send_message(p, msg_kind::stopped, m->command, m->id, {});
            return;
        }
        if (const auto* done = p.answered.find(m->id)) {
            // A retry: the handler ran (or runs) already. Send the answer again if there is one.
            if (*done && p.ch->send(**done) == send_status::queued) schedule_flush();
            return;
        }
        p.answered.remember(m->id, std::nullopt);
    }
    if (auto h = handlers.find(m->command); h != handlers.end()) {
        const reply r = h->second(incoming{.from = p.rec.id, .command = m->command, .payload = m->payload, .is_request = is_request});
        if (is_request) answer(p.rec.id, p.rec.incarnation, m->id, m->command, r);
        return;
    }
    if (auto h = async_handlers.find(m->command); h != async_handlers.end()) {
        ++handlers_running;
        asio::co_spawn(executor, run_async(h->second, p.rec.id, p.rec.incarnation, m->id, m->command,
                                           bytes(m->payload.begin(), m->payload.end()), is_request),
                       asio::detached);
        return;
    }
    if (is_request) answer(p.rec.id, p.rec.incarnation, m->id, m->command, reply::fail("no handler for command " + std::to_string(m->command)));
}

awaitable<void> node::impl::run_async(async_handler h, std::string peer_id, std::uint64_t incarnation, std::uint64_t id,
                          std::uint16_t command, bytes payload, bool is_request) {
    auto a = alive;
    reply r;
    try {
        r = co_await h(incoming{.from = peer_id, .command = command, .payload = payload, .is_request = is_request});
    } catch (const std::exception& e) {
        r = reply::fail(std::string("the handler failed: ") + e.what());
    }
    if (!*a) co_return;
    --handlers_running;
    if (is_request) answer(peer_id, incarnation, id, command, r);
    wake_progress();
}

void node::impl::count(drop_reason why) {
    switch (why) {
        case drop_reason::truncated: ++counters.truncated; break;
        case drop_reason::bad_magic: ++counters.bad_magic; break;
        case drop_reason::bad_frame: ++counters.bad_frame; break;
        case drop_reason::bad_tag: ++counters.bad_tag; break;
        case drop_reason::replayed: ++counters.replayed; break;
        case drop_reason::wrong_receiver: ++counters.wrong_receiver; break;
    }
}

void node::impl::answer_probe(std::uint64_t token, std::uint64_t to_incarnation, const peer_address& to) {
    packet_writer w = writer(to_incarnation, opts.channel.max_datagram);
    if (w.probe(frame_type::reply, token, self.id, self.type)) transmit(w, to, nullptr);
}

void node::impl::on_datagram(std::span<const std::byte> d, const peer_address& sender, mono_time now) {
    drop_reason why{};
    const auto h = read_header(d, why);
    if (!h) return count(why);
    if (h->receiver != 0 && h->receiver != self.incarnation) return count(drop_reason::wrong_receiver);
    if (auth ? !auth->verify(d, *h) : h->keyed) return count(drop_reason::bad_tag);
    peer* p = table.by_incarnation(h->sender);
    if (h->receiver == 0 || !p) {
        // Not (yet) a peer of ours: it may only ask who we are, or answer our probe.
        handle_stranger(d, *h, sender, now);
        return;
    }
    if (!p->replay.accept(h->number)) return count(drop_reason::replayed);
    ++p->packets_in;
    p->bytes_in += d.size();
    table.heard(*p, sender, now);
    const std::uint64_t acked_before = p->ch->messages_acked();
    const std::uint64_t queued_before = p->ch->queued_bytes();
    frame_reader r(d);
    frame_reader::frame f;
    // A handler may make the peer go away (peer_down from inside it), and p with it.
    const std::uint64_t changes = table.changes();
    const auto gone = [&] { return table.changes() != changes; };
    while (r.next(f, p->ch->data_reference(), p->ch->ack_reference())) {
        switch (f.type) {
            case frame_type::ack: p->ch->on_ack(f.ack, now); break;
            case frame_type::data: {
                // Small messages go to their handler straight from the datagram, as they
                // come: no copy, and what they complete is delivered before the next frame.
                const auto in = p->ch->on_data_direct(f.data, now);
                if (!in.ok) {
                    ++counters.bad_frame;
                    log("warn", "mesh peer " + p->rec.id + " broke the protocol (a segment that does not fit its message)");
                }
                if (in.message) dispatch(*p, *in.message);
                if (!gone() && !deliver_ready(*p, gone)) return;
                break;
            }
            case frame_type::udata: dispatch(*p, f.bytes); break;
            case frame_type::probe:
            case frame_type::visit: answer_probe(f.token, h->sender, sender); break;
            case frame_type::reply: complete_probe(f, *h, now); break;
            case frame_type::bye: table.on_bye(*p, f.reason); break;
            case frame_type::padding: break;  // never yielded: it ends the frames
        }
        if (gone()) return;
    }
    if (r.error()) ++counters.bad_frame;
    if (p->ch->messages_acked() != acked_before || p->ch->queued_bytes() != queued_before) wake_progress();
}

// Hands the channel's complete messages to their handlers; false if the peer went away.
template <class Gone>
bool node::impl::deliver_ready(peer& p, const Gone& gone) {
    while (p.ch->messages_ready() > 0) {
        auto m = p.ch->take_message();
        dispatch(p, *m);
        if (gone()) return false;
        p.ch->recycle(std::move(*m));
    }
    return true;
}

void node::impl::handle_stranger(std::span<const std::byte> d, const packet_header& h, const peer_address& sender, mono_time now) {
    frame_reader r(d);
    frame_reader::frame f;
    bool useful = false;
    while (r.next(f, 0, 0)) {
        if (f.type == frame_type::probe || f.type == frame_type::visit) {
            // A node that names itself joins (static discovery: knowing one address is enough
            // for both to see each other), or visits (a tool: it may talk, it is no member); an
            // anonymous pinger only gets the answer.
            if (!f.id.empty() && f.id != self.id) {
                const udp::endpoint e = endpoint_of(sender);
                add_peer({.id = std::string(f.id), .type = std::string(f.node_type), .host = e.address().to_string(),
                          .port = e.port(), .incarnation = h.sender},
                         true, f.type == frame_type::visit);
            }
            answer_probe(f.token, h.sender, sender);
            useful = true;
        } else if (f.type == frame_type::reply && h.receiver == self.incarnation) {
            complete_probe(f, h, now);
            useful = true;
        }
    }
    if (!useful) ++counters.unknown_sender;
}

void node::impl::complete_probe(const frame_reader::frame& f, const packet_header& h, mono_time now) {
    auto it = probes.find(f.token);
    if (it == probes.end() || it->second.result) return;
    it->second.result = probe_result{.id = std::string(f.id), .type = std::string(f.node_type),
                                     .incarnation = h.sender, .rtt = now - it->second.sent};
    if (it->second.timer) it->second.timer->cancel();
}

void node::impl::add_peer(const peer_record& rec, bool from_probe, bool visiting) {
    table.add(rec, from_probe, visiting, now_mono());
    schedule_flush();
}

// Reads what the socket holds (a few batches at most, so that timers and output get their
// turn), then one flush answers it all — acknowledgements ride on the responses the handlers
// just queued.
std::size_t node::impl::receive_and_flush() {
    const mono_time now = now_mono();
    const udp_batch::receiver on = [&](std::span<const std::byte> d, const peer_address& from) { on_datagram(d, from, now); };
    std::size_t received = 0;
    for (int round = 0; round < 8 && !closed; ++round) {
        const std::size_t n = io.receive(on, closed);
        received += n;
        if (n < udp_batch::in_batch) break;
    }
    if (received > 0 && !closed) flush_all();
    return received;
}

awaitable<void> node::impl::receive_loop() {
    auto a = alive;
    while (!closed) {
        auto [ec] = co_await socket.async_wait(udp::socket::wait_read, tuple_awaitable);
        if (!*a || closed) co_return;
        if (ec) {
            if (ec == asio::error::operation_aborted || ec == asio::error::bad_descriptor) co_return;
            continue;
        }
        receive_and_flush();
        if (!*a) co_return;
        if (opts.busy_poll.count() <= 0) continue;
        // Busy polling (opt-in, its purpose is to spin): read again after every turn of the
        // executor (the application's continuations, timers, flushes run in between) until
        // quiet for busy_poll.
        auto quiet_until = std::chrono::steady_clock::now() + opts.busy_poll;
        while (!closed && std::chrono::steady_clock::now() < quiet_until) {
            co_await asio::post(executor, asio::use_awaitable);
            if (!*a) co_return;
            if (!closed && receive_and_flush() > 0) quiet_until = std::chrono::steady_clock::now() + opts.busy_poll;
            if (!*a) co_return;
        }
    }
}
}  // namespace meshmaster::mesh
