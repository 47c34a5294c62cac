// The node: a thin Asio driver around the sans-I/O pieces — wire, packet_auth and channel below,
// and the node's own: the peer table (peer_table.hpp), the rpc layer (rpc.hpp), static discovery
// (static_discovery.hpp) and the status projection (status_projection.hpp). What stays here is the
// driving: the socket and its batches (udp_batch.hpp), one timer for every deadline, datagrams
// read in batches and answered in one flush so that acknowledgements ride on responses, handler
// coroutines, and the waits of requests and sends — each `co_await (event || timer)`, never a poll.
#include "node_impl.hpp"
#include "static_discovery.hpp"
#include "status_projection.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/post.hpp>

#include <algorithm>
#include <random>
#include <unistd.h>

namespace meshmaster::mesh {

using namespace asio::experimental::awaitable_operators;
using std::chrono::milliseconds;

namespace {

std::uint64_t random_u64() {
    std::random_device rd;
    std::uint64_t v = 0;
    while (v == 0) v = (std::uint64_t{rd()} << 32) ^ rd();
    return v;
}

std::string default_id() {
    char host[256] = {};
    ::gethostname(host, sizeof host - 1);
    return std::string(host) + "-" + std::to_string(::getpid());
}

node_options prepared(node_options o) {
    if (o.id.empty()) o.id = default_id();
    o.channel.keyed = !o.secret.empty();
    return o;
}

}  // namespace

node::impl::impl(node& owner, asio::any_io_executor ex, node_options o)
    : self_node(owner), executor(ex), opts(prepared(std::move(o))), socket(ex), timer(ex),
      closing(ex, asio::steady_timer::time_point::max()), alive(std::make_shared<bool>(true)),
      io(counters, [this](std::string_view l, std::string_view m) { log(l, m); }),
      table({.self_id = opts.id, .learn_from_probes = opts.learn_from_probes, .channel = opts.channel,
             .loopback_datagram = opts.loopback_datagram, .keepalive = opts.keepalive, .offline_after = opts.offline_after},
            *this, [this](const peer_record& rec) { return resolve(rec); }) {
    self.id = opts.id;
    self.type = opts.type;
    self.incarnation = random_u64();
    io.set_slot_size(std::max(opts.channel.max_datagram, opts.loopback_datagram));
    io.set_drop_every(opts.test_drop_every);
}

peer_address node::impl::resolve(const peer_record& rec) {
    boost::system::error_code ec;
    const auto address = asio::ip::make_address(rec.host, ec);
    if (ec) log("warn", "mesh peer " + rec.id + ": '" + rec.host + "' is not an IP address");
    return address_of(udp::endpoint(address, rec.port));
}

// Completes on the next progress (an acknowledgement, a peer come, gone or offline, a handler
// done, the node closing): what a waiter waits for may have changed.
awaitable<void> node::impl::progress() {
    auto a = alive;
    asio::steady_timer t(executor, asio::steady_timer::time_point::max());
    progress_waiters.push_back(&t);
    co_await t.async_wait(tuple_awaitable);
    if (*a) std::erase(progress_waiters, &t);
}

// The next progress, or `deadline`, whichever comes first.
awaitable<void> node::impl::progress_until(mono_time deadline) {
    asio::steady_timer t(executor, time_point_of(deadline));
    co_await (progress() || t.async_wait(tuple_awaitable));
}

// Probes every address of opts.static_peers (announcing this node, so it learns us) and makes
// each answerer a member; a round again after static_discovery::pause, or at once when the
// node closes (then it ends).
awaitable<void> node::impl::run_static_discovery() {
    auto a = alive;
    static_discovery plan(opts.static_peers, self.id);
    asio::steady_timer pause(executor);
    while (!closed) {
        plan.begin_round();
        for (const std::string& bad : plan.invalid()) log("warn", "mesh: static peer '" + bad + "' is not IP:PORT");
        for (const auto& target : plan.targets()) {
            auto r = co_await self_node.probe(target.host, target.port, static_discovery::probe_timeout, probe_mode::join);
            if (!*a || closed) co_return;
            if (auto rec = plan.answered(target, r)) self_node.peer_up(*rec);
        }
        pause.expires_after(plan.pause(opts.offline_after));
        co_await (pause.async_wait(tuple_awaitable) || closing.async_wait(tuple_awaitable));
        if (!*a) co_return;
    }
}

void node::impl::close() {
    closed = true;
    boost::system::error_code ignored;
    socket.close(ignored);
    timer.cancel();
    closing.cancel();
    wake_progress();
}

node::node(asio::any_io_executor executor, node_options options)
    : impl_(std::make_unique<impl>(*this, std::move(executor), std::move(options))) {
    impl_->handlers[status_command] = [this](const incoming&) {
        const std::string text = status_json();
        return reply::respond(as_bytes(text));
    };
}

node::~node() {
    impl_->requests.stop_all("the node was destroyed");
    impl_->close();
}

boost::system::error_code node::start() {
    auto& s = *impl_;
    if (s.started) return {};
    if (s.opts.secret.empty()) {
        if (!s.opts.insecure) return make_error_code(boost::system::errc::permission_denied);
        s.log("warn", "mesh: running WITHOUT authentication (insecure = true): anyone who can reach the port can talk to this node");
    } else {
        if (s.opts.secret.size() < 16) return make_error_code(boost::system::errc::invalid_argument);
        s.auth = std::make_unique<packet_auth>(s.opts.secret);
    }
    boost::system::error_code ec;
    const auto address = asio::ip::make_address(s.opts.bind, ec);
    if (ec) return ec;
    const std::uint16_t last = std::max(s.opts.port, s.opts.port_last);
    for (std::uint32_t port = s.opts.port; port <= last; ++port) {
        if (s.socket.is_open()) s.socket.close(ec);
        s.socket.open(address.is_v6() ? udp::v6() : udp::v4(), ec);
        if (ec) return ec;
        s.socket.bind(udp::endpoint(address, static_cast<std::uint16_t>(port)), ec);
        if (!ec) break;
    }
    if (ec) return ec;
    s.socket.non_blocking(true, ec);
    // The FORCE variants pass net.core.[rw]mem_max where allowed (CAP_NET_ADMIN); else the plain
    // ones get what the limit allows.
    const int size = static_cast<int>(s.opts.socket_buffer);
    const int fd = s.socket.native_handle();
    if (::setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size) != 0) {
        s.socket.set_option(asio::socket_base::receive_buffer_size(size), ec);
    }
    if (::setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof size) != 0) {
        s.socket.set_option(asio::socket_base::send_buffer_size(size), ec);
    }
    // UDP GSO and GRO where the kernel has them (Linux 4.18 / 5.0): setting a segment size of 0
    // succeeds only where UDP_SEGMENT exists; without, every datagram goes alone.
    bool gso = false, gro = false;
    if (s.opts.udp_offload) {
        const int zero = 0, one = 1;
        gso = ::setsockopt(fd, SOL_UDP, UDP_SEGMENT, &zero, sizeof zero) == 0;
        gro = ::setsockopt(fd, SOL_UDP, UDP_GRO, &one, sizeof one) == 0;
    }
    s.io.attach(fd, gso, gro);
    ec.clear();
    s.self.host = address.to_string();
    s.self.port = s.socket.local_endpoint().port();
    s.started = true;
    asio::co_spawn(s.executor, s.receive_loop(), asio::detached);
    if (!s.opts.static_peers.empty()) asio::co_spawn(s.executor, s.run_static_discovery(), asio::detached);
    return {};
}

