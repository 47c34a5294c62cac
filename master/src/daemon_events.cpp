// GET /v1/events and GET /v1/events/stream: the event log's newest records, from the daemon's event
// feed (event_feed.hpp), as a page or as Server-Sent Events (docs/http.md, "Events").
//
// The stream sends what the feed holds after the reader's position — `Last-Event-ID` when a
// browser reconnects, else `?since=`, else from now on — then waits for the feed to grow (the
// feed_grew_ timer, cancelled at each record) or for 15 s, which sends a keep-alive comment: a
// reader that went away is noticed by the write that fails, and proxies do not close a quiet
// stream. A reader too slow for the feed (records dropped before it read them) is told with a
// `gap` event naming the oldest record still held; the event log has the rest. A reader that does
// not read at all is cut by the server's write deadline. Thread safety: none; the daemon's thread.
#include "daemon_runtime.hpp"

#include "http_errors.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <fmt/format.h>

namespace meshmaster::master {

namespace asio = boost::asio;
using namespace asio::experimental::awaitable_operators;

namespace {

constexpr auto keep_alive_every = std::chrono::seconds(15);
constexpr std::size_t records_per_write = 500;

// The query, or the 400 that refuses it.
std::variant<event_query, http::response> read_query(const http::route_match& m) {
    auto q = parse_event_query(m.query);
    if (auto* problem = std::get_if<std::string>(&q)) {
        return http::response{.status = 400, .body = http::error_body(*problem)};
    }
    return std::get<event_query>(std::move(q));
}

}  // namespace

http::response daemon_runtime::events_page(const http::route_match& m, const std::string& peer) {
    auto q = read_query(m);
    if (auto* refusal = std::get_if<http::response>(&q)) {
        refused("http_bad_request", peer, fmt::format("GET /v1/events: {}", refusal->body));
        return std::move(*refusal);
    }
    const auto& query = std::get<event_query>(q);
    const auto page = query.since ? feed_.after(*query.since, query.filter, query.limit) : feed_.latest(query.filter, query.limit);
    return {.body = events_json(page, feed_.last_seq())};
}

http::response daemon_runtime::events_stream(const http::request& req, const http::route_match& m, const std::string& peer) {
    auto q = read_query(m);
    if (auto* refusal = std::get_if<http::response>(&q)) {
        refused("http_bad_request", peer, fmt::format("GET /v1/events/stream: {}", refusal->body));
        return std::move(*refusal);
    }
    event_query query = std::get<event_query>(std::move(q));
    // A browser's EventSource (or a client like it) resumes with the last id it received.
    if (const auto last = req["Last-Event-ID"]; !last.empty()) {
        const std::vector<std::pair<std::string, std::string>> since{{"since", std::string(last)}};
        auto resumed = parse_event_query(since);
        if (auto* problem = std::get_if<std::string>(&resumed)) {
            const std::string message = "Last-Event-ID: " + *problem;
            refused("http_bad_request", peer, "GET /v1/events/stream: " + message);
            return {.status = 400, .body = http::error_body(message)};
        }
        query.since = std::get<event_query>(resumed).since;
    }
    const std::uint64_t start = query.since.value_or(feed_.last_seq());
    http::response r{.content_type = "text/event-stream; charset=utf-8",
                     .headers = {{"Cache-Control", "no-cache"}, {"X-Accel-Buffering", "no"}}};
    r.stream = [this, filter = std::move(query.filter), since = start](http::stream_writer& out) mutable -> asio::awaitable<void> {
        // How long a browser waits before it reconnects, and a first line the reader can see at once.
        if (!co_await out.write(fmt::format("retry: 2000\n: meshmaster events after {}\n\n", since))) co_return;
        asio::steady_timer keep_alive(io_);
        while (!out.stopping()) {
            const auto page = feed_.after(since, filter, records_per_write);
            std::string text;
            if (page.gap) {
                text += fmt::format("event: gap\ndata: {{\"after\":{},\"first_kept\":{}}}\n\n", since, page.first_kept);
            }
            for (const feed_entry* e : page.entries) text += sse_message(*e);
            since = page.next_since;
            // Written before the next wait: the page's pointers die at the next record, the text does not.
            if (!text.empty()) {
                if (!co_await out.write(std::move(text))) co_return;
                continue;
            }
            if (log_ended_) co_return;  // the log's last record is sent: nothing follows it
            keep_alive.expires_after(keep_alive_every);
            const auto woke = co_await (feed_grew_.async_wait(asio::as_tuple(asio::use_awaitable)) ||
                                        keep_alive.async_wait(asio::as_tuple(asio::use_awaitable)));
            if (woke.index() == 1 && !co_await out.write(": keep-alive\n\n")) co_return;
        }
    };
    return r;
}

}  // namespace meshmaster::master
