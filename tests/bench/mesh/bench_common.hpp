// What every C++ peer of the mesh benchmark shares: the command line (README.md, "The peers"), the
// message format both ends check, the receiver's delivery bookkeeping, and the one-line JSON
// results mesh_bench.py parses. Keeping it in one place keeps the peers measuring the same thing.
//
// Not thread-safe; every peer is single-threaded (ZeroMQ's I/O thread never touches this).
#pragma once

#include <algorithm>
#include <array>
#include <charconv>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace bench {

constexpr int exit_failure = 1;
constexpr int exit_usage = 64;  // DESIGN.md: 64 usage

enum class role { server, client };
enum class test { rr, oneway, bulk };

struct options {
  role mode = role::server;
  std::string host = "127.0.0.1";
  std::string bind = "127.0.0.1";
  std::uint16_t port = 0;
  test kind = test::rr;
  std::uint64_t count = 10000;
  std::size_t size = 64;
};

inline const char* test_name(test t) {
  switch (t) {
    case test::rr: return "rr";
    case test::oneway: return "oneway";
    case test::bulk: return "bulk";
  }
  return "?";
}

// ---------------------------------------------------------------------------------------------
// Messages. Every message, data or control, is at least min_size bytes:
//   u32 kind · u32 size · u64 seq · payload pattern … · u32 tag
// (host byte order: both ends run on this machine). The tag mixes kind, seq and size, so a
// truncated, merged or misdirected message fails the check; the fixed pattern is sampled every
// 4 KiB, which catches gross corruption without making the receiver pay a full pass over 64 KiB.
// A report reply carries the receiver's counters in bytes 16..47.

enum class kind : std::uint32_t {
  echo = 1,          // request/response: the server returns the message unchanged
  data = 2,          // one-way: counted by the server's tracker
  begin = 3,         // starts a one-way run; seq holds the count to expect; answered by a report
  report = 4,        // "how many did you get": answered once everything arrived (or stalled)
  report_reply = 5,  // the server's counters
};

constexpr std::size_t header_size = 16;
constexpr std::size_t tag_size = 4;
constexpr std::size_t counters_end = header_size + 4 * sizeof(std::uint64_t);
constexpr std::size_t min_size = counters_end + tag_size;
constexpr std::size_t control_size = 64;  // begin, report and report_reply travel at this size
constexpr std::size_t sample_stride = 4096;

inline std::uint32_t tag_of(kind k, std::uint64_t seq, std::size_t size) {
  // splitmix64's finaliser: cheap, and every input bit reaches the low 32 bits.
  std::uint64_t z = seq ^ (std::uint64_t(k) << 56) ^ (std::uint64_t(size) << 24);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return std::uint32_t(z ^ (z >> 31));
}

inline std::byte pattern_at(std::size_t i) { return std::byte((i * 131 + 7) & 0xff); }

struct counters {
  std::uint64_t received = 0;      // distinct sequence numbers within [0, expected)
  std::uint64_t duplicates = 0;    // a sequence number seen again
  std::uint64_t out_of_order = 0;  // arrived after a higher sequence number
  std::uint64_t corrupt = 0;       // failed the checks, or a sequence number out of range
};

// Builds messages of one size into one buffer, so steady-state sending neither allocates nor
// refills the payload: only the header and the tag change per message.
class message_writer {
 public:
  explicit message_writer(std::size_t size) : buf_(std::max(size, min_size)) {
    for (std::size_t i = 0; i < buf_.size(); ++i) buf_[i] = pattern_at(i);
  }

  std::span<const std::byte> make(kind k, std::uint64_t seq) {
    const auto k32 = std::uint32_t(k);
    const auto size32 = std::uint32_t(buf_.size());
    std::memcpy(buf_.data(), &k32, 4);
    std::memcpy(buf_.data() + 4, &size32, 4);
    std::memcpy(buf_.data() + 8, &seq, 8);
    const std::uint32_t tag = tag_of(k, seq, buf_.size());
    std::memcpy(buf_.data() + buf_.size() - tag_size, &tag, 4);
    return buf_;
  }

  std::span<const std::byte> make_reply(const counters& c) {
    const std::uint64_t fields[4] = {c.received, c.duplicates, c.out_of_order, c.corrupt};
    std::memcpy(buf_.data() + header_size, fields, sizeof fields);
    return make(kind::report_reply, 0);
  }

