// The node: a thin Asio driver around the sans-I/O pieces (wire, packet_auth, channel). One
// socket, one timer for every channel's deadlines, datagrams read in batches and answered in one
// flush so that acknowledgements ride on responses.
#include <meshmaster/mesh/node.hpp>
#include <meshmaster/mesh/packet_auth.hpp>
#include <meshmaster/protocol/json_text.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/endian/conversion.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include <algorithm>
#include <array>
#include <deque>
#include <map>
#include <random>
#include <set>
#include <cerrno>
#include <cstring>
#include <netinet/udp.h>
#include <sys/socket.h>
#include <unistd.h>
#include <unordered_map>

namespace meshmaster::mesh {

namespace asio = boost::asio;
using asio::awaitable;
using asio::ip::udp;
using std::chrono::milliseconds;
using std::chrono::nanoseconds;
constexpr auto tuple_awaitable = asio::as_tuple(asio::use_awaitable);

std::string_view to_string(outcome::kind k) noexcept {
    switch (k) {
        case outcome::kind::response: return "response";
        case outcome::kind::error: return "error";
        case outcome::kind::timeout: return "timeout";
        case outcome::kind::stopped: return "stopped";
    }
    return "unknown";
}

namespace {

// Application messages, inside a channel message or an unreliable frame:
//   u8 kind · u16 LE command · u64 LE request id · payload
enum class msg_kind : std::uint8_t { request = 1, response = 2, error = 3, oneway = 4, stopped = 5 };
constexpr std::size_t msg_header = 11;
constexpr std::uint8_t bye_draining = 1;  // no new requests, please; answers still come
constexpr std::uint8_t bye_gone = 2;      // this incarnation is over

bytes encode_message(msg_kind kind, std::uint16_t command, std::uint64_t id, std::span<const std::byte> payload) {
    bytes m(msg_header + payload.size());
    m[0] = std::byte{static_cast<std::uint8_t>(kind)};
    boost::endian::store_little_u16(reinterpret_cast<unsigned char*>(m.data() + 1), command);
    boost::endian::store_little_u64(reinterpret_cast<unsigned char*>(m.data() + 3), id);
    if (!payload.empty()) std::memcpy(m.data() + msg_header, payload.data(), payload.size());
    return m;
}

std::span<const std::byte> as_bytes(std::string_view s) { return {reinterpret_cast<const std::byte*>(s.data()), s.size()}; }

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

mono_time now_mono() { return std::chrono::steady_clock::now().time_since_epoch(); }

}  // namespace

struct node::impl {
    struct pending_request {
        std::string peer;
        std::uint64_t incarnation = 0;
        std::optional<outcome> result;
        asio::steady_timer* timer = nullptr;
    };
    struct pending_probe {
        std::optional<probe_result> result;
        mono_time sent{};
        asio::steady_timer* timer = nullptr;
    };
    struct peer {
        peer_record rec;
        udp::endpoint endpoint;
        std::unique_ptr<channel> ch;
        replay_window replay;
        std::deque<bytes> udata;  // unreliable messages waiting for the next datagram
        bool online = true;       // discovery says it exists; silence past offline_after says not
        bool draining = false;    // it announced it goes offline
        bool learned = false;     // from a probe, not from discovery: forgotten once long silent
        bool visitor = false;     // learned while learn_from_probes is off, or from a visit: talks, but is no member
        bool visiting = false;    // we are its visitor (probe_mode::visit): our probes say so too
        std::size_t datagram = 1400;  // the datagram size used with this peer
        mono_time last_heard{};
        mono_time last_probe{};
        mono_time since{};  // when discovery (or a probe) made it a peer
        bool probe_due = false;
        std::optional<std::uint8_t> bye;  // to send in the next datagram
        std::uint64_t packets_in = 0, packets_out = 0, bytes_in = 0, bytes_out = 0;
        // Requests this node answered or is answering, by id: a retried request runs once.
        std::unordered_map<std::uint64_t, std::optional<bytes>> answered;
        std::deque<std::uint64_t> answered_order;
        std::deque<std::uint64_t> cached_order;  // ids whose answers are kept, oldest first
        std::size_t answered_bytes = 0;
    };

    impl(node& owner, asio::any_io_executor ex, node_options o)
        : self_node(owner), executor(ex), opts(std::move(o)), socket(ex), timer(ex), alive(std::make_shared<bool>(true)) {
        if (opts.id.empty()) opts.id = default_id();
        self.id = opts.id;
        self.type = opts.type;
        self.incarnation = random_u64();
        opts.channel.keyed = !opts.secret.empty();
    }
    ~impl() { *alive = false; }

    node& self_node;
    asio::any_io_executor executor;
    node_options opts;
    udp::socket socket;
    asio::steady_timer timer;
    std::optional<mono_time> timer_at;
    std::shared_ptr<bool> alive;
    peer_record self;
    std::unique_ptr<packet_auth> auth;
    std::map<std::string, std::unique_ptr<peer>, std::less<>> peers;
    // Peers discovery reported gone, kept a minute in case the same incarnation comes back.
    std::map<std::string, std::pair<std::unique_ptr<peer>, mono_time>, std::less<>> departed;
    static mono_time now_of() { return now_mono(); }
    std::unordered_map<std::uint64_t, peer*> by_incarnation;
    std::uint64_t peer_changes = 0;  // peers removed or replaced so far: a peer* held may be stale
    std::unordered_map<std::uint16_t, handler> handlers;
    std::unordered_map<std::uint16_t, async_handler> async_handlers;
    std::unordered_map<std::uint64_t, pending_request> requests;
    std::unordered_map<std::uint64_t, pending_probe> probes;
    std::vector<asio::steady_timer*> progress_waiters;  // woken on any acknowledgement progress
    std::function<void(const membership_event&)> on_membership;
    node_counters counters;
    std::uint64_t packet_number = 0;
    std::uint64_t next_request = 0;
    std::size_t handlers_running = 0;
    bool started = false;
    bool going_offline = false;
    bool closed = false;
    bool flush_posted = false;

    void log(std::string_view level, std::string_view message) const {
        if (opts.log) opts.log(level, message);
    }
    void emit(membership_event::kind k, const std::string& id) {
        if (on_membership) on_membership({k, id});
    }

    peer* find(std::string_view id) {
        auto it = peers.find(id);
        return it == peers.end() ? nullptr : it->second.get();
    }

    // --- output ---------------------------------------------------------------------------------