std::uint16_t node::port() const noexcept { return impl_->self.port; }
const peer_record& node::self() const noexcept { return impl_->self; }
void node::set_type(std::string type) { impl_->self.type = impl_->opts.type = std::move(type); }
void node::set_value(std::string key, std::string value) { impl_->self.values[std::move(key)] = std::move(value); }

std::optional<std::string> node::value(std::string_view node, std::string_view key) const {
    const peer_record* rec = node == impl_->self.id ? &impl_->self : nullptr;
    if (!rec) {
        const peer* p = impl_->table.find(node);
        if (!p) return std::nullopt;
        rec = &p->rec;
    }
    auto v = rec->values.find(std::string(key));
    if (v == rec->values.end()) return std::nullopt;
    return v->second;
}

std::string node::status_json() const {
    const auto& s = *impl_;
    return mesh::status_json({.record = s.self, .online = is_self_online(), .authenticated = s.auth != nullptr,
                              .gso = s.io.gso(), .gro = s.io.gro()},
                             status(), s.counters);
}

void node::command(std::uint16_t id, handler h) {
    if (id == status_command) return;
    impl_->async_handlers.erase(id);
    impl_->handlers[id] = std::move(h);
}
void node::command(std::uint16_t id, async_handler h) {
    if (id == status_command) return;
    impl_->handlers.erase(id);
    impl_->async_handlers[id] = std::move(h);
}

