#include "http_server.hpp"

#include "http_errors.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>

#include <fmt/format.h>

#include <tuple>
#include <unordered_map>

namespace meshmaster::master::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;

namespace {
constexpr auto tuple_awaitable = asio::as_tuple(asio::use_awaitable);
}  // namespace

struct server::state {
    asio::any_io_executor executor;
    server_host& host;
    bool stopping = false;
    std::uint64_t next_id = 0;
    // Each live connection's way to close it (its socket), by id: the count is what
    // max_connections bounds, and close_all() ends them.
    std::unordered_map<std::uint64_t, std::function<void()>> live;
};

namespace {

// A live connection's entry in state::live, removed when its session ends however it ends.
struct registration {
    std::shared_ptr<server::state> s;
    std::uint64_t id;
    ~registration() { s->live.erase(id); }
};

tcp::socket& socket_of(beast::tcp_stream& s) { return s.socket(); }
tcp::socket& socket_of(beast::ssl_stream<beast::tcp_stream>& s) { return beast::get_lowest_layer(s).socket(); }

template <class Stream>
class session_writer final : public stream_writer {
public:
    session_writer(Stream& stream, const server::state& s, std::chrono::milliseconds timeout)
        : stream_(stream), s_(s), timeout_(timeout) {}
    asio::awaitable<bool> write(std::string data) override {
        if (!ok_) co_return false;
        auto& tcp = beast::get_lowest_layer(stream_);
        tcp.expires_after(timeout_);
        auto [ec, n] = co_await asio::async_write(stream_, asio::buffer(data), tuple_awaitable);
        tcp.expires_never();
        ok_ = !ec;
        co_return ok_;
    }
    bool stopping() const override { return s_.stopping; }

private:
    Stream& stream_;
    const server::state& s_;
    std::chrono::milliseconds timeout_;
    bool ok_ = true;
};

// Why a request was not read: answered (with this status) and the connection closed.
struct read_refusal {
    unsigned status = 0;  // 0: nothing to answer (the client went, or it is a quiet keep-alive end)
    std::string_view reason;
    std::string what;
};

template <class Body>
void set_headers(bhttp::response<Body>& res, const response& r) {
    res.set(bhttp::field::server, "meshmaster");
    res.set(bhttp::field::content_type, r.content_type);
    for (const auto& [k, v] : r.headers) res.set(k, v);
}

template <class Stream>
asio::awaitable<void> write_error(Stream& stream, unsigned status, std::string_view message, unsigned version,
                                  std::chrono::milliseconds timeout) {
    bhttp::response<bhttp::string_body> res{static_cast<bhttp::status>(status), version};
    res.set(bhttp::field::server, "meshmaster");
    res.set(bhttp::field::content_type, "application/json");
    res.body() = error_body(message);
    res.keep_alive(false);
    res.prepare_payload();
    beast::get_lowest_layer(stream).expires_after(timeout);
    co_await bhttp::async_write(stream, res, tuple_awaitable);
}

// Ends a connection after an answer that closes it: the client may still be sending (a body we
// refused to read), and closing with unread bytes would reset the connection before it reads the
// answer. So: no more writes, then read and drop for a moment, then close.
template <class Stream>
asio::awaitable<void> lingering_close(Stream& stream) {
    auto& socket = socket_of(stream);
    boost::system::error_code ignored;
    socket.shutdown(tcp::socket::shutdown_send, ignored);
    auto& lowest = beast::get_lowest_layer(stream);
    lowest.expires_after(std::chrono::seconds(1));
    static constexpr std::size_t most = 256 << 10;
    std::size_t drained = 0;
    std::array<char, 4096> sink{};
    while (drained < most) {
        auto [ec, n] = co_await socket.async_read_some(asio::buffer(sink), tuple_awaitable);
        if (ec) break;
        drained += n;
    }
    lowest.expires_never();
    socket.close(ignored);
}

template <class Stream>
asio::awaitable<void> serve(std::shared_ptr<server::state> s, Stream stream, std::string peer) {
    const std::uint64_t id = s->next_id++;
    s->live.emplace(id, [&stream] {
        boost::system::error_code ignored;
        socket_of(stream).close(ignored);
    });
    const registration registered{s, id};
    auto& lowest = beast::get_lowest_layer(stream);
    limits lim = s->host.http_limits();
    if constexpr (!std::is_same_v<Stream, beast::tcp_stream>) {
        lowest.expires_after(lim.header_timeout);
        auto [ec] = co_await stream.async_handshake(asio::ssl::stream_base::server, tuple_awaitable);
        if (ec) {
            if (ec == beast::error::timeout) {
                s->host.refused("http_timeout", peer, "the TLS handshake did not end within http.header_timeout");
            } else if (ec != asio::error::eof && ec != asio::error::connection_reset && ec != asio::error::operation_aborted) {
                // Plain HTTP on the https port, say: there is no way to answer it.
                s->host.refused("http_bad_request", peer, "TLS handshake failed: " + ec.message());
            }
            co_return;
        }
    }
    beast::flat_buffer buffer;
    bool first = true;
    while (!s->stopping) {
        lim = s->host.http_limits();
        read_refusal refusal;
        // The next request's first byte: a new connection has header_timeout to start, a
        // keep-alive one idle_timeout (and its end then is no refusal).
        if (buffer.size() == 0) {
            lowest.expires_after(first ? lim.header_timeout : lim.idle_timeout);
            auto [ec, n] = co_await stream.async_read_some(buffer.prepare(4096), tuple_awaitable);
            if (ec) {
                if (ec == beast::error::timeout && first) {
                    s->host.refused("http_timeout", peer, "no request within http.header_timeout of connecting");
                }
                break;
            }
            buffer.commit(n);
        }
        first = false;
        // From the first byte: the headers within header_timeout, and within max_header.
        bhttp::request_parser<bhttp::empty_body> head;
        head.header_limit(static_cast<std::uint32_t>(std::min<std::uint64_t>(lim.max_header, UINT32_MAX)));
        head.body_limit(lim.max_body);
        lowest.expires_after(lim.header_timeout);
        auto [hec, hn] = co_await bhttp::async_read_header(stream, buffer, head, tuple_awaitable);
        if (hec == bhttp::error::body_limit) {
            // The Content-Length alone says it is too large (Beast stops at that header: the
            // parser's header is not complete, so its length is not asked for here).
            refusal = {413, "http_body_too_large",
                       fmt::format("the Content-Length exceeds http.max_body ({} bytes): the body is not read", lim.max_body)};
        } else if (hec == bhttp::error::header_limit) {
            refusal = {431, "http_headers_too_large", fmt::format("the request line and headers exceed http.max_header ({} bytes)", lim.max_header)};
        } else if (hec == beast::error::timeout) {
            s->host.refused("http_timeout", peer, "the request's headers did not arrive within http.header_timeout");
            break;  // a client this slow does not read answers either
        } else if (hec == bhttp::error::end_of_stream || hec == asio::error::eof || hec == asio::error::connection_reset ||
                   hec == asio::error::operation_aborted || hec == asio::ssl::error::stream_truncated) {
            break;
        } else if (hec) {
            refusal = {400, "http_bad_request", fmt::format("malformed request: {}", hec.message())};
        } else if (const auto length = head.content_length(); length && *length > lim.max_body) {
            refusal = {413, "http_body_too_large",
                       fmt::format("the body ({} bytes) exceeds http.max_body ({} bytes): not read", *length, lim.max_body)};
        }
        const unsigned version = hec ? 11 : head.get().version();
        if (refusal.status != 0) {
            s->host.refused(refusal.reason, peer, refusal.what);
            co_await write_error(stream, refusal.status, refusal.what, version, lim.write_timeout);
            co_await lingering_close(stream);
            co_return;
        }
        // The body, within max_body and the same deadline. A client waiting for 100 Continue
        // (curl with a larger body) is told to send it.
        if (const auto expect = head.get()[bhttp::field::expect]; beast::iequals(expect, "100-continue")) {
            bhttp::response<bhttp::empty_body> go_on{bhttp::status::continue_, version};
            auto [cec, cn] = co_await bhttp::async_write(stream, go_on, tuple_awaitable);
            if (cec) break;
        }
        bhttp::request_parser<bhttp::string_body> full{std::move(head)};
        full.body_limit(lim.max_body);
        if (!full.is_done()) {
            auto [bec, bn] = co_await bhttp::async_read(stream, buffer, full, tuple_awaitable);
            if (bec == bhttp::error::body_limit) {
                refusal = {413, "http_body_too_large", fmt::format("the body exceeds http.max_body ({} bytes)", lim.max_body)};
            } else if (bec == beast::error::timeout) {
                s->host.refused("http_timeout", peer, "the request's body did not arrive within http.header_timeout");
                break;
            } else if (bec) {
                refusal = {400, "http_bad_request", fmt::format("malformed request body: {}", bec.message())};
                if (bec == bhttp::error::end_of_stream || bec == asio::error::eof) break;
            }
            if (refusal.status != 0) {
                s->host.refused(refusal.reason, peer, refusal.what);
                co_await write_error(stream, refusal.status, refusal.what, version, lim.write_timeout);
                co_await lingering_close(stream);
                co_return;
            }
        }
        lowest.expires_never();  // the handler's time is the daemon's, not the client's
        const request req = full.release();
        response r = co_await s->host.handle(req, peer);
        if (s->stopping && !r.stream) r.headers.emplace_back("Connection", "close");
        const bool head_request = req.method() == bhttp::verb::head;
        if (r.stream && !head_request) {
            bhttp::response<bhttp::empty_body> head_only{static_cast<bhttp::status>(r.status), req.version()};
            set_headers(head_only, r);
            head_only.keep_alive(false);  // the body runs until the connection closes
            bhttp::response_serializer<bhttp::empty_body> serializer{head_only};
            lowest.expires_after(lim.write_timeout);
            auto [wec, wn] = co_await bhttp::async_write_header(stream, serializer, tuple_awaitable);
            lowest.expires_never();
            if (!wec) {
                session_writer<Stream> writer(stream, *s, lim.write_timeout);
                co_await r.stream(writer);
            }
            break;
        }
        const bool keep_alive = req.keep_alive() && !s->stopping && !r.stream;
        lowest.expires_after(lim.write_timeout);
        boost::system::error_code wec;
        if (head_request) {
            // GET's status and headers, Content-Length included, and no body (Beast's own
            // http_server example does HEAD the same way). A stream's HEAD is its headers alone.
            bhttp::response<bhttp::empty_body> res{static_cast<bhttp::status>(r.status), req.version()};
            set_headers(res, r);
            if (!r.stream) res.content_length(r.body.size());
            res.keep_alive(keep_alive);
            std::tie(wec, std::ignore) = co_await bhttp::async_write(stream, res, tuple_awaitable);
        } else {
            bhttp::response<bhttp::string_body> res{static_cast<bhttp::status>(r.status), req.version()};
            set_headers(res, r);
            res.body() = std::move(r.body);
            res.keep_alive(keep_alive);
            res.prepare_payload();
            std::tie(wec, std::ignore) = co_await bhttp::async_write(stream, res, tuple_awaitable);
        }
        if (wec || !keep_alive) break;
    }
    boost::system::error_code ignored;
    socket_of(stream).shutdown(tcp::socket::shutdown_both, ignored);
    socket_of(stream).close(ignored);
}

}  // namespace

