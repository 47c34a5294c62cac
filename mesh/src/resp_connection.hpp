// A minimal Redis client on one Asio executor: RESP over a TCP socket, with hiredis as the codec
// only (redisFormatCommandArgv to encode, redisReader to parse). hiredis' own async API has no
// Asio adapter and no timeouts; this keeps every byte on the caller's executor and gives every
// operation a deadline.
//
// Private to the mesh. Thread safety: none; one coroutine sends and one receives at a time.
#pragma once

#include <meshmaster/mesh/redis_discovery.hpp>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <hiredis/hiredis.h>

#include <array>
#include <chrono>
#include <memory>
#include <span>
#include <string>
#include <string_view>

namespace meshmaster::mesh::detail {

struct reply_deleter {
    void operator()(redisReply* r) const noexcept { freeReplyObject(r); }
};
using reply_ptr = std::unique_ptr<redisReply, reply_deleter>;

/// One reply, or why there is none. A reply that is a Redis error (-ERR …) is a reply, not an
/// error here: commands decide what an error reply means.
struct reply {
    boost::system::error_code ec;
    reply_ptr value;

    [[nodiscard]] bool is(int type) const noexcept { return !ec && value && value->type == type; }
    [[nodiscard]] std::string_view text() const noexcept {
        return value && value->str ? std::string_view(value->str, value->len) : std::string_view();
    }
};

/// The text of a string, status or error reply element.
inline std::string_view text_of(const redisReply* r) noexcept {
    return r && r->str ? std::string_view(r->str, r->len) : std::string_view();
}

class resp_connection {
public:
    using duration = std::chrono::milliseconds;

    explicit resp_connection(boost::asio::any_io_executor ex);
    ~resp_connection();
    resp_connection(const resp_connection&) = delete;
    resp_connection& operator=(const resp_connection&) = delete;

    /// Resolves and connects, then AUTH and SELECT as the options ask; each step within
    /// command_timeout.
    boost::asio::awaitable<boost::system::error_code> open(const redis_options& opts);

    /// Sends one command and waits for its reply, within `timeout`. After a failure (timeout
    /// included) the connection is closed: the reply stream is out of step.
    boost::asio::awaitable<reply> command(std::span<const std::string> args, duration timeout);

    /// Sends one command without waiting for a reply (pub/sub), within `timeout`.
    boost::asio::awaitable<boost::system::error_code> send(std::span<const std::string> args, duration timeout);

    /// The next reply or push. redis_errc::timed_out when none arrives within `timeout`; unlike
    /// other failures that leaves the connection usable (nothing is lost: data stays buffered).
    boost::asio::awaitable<reply> receive(duration timeout);

    void close() noexcept;
    [[nodiscard]] bool is_open() const noexcept { return socket_.is_open(); }

private:
    boost::asio::ip::tcp::socket socket_;
    std::unique_ptr<redisReader, void (*)(redisReader*)> reader_;
    std::array<char, 16 * 1024> input_{};
};

/// Maps an error reply to the error it stands for (NOAUTH/WRONGPASS → auth_failed, …).
boost::system::error_code error_of(const reply& r, redis_errc otherwise);

}  // namespace meshmaster::mesh::detail