awaitable<outcome> node::request(std::string target, std::uint16_t command, bytes payload,
                                 std::optional<milliseconds> timeout, unsigned retries) {
    auto& s = *impl_;
    auto a = s.alive;
    const auto destroyed = [] { return outcome{.what = outcome::kind::stopped, .message = "the node was destroyed"}; };
    if (s.going_offline || s.closed) co_return outcome{.what = outcome::kind::stopped, .message = "this node is going offline"};
    peer* p = s.table.find(target);
    if (!p) co_return outcome{.what = outcome::kind::stopped, .message = "unknown node " + target};
    if (p->draining) co_return outcome{.what = outcome::kind::stopped, .message = "the peer is going offline"};
    const std::uint64_t incarnation = p->rec.incarnation;
    // The timer waits for the attempt's deadline; the request's outcome coming cancels it.
    asio::steady_timer t(s.executor);
    const std::uint64_t id = s.requests.begin(target, incarnation, [&t] { t.cancel(); });
    const auto settled = [&] { return s.requests.find(id)->result.has_value(); };
    const auto current = [&] {
        peer* q = s.table.find(target);
        return q && q->rec.incarnation == incarnation ? q : nullptr;
    };
    const milliseconds each = timeout.value_or(s.opts.request_timeout);
    for (unsigned attempt = 0; attempt <= retries && !settled(); ++attempt) {
        const mono_time deadline = now_mono() + each;
        s.requests.set_deadline(id, deadline);
        // Behind a full queue the request waits for room, within its time.
        while ((p = current()) && p->ch->queued_bytes() >= s.opts.channel.send_buffer && now_mono() < deadline && !settled()) {
            co_await s.progress_until(deadline);
            if (!*a) co_return destroyed();
        }
        if (!p) {
            s.requests.settle(id, outcome{.what = outcome::kind::stopped, .message = "the peer went away"});
            break;
        }
        if (settled()) break;
        if (!s.send_message(*p, msg_kind::request, command, id, payload) && payload.size() + rpc::msg_header > s.opts.channel.max_message_size) {
            s.requests.settle(id, outcome{.what = outcome::kind::error, .message = "the request is larger than max_message_size"});
            break;
        }
        // Sent, or the queue stayed full (then a timeout, on time): wait for the outcome or the deadline.
        t.expires_at(time_point_of(deadline));
        co_await t.async_wait(tuple_awaitable);
        if (!*a) co_return destroyed();
    }
    co_return s.requests.finish(id);
}

node::send_result node::try_send(std::string_view target, std::uint16_t command, std::span<const std::byte> payload) {
    auto& s = *impl_;
    peer* p = s.table.find(target);
    if (!p || !p->online || p->draining || s.closed) return send_result::no_peer;
    if (payload.size() + rpc::msg_header > s.opts.channel.max_message_size) return send_result::too_large;
    if (p->ch->queued_bytes() >= s.opts.channel.send_buffer) return send_result::full;
    return s.send_message(*p, msg_kind::oneway, command, 0, payload) ? send_result::queued : send_result::no_peer;
}

awaitable<bool> node::send(std::string target, std::uint16_t command, bytes payload) {
    auto& s = *impl_;
    auto a = s.alive;
    while (true) {
        const send_result r = try_send(target, command, payload);
        if (r != send_result::full) co_return r == send_result::queued;
        co_await s.progress();  // an ack makes room; the peer going away or offline ends the wait too
        if (!*a) co_return false;
    }
}

bool node::usend(std::string_view target, std::uint16_t command, std::span<const std::byte> payload) {
    auto& s = *impl_;
    peer* p = s.table.find(target);
    if (!p || s.closed) return false;
    const std::size_t room = p->datagram - header_size - (s.auth ? tag_size : 0) - udata_frame_overhead;
    if (payload.size() + rpc::msg_header > room) return false;
    p->udata.push_back(rpc::encode_message(msg_kind::oneway, command, 0, payload));
    s.schedule_flush();
    return true;
}

awaitable<std::size_t> node::send_many(std::vector<std::string> targets, std::uint16_t command, bytes payload,
                                       std::size_t limit) {
    auto& s = *impl_;
    auto a = s.alive;
    struct delivery {
        std::string peer;
        std::uint64_t incarnation;
        std::uint64_t message;
    };
    std::vector<delivery> in_flight;
    std::size_t next = 0, acknowledged = 0;
    limit = std::max<std::size_t>(1, limit);
    while (next < targets.size() || !in_flight.empty()) {
        while (next < targets.size() && in_flight.size() < limit) {
            const std::string& target = targets[next++];
            peer* p = s.table.find(target);
            if (!p || !p->online || p->draining) continue;
            if (s.send_message(*p, msg_kind::oneway, command, 0, payload)) {
                in_flight.push_back({target, p->rec.incarnation, p->ch->messages_queued()});
            }
        }
        std::erase_if(in_flight, [&](const delivery& d) {
            peer* p = s.table.find(d.peer);
            if (!p || p->rec.incarnation != d.incarnation) return true;  // gone: not delivered
            if (p->ch->messages_acked() >= d.message) {
                ++acknowledged;
                return true;
            }
            return false;
        });
        if (in_flight.size() >= limit || (next == targets.size() && !in_flight.empty())) {
            co_await s.progress();  // an ack, or a peer gone
            if (!*a) co_return acknowledged;
        }
    }
    co_return acknowledged;
}