  std::size_t size() const { return buf_.size(); }

 private:
  std::vector<std::byte> buf_;
};

struct decoded {
  kind k;
  std::uint64_t seq;
};

inline std::optional<decoded> decode(std::span<const std::byte> m) {
  if (m.size() < min_size) return std::nullopt;
  std::uint32_t k32, size32, tag;
  std::uint64_t seq;
  std::memcpy(&k32, m.data(), 4);
  std::memcpy(&size32, m.data() + 4, 4);
  std::memcpy(&seq, m.data() + 8, 8);
  std::memcpy(&tag, m.data() + m.size() - tag_size, 4);
  if (k32 < 1 || k32 > 5 || size32 != m.size()) return std::nullopt;
  if (tag != tag_of(kind(k32), seq, m.size())) return std::nullopt;
  for (std::size_t i = counters_end; i + tag_size < m.size(); i += sample_stride)
    if (m[i] != pattern_at(i)) return std::nullopt;
  return decoded{kind(k32), seq};
}

inline counters read_reply(std::span<const std::byte> m) {
  std::uint64_t fields[4];
  std::memcpy(fields, m.data() + header_size, sizeof fields);
  return {fields[0], fields[1], fields[2], fields[3]};
}

// The server's side of a one-way run: which sequence numbers arrived, how often, in what order.
class tracker {
 public:
  void begin(std::uint64_t expected) {
    expected_ = expected;
    seen_.assign((expected + 63) / 64, 0);
    c_ = {};
    highest_ = 0;
    any_ = false;
  }

  void on_data(std::uint64_t seq) {
    if (seq >= expected_) {
      ++c_.corrupt;
      return;
    }
    std::uint64_t& word = seen_[seq / 64];
    const std::uint64_t bit = std::uint64_t(1) << (seq % 64);
    if (word & bit) {
      ++c_.duplicates;
      return;
    }
    word |= bit;
    ++c_.received;
    if (any_ && seq < highest_) ++c_.out_of_order;
    if (!any_ || seq > highest_) highest_ = seq;
    any_ = true;
  }

  void on_corrupt() { ++c_.corrupt; }
  bool complete() const { return c_.received >= expected_; }
  const counters& snapshot() const { return c_; }
  std::uint64_t progress() const { return c_.received + c_.duplicates + c_.corrupt; }

 private:
  std::uint64_t expected_ = 0;
  std::vector<std::uint64_t> seen_;
  counters c_;
  std::uint64_t highest_ = 0;
  bool any_ = false;
};

// ---------------------------------------------------------------------------------------------
// Time, stopping, results.

inline std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

inline volatile std::sig_atomic_t stop_requested = 0;

// Without SA_RESTART, so a blocking wait (epoll_wait, zmq_poll, poll inside ENet) returns EINTR
// and the loop sees the flag at once.
inline void install_stop_handlers() {
  struct sigaction sa {};
  sa.sa_handler = [](int) { stop_requested = 1; };
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
}

inline std::uint64_t warmup_count(std::uint64_t n) { return std::min<std::uint64_t>(n / 10, 1000); }

[[noreturn]] inline void fail(const char* what) {
  std::fprintf(stderr, "%s\n", what);
  std::exit(exit_failure);
}

// The request/response test of every peer: `round_trip(message, seq)` sends the echo request and
// returns once its answer is back (failing the run on a wrong one). A warm-up is not measured;
// the clock starts after the message is built, as the message is the caller's to make.
template <class RoundTrip>
int measure_rr(const options& o, RoundTrip round_trip);

// Round trips in nanoseconds; nearest-rank percentiles.
inline void print_rr(const options& o, std::vector<std::int64_t> ns) {
  if (ns.empty()) fail("no round trips measured");
  std::sort(ns.begin(), ns.end());
  const auto pct = [&](double q) {
    const auto rank = std::size_t(std::ceil(q * double(ns.size())));
    return double(ns[std::clamp<std::size_t>(rank, 1, ns.size()) - 1]) / 1e3;
  };
  double sum = 0;
  for (auto v : ns) sum += double(v);
  std::printf(
      "{\"test\":\"rr\",\"count\":%zu,\"size\":%zu,\"p50_us\":%.3f,\"p99_us\":%.3f,"
      "\"p999_us\":%.3f,\"mean_us\":%.3f}\n",
      ns.size(), o.size, pct(0.50), pct(0.99), pct(0.999), sum / double(ns.size()) / 1e3);
  std::fflush(stdout);
}