    // Datagrams leave in batches: each is built in a slot of out_storage, and one sendmmsg(2) per
    // flush (or per full batch) sends them all — one system call instead of one per datagram.
    // With UDP GSO, a run of datagrams to one peer (all of one size but the last, which is padded
    // to make it so) goes down the stack as one: the kernel cuts it, or the NIC does, or on
    // loopback and veth a receiver with GRO takes it whole.
    static constexpr std::size_t batch_max = 64;
    static constexpr std::size_t gso_max_segments = 64;    // UDP_MAX_SEGMENTS
    static constexpr std::size_t gso_max_bytes = 65000;    // one IP packet's worth
    std::vector<std::byte> out_storage;
    std::array<mmsghdr, batch_max> out_msgs{};
    std::array<iovec, batch_max> out_iov{};
    std::array<sockaddr_storage, batch_max> out_addr{};
    std::array<socklen_t, batch_max> out_addr_size{};
    std::array<peer*, batch_max> out_peer{};
    std::array<std::size_t, batch_max> group_first{}, group_size{};  // datagrams per mmsghdr
    std::array<std::array<char, CMSG_SPACE(sizeof(std::uint16_t))>, batch_max> out_cmsg{};
    std::size_t out_count = 0;
    bool gso = false;  // UDP_SEGMENT works here (probed at start; off after a refusal)
    bool gro = false;  // UDP_GRO is on: a read may hold several datagrams of one size

    // The largest datagram this node sends or takes: its configured size, or the loopback one.
    std::size_t slot_size() const { return std::max(opts.channel.max_datagram, opts.loopback_datagram); }

    packet_writer writer(std::uint64_t receiver, std::size_t size) {
        const std::size_t slot = slot_size();
        if (out_storage.size() < batch_max * slot) out_storage.resize(batch_max * slot);
        return packet_writer(std::span<std::byte>(out_storage).subspan(out_count * slot, size),
                             {.keyed = auth != nullptr, .sender = self.incarnation, .receiver = receiver, .number = ++packet_number});
    }

    // Whether datagrams of this size to one peer can go as one GSO send.
    bool gso_worth(std::size_t datagram) const { return gso && datagram * 2 <= gso_max_bytes; }

    // Queues the datagram `w` built (in the current slot) for `to`.
    void transmit(packet_writer& w, const udp::endpoint& to, peer* p) {
        auto d = w.finish();
        if (auth) auth->seal(d, self.incarnation);
        const std::size_t i = out_count++;
        out_iov[i] = {d.data(), d.size()};
        std::memcpy(&out_addr[i], to.data(), to.size());
        out_addr_size[i] = static_cast<socklen_t>(to.size());
        out_peer[i] = p;
        if (out_count == batch_max) send_batch();
    }

    // Groups datagrams from `from` on into mmsghdrs: a run to one address, each of the run's first
    // size but the last, within the GSO limits, is one; anything else goes alone.
    std::size_t build_groups(std::size_t from) {
        std::size_t m = 0;
        for (std::size_t i = from; i < out_count; ++m) {
            const std::size_t size = out_iov[i].iov_len;
            std::size_t n = 1, total = size;
            if (out_peer[i] && gso_worth(size)) {
                while (i + n < out_count && n < gso_max_segments && out_peer[i + n] == out_peer[i] &&
                       out_iov[i + n - 1].iov_len == size && out_iov[i + n].iov_len <= size &&
                       total + out_iov[i + n].iov_len <= gso_max_bytes && out_addr_size[i + n] == out_addr_size[i] &&
                       std::memcmp(&out_addr[i + n], &out_addr[i], out_addr_size[i]) == 0) {
                    total += out_iov[i + n].iov_len;
                    ++n;
                }
            }
            msghdr& h = out_msgs[m].msg_hdr;
            h = {};
            h.msg_name = &out_addr[i];
            h.msg_namelen = out_addr_size[i];
            h.msg_iov = &out_iov[i];
            h.msg_iovlen = n;
            if (n > 1) {
                h.msg_control = out_cmsg[m].data();
                h.msg_controllen = out_cmsg[m].size();
                cmsghdr* c = CMSG_FIRSTHDR(&h);
                c->cmsg_level = SOL_UDP;
                c->cmsg_type = UDP_SEGMENT;
                c->cmsg_len = CMSG_LEN(sizeof(std::uint16_t));
                const auto segment = static_cast<std::uint16_t>(size);
                std::memcpy(CMSG_DATA(c), &segment, sizeof segment);
            }
            group_first[m] = i;
            group_size[m] = n;
            i += n;
        }
        return m;
    }

    void send_batch() {
        std::size_t groups = build_groups(0), done = 0;
        while (done < groups) {
            const int r = ::sendmmsg(socket.native_handle(), out_msgs.data() + done, static_cast<unsigned>(groups - done), 0);
            if (r < 0) {
                if (errno == EINTR) continue;
                // A full socket buffer drops the rest like the network would: the channels repair
                // reliable data, and unreliable data was allowed to be lost.
                if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) {
                    for (std::size_t g = done; g < groups; ++g) counters.send_errors += group_size[g];
                    break;
                }
                // A device without checksum offload, or a path MTU below the segment size, refuses
                // GSO: from here on every datagram goes alone.
                if (group_size[done] > 1 && (errno == EIO || errno == EINVAL)) {
                    gso = false;
                    log("warn", "mesh: UDP GSO refused (" + std::string(std::strerror(errno)) + "); sending datagrams one by one");
                    groups = build_groups(group_first[done]);  // what is left, regrouped from the first mmsghdr
                    done = 0;
                    continue;
                }
                // Any other error is this message's own (a firewall's EPERM, an unreachable
                // address): it alone is dropped, and the batch goes on.
                counters.send_errors += group_size[done];
                ++done;
                continue;
            }
            for (std::size_t g = done; g < done + static_cast<std::size_t>(r); ++g) {
                if (group_size[g] > 1) ++counters.gso_sends;
                for (std::size_t i = group_first[g]; i < group_first[g] + group_size[g]; ++i) {
                    if (peer* p = out_peer[i]) {
                        ++p->packets_out;
                        p->bytes_out += out_iov[i].iov_len;
                    }
                }
            }
            done += static_cast<std::size_t>(r);
        }
        out_count = 0;
    }

    bool wants_output(peer& p, mono_time now) const {
        return p.ch->wants_output(now) || !p.udata.empty() || p.probe_due || p.bye;
    }

