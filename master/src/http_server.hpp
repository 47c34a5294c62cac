// The HTTP API's server: Boost.Beast HTTP/1.1 on the daemon's io_context (one thread), plain or
// TLS, keep-alive. It accepts, reads requests within their limits and deadlines, asks its host for
// each answer and writes it; what the answer is (routing, tokens, the endpoints) is the host's
// (daemon_http.cpp). Thread safety: none; everything runs on the executor given.
//
// Limits, each refused before it costs more than its bytes (docs/http.md, "Limits"):
//  - connections: past max_connections an accepted connection gets a canned 503 (plain HTTP; a
//    TLS one is closed) and is closed at once, no session is started;
//  - the request line and headers: read within header_timeout from the request's first byte
//    (slowloris: the connection is cut), at most max_header bytes (431);
//  - the body: a Content-Length over max_body is answered 413 and the connection closed without
//    reading it; a chunked body is cut at max_body the same way;
//  - a keep-alive connection waits at most idle_timeout for its next request.
// Deadlines are Beast's tcp_stream expiry (a timer armed per operation, never a polling sleep).
//
// HEAD: the host answers it as GET (http_route.hpp); the server sends that answer's status and
// headers, with the Content-Length of its body, and no body. A stream's HEAD is its headers alone.
//
// Streaming (Server-Sent Events): a response with `stream` set is sent as its status and headers
// without a length (Connection: close), then the connection is handed to `stream`, which writes
// through the stream_writer until it returns or a write fails (the client went, or did not read
// for write_timeout); the connection then closes. It stays counted in max_connections meanwhile.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/message.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace boost::asio::ssl {
class context;
}

namespace meshmaster::master::http {

using request = boost::beast::http::request<boost::beast::http::string_body>;

/// Where a streaming handler writes. Each write completes when the bytes are handed to the
/// kernel, or fails when the client has gone or has not read for the write deadline.
class stream_writer {
public:
    virtual ~stream_writer() = default;
    /// False once the connection is unusable (then every later write fails at once too).
    virtual boost::asio::awaitable<bool> write(std::string data) = 0;
    /// The server is stopping: a long-running stream should end.
    [[nodiscard]] virtual bool stopping() const = 0;
};

struct response {
    unsigned status = 200;
    std::string body;
    std::string content_type = "application/json";
    std::vector<std::pair<std::string, std::string>> headers;  ///< extra ones (Allow, Cache-Control)
    /// Set: a streaming response (see above). `body` is ignored.
    std::function<boost::asio::awaitable<void>(stream_writer&)> stream;
};

struct limits {
    std::uint64_t max_header = 8 << 10;
    std::uint64_t max_body = 64 << 10;
    std::uint32_t max_connections = 64;
    std::chrono::milliseconds header_timeout{10'000};
    std::chrono::milliseconds idle_timeout{30'000};
    std::chrono::milliseconds write_timeout{10'000};  ///< a client that does not read an answer
};

/// What the server asks of the daemon.
class server_host {
public:
    virtual ~server_host() = default;
    /// The answer to a request whose headers and body were read within the limits.
    virtual boost::asio::awaitable<response> handle(const request& req, const std::string& peer) = 0;
    /// A request or connection refused by the server itself (reason: http_errors.hpp's names),
    /// `what` saying why in words. The host logs (limited) and counts it.
    virtual void refused(std::string_view reason, const std::string& peer, std::string_view what) = 0;
    /// Read at every connection and request: a reload's new limits apply from the next one.
    virtual limits http_limits() const = 0;
};

class server {
public:
    server(boost::asio::any_io_executor executor, server_host& host);
    ~server();
    server(const server&) = delete;
    server& operator=(const server&) = delete;

    /// Accepts until the acceptor is closed; TLS when `tls` is given (it must outlive the server).
    boost::asio::awaitable<void> accept(boost::asio::ip::tcp::acceptor& acceptor, boost::asio::ssl::context* tls);
    /// Closes every connection (the daemon is ending); streams see stopping().
    void close_all();
    [[nodiscard]] std::size_t connections() const;

    struct state;  // defined in http_server.cpp, shared with its sessions

private:
    std::shared_ptr<state> s_;  // shared with the sessions, which may outlive a close_all()
};

}  // namespace meshmaster::master::http