template <class RoundTrip>
int measure_rr(const options& o, RoundTrip round_trip) {
  message_writer w(o.size);
  const std::uint64_t warmup = warmup_count(o.count);
  std::vector<std::int64_t> samples;
  samples.reserve(o.count);
  for (std::uint64_t seq = 0; seq < warmup + o.count; ++seq) {
    const auto m = w.make(kind::echo, seq);
    const std::int64_t t0 = now_ns();
    round_trip(m, seq);
    if (seq >= warmup) samples.push_back(now_ns() - t0);
  }
  print_rr(o, std::move(samples));
  return 0;
}

// Rates count what the server confirmed, not what the client handed to the library.
inline void print_throughput(const options& o, std::int64_t elapsed_ns, const counters& c) {
  const double s = double(std::max<std::int64_t>(elapsed_ns, 1)) / 1e9;
  std::printf(
      "{\"test\":\"%s\",\"count\":%llu,\"size\":%zu,\"seconds\":%.6f,\"msgs_per_s\":%.1f,"
      "\"bytes_per_s\":%.1f,\"received\":%llu,\"duplicates\":%llu,\"out_of_order\":%llu,"
      "\"corrupt\":%llu}\n",
      test_name(o.kind), (unsigned long long)o.count, o.size, s, double(c.received) / s,
      double(c.received) * double(o.size) / s, (unsigned long long)c.received,
      (unsigned long long)c.duplicates, (unsigned long long)c.out_of_order,
      (unsigned long long)c.corrupt);
  std::fflush(stdout);
}

// ---------------------------------------------------------------------------------------------
// The command line every peer accepts (mesh_bench.py and the README describe the contract):
//   <peer> server --port P [--bind 127.0.0.1]
//   <peer> client --host H --port P --test rr|oneway|bulk --count N --size BYTES

[[noreturn]] inline void usage(const char* program, std::string_view error) {
  std::fprintf(stderr,
               "%.*s\nusage: %s server --port P [--bind ADDR]\n"
               "       %s client --host H --port P --test rr|oneway|bulk --count N --size BYTES\n",
               int(error.size()), error.data(), program, program);
  std::exit(exit_usage);
}

inline options parse_options(int argc, char** argv, std::size_t max_size) {
  const char* program = argc > 0 ? argv[0] : "peer";
  options o;
  if (argc < 2) usage(program, "missing mode");
  const std::string_view mode = argv[1];
  if (mode == "server")
    o.mode = role::server;
  else if (mode == "client")
    o.mode = role::client;
  else
    usage(program, "mode must be server or client");

  const auto number = [&](std::string_view flag, std::string_view text, std::uint64_t max) {
    std::uint64_t v = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (ec != std::errc{} || end != text.data() + text.size() || v > max)
      usage(program, std::string(flag) + ": not a number in range: " + std::string(text));
    return v;
  };
  for (int i = 2; i < argc; ++i) {
    const std::string_view flag = argv[i];
    if (i + 1 >= argc) usage(program, std::string(flag) + " needs a value");
    const std::string_view value = argv[++i];
    if (flag == "--port")
      o.port = std::uint16_t(number(flag, value, 65535));
    else if (flag == "--host")
      o.host = value;
    else if (flag == "--bind")
      o.bind = value;
    else if (flag == "--count")
      o.count = number(flag, value, std::uint64_t(1) << 40);
    else if (flag == "--size")
      o.size = number(flag, value, max_size);
    else if (flag == "--test") {
      if (value == "rr")
        o.kind = test::rr;
      else if (value == "oneway")
        o.kind = test::oneway;
      else if (value == "bulk")
        o.kind = test::bulk;
      else
        usage(program, "--test must be rr, oneway or bulk");
    } else
      usage(program, "unknown option " + std::string(flag));
  }
  if (o.port == 0) usage(program, "--port is required");
  if (o.size < min_size) usage(program, "--size must be at least " + std::to_string(min_size));
  if (o.mode == role::client && o.count == 0) usage(program, "--count must be positive");
  return o;
}

}  // namespace bench
