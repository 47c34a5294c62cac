// The in-memory, fault-injecting byte stream of test_stream.hpp.
#include "test_stream.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/_experimental/test/error.hpp>

#include <algorithm>
#include <deque>

namespace meshmaster::shell::testing {

namespace asio = boost::asio;
using boost::system::error_code;

// One direction: bytes written by one end and not yet read by the other.
struct direction {
    explicit direction(const asio::any_io_executor& ex) : readable(ex, std::chrono::steady_clock::time_point::max()) {}
    std::deque<std::byte> bytes;
    bool ended = false;  // the writer is done: eof once `bytes` are read
    asio::steady_timer readable;  // never expires: cancelled to wake the reader
    void wake() { readable.cancel(); }
};

struct link_state {
    link_state(asio::any_io_executor ex, faults f) : executor(ex), plan(f), to{direction(ex), direction(ex)} {}
    asio::any_io_executor executor;
    faults plan;
    // fail_count(n) fails its n-th call (1-based) and every one after.
    boost::beast::test::fail_count failures{plan.fail_at ? *plan.fail_at + 1 : 0};
    direction to[2];  // to[i]: what end i reads
    bool closed[2] = {false, false};
    std::size_t ops[2] = {0, 0};
    std::size_t moved = 0;  // bytes through the shell's end
    bool struck = false;    // a fault hit the shell's end
    std::vector<std::span<const std::byte>> gathered;  // the shell end's gathered pieces

    void cut() {
        struck = true;
        for (auto& d : to) {
            d.ended = true;
            d.wake();
        }
    }
};

test_link make_link(asio::any_io_executor executor, faults f) {
    auto s = std::make_shared<link_state>(executor, f);
    return {std::make_unique<test_stream>(s, 0), std::make_unique<test_stream>(s, 1)};
}

test_stream::~test_stream() { close(); }

asio::any_io_executor test_stream::get_executor() { return s_->executor; }

error_code test_stream::count_operation() {
    ++s_->ops[side_];
    error_code ec;
    if (faulty() && s_->plan.fail_at && s_->failures.fail(ec)) s_->struck = true;
    return ec;
}

void test_stream::moved(std::size_t n) {
    if (!faulty()) return;
    s_->moved += n;
    if (s_->plan.cut_after && s_->moved >= *s_->plan.cut_after) s_->cut();
}

asio::awaitable<io_result> test_stream::read_some(std::span<std::byte> into) {
    if (auto ec = count_operation()) co_return io_result{ec, 0};
    direction& in = s_->to[side_];
    while (in.bytes.empty() && !in.ended && !s_->closed[side_]) {
        co_await in.readable.async_wait(asio::as_tuple(asio::use_awaitable));
        if ((co_await asio::this_coro::cancellation_state).cancelled() != asio::cancellation_type::none) {
            co_return io_result{asio::error::operation_aborted, 0};
        }
    }
    if (s_->closed[side_]) co_return io_result{asio::error::operation_aborted, 0};
    if (in.bytes.empty()) co_return io_result{asio::error::eof, 0};
    const std::size_t limit = faulty() ? s_->plan.read_size : into.size();
    const std::size_t n = std::min({into.size(), in.bytes.size(), limit});
    std::copy_n(in.bytes.begin(), n, into.begin());
    in.bytes.erase(in.bytes.begin(), in.bytes.begin() + static_cast<std::ptrdiff_t>(n));
    moved(n);
    co_return io_result{{}, n};
}

asio::awaitable<io_result> test_stream::write(std::span<const std::byte> bytes) {
    std::size_t done = 0;
    while (done < bytes.size()) {
        if (auto ec = count_operation()) co_return io_result{ec, done};
        direction& out = s_->to[1 - side_];
        if (s_->closed[side_]) co_return io_result{asio::error::operation_aborted, done};
        if (out.ended) co_return io_result{asio::error::broken_pipe, done};
        const std::size_t limit = faulty() ? s_->plan.write_size : bytes.size();
        const std::size_t n = std::min(bytes.size() - done, limit);
        out.bytes.insert(out.bytes.end(), bytes.begin() + static_cast<std::ptrdiff_t>(done),
                         bytes.begin() + static_cast<std::ptrdiff_t>(done + n));
        out.wake();
        done += n;
        moved(n);
        // Each partial write completes on its own turn, as a socket's would: the peer may read between.
        co_await asio::post(s_->executor, asio::use_awaitable);
    }
    co_return io_result{{}, done};
}

asio::awaitable<io_result> test_stream::write_gathered(std::span<const std::span<const std::byte>> pieces) {
    std::size_t done = 0;
    for (const auto piece : pieces) {
        if (faulty()) s_->gathered.push_back(piece);
        const io_result r = co_await write(piece);
        done += r.bytes;
        if (r.ec) co_return io_result{r.ec, done};
    }
    co_return io_result{{}, done};
}

error_code test_stream::write_now(std::span<const std::byte> bytes) {
    if (auto ec = count_operation()) return ec;
    direction& out = s_->to[1 - side_];
    if (s_->closed[side_]) return asio::error::bad_descriptor;
    if (out.ended) return asio::error::broken_pipe;
    out.bytes.insert(out.bytes.end(), bytes.begin(), bytes.end());
    out.wake();
    moved(bytes.size());
    return {};
}

asio::awaitable<error_code> test_stream::handshake() { co_return error_code{}; }
asio::awaitable<void> test_stream::goodbye() { co_return; }

bool test_stream::is_open() const { return !s_->closed[side_]; }

void test_stream::shutdown() {
    s_->to[1 - side_].ended = true;
    s_->to[1 - side_].wake();
}

void test_stream::close() {
    if (s_->closed[side_]) return;
    s_->closed[side_] = true;
    s_->to[side_].wake();  // our pending read ends
    shutdown();            // the peer reads eof
}

std::vector<std::byte> test_stream::take() {
    direction& in = s_->to[side_];
    std::vector<std::byte> out(in.bytes.begin(), in.bytes.end());
    in.bytes.clear();
    return out;
}

bool test_stream::peer_ended() const { return s_->to[side_].ended; }
std::size_t test_stream::operations() const { return s_->ops[side_]; }
std::size_t test_stream::shell_operations() const { return s_->ops[0]; }
std::size_t test_stream::shell_bytes() const { return s_->moved; }
bool test_stream::fault_struck() const { return s_->struck; }
const std::vector<std::span<const std::byte>>& test_stream::shell_gathered() const { return s_->gathered; }

}  // namespace meshmaster::shell::testing
