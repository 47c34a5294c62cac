// The ZeroMQ baseline over tcp://: REQ/REP for request/response, PUSH/PULL for one-way messages
// (64 B and 64 KiB), with the library's defaults (one I/O thread, high-water mark 1000), as an
// application would use it. The server binds REP on --port P and PULL on P + 1.
//
// PUSH/PULL and REQ/REP are separate TCP connections, so a "how many did you get" on REQ can
// overtake the data still in flight on PUSH: the server holds its answer until the count is
// complete (or nothing has arrived for stall_ns), and the client's clock stops at that answer.
// Message format and CLI: bench_common.hpp.
#include "bench_common.hpp"

#include <cerrno>
#include <zmq.h>

namespace {

using namespace bench;

constexpr std::int64_t stall_ns = 5'000'000'000;

std::string endpoint(const std::string& host, unsigned port) {
  return "tcp://" + host + ":" + std::to_string(port);
}

void* open_socket(void* ctx, int type) {
  void* s = zmq_socket(ctx, type);
  if (s == nullptr) fail("zmq_socket failed");
  const int linger = 0;  // never wait on close for undelivered messages
  zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
  return s;
}

// A received message, released when it goes out of scope.
struct message {
  zmq_msg_t m;
  message() { zmq_msg_init(&m); }
  ~message() { zmq_msg_close(&m); }
  message(const message&) = delete;
  message& operator=(const message&) = delete;
  bool receive(void* socket, int flags) { return zmq_msg_recv(&m, socket, flags) >= 0; }
  std::span<const std::byte> bytes() { return {static_cast<const std::byte*>(zmq_msg_data(&m)), zmq_msg_size(&m)}; }
};

void send_bytes(void* socket, std::span<const std::byte> m) {
  while (zmq_send(socket, m.data(), m.size(), 0) < 0) {
    if (zmq_errno() != EINTR || stop_requested) fail("zmq_send failed");
  }
}

int run_server(const options& o) {
  install_stop_handlers();
  void* ctx = zmq_ctx_new();
  void* rep = open_socket(ctx, ZMQ_REP);
  void* pull = open_socket(ctx, ZMQ_PULL);
  if (zmq_bind(rep, endpoint(o.bind, o.port).c_str()) != 0 ||
      zmq_bind(pull, endpoint(o.bind, o.port + 1u).c_str()) != 0)
    fail("zmq_bind failed");
  tracker t;
  message_writer reply(control_size);
  bool report_pending = false;  // a REP request waits for its answer
  std::uint64_t last_progress_count = 0;
  std::int64_t last_progress_at = 0;
  while (!stop_requested) {
    zmq_pollitem_t items[] = {{rep, 0, ZMQ_POLLIN, 0}, {pull, 0, ZMQ_POLLIN, 0}};
    if (zmq_poll(items, 2, report_pending ? 10 : 200) < 0) continue;  // EINTR: check the flag
    for (;;) {  // drain PULL first: the data the pending report is waiting for
      message m;
      if (!m.receive(pull, ZMQ_DONTWAIT)) break;
      const auto d = decode(m.bytes());
      if (d && d->k == kind::data)
        t.on_data(d->seq);
      else
        t.on_corrupt();
    }
    message m;
    if (!report_pending && m.receive(rep, ZMQ_DONTWAIT)) {
      const auto d = decode(m.bytes());
      if (d && d->k == kind::echo) {
        send_bytes(rep, m.bytes());
      } else if (d && d->k == kind::begin) {
        t.begin(d->seq);
        send_bytes(rep, reply.make_reply(t.snapshot()));
      } else if (d && d->k == kind::report) {
        report_pending = true;
        last_progress_count = t.progress();
        last_progress_at = now_ns();
      } else {
        t.on_corrupt();
        send_bytes(rep, reply.make_reply(t.snapshot()));  // REP must answer to take the next request
      }
    }
    if (report_pending) {
      if (t.progress() != last_progress_count) {
        last_progress_count = t.progress();
        last_progress_at = now_ns();
      }
      if (t.complete() || now_ns() - last_progress_at > stall_ns) {
        send_bytes(rep, reply.make_reply(t.snapshot()));
        report_pending = false;
      }
    }
  }
  zmq_close(rep);
  zmq_close(pull);
  zmq_ctx_term(ctx);
  return 0;
}

class client {
 public:
  explicit client(const options& o) : o_(o), ctx_(zmq_ctx_new()), req_(open_socket(ctx_, ZMQ_REQ)) {
    const int timeout_ms = 30'000;  // a dead server fails the run instead of hanging it
    zmq_setsockopt(req_, ZMQ_RCVTIMEO, &timeout_ms, sizeof timeout_ms);
    if (zmq_connect(req_, endpoint(o.host, o.port).c_str()) != 0) fail("zmq_connect failed");
  }
  ~client() {
    zmq_close(req_);
    zmq_ctx_term(ctx_);
  }
  client(const client&) = delete;
  client& operator=(const client&) = delete;

  int rr() {
    return measure_rr(o_, [&](std::span<const std::byte> m, std::uint64_t seq) {
      const auto d = request(m);
      if (!d || d->k != kind::echo || d->seq != seq) fail("zmq_peer: wrong echo");
    });
  }

  int oneway() {
    void* push = open_socket(ctx_, ZMQ_PUSH);
    if (zmq_connect(push, endpoint(o_.host, o_.port + 1u).c_str()) != 0) fail("zmq_connect failed");
    message_writer control(control_size);
    if (const auto d = request(control.make(kind::begin, o_.count)); !d || d->k != kind::report_reply)
      fail("zmq_peer: begin not acknowledged");
    message_writer w(o_.size);
    const std::int64_t t0 = now_ns();
    for (std::uint64_t seq = 0; seq < o_.count; ++seq) send_bytes(push, w.make(kind::data, seq));
    const auto d = request(control.make(kind::report, 0));
    const std::int64_t elapsed = now_ns() - t0;
    if (!d || d->k != kind::report_reply) fail("zmq_peer: no report");
    print_throughput(o_, elapsed, read_reply(reply_.bytes()));
    zmq_close(push);
    return 0;
  }

 private:
  std::optional<decoded> request(std::span<const std::byte> m) {
    send_bytes(req_, m);
    zmq_msg_close(&reply_.m);
    zmq_msg_init(&reply_.m);
    if (!reply_.receive(req_, 0)) fail("zmq_peer: no reply within 30 s");
    return decode(reply_.bytes());
  }

  const options& o_;
  void* ctx_;
  void* req_;
  message reply_;
};

}  // namespace

int main(int argc, char** argv) {
  const options o = parse_options(argc, argv, std::size_t(1) << 26);
  if (o.port == 65535) usage(argv[0], "--port must leave room for P + 1 (PULL)");
  if (o.mode == role::server) return run_server(o);
  client c(o);
  return o.kind == test::rr ? c.rr() : c.oneway();
}
