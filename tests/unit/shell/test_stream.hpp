// A connected pair of in-memory byte streams that fail on purpose, for the shells' unit tests: the
// shell under test gets one end, the test's scripted peer the other. Faults apply to the shell's end:
// at most `read_size` bytes per read and `write_size` per write (partial reads and writes), an error
// on the n-th read or write and every one after it (Boost.Beast's test::fail_count), and a cut of the
// connection once `cut_after` bytes have gone through the shell's end (a close at any point).
// Our own rather than beast::test::stream: in Boost 1.81 that stream ignores per-operation
// cancellation, and the shells rely on it (`co_await (read || deadline)`: the read must end when the
// deadline wins). Reads here wait on a timer, whose waits Asio cancels.
// Thread safety: none; both ends run on one io_context thread.
#pragma once

#include <meshmaster/shell/byte_stream.hpp>

#include <boost/beast/_experimental/test/fail_count.hpp>

#include <cstddef>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace meshmaster::shell::testing {

struct faults {
    std::size_t read_size = std::numeric_limits<std::size_t>::max();
    std::size_t write_size = std::numeric_limits<std::size_t>::max();
    /// The 0-based read or write (of the shell's end) that fails with beast's test_failure, and every
    /// one after it; none if empty.
    std::optional<std::size_t> fail_at;
    /// Cut the connection (both ends read eof, writes fail) once this many bytes have been read or
    /// written by the shell's end.
    std::optional<std::size_t> cut_after;
};

struct link_state;

class test_stream final : public byte_stream {
public:
    test_stream(std::shared_ptr<link_state> s, int side) : s_(std::move(s)), side_(side) {}
    ~test_stream() override;

    boost::asio::any_io_executor get_executor() override;
    boost::asio::awaitable<io_result> read_some(std::span<std::byte> into) override;
    boost::asio::awaitable<io_result> write(std::span<const std::byte> bytes) override;
    /// Writes each piece in turn, as write() would (the same faults), and remembers where each lay.
    boost::asio::awaitable<io_result> write_gathered(std::span<const std::span<const std::byte>> pieces) override;
    boost::system::error_code write_now(std::span<const std::byte> bytes) override;
    boost::asio::awaitable<boost::system::error_code> handshake() override;
    bool secured() const override { return false; }
    boost::asio::awaitable<void> goodbye() override;
    bool is_open() const override;
    void shutdown() override;
    void close() override;

    /// What has arrived and not been read yet, taken (the scripted peer's side of a read).
    std::vector<std::byte> take();
    /// Whether the other end has ended its writing (closed, shut down, or the link was cut).
    bool peer_ended() const;
    /// The reads and writes this end has made (faults count the shell's).
    std::size_t operations() const;
    /// The reads and writes the shell's end has made, and the bytes it moved.
    std::size_t shell_operations() const;
    std::size_t shell_bytes() const;
    /// Whether a fault (an error, or the cut) has struck the shell's end.
    bool fault_struck() const;
    /// Where each piece of the shell end's gathered writes lay, in order (kept after that end is
    /// gone): a test can tell a buffer written where it lay from a copy of it.
    const std::vector<std::span<const std::byte>>& shell_gathered() const;

private:
    bool faulty() const { return side_ == 0; }
    boost::system::error_code count_operation();
    void moved(std::size_t n);

    std::shared_ptr<link_state> s_;
    int side_;  // 0: the shell's end, 1: the peer's
};

struct test_link {
    std::unique_ptr<test_stream> shell;  // to the code under test
    std::unique_ptr<test_stream> peer;   // to the scripted peer
};

test_link make_link(boost::asio::any_io_executor executor, faults f = {});

}  // namespace meshmaster::shell::testing
