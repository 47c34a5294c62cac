// The ENet baseline: reliable packets on one channel, for request/response and one-way (64 B and
// 64 KiB, which ENet fragments and reassembles itself). A reliable channel delivers in order, so a
// report sent after the data reaches the server after all of it: the server answers at once.
// Message format and CLI: bench_common.hpp.
#include "bench_common.hpp"

#include <enet/enet.h>

namespace {

using namespace bench;

constexpr std::size_t max_peers = 32;  // stale peers of earlier clients time out on their own
constexpr std::size_t max_in_flight_bytes = std::size_t(8) << 20;

ENetAddress address_of(const std::string& host, std::uint16_t port) {
  ENetAddress a{};
  if (enet_address_set_host_ip(&a, host.c_str()) != 0) fail("not an IPv4 address");
  a.port = port;
  return a;
}

void send_reliable(ENetPeer* peer, std::span<const std::byte> m, ENetPacketFreeCallback on_free = nullptr) {
  ENetPacket* p = enet_packet_create(m.data(), m.size(), ENET_PACKET_FLAG_RELIABLE);
  if (p == nullptr) fail("enet_packet_create failed");
  p->freeCallback = on_free;
  if (enet_peer_send(peer, 0, p) != 0) fail("enet_peer_send failed");
}

std::span<const std::byte> bytes_of(const ENetPacket* p) {
  return {reinterpret_cast<const std::byte*>(p->data), p->dataLength};
}

int run_server(const options& o) {
  install_stop_handlers();
  const ENetAddress local = address_of(o.bind, o.port);
  ENetHost* host = enet_host_create(&local, max_peers, 1, 0, 0);
  if (host == nullptr) fail("enet_host_create failed (port in use?)");
  tracker t;
  message_writer reply(control_size);
  while (!stop_requested) {
    ENetEvent ev;
    if (enet_host_service(host, &ev, 200) <= 0 || ev.type != ENET_EVENT_TYPE_RECEIVE) continue;
    const auto d = decode(bytes_of(ev.packet));
    std::span<const std::byte> answer;
    if (!d) {
      t.on_corrupt();
    } else {
      switch (d->k) {
        case kind::echo: answer = bytes_of(ev.packet); break;
        case kind::data: t.on_data(d->seq); break;
        case kind::begin: t.begin(d->seq); answer = reply.make_reply(t.snapshot()); break;
        case kind::report: answer = reply.make_reply(t.snapshot()); break;
        case kind::report_reply: t.on_corrupt(); break;
      }
    }
    if (!answer.empty()) {
      send_reliable(ev.peer, answer);
      // Send it now rather than at the next service call, as a latency-minded ENet
      // application does.
      enet_host_flush(host);
    }
    enet_packet_destroy(ev.packet);
  }
  enet_host_destroy(host);
  return 0;
}

// Reliable packets are destroyed once acknowledged; counting them bounds the client's queue.
std::uint64_t packets_freed = 0;
void on_packet_freed(ENetPacket*) { ++packets_freed; }

class client {
 public:
  explicit client(const options& o) : o_(o), host_(enet_host_create(nullptr, 1, 1, 0, 0)) {
    if (host_ == nullptr) fail("enet_host_create failed");
    const ENetAddress server = address_of(o.host, o.port);
    peer_ = enet_host_connect(host_, &server, 1, 0);
    ENetEvent ev;
    if (peer_ == nullptr || enet_host_service(host_, &ev, 5000) <= 0 || ev.type != ENET_EVENT_TYPE_CONNECT)
      fail("enet_peer: could not connect within 5 s");
  }
  ~client() {
    enet_peer_disconnect_now(peer_, 0);
    enet_host_destroy(host_);
  }
  client(const client&) = delete;
  client& operator=(const client&) = delete;

  int rr() {
    return measure_rr(o_, [&](std::span<const std::byte> m, std::uint64_t seq) {
      send_reliable(peer_, m);
      enet_host_flush(host_);
      const auto d = await_reply();
      if (d.k != kind::echo || d.seq != seq) fail("enet_peer: wrong echo");
    });
  }

  // Queues packets as fast as ENet takes them, keeping at most max_in_flight_bytes unacknowledged
  // (far above ENet's own reliable window, so the bound limits memory, not speed).
  int oneway() {
    message_writer control(control_size);
    send_reliable(peer_, control.make(kind::begin, o_.count));
    enet_host_flush(host_);
    if (await_reply().k != kind::report_reply) fail("enet_peer: begin not acknowledged");
    message_writer w(o_.size);
    const std::uint64_t window = std::max<std::uint64_t>(1, max_in_flight_bytes / o_.size);
    const std::int64_t t0 = now_ns();
    std::uint64_t sent = 0;
    packets_freed = 0;
    while (sent < o_.count) {
      while (sent < o_.count && sent - packets_freed < window) {
        send_reliable(peer_, w.make(kind::data, sent++), on_packet_freed);
        if (sent % 64 == 0) pump(0);  // let ENet put packets on the wire while we queue more
      }
      pump(sent - packets_freed < window ? 0 : 1);
    }
    send_reliable(peer_, control.make(kind::report, 0));
    enet_host_flush(host_);
    const decoded d = await_reply(60'000);
    const std::int64_t elapsed = now_ns() - t0;
    if (d.k != kind::report_reply) fail("enet_peer: no report");
    print_throughput(o_, elapsed, read_reply(last_));
    return 0;
  }

 private:
  // One service call: sends what is queued, takes acknowledgements; data packets are not
  // expected here.
  void pump(enet_uint32 timeout_ms) {
    ENetEvent ev;
    while (enet_host_service(host_, &ev, timeout_ms) > 0) {
      if (ev.type == ENET_EVENT_TYPE_DISCONNECT) fail("enet_peer: disconnected");
      if (ev.type == ENET_EVENT_TYPE_RECEIVE) enet_packet_destroy(ev.packet);
      timeout_ms = 0;
    }
  }

  decoded await_reply(std::int64_t timeout_ms = 5000) {
    const std::int64_t deadline = now_ns() + timeout_ms * 1'000'000;
    for (;;) {
      ENetEvent ev;
      const int n = enet_host_service(host_, &ev, 1000);
      if (n > 0 && ev.type == ENET_EVENT_TYPE_RECEIVE) {
        reply_.assign(ev.packet->data, ev.packet->data + ev.packet->dataLength);
        enet_packet_destroy(ev.packet);
        last_ = std::as_bytes(std::span(reply_));
        const auto d = decode(last_);
        if (!d) fail("enet_peer: corrupt reply");
        return *d;
      }
      if (n > 0 && ev.type == ENET_EVENT_TYPE_DISCONNECT) fail("enet_peer: disconnected");
      if (n < 0 || now_ns() > deadline) fail("enet_peer: no reply in time");
    }
  }

  const options& o_;
  ENetHost* host_;
  ENetPeer* peer_ = nullptr;
  std::vector<enet_uint8> reply_;
  std::span<const std::byte> last_;
};

}  // namespace

int main(int argc, char** argv) {
  const options o = parse_options(argc, argv, std::size_t(1) << 26);
  if (enet_initialize() != 0) fail("enet_initialize failed");
  int rc = 0;
  if (o.mode == role::server) {
    rc = run_server(o);
  } else {
    client c(o);
    rc = o.kind == test::rr ? c.rr() : c.oneway();
  }
  enet_deinitialize();
  return rc;
}