server::server(asio::any_io_executor executor, server_host& host)
    : s_(std::make_shared<state>(state{.executor = std::move(executor), .host = host})) {}

server::~server() { close_all(); }

std::size_t server::connections() const { return s_->live.size(); }

void server::close_all() {
    s_->stopping = true;
    // (Closing runs no handler inline: each session ends on its own turn.)
    for (auto& [id, close] : s_->live) close();
}

asio::awaitable<void> server::accept(tcp::acceptor& acceptor, asio::ssl::context* tls) {
    const auto s = s_;
    asio::steady_timer pause(s->executor);
    while (!s->stopping) {
        auto [ec, socket] = co_await acceptor.async_accept(tuple_awaitable);
        if (ec) {
            if (ec == asio::error::operation_aborted || !acceptor.is_open()) co_return;
            // Out of descriptors, say: accepting again at once would spin until one is freed.
            pause.expires_after(std::chrono::milliseconds(50));
            co_await pause.async_wait(tuple_awaitable);
            continue;
        }
        boost::system::error_code ignored;
        const auto remote = socket.remote_endpoint(ignored);
        std::string peer = fmt::format("{}:{}", remote.address().to_string(), remote.port());
        const limits lim = s->host.http_limits();
        if (s->live.size() >= lim.max_connections) {
            const std::string what = fmt::format("connection limit (http.max_connections = {}) reached", lim.max_connections);
            s->host.refused("http_too_many_connections", peer, what);
            if (!tls) {
                // One write that does not wait: a fresh socket's send buffer takes these few bytes,
                // and a client that cannot take them gets the close alone. No session, no coroutine.
                const std::string body = error_body(what);
                const std::string answer = fmt::format(
                    "HTTP/1.1 503 Service Unavailable\r\nServer: meshmaster\r\nContent-Type: application/json\r\n"
                    "Content-Length: {}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n{}",
                    body.size(), body);
                socket.non_blocking(true, ignored);
                socket.write_some(asio::buffer(answer), ignored);
                socket.shutdown(tcp::socket::shutdown_send, ignored);
            }
            socket.close(ignored);
            continue;
        }
        socket.set_option(tcp::no_delay(true), ignored);
        if (tls) {
            asio::co_spawn(s->executor,
                           serve(s, beast::ssl_stream<beast::tcp_stream>(beast::tcp_stream(std::move(socket)), *tls), std::move(peer)),
                           asio::detached);
        } else {
            asio::co_spawn(s->executor, serve(s, beast::tcp_stream(std::move(socket)), std::move(peer)), asio::detached);
        }
    }
}

}  // namespace meshmaster::master::http
