// The HTTP API's routing, sans-I/O (no Asio, no Beast): a request's method and target become a
// route with its path parameters and its decoded query, or the status and message that refuse it.
// Used by daemon_http.cpp; unit-tested under sanitizers (tests/unit/master/test_http_route.cpp).
//
// Paths are compared after percent-decoding, segment by segment. A path with a `.` or `..` segment
// (raw or encoded as %2e), an encoded `/` or a NUL byte is answered 404: the API serves no files, so
// such a path names nothing, and no later code has to think about it. Errors are values: a route of
// `route_id::none` carries the status (404, 405) and a message naming what was wrong.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace meshmaster::master::http {

/// Every endpoint the API knows. metrics, events, events_stream and drain are routed here so that
/// the lead's handlers plug in without touching the router; daemon_http.cpp answers them as it can.
enum class route_id {
    none,
    healthz,
    readyz,
    metrics,
    status,
    slaves,
    shards,
    restart_progress,  // GET /v1/restarts/{id}
    events,
    events_stream,
    restart,  // POST /v1/restart
    reload,
    stop,
    drain,  // POST /v1/slaves/{id}/drain
    dashboard,  // GET /, /index.html, /dashboard.css, /dashboard.js: the page (dashboard_assets.hpp)
};

/// What a route asks of the caller's token.
enum class access { none, read, admin };

/// "a=1&b=x%20y": name, value pairs in order, percent-decoded ('+' is a space in a query).
using query_params = std::vector<std::pair<std::string, std::string>>;

struct route_match {
    route_id route = route_id::none;
    access needs = access::none;
    std::vector<std::string> params;  ///< the path's {placeholders}, decoded, in order
    query_params query;
    unsigned status = 200;  ///< when route is none: 404 or 405 (or 400 for a query that does not decode)
    std::string error;      ///< when route is none: what was wrong, for the error body
    std::string allow;      ///< on 405: the methods the path takes ("GET, HEAD", "POST")
};

/// Percent-decodes `text`; nullopt on a malformed escape (`%4`, `%zz`). With `plus_is_space`
/// (query strings), '+' becomes ' '.
std::optional<std::string> percent_decode(std::string_view text, bool plus_is_space = false);

/// Splits and decodes a query string (without the '?'); an error naming the bad part when an
/// escape is malformed.
std::optional<query_params> parse_query(std::string_view query, std::string* error = nullptr);

/// The value of the first parameter named `name`, if present.
std::optional<std::string_view> query_value(const query_params& query, std::string_view name);

/// Routes `method` (as sent: "GET", "POST", ...) and `target` (the request-target: path and query).
/// "HEAD" routes as "GET" does: the caller answers it as GET and sends no body.
route_match route(std::string_view method, std::string_view target);

/// The route's name in logs and error messages ("GET /v1/status").
std::string_view route_name(route_id r);

}  // namespace meshmaster::master::http