awaitable<std::size_t> node::usend_many(std::vector<std::string> targets, std::uint16_t command, bytes payload,
                                        std::size_t limit) {
    auto& s = *impl_;
    auto a = s.alive;
    std::size_t sent = 0, batch = 0;
    limit = std::max<std::size_t>(1, limit);
    for (const auto& target : targets) {
        if (usend(target, command, payload)) ++sent;
        if (++batch == limit) {
            batch = 0;
            s.flush_all();  // out of the socket before the next batch
            co_await asio::post(s.executor, asio::use_awaitable);
            if (!*a) co_return sent;
        }
    }
    co_return sent;
}

std::vector<peer_record> node::nodes() const { return impl_->table.members(); }
std::vector<peer_record> node::nodes_by_type(std::string_view type) const { return impl_->table.members_of_type(type); }

bool node::is_online(std::string_view id) const {
    if (id == impl_->self.id) return is_self_online();
    return impl_->table.is_online(id);
}

bool node::is_self_online() const noexcept { return impl_->started && !impl_->going_offline && !impl_->closed; }
void node::on_membership(std::function<void(const membership_event&)> f) { impl_->on_membership = std::move(f); }
std::vector<peer_status> node::status() const { return status_list(impl_->table, now_mono()); }
const node_counters& node::counters() const noexcept { return impl_->counters; }

awaitable<void> node::go_offline() {
    auto& s = *impl_;
    auto a = s.alive;
    if (s.going_offline || s.closed) co_return;
    s.going_offline = true;
    s.log("info", "mesh: going offline: refusing new requests, draining");
    for (auto& [id, p] : s.table.all()) p->bye = rpc::bye_draining;
    s.flush_all();
    // Drained: no handler running, nothing unacknowledged to an online peer. Acks, handlers
    // finishing and peers going offline are progress; the deadline bounds the wait.
    const mono_time deadline = now_mono() + s.opts.drain_timeout;
    while (!(s.handlers_running == 0 && s.table.idle()) && now_mono() < deadline) {
        co_await s.progress_until(deadline);
        if (!*a) co_return;
    }
    for (auto& [id, p] : s.table.all()) {
        s.requests.stop_to(id, p->rec.incarnation, "this node went offline");
        p->bye = rpc::bye_gone;
    }
    s.flush_all();
    s.close();
    s.log("info", "mesh: offline");
}

awaitable<std::optional<probe_result>> node::probe(std::string host, std::uint16_t port, milliseconds timeout, probe_mode mode) {
    auto& s = *impl_;
    auto a = s.alive;
    boost::system::error_code ec;
    const udp::endpoint to(asio::ip::make_address(host, ec), port);
    if (ec || !s.started || s.closed) co_return std::nullopt;
    std::uint64_t token = random_u64();
    auto& pending = s.probes[token];
    // The timer waits for the answer at most `timeout`; the answer cancels it.
    asio::steady_timer t(s.executor);
    pending.timer = &t;
    pending.sent = now_mono();
    packet_writer w = s.writer(0, s.opts.channel.max_datagram);
    switch (mode) {
        case probe_mode::anonymous: w.probe(frame_type::probe, token, "", ""); break;  // asks, does not join
        case probe_mode::join: w.probe(frame_type::probe, token, s.self.id, s.self.type); break;
        case probe_mode::visit: w.probe(frame_type::visit, token, s.self.id, s.self.type); break;
    }
    s.transmit(w, address_of(to), nullptr);
    s.io.send();
    t.expires_after(timeout);
    co_await t.async_wait(tuple_awaitable);
    if (!*a) co_return std::nullopt;
    auto result = std::move(pending.result);
    s.probes.erase(token);
    if (result && mode != probe_mode::anonymous && result->id != s.self.id) {
        // A visit is one-sided on both ends: neither becomes the other's member.
        s.add_peer({.id = result->id, .type = result->type, .host = to.address().to_string(), .port = port,
                    .incarnation = result->incarnation},
                   true, mode == probe_mode::visit);
        if (auto* p = s.table.find(result->id); p && p->visitor && mode == probe_mode::visit) p->visiting = true;
    }
    co_return result;
}

void node::peer_up(const peer_record& rec) { impl_->add_peer(rec, false); }
void node::peer_down(std::string_view id) { impl_->table.remove(id, now_mono()); }

}  // namespace meshmaster::mesh
