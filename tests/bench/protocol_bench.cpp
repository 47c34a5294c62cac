// Protocol benchmark: encode and decode of state-carrying frames (shard_stopped, the answer to
// stop_shard, and resume) with 4 KiB and 64 KiB of state, next to memcpy of the same bytes measured
// in the same run, plus a count of heap allocations per frame in steady state.
//
//   decode    = bytes handed to the frame decoder (one copy, as from a socket buffer) + frame
//               extraction + body decoding to a struct whose state is a view into the frame
//   in place  = frame extraction + body decoding only (bytes already read into the decoder's
//               buffer by prepare/commit, as the socket driver does)
//   encode    = message struct → complete frame appended to a reused vector
//
// Usage: protocol_bench [--quick]. Exits 1 if steady-state encode or decode allocates.
#include <meshmaster/protocol/codec.hpp>
#include <meshmaster/protocol/frame_decoder.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string_view>
#include <vector>

// --- allocation counting: every global operator new goes through here ---------------------------
namespace {
std::atomic<std::size_t> allocations{0};
}
void* operator new(std::size_t size) {
    allocations.fetch_add(1, std::memory_order_relaxed);
    if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
    throw std::bad_alloc();
}
void* operator new[](std::size_t size) { return operator new(size); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }

using namespace meshmaster::protocol;
using clock_type = std::chrono::steady_clock;

namespace {

// Keeps the compiler from discarding work whose result is otherwise unused.
template <class T>
void keep(T const& value) {
    asm volatile("" : : "r,m"(value) : "memory");
}

struct measurement {
    double seconds_per_op = 0;
    std::size_t allocations_per_1000_ops = 0;
};

// Runs `op` `iterations` times per sample, `samples` times; reports the median sample.
template <class Op>
measurement measure(std::size_t iterations, int samples, Op&& op) {
    for (std::size_t i = 0; i < iterations / 10 + 1; ++i) op();  // warm caches and buffers
    std::vector<double> per_op;
    std::size_t allocs = 0;
    for (int s = 0; s < samples; ++s) {
        const std::size_t before = allocations.load();
        const auto start = clock_type::now();
        for (std::size_t i = 0; i < iterations; ++i) op();
        const std::chrono::duration<double> elapsed = clock_type::now() - start;
        allocs += allocations.load() - before;
        per_op.push_back(elapsed.count() / static_cast<double>(iterations));
    }
    std::sort(per_op.begin(), per_op.end());
    return {per_op[per_op.size() / 2], allocs * 1000 / (iterations * static_cast<std::size_t>(samples))};
}

struct row {
    std::string name;
    std::size_t frame_bytes;
    measurement m;
};

template <class Message>
std::vector<row> bench_message(std::string_view label, std::size_t state_size, std::size_t iterations,
                               int samples, double& memcpy_mbps, double& decode_mbps) {
    std::vector<std::byte> state(state_size);
    for (std::size_t i = 0; i < state_size; ++i) state[i] = static_cast<std::byte>(i * 131 + 7);
    Message message{};
    message.shard = 12;
    message.epoch = 41;
    message.migration_id = 9001;
    message.state = bytes_view(state);

    std::vector<std::byte> frame;
    if (!encode(message, frame)) std::abort();
    const std::size_t bytes = frame.size();

    std::vector<std::byte> out;
    out.reserve(bytes);
    const auto encode_m = measure(iterations, samples, [&] {
        out.clear();
        if (!encode(message, out)) std::abort();
        keep(out.data());
    });

    frame_decoder decoder;
    const auto decode_m = measure(iterations, samples, [&] {
        decoder.feed(frame);
        auto next = decoder.next();
        if (!next || !*next) std::abort();
        auto decoded = decode_body<Message>((*next)->body);
        if (!decoded || decoded->state.size() != state_size) std::abort();
        keep(decoded->state.data());
    });

    // In place: the frame already sits in the decoder's buffer (as after a socket read).
    auto space = decoder.prepare(bytes);
    std::memcpy(space.data(), frame.data(), bytes);
    const auto in_place_m = measure(iterations, samples, [&] {
        auto decoded = decode(frame_view{static_cast<std::uint32_t>(Message::id),
                                         bytes_view(space.data() + frame_header_size, bytes - frame_header_size)});
        if (!decoded) std::abort();
        keep(&*decoded);
    });

    std::vector<std::byte> sink(bytes);
    const auto memcpy_m = measure(iterations, samples, [&] {
        std::memcpy(sink.data(), frame.data(), bytes);
        keep(sink.data());
    });

    const auto mbps = [&](const measurement& m) { return static_cast<double>(bytes) / m.seconds_per_op / 1e6; };
    memcpy_mbps = mbps(memcpy_m);
    decode_mbps = mbps(decode_m);
    const std::string size = state_size >= 1024 ? fmt::format("{} KiB", state_size / 1024) : fmt::format("{} B", state_size);
    return {{fmt::format("memcpy       {} {}", label, size), bytes, memcpy_m},
            {fmt::format("encode       {} {}", label, size), bytes, encode_m},
            {fmt::format("decode       {} {}", label, size), bytes, decode_m},
            {fmt::format("in place     {} {}", label, size), bytes, in_place_m}};
}

}  // namespace

int main(int argc, char** argv) {
    const bool quick = argc > 1 && std::string_view(argv[1]) == "--quick";
    const int samples = quick ? 3 : 9;

    fmt::print("{:<34} {:>8} {:>14} {:>11} {:>9} {:>12}\n", "operation", "frame B", "frames/s", "MB/s",
               "×memcpy", "allocs/frame");
    bool allocates = false;
    for (const std::size_t state_size : {std::size_t{4096}, std::size_t{65536}}) {
        const std::size_t iterations = (quick ? 2'000'000 : 40'000'000) / (state_size / 256);
        for (int which = 0; which < 2; ++which) {
            double memcpy_mbps = 0, decode_mbps = 0;
            const auto rows = which == 0
                ? bench_message<shard_stopped>("shard_stopped", state_size, iterations, samples, memcpy_mbps, decode_mbps)
                : bench_message<resume>("resume       ", state_size, iterations, samples, memcpy_mbps, decode_mbps);
            for (const row& r : rows) {
                const double mbps = static_cast<double>(r.frame_bytes) / r.m.seconds_per_op / 1e6;
                const double allocs = static_cast<double>(r.m.allocations_per_1000_ops) / 1000.0;
                fmt::print("{:<34} {:>8} {:>14.0f} {:>11.0f} {:>9.2f} {:>12.3f}\n", r.name, r.frame_bytes,
                           1.0 / r.m.seconds_per_op, mbps, mbps / memcpy_mbps, allocs);
                if (r.m.allocations_per_1000_ops != 0 && !r.name.starts_with("memcpy")) allocates = true;
            }
            if (state_size == 65536) {
                fmt::print("  goal: decode of the 64 KiB frame ≥ 0.30 × memcpy: {:.2f} × ({})\n",
                           decode_mbps / memcpy_mbps, decode_mbps >= 0.3 * memcpy_mbps ? "met" : "NOT met");
            }
        }
    }
    fmt::print("heap allocations per frame in steady state: {}\n", allocates ? "SOME (see table)" : "0");
    return allocates ? 1 : 0;
}