    void flush_peer(peer& p, mono_time now) {
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
            if (more && gso_worth(p.datagram)) w.pad();
            transmit(w, p.endpoint, &p);
        }
    }

    void flush_all() {
        flush_posted = false;
        if (closed) return;
        const mono_time now = now_mono();
        for (auto& [id, p] : peers) flush_peer(*p, now);
        send_batch();
        arm_timer(now);
    }

    void schedule_flush() {
        if (flush_posted || closed) return;
        flush_posted = true;
        asio::post(executor, [this, a = alive] {
            if (*a) flush_all();
        });
    }

    // One timer for every deadline: channels' (acks, retransmissions, probes) and keepalives.
    void arm_timer(mono_time now) {
        std::optional<mono_time> next;
        auto earliest = [&](mono_time t) { next = next ? std::min(*next, t) : t; };
        for (auto& [id, p] : peers) {
            if (auto d = p->ch->next_deadline()) earliest(*d);
            if (!p->draining) earliest(std::max(p->last_heard, p->last_probe) + opts.keepalive);
        }
        if (!next) return;
        if (timer_at && *timer_at <= *next && *timer_at > now) return;  // already armed earlier
        timer_at = std::max(*next, now);
        timer.expires_at(std::chrono::steady_clock::time_point(std::chrono::duration_cast<std::chrono::steady_clock::duration>(*timer_at)));
        timer.async_wait([this, a = alive](boost::system::error_code ec) {
            if (!*a || ec == asio::error::operation_aborted) return;
            timer_at.reset();
            on_timer();
        });
    }

    void on_timer() {
        const mono_time now = now_mono();
        std::vector<std::string> forget, forget_visitors;
        for (auto& [id, p] : peers) {
            const auto silent = now - std::max(p->last_heard, p->since);
            // A visitor that stopped answering left without a goodbye (a CLI killed, say).
            if (p->visitor && silent >= opts.offline_after) {
                forget_visitors.push_back(id);
            } else if (p->learned && !p->online && silent >= 5 * opts.offline_after) {
                forget.push_back(id);
            }
            if (auto d = p->ch->next_deadline(); d && *d <= now) p->ch->on_timer(now);
            const mono_time quiet_since = std::max(p->last_heard, p->last_probe);
            if (!p->draining && now - quiet_since >= opts.keepalive) p->probe_due = true;
            // Silent for offline_after (since it was last heard, or since discovery reported it
            // if it never was): offline. Probes keep going, so it comes back when it answers.
            if (p->online && now - std::max(p->last_heard, p->since) >= opts.offline_after) set_online(*p, false);
        }
        for (const auto& id : forget) self_node.peer_down(id);
        for (const auto& id : forget_visitors) forget_visitor(id);
        std::erase_if(departed, [&](const auto& d) { return now - d.second.second > std::chrono::minutes(1); });
        flush_all();
    }

    void set_online(peer& p, bool online) {
        if (p.online == online) return;
        p.online = online;
        log("info", fmt_peer(p, online ? " is online" : " is offline"));
        emit(online ? membership_event::kind::online : membership_event::kind::offline, p.rec.id);
    }

    static std::string fmt_peer(const peer& p, std::string_view what) { return "mesh peer " + p.rec.id + std::string(what); }

    void wake_progress() {
        auto waiters = std::exchange(progress_waiters, {});
        for (auto* t : waiters) t->cancel();
    }

    // Waits until woken by acknowledgement progress or `at_most` passes.
    awaitable<void> wait_progress(milliseconds at_most) {
        asio::steady_timer t(executor);
        t.expires_after(at_most);
        progress_waiters.push_back(&t);
        co_await t.async_wait(tuple_awaitable);
        std::erase(progress_waiters, &t);
    }

    // --- messages -------------------------------------------------------------------------------

    bool send_message(peer& p, msg_kind kind, std::uint16_t command, std::uint64_t id, std::span<const std::byte> payload) {
        std::array<std::byte, msg_header> head;
        head[0] = std::byte{static_cast<std::uint8_t>(kind)};
        boost::endian::store_little_u16(reinterpret_cast<unsigned char*>(head.data() + 1), command);
        boost::endian::store_little_u64(reinterpret_cast<unsigned char*>(head.data() + 3), id);
        const auto st = p.ch->send(head, payload);
        if (st != send_status::queued) return false;
        schedule_flush();
        return true;
    }

    void complete_request(std::uint64_t id, const peer& p, outcome o) {
        auto it = requests.find(id);
        if (it == requests.end() || it->second.peer != p.rec.id || it->second.incarnation != p.rec.incarnation || it->second.result) return;
        it->second.result = std::move(o);
        if (it->second.timer) it->second.timer->cancel();
    }

    void stop_requests_to(const std::string& id, std::uint64_t incarnation, const std::string& why) {
        for (auto& [rid, r] : requests) {
            if (r.peer == id && r.incarnation == incarnation && !r.result) {
                r.result = outcome{.what = outcome::kind::stopped, .message = why};
                if (r.timer) r.timer->cancel();
            }
        }
    }

    // Requests answered (or being answered) per peer, so that a retry runs no handler twice: the
    // last 4096 ids, with their answers while those stay under 1 MiB in all (a retry of one whose
    // answer was let go gets none and times out — the handler still ran once).
    static constexpr std::size_t answers_kept = 4096;
    static constexpr std::size_t answer_bytes_kept = std::size_t{1} << 20;

    void remember_answer(peer& p, std::uint64_t id, std::optional<bytes> answer) {
        const std::size_t size = answer ? answer->size() : 0;
        auto [it, fresh] = p.answered.try_emplace(id, std::nullopt);
        if (it->second) p.answered_bytes -= it->second->size();
        it->second = size <= answer_bytes_kept ? std::move(answer) : std::nullopt;
        if (it->second) p.answered_bytes += size;
        if (fresh) p.answered_order.push_back(id);
        if (it->second) p.cached_order.push_back(id);
        while (p.answered_bytes > answer_bytes_kept && !p.cached_order.empty()) {
            const std::uint64_t old = p.cached_order.front();
            p.cached_order.pop_front();
            auto kept = p.answered.find(old);
            if (old != id && kept != p.answered.end() && kept->second) {
                p.answered_bytes -= kept->second->size();
                kept->second.reset();
            }
        }
        if (p.answered_order.size() > answers_kept) {
            if (auto oldest = p.answered.find(p.answered_order.front()); oldest != p.answered.end()) {
                if (oldest->second) p.answered_bytes -= oldest->second->size();
                p.answered.erase(oldest);
            }
            p.answered_order.pop_front();
            while (!p.cached_order.empty() && !p.answered.contains(p.cached_order.front())) p.cached_order.pop_front();
        }
    }

    void answer(const std::string& peer_id, std::uint64_t incarnation, std::uint64_t id, std::uint16_t command, const reply& r) {
        peer* p = find(peer_id);
        if (!p || p->rec.incarnation != incarnation) return;  // it left or restarted meanwhile
        if (r.what == reply::kind::none) {
            if (auto it = p->answered.find(id); it != p->answered.end()) {
                if (it->second) p->answered_bytes -= it->second->size();
                p->answered.erase(it);
            }
            return;
        }
        bytes m = r.what == reply::kind::response ? encode_message(msg_kind::response, command, id, r.body)
                                                   : encode_message(msg_kind::error, command, id, as_bytes(r.message));
        remember_answer(*p, id, m);
        if (p->ch->send(m) == send_status::queued) schedule_flush();
    }

    void dispatch(peer& p, std::span<const std::byte> m) {
        if (m.size() < msg_header) {
            ++counters.bad_frame;
            return;
        }
        const auto kind = static_cast<msg_kind>(m[0]);
        const auto command = boost::endian::load_little_u16(reinterpret_cast<const unsigned char*>(m.data() + 1));
        const auto id = boost::endian::load_little_u64(reinterpret_cast<const unsigned char*>(m.data() + 3));
        const auto payload = m.subspan(msg_header);
        switch (kind) {
            case msg_kind::response:
                complete_request(id, p, {.what = outcome::kind::response, .body = bytes(payload.begin(), payload.end())});
                return;
            case msg_kind::error:
                complete_request(id, p, {.what = outcome::kind::error,
                                         .message = std::string(reinterpret_cast<const char*>(payload.data()), payload.size())});
                return;
            case msg_kind::stopped:
                complete_request(id, p, {.what = outcome::kind::stopped, .message = "the peer is going offline"});
                return;
            case msg_kind::request:
            case msg_kind::oneway: break;
            default: ++counters.bad_frame; return;
        }
        const bool is_request = kind == msg_kind::request;
        if (is_request) {
            if (going_offline) {
                send_message(p, msg_kind::stopped, command, id, {});
                return;
            }
            if (auto done = p.answered.find(id); done != p.answered.end()) {
                // A retry: the handler ran (or runs) already. Send the answer again if there is one.
                if (done->second && p.ch->send(*done->second) == send_status::queued) schedule_flush();
                return;
            }
            remember_answer(p, id, std::nullopt);
        }
        if (auto h = handlers.find(command); h != handlers.end()) {
            const reply r = h->second(incoming{.from = p.rec.id, .command = command, .payload = payload, .is_request = is_request});
            if (is_request) answer(p.rec.id, p.rec.incarnation, id, command, r);
            return;
        }
        if (auto h = async_handlers.find(command); h != async_handlers.end()) {
            ++handlers_running;
            asio::co_spawn(executor, run_async(h->second, p.rec.id, p.rec.incarnation, id, command,
                                               bytes(payload.begin(), payload.end()), is_request),
                           asio::detached);
            return;
        }
        if (is_request) answer(p.rec.id, p.rec.incarnation, id, command, reply::fail("no handler for command " + std::to_string(command)));
    }

    awaitable<void> run_async(async_handler h, std::string peer_id, std::uint64_t incarnation, std::uint64_t id,
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

    // --- input ----------------------------------------------------------------------------------

    void count(drop_reason why) {
        switch (why) {
            case drop_reason::truncated: ++counters.truncated; break;
            case drop_reason::bad_magic: ++counters.bad_magic; break;
            case drop_reason::bad_frame: ++counters.bad_frame; break;
            case drop_reason::bad_tag: ++counters.bad_tag; break;
            case drop_reason::replayed: ++counters.replayed; break;
            case drop_reason::wrong_receiver: ++counters.wrong_receiver; break;
        }
    }

    void answer_probe(std::uint64_t token, std::uint64_t to_incarnation, const udp::endpoint& to) {
        packet_writer w = writer(to_incarnation, opts.channel.max_datagram);
        if (w.probe(frame_type::reply, token, self.id, self.type)) transmit(w, to, nullptr);
    }

    void on_datagram(std::span<const std::byte> d, const udp::endpoint& sender, mono_time now) {
        drop_reason why{};
        const auto h = read_header(d, why);
        if (!h) return count(why);
        if (h->receiver != 0 && h->receiver != self.incarnation) return count(drop_reason::wrong_receiver);
        if (auth ? !auth->verify(d, *h) : h->keyed) return count(drop_reason::bad_tag);
        peer* p = nullptr;
        if (auto it = by_incarnation.find(h->sender); it != by_incarnation.end()) p = it->second;
        if (h->receiver == 0 || !p) {
            // Not (yet) a peer of ours: it may only ask who we are, or answer our probe.
            handle_stranger(d, *h, sender, now);
            return;
        }
        if (!p->replay.accept(h->number)) return count(drop_reason::replayed);
        ++p->packets_in;
        p->bytes_in += d.size();
        p->last_heard = now;
        if (!p->online && !p->draining) set_online(*p, true);
        if (p->endpoint != sender) p->endpoint = sender;  // it moved (NAT rebinding, a new address)
        const std::uint64_t acked_before = p->ch->messages_acked();
        const std::uint64_t queued_before = p->ch->queued_bytes();
        frame_reader r(d);
        frame_reader::frame f;
        // A handler may make the peer go away (peer_down from inside it), and p with it.
        const std::uint64_t changes = peer_changes;
        const auto gone = [&] { return peer_changes != changes; };
        while (r.next(f, p->ch->data_reference(), p->ch->ack_reference())) {
            switch (f.type) {
                case frame_type::ack: p->ch->on_ack(f.ack, now); break;
                case frame_type::data: {
                    // Small messages go to their handler straight from the datagram, as they
                    // come: no copy, and what they complete is delivered before the next frame.
                    const auto in = p->ch->on_data_direct(f.data, now);
                    if (!in.ok) {
                        ++counters.bad_frame;
                        log("warn", fmt_peer(*p, " broke the protocol (a segment that does not fit its message)"));
                    }
                    if (in.message) dispatch(*p, *in.message);
                    if (!gone() && !deliver_ready(*p, gone)) return;
                    break;
                }
                case frame_type::udata: dispatch(*p, f.bytes); break;
                case frame_type::probe:
                case frame_type::visit: answer_probe(f.token, h->sender, sender); break;
                case frame_type::reply: complete_probe(f, *h, now); break;
                case frame_type::bye: on_bye(*p, f.reason); break;
                case frame_type::padding: break;  // never yielded: it ends the frames
            }
            if (gone()) return;
        }
        if (r.error()) ++counters.bad_frame;
        if (p->ch->messages_acked() != acked_before || p->ch->queued_bytes() != queued_before) wake_progress();
    }

    // Hands the channel's complete messages to their handlers; false if the peer went away.
    template <class Gone>
    bool deliver_ready(peer& p, const Gone& gone) {
        while (p.ch->messages_ready() > 0) {
            auto m = p.ch->take_message();
            dispatch(p, *m);
            if (gone()) return false;
            p.ch->recycle(std::move(*m));
        }
        return true;
    }

    void handle_stranger(std::span<const std::byte> d, const packet_header& h, const udp::endpoint& sender, mono_time now) {
        frame_reader r(d);
        frame_reader::frame f;
        bool useful = false;
        while (r.next(f, 0, 0)) {
            if (f.type == frame_type::probe || f.type == frame_type::visit) {
                // A node that names itself joins (static discovery: knowing one address is enough
                // for both to see each other), or visits (a tool: it may talk, it is no member); an
                // anonymous pinger only gets the answer.
                if (!f.id.empty() && f.id != self.id) {
                    add_peer({.id = std::string(f.id), .type = std::string(f.node_type),
                              .host = sender.address().to_string(), .port = sender.port(), .incarnation = h.sender},
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

    void complete_probe(const frame_reader::frame& f, const packet_header& h, mono_time now) {
        auto it = probes.find(f.token);
        if (it == probes.end() || it->second.result) return;
        it->second.result = probe_result{.id = std::string(f.id), .type = std::string(f.node_type),
                                         .incarnation = h.sender, .rtt = now - it->second.sent};
        if (it->second.timer) it->second.timer->cancel();
    }

    void on_bye(peer& p, std::uint8_t reason) {
        if (p.visitor && reason != bye_draining) {
            forget_visitor(p.rec.id);  // its visit is over: nothing to keep
            return;
        }
        if (reason == bye_draining) {
            if (!p.draining) log("info", fmt_peer(p, " is going offline"));
            p.draining = true;
            set_online(p, false);
            return;
        }
        p.draining = true;
        set_online(p, false);
        stop_requests_to(p.rec.id, p.rec.incarnation, "the peer went offline");
        // Its incarnation is over: nothing more will be acknowledged. A new one comes through
        // discovery (peer_up with a new incarnation).
        p.ch = std::make_unique<channel>(channel_config_for(p.endpoint));
        p.udata.clear();
        wake_progress();
    }

    // Datagrams arrive in batches too: wait until the socket is readable, then recvmmsg(2) what
    // is there (a few batches at most, so that timers and output get their turn), then one flush
    // answers them all — acknowledgements ride on the responses the handlers just queued.
    static constexpr std::size_t in_batch = 32;
    std::vector<std::byte> in_storage;
    std::array<mmsghdr, in_batch> in_msgs{};
    std::array<iovec, in_batch> in_iov{};
    std::array<sockaddr_storage, in_batch> in_addr{};

    std::array<std::array<char, CMSG_SPACE(sizeof(int))>, in_batch> in_cmsg{};

    std::size_t receive_batch(mono_time now) {
        // With GRO a read may hold up to 64 KiB of datagrams of one size.
        const std::size_t slot = std::max<std::size_t>(slot_size(), gro ? 65536 : 2048);
        if (in_storage.size() < in_batch * slot) in_storage.resize(in_batch * slot);
        for (std::size_t i = 0; i < in_batch; ++i) {
            in_iov[i] = {in_storage.data() + i * slot, slot};
            in_msgs[i].msg_hdr = {};
            in_msgs[i].msg_hdr.msg_name = &in_addr[i];
            in_msgs[i].msg_hdr.msg_namelen = sizeof(sockaddr_storage);
            in_msgs[i].msg_hdr.msg_iov = &in_iov[i];
            in_msgs[i].msg_hdr.msg_iovlen = 1;
            if (gro) {
                in_msgs[i].msg_hdr.msg_control = in_cmsg[i].data();
                in_msgs[i].msg_hdr.msg_controllen = in_cmsg[i].size();
            }
        }
        const int r = ::recvmmsg(socket.native_handle(), in_msgs.data(), in_batch, MSG_DONTWAIT, nullptr);
        if (r <= 0) return 0;
        for (int i = 0; i < r && !closed; ++i) {
            auto& h = in_msgs[static_cast<std::size_t>(i)].msg_hdr;
            if (h.msg_flags & MSG_TRUNC) {  // larger than our datagram size: not from a peer of ours
                ++counters.truncated;
                continue;
            }
            udp::endpoint sender;
            std::memcpy(sender.data(), h.msg_name, h.msg_namelen);
            sender.resize(h.msg_namelen);
            const std::span<const std::byte> read(static_cast<const std::byte*>(h.msg_iov->iov_base),
                                                  in_msgs[static_cast<std::size_t>(i)].msg_len);
            // Coalesced by GRO: the datagrams are `segment` bytes each, the last maybe fewer.
            std::size_t segment = read.size();
            for (cmsghdr* c = gro ? CMSG_FIRSTHDR(&h) : nullptr; c; c = CMSG_NXTHDR(&h, c)) {
                if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO) {
                    int size = 0;
                    std::memcpy(&size, CMSG_DATA(c), sizeof size);
                    if (size > 0) segment = static_cast<std::size_t>(size);
                }
            }
            if (segment < read.size()) ++counters.gro_reads;
            for (std::size_t at = 0; at < read.size() && !closed; at += segment) {
                on_datagram(read.subspan(at, std::min(segment, read.size() - at)), sender, now);
            }
        }
        return static_cast<std::size_t>(r);
    }

    // A few batches at most, so that timers and output get their turn; then one flush.
    std::size_t receive_and_flush() {
        const mono_time now = now_mono();
        std::size_t received = 0;
        for (int round = 0; round < 8 && !closed; ++round) {
            const std::size_t n = receive_batch(now);
            received += n;
            if (n < in_batch) break;
        }
        if (received > 0 && !closed) flush_all();
        return received;
    }

    awaitable<void> receive_loop() {
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
            // Busy polling: read again after every turn of the executor (the application's
            // continuations, timers, flushes run in between) until quiet for busy_poll.
            auto quiet_until = std::chrono::steady_clock::now() + opts.busy_poll;
            while (!closed && std::chrono::steady_clock::now() < quiet_until) {
                co_await asio::post(executor, asio::use_awaitable);
                if (!*a) co_return;
                if (!closed && receive_and_flush() > 0) quiet_until = std::chrono::steady_clock::now() + opts.busy_poll;
                if (!*a) co_return;
            }
        }
    }

    // Probes every address of opts.static_peers (announcing this node, so it learns us) and makes
    // each answerer a member; quickly until all answered, then every offline_after.
    awaitable<void> static_discovery() {
        auto a = alive;
        asio::steady_timer pause(executor);
        while (!closed) {
            bool all = true;
            for (const std::string& address : opts.static_peers) {
                const auto colon = address.rfind(':');
                boost::system::error_code ec;
                const auto ip = asio::ip::make_address(address.substr(0, colon), ec);
                if (colon == std::string::npos || ec) {
                    log("warn", "mesh: static peer '" + address + "' is not IP:PORT");
                    continue;
                }
                const auto port = static_cast<std::uint16_t>(std::strtoul(address.c_str() + colon + 1, nullptr, 10));
                auto r = co_await self_node.probe(ip.to_string(), port, milliseconds(250), probe_mode::join);
                if (!*a || closed) co_return;
                if (!r) {
                    all = false;
                    continue;
                }
                if (r->id != self.id) {
                    self_node.peer_up({.id = r->id, .type = r->type, .host = ip.to_string(), .port = port,
                                       .incarnation = r->incarnation, .values = {}});
                }
            }
            pause.expires_after(all ? opts.offline_after : milliseconds(500));
            co_await pause.async_wait(tuple_awaitable);
            if (!*a) co_return;
        }
    }

    // A peer reported by discovery (peer_up) or by its own probe (from_probe). One found by probing
    // (static discovery) that has been silent for long is forgotten. A node that only visits (its
    // probe says so: the CLI's `mesh nodes`), or any prober while learn_from_probes is off, is a
    // visitor: it may talk to this node, but is no member — not in nodes(), not in the status list,
    // no membership events — and it is forgotten when it says goodbye or falls silent.
    void add_peer(const peer_record& rec, bool from_probe, bool visiting = false) {
        if (rec.id == self.id || rec.incarnation == 0) return;
        const bool visitor = from_probe && (visiting || !opts.learn_from_probes);
        if (auto* p = find(rec.id)) {
            if (p->rec.incarnation == rec.incarnation) {
                if (visitor) return;  // a probe from a peer discovery already reported: nothing new
                const bool moved = p->rec.host != rec.host || p->rec.port != rec.port;
                p->rec = rec;
                if (moved) p->endpoint = endpoint_of(rec);
                if (!from_probe) p->learned = false;  // discovery reports it: not forgotten when silent
                if (p->visitor) {  // discovery now reports it: a member from here on
                    p->visitor = false;
                    emit(membership_event::kind::join, rec.id);
                    emit(membership_event::kind::online, rec.id);
                }
                return;
            }
            // Restarted: the old incarnation's requests will never be answered.
            stop_requests_to(rec.id, p->rec.incarnation, "the peer restarted");
            by_incarnation.erase(p->rec.incarnation);
            ++peer_changes;
            log("info", "mesh peer " + rec.id + " restarted");
            peers[rec.id] = make_peer(rec);
        } else if (auto gone = departed.find(rec.id); gone != departed.end() && gone->second.first->rec.incarnation == rec.incarnation) {
            auto back = std::move(gone->second.first);
            departed.erase(gone);
            back->rec = rec;
            back->learned = from_probe;
            peers.emplace(rec.id, std::move(back));
            log("info", "mesh peer " + rec.id + " is back");
            emit(membership_event::kind::join, rec.id);
            emit(membership_event::kind::online, rec.id);
        } else {
            departed.erase(rec.id);
            auto fresh = make_peer(rec);
            fresh->visitor = visitor;
            fresh->learned = from_probe;
            peers.emplace(rec.id, std::move(fresh));
            if (!visitor) {
                log("info", "mesh peer " + rec.id + " joined (" + rec.host + ":" + std::to_string(rec.port) + ")");
                emit(membership_event::kind::join, rec.id);
                emit(membership_event::kind::online, rec.id);
            }
        }
        by_incarnation[rec.incarnation] = find(rec.id);
        wake_progress();
        schedule_flush();
    }

    // A visitor leaves no trace: no events, no place among the departed.
    void forget_visitor(std::string id) {
        auto it = peers.find(id);
        if (it == peers.end() || !it->second->visitor) return;
        stop_requests_to(id, it->second->rec.incarnation, "the visitor left");
        by_incarnation.erase(it->second->rec.incarnation);
        ++peer_changes;
        peers.erase(it);
        wake_progress();
    }

    udp::endpoint endpoint_of(const peer_record& rec) {
        boost::system::error_code ec;
        const auto address = asio::ip::make_address(rec.host, ec);
        if (ec) log("warn", "mesh peer " + rec.id + ": '" + rec.host + "' is not an IP address");
        return udp::endpoint(address, rec.port);
    }

    std::unique_ptr<peer> make_peer(const peer_record& rec) {
        auto p = std::make_unique<peer>();
        p->rec = rec;
        p->since = now_mono();
        p->endpoint = endpoint_of(rec);
        const channel_config cfg = channel_config_for(p->endpoint);
        p->datagram = cfg.max_datagram;
        p->ch = std::make_unique<channel>(cfg);
        return p;
    }

    // A peer on this host (loopback) gets loopback-sized datagrams: no MTU there worth the name,
    // and every datagram costs a trip through the whole network stack.
    channel_config channel_config_for(const udp::endpoint& e) const {
        channel_config cfg = opts.channel;
        if (opts.loopback_datagram > 0 && e.address().is_loopback()) cfg.max_datagram = opts.loopback_datagram;
        return cfg;
    }
};

node::node(asio::any_io_executor executor, node_options options)
    : impl_(std::make_unique<impl>(*this, std::move(executor), std::move(options))) {
    impl_->handlers[status_command] = [this](const incoming&) {
        const std::string text = status_json();
        return reply::respond(as_bytes(text));
    };
}

node::~node() {
    auto& s = *impl_;
    s.closed = true;
    for (auto& [id, r] : s.requests) {
        if (!r.result) r.result = outcome{.what = outcome::kind::stopped, .message = "the node was destroyed"};
        if (r.timer) r.timer->cancel();
    }
    boost::system::error_code ignored;
    s.socket.close(ignored);
    s.timer.cancel();
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
    if (s.opts.udp_offload) {
        const int zero = 0, one = 1;
        s.gso = ::setsockopt(fd, SOL_UDP, UDP_SEGMENT, &zero, sizeof zero) == 0;
        s.gro = ::setsockopt(fd, SOL_UDP, UDP_GRO, &one, sizeof one) == 0;
    }
    ec.clear();
    s.self.host = address.to_string();
    s.self.port = s.socket.local_endpoint().port();
    s.started = true;
    asio::co_spawn(s.executor, s.receive_loop(), asio::detached);
    if (!s.opts.static_peers.empty()) asio::co_spawn(s.executor, s.static_discovery(), asio::detached);
    return {};
}

std::uint16_t node::port() const noexcept { return impl_->self.port; }
const peer_record& node::self() const noexcept { return impl_->self; }
void node::set_type(std::string type) { impl_->self.type = impl_->opts.type = std::move(type); }
void node::set_value(std::string key, std::string value) { impl_->self.values[std::move(key)] = std::move(value); }

std::optional<std::string> node::value(std::string_view node, std::string_view key) const {
    const peer_record* rec = node == impl_->self.id ? &impl_->self : nullptr;
    if (!rec) {
        auto it = impl_->peers.find(node);
        if (it == impl_->peers.end()) return std::nullopt;
        rec = &it->second->rec;
    }
    auto v = rec->values.find(std::string(key));
    if (v == rec->values.end()) return std::nullopt;
    return v->second;
}

std::string node::status_json() const {
    namespace json = boost::json;
    auto record = [](const peer_record& r) {
        json::object o{{"id", r.id}, {"type", r.type}, {"host", r.host}, {"port", r.port},
                       {"incarnation", std::to_string(r.incarnation)}};
        json::object values;
        for (const auto& [k, v] : r.values) values[k] = v;
        o["values"] = std::move(values);
        return o;
    };
    json::array peers;
    std::uint64_t visitors = 0;
    for (const auto& st : status()) {
        // Visitors (tools such as the CLI asking for this very list) are no part of the mesh.
        if (!st.member) {
            ++visitors;
            continue;
        }
        json::object o = record(st.record);
        o["member"] = st.member;
        o["online"] = st.online;
        o["rtt_us"] = st.rtt ? json::value(std::chrono::duration<double, std::micro>(*st.rtt).count()) : json::value(nullptr);
        o["loss"] = st.loss;
        o["packets_in"] = st.packets_in;
        o["packets_out"] = st.packets_out;
        o["bytes_in"] = st.bytes_in;
        o["bytes_out"] = st.bytes_out;
        o["messages_in"] = st.messages_in;
        o["messages_out"] = st.messages_out;
        o["last_heard_ms"] = st.last_heard.count();
        o["retransmitted"] = st.retransmitted;
        o["timeouts"] = st.timeouts;
        o["duplicates_dropped"] = st.duplicates_dropped;
        o["beyond_window_dropped"] = st.beyond_window_dropped;
        peers.push_back(std::move(o));
    }
    const auto& c = impl_->counters;
    json::object dropped{{"truncated", c.truncated}, {"bad_magic", c.bad_magic}, {"bad_frame", c.bad_frame},
                         {"bad_tag", c.bad_tag}, {"replayed", c.replayed}, {"wrong_receiver", c.wrong_receiver},
                         {"unknown_sender", c.unknown_sender}, {"send_errors", c.send_errors}};
    json::object self = record(impl_->self);
    self["online"] = is_self_online();
    self["authenticated"] = impl_->auth != nullptr;
    self["offload"] = json::object{{"gso", impl_->gso}, {"gro", impl_->gro}, {"gso_sends", c.gso_sends},
                                   {"gro_reads", c.gro_reads}};
    return protocol::json_text(json::object{
        {"self", std::move(self)}, {"peers", std::move(peers)}, {"visitors", visitors}, {"dropped", std::move(dropped)}});
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
    if (s.going_offline || s.closed) co_return outcome{.what = outcome::kind::stopped, .message = "this node is going offline"};
    impl::peer* p = s.find(target);
    if (!p) co_return outcome{.what = outcome::kind::stopped, .message = "unknown node " + target};
    if (p->draining) co_return outcome{.what = outcome::kind::stopped, .message = "the peer is going offline"};
    const std::uint64_t id = ++s.next_request;
    auto& pending = s.requests[id];
    pending.peer = target;
    pending.incarnation = p->rec.incarnation;
    asio::steady_timer t(s.executor);
    pending.timer = &t;
    const milliseconds each = timeout.value_or(s.opts.request_timeout);
    for (unsigned attempt = 0; attempt <= retries; ++attempt) {
        p = s.find(target);
        if (!p || p->rec.incarnation != pending.incarnation) {
            pending.result = outcome{.what = outcome::kind::stopped, .message = "the peer went away"};
            break;
        }
        // Behind a full queue the request waits for room, within its time.
        const auto deadline = std::chrono::steady_clock::now() + each;
        while (p->ch->queued_bytes() >= s.opts.channel.send_buffer && std::chrono::steady_clock::now() < deadline) {
            co_await s.wait_progress(milliseconds(20));
            if (!*a) co_return outcome{.what = outcome::kind::stopped, .message = "the node was destroyed"};
            p = s.find(target);
            if (!p || p->rec.incarnation != pending.incarnation) break;
        }
        if (!p || p->rec.incarnation != pending.incarnation) {
            pending.result = outcome{.what = outcome::kind::stopped, .message = "the peer went away"};
            break;
        }
        if (!s.send_message(*p, msg_kind::request, command, id, payload)) {
            if (payload.size() + msg_header > s.opts.channel.max_message_size) {
                pending.result = outcome{.what = outcome::kind::error, .message = "the request is larger than max_message_size"};
                break;
            }
            t.expires_at(deadline);  // the queue stayed full: a timeout, on time
        } else {
            t.expires_at(deadline);
        }
        co_await t.async_wait(tuple_awaitable);
        if (!*a) co_return outcome{.what = outcome::kind::stopped, .message = "the node was destroyed"};
        if (pending.result) break;
    }
    outcome o = pending.result.value_or(outcome{.what = outcome::kind::timeout});
    s.requests.erase(id);
    co_return o;
}

node::send_result node::try_send(std::string_view target, std::uint16_t command, std::span<const std::byte> payload) {
    auto& s = *impl_;
    impl::peer* p = s.find(target);
    if (!p || !p->online || p->draining || s.closed) return send_result::no_peer;
    if (payload.size() + msg_header > s.opts.channel.max_message_size) return send_result::too_large;
    if (p->ch->queued_bytes() >= s.opts.channel.send_buffer) return send_result::full;
    return s.send_message(*p, msg_kind::oneway, command, 0, payload) ? send_result::queued : send_result::no_peer;
}

awaitable<bool> node::send(std::string target, std::uint16_t command, bytes payload) {
    auto& s = *impl_;
    auto a = s.alive;
    while (true) {
        const send_result r = try_send(target, command, payload);
        if (r != send_result::full) co_return r == send_result::queued;
        co_await s.wait_progress(milliseconds(50));
        if (!*a) co_return false;
    }
}

bool node::usend(std::string_view target, std::uint16_t command, std::span<const std::byte> payload) {
    auto& s = *impl_;
    impl::peer* p = s.find(target);
    if (!p || s.closed) return false;
    const std::size_t room = p->datagram - header_size - (s.auth ? tag_size : 0) - udata_frame_overhead;
    if (payload.size() + msg_header > room) return false;
    p->udata.push_back(encode_message(msg_kind::oneway, command, 0, payload));
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
            impl::peer* p = s.find(target);
            if (!p || !p->online || p->draining) continue;
            if (s.send_message(*p, msg_kind::oneway, command, 0, payload)) {
                in_flight.push_back({target, p->rec.incarnation, p->ch->messages_queued()});
            }
        }
        std::erase_if(in_flight, [&](const delivery& d) {
            impl::peer* p = s.find(d.peer);
            if (!p || p->rec.incarnation != d.incarnation) return true;  // gone: not delivered
            if (p->ch->messages_acked() >= d.message) {
                ++acknowledged;
                return true;
            }
            return false;
        });
        if (in_flight.size() >= limit || (next == targets.size() && !in_flight.empty())) {
            co_await s.wait_progress(milliseconds(50));
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

std::vector<peer_record> node::nodes() const {
    std::vector<peer_record> v;
    for (const auto& [id, p] : impl_->peers) {
        if (!p->visitor) v.push_back(p->rec);
    }
    return v;
}

std::vector<peer_record> node::nodes_by_type(std::string_view type) const {
    std::vector<peer_record> v;
    for (const auto& [id, p] : impl_->peers) {
        if (p->rec.type == type && !p->visitor) v.push_back(p->rec);
    }
    return v;
}

bool node::is_online(std::string_view id) const {
    if (id == impl_->self.id) return is_self_online();
    auto it = impl_->peers.find(id);
    return it != impl_->peers.end() && it->second->online;
}

bool node::is_self_online() const noexcept { return impl_->started && !impl_->going_offline && !impl_->closed; }

void node::on_membership(std::function<void(const membership_event&)> f) { impl_->on_membership = std::move(f); }

std::vector<peer_status> node::status() const {
    std::vector<peer_status> v;
    const mono_time now = now_mono();
    for (const auto& [id, p] : impl_->peers) {
        const auto& st = p->ch->stats();
        const double sent = static_cast<double>(st.segments_sent + st.segments_retransmitted);
        v.push_back({.record = p->rec,
                     .member = !p->visitor,
                     .online = p->online,
                     .rtt = p->ch->srtt(),
                     .loss = sent > 0 ? static_cast<double>(st.segments_retransmitted) / sent : 0.0,
                     .packets_in = p->packets_in,
                     .packets_out = p->packets_out,
                     .bytes_in = p->bytes_in,
                     .bytes_out = p->bytes_out,
                     .messages_in = st.messages_received,
                     .messages_out = st.messages_sent,
                     .retransmitted = st.segments_retransmitted,
                     .timeouts = st.rto_expirations,
                     .duplicates_dropped = st.duplicates_dropped,
                     .beyond_window_dropped = st.beyond_window_dropped,
                     .last_heard = p->last_heard == mono_time{} ? milliseconds(-1)
                                                                 : std::chrono::duration_cast<milliseconds>(now - p->last_heard)});
    }
    return v;
}

const node_counters& node::counters() const noexcept { return impl_->counters; }

awaitable<void> node::go_offline() {
    auto& s = *impl_;
    auto a = s.alive;
    if (s.going_offline || s.closed) co_return;
    s.going_offline = true;
    s.log("info", "mesh: going offline: refusing new requests, draining");
    for (auto& [id, p] : s.peers) p->bye = bye_draining;
    s.flush_all();
    const auto deadline = std::chrono::steady_clock::now() + s.opts.drain_timeout;
    auto drained = [&] {
        if (s.handlers_running > 0) return false;
        for (auto& [id, p] : s.peers) {
            if (p->online && !p->ch->idle()) return false;
        }
        return true;
    };
    while (!drained() && std::chrono::steady_clock::now() < deadline) {
        co_await s.wait_progress(milliseconds(20));
        if (!*a) co_return;
    }
    for (auto& [id, p] : s.peers) {
        s.stop_requests_to(id, p->rec.incarnation, "this node went offline");
        p->bye = bye_gone;
    }
    s.flush_all();
    s.closed = true;
    boost::system::error_code ignored;
    s.socket.close(ignored);
    s.timer.cancel();
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
    asio::steady_timer t(s.executor);
    pending.timer = &t;
    pending.sent = now_mono();
    packet_writer w = s.writer(0, s.opts.channel.max_datagram);
    switch (mode) {
        case probe_mode::anonymous: w.probe(frame_type::probe, token, "", ""); break;  // asks, does not join
        case probe_mode::join: w.probe(frame_type::probe, token, s.self.id, s.self.type); break;
        case probe_mode::visit: w.probe(frame_type::visit, token, s.self.id, s.self.type); break;
    }
    s.transmit(w, to, nullptr);
    s.send_batch();
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
        if (auto* p = s.find(result->id); p && p->visitor && mode == probe_mode::visit) p->visiting = true;
    }
    co_return result;
}

void node::peer_up(const peer_record& rec) { impl_->add_peer(rec, false); }

void node::peer_down(std::string_view id) {
    auto& s = *impl_;
    auto it = s.peers.find(id);
    if (it == s.peers.end()) return;
    const std::string name = it->first;
    s.stop_requests_to(name, it->second->rec.incarnation, "the peer left");
    s.by_incarnation.erase(it->second->rec.incarnation);
    ++s.peer_changes;
    // Kept for a while: discovery may report the same incarnation back (its slave reconnected to
    // the master, say), and the peer's side of the channel lives on — a fresh one here would not
    // match its sequence numbers.
    s.departed[name] = {std::move(it->second), impl::now_of()};
    s.peers.erase(it);
    s.log("info", "mesh peer " + name + " left");
    s.emit(membership_event::kind::offline, name);
    s.emit(membership_event::kind::leave, name);
    s.wake_progress();
}

}  // namespace meshmaster::mesh
