// The raw-UDP floor: plain datagram sockets driven by epoll, nothing else. Its request/response
// round trip is the least any UDP mesh can cost on this machine (the mesh adds framing,
// authentication and reliability on top); its one-way blast has no flow control and no
// retransmission, so what it reports is what the kernel happened to deliver — a reference, not a
// reliable baseline. Message format and CLI: bench_common.hpp.
#include "bench_common.hpp"

#include <arpa/inet.h>
#include <cerrno>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

namespace {

using namespace bench;

constexpr std::size_t max_datagram = 65507;  // an IPv4 UDP payload cannot be larger

sockaddr_in address_of(const std::string& host, std::uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  if (inet_pton(AF_INET, host.c_str(), &a.sin_addr) != 1) fail("not an IPv4 address");
  return a;
}

// A non-blocking datagram socket and the epoll instance that waits on it.
struct endpoint {
  int fd = -1;
  int ep = -1;

  endpoint() {
    fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (fd < 0 || ep < 0) fail("socket/epoll_create1 failed");
    epoll_event ev{};
    ev.events = EPOLLIN;
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) fail("epoll_ctl failed");
  }
  ~endpoint() {
    close(ep);
    close(fd);
  }
  endpoint(const endpoint&) = delete;
  endpoint& operator=(const endpoint&) = delete;

  // Waits until the socket is readable; false on timeout or a stop signal.
  bool wait_readable(int timeout_ms) const {
    epoll_event ev{};
    for (;;) {
      const int n = epoll_wait(ep, &ev, 1, timeout_ms);
      if (n > 0) return true;
      if (n == 0 || stop_requested || errno != EINTR) return false;
    }
  }
};

int run_server(const options& o) {
  install_stop_handlers();
  endpoint e;
  const sockaddr_in local = address_of(o.bind, o.port);
  if (bind(e.fd, reinterpret_cast<const sockaddr*>(&local), sizeof local) != 0) fail("bind failed");
  std::vector<std::byte> buf(max_datagram);
  message_writer reply(control_size);
  tracker t;
  while (!stop_requested) {
    if (!e.wait_readable(200)) continue;
    for (;;) {  // drain: one wakeup may stand for many datagrams
      sockaddr_in from{};
      socklen_t from_len = sizeof from;
      const ssize_t n = recvfrom(e.fd, buf.data(), buf.size(), 0, reinterpret_cast<sockaddr*>(&from), &from_len);
      if (n < 0) break;  // EAGAIN: drained
      const std::span<const std::byte> m(buf.data(), std::size_t(n));
      const auto d = decode(m);
      if (!d) {
        t.on_corrupt();
        continue;
      }
      std::span<const std::byte> answer;
      switch (d->k) {
        case kind::echo: answer = m; break;
        case kind::data: t.on_data(d->seq); break;
        case kind::begin: t.begin(d->seq); answer = reply.make_reply(t.snapshot()); break;
        // Datagrams from one sender are queued in order, so everything that arrived before the
        // report has been counted by now: answer at once.
        case kind::report: answer = reply.make_reply(t.snapshot()); break;
        case kind::report_reply: t.on_corrupt(); break;
      }
      if (!answer.empty())
        sendto(e.fd, answer.data(), answer.size(), 0, reinterpret_cast<const sockaddr*>(&from), from_len);
    }
  }
  return 0;
}

// Client side: the socket is connected, so only the server's datagrams arrive.
class client {
 public:
  explicit client(const options& o) : o_(o), buf_(max_datagram) {
    const sockaddr_in server = address_of(o.host, o.port);
    if (connect(e_.fd, reinterpret_cast<const sockaddr*>(&server), sizeof server) != 0) fail("connect failed");
  }

  int rr() {
    return measure_rr(o_, [&](std::span<const std::byte> m, std::uint64_t seq) {
      send_all(m);
      for (;;) {  // a stale echo (none expected on loopback) is skipped, not counted
        if (!e_.wait_readable(2000)) fail("udp_floor: no echo within 2 s");
        const auto d = receive();
        if (d && d->k == kind::echo && d->seq == seq) break;
      }
    });
  }

  // One-way blast: send as fast as the socket takes datagrams, then ask for the count. Datagrams
  // the receiver's buffer could not hold are simply gone; "received" says how many made it.
  int oneway() {
    message_writer control(control_size);
    ask(control.make(kind::begin, o_.count));
    message_writer w(o_.size);
    const std::int64_t t0 = now_ns();
    for (std::uint64_t seq = 0; seq < o_.count; ++seq) send_all(w.make(kind::data, seq));
    const counters c = ask(control.make(kind::report, 0));
    print_throughput(o_, now_ns() - t0, c);
    return 0;
  }

 private:
  // Control exchanges retry: the request or its answer may be dropped by a full socket buffer.
  counters ask(std::span<const std::byte> request) {
    for (int attempt = 0; attempt < 250; ++attempt) {
      send_all(request);
      const std::int64_t deadline = now_ns() + 20'000'000;
      while (now_ns() < deadline && e_.wait_readable(20)) {
        const auto d = receive();
        if (d && d->k == kind::report_reply) return read_reply(last_);
      }
    }
    fail("udp_floor: the server did not answer a control message within 5 s");
  }

  // Blocks (in epoll) while the socket's send buffer is full rather than spinning.
  void send_all(std::span<const std::byte> m) {
    for (;;) {
      if (send(e_.fd, m.data(), m.size(), 0) == ssize_t(m.size())) return;
      if (errno == ECONNREFUSED) fail("udp_floor: connection refused (no server)");
      if (errno != EAGAIN && errno != ENOBUFS && errno != EINTR) fail("udp_floor: send failed");
      epoll_event ev{};
      ev.events = EPOLLIN | EPOLLOUT;
      epoll_ctl(e_.ep, EPOLL_CTL_MOD, e_.fd, &ev);
      epoll_wait(e_.ep, &ev, 1, 10);
      ev.events = EPOLLIN;
      epoll_ctl(e_.ep, EPOLL_CTL_MOD, e_.fd, &ev);
    }
  }

  std::optional<decoded> receive() {
    const ssize_t n = recv(e_.fd, buf_.data(), buf_.size(), 0);
    if (n < 0) return std::nullopt;
    last_ = std::span<const std::byte>(buf_.data(), std::size_t(n));
    return decode(last_);
  }

  const options& o_;
  endpoint e_;
  std::vector<std::byte> buf_;
  std::span<const std::byte> last_;
};

}  // namespace

int main(int argc, char** argv) {
  const options o = parse_options(argc, argv, max_datagram);
  if (o.mode == role::server) return run_server(o);
  client c(o);
  return o.kind == test::rr ? c.rr() : c.oneway();  // bulk: the same blast with larger datagrams
}
