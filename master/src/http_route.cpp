#include "http_route.hpp"

#include <fmt/format.h>

#include <array>

namespace meshmaster::master::http {

namespace {

int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// One entry per path pattern: "{}" matches one segment, which becomes a parameter.
struct pattern {
    std::string_view method;
    std::string_view path;
    route_id route;
    access needs;
    std::string_view name;
};

constexpr std::array<pattern, 18> patterns{{
    {"GET", "/healthz", route_id::healthz, access::none, "GET /healthz"},
    {"GET", "/readyz", route_id::readyz, access::none, "GET /readyz"},
    {"GET", "/metrics", route_id::metrics, access::none, "GET /metrics"},
    {"GET", "/v1/status", route_id::status, access::read, "GET /v1/status"},
    {"GET", "/v1/slaves", route_id::slaves, access::read, "GET /v1/slaves"},
    {"GET", "/v1/shards", route_id::shards, access::read, "GET /v1/shards"},
    {"GET", "/v1/restarts/{}", route_id::restart_progress, access::read, "GET /v1/restarts/{id}"},
    {"GET", "/v1/events", route_id::events, access::read, "GET /v1/events"},
    {"GET", "/v1/events/stream", route_id::events_stream, access::read, "GET /v1/events/stream"},
    {"POST", "/v1/restart", route_id::restart, access::admin, "POST /v1/restart"},
    {"POST", "/v1/reload", route_id::reload, access::admin, "POST /v1/reload"},
    {"POST", "/v1/stop", route_id::stop, access::admin, "POST /v1/stop"},
    {"POST", "/v1/slaves/{}/drain", route_id::drain, access::admin, "POST /v1/slaves/{id}/drain"},
    // The dashboard's files need no token: they hold only code, and the page asks for one for /v1.
    {"GET", "/", route_id::dashboard, access::none, "GET / (dashboard)"},
    {"GET", "/index.html", route_id::dashboard, access::none, "GET / (dashboard)"},
    {"GET", "/dashboard.css", route_id::dashboard, access::none, "GET / (dashboard)"},
    {"GET", "/dashboard.js", route_id::dashboard, access::none, "GET / (dashboard)"},
    {"GET", "/favicon.svg", route_id::dashboard, access::none, "GET / (dashboard)"},
}};

std::vector<std::string_view> split_path(std::string_view path) {
    std::vector<std::string_view> out;
    path.remove_prefix(1);  // the leading '/'
    while (true) {
        const auto slash = path.find('/');
        out.push_back(path.substr(0, slash));
        if (slash == std::string_view::npos) break;
        path.remove_prefix(slash + 1);
    }
    return out;
}

route_match refuse(unsigned status, std::string error) {
    route_match m;
    m.status = status;
    m.error = std::move(error);
    return m;
}

}  // namespace

std::optional<std::string> percent_decode(std::string_view text, bool plus_is_space) {
    std::string out;
    out.reserve(text.size());
    for (std::size_t i = 0; i < text.size(); ++i) {
        const char c = text[i];
        if (c == '%') {
            if (i + 2 >= text.size()) return std::nullopt;
            const int hi = hex_digit(text[i + 1]);
            const int lo = hex_digit(text[i + 2]);
            if (hi < 0 || lo < 0) return std::nullopt;
            out.push_back(static_cast<char>(hi * 16 + lo));
            i += 2;
        } else if (c == '+' && plus_is_space) {
            out.push_back(' ');
        } else {
            out.push_back(c);
        }
    }
    return out;
}

std::optional<query_params> parse_query(std::string_view query, std::string* error) {
    query_params out;
    while (!query.empty()) {
        const auto amp = query.find('&');
        const std::string_view part = query.substr(0, amp);
        query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
        if (part.empty()) continue;  // "a=1&&b=2"
        const auto eq = part.find('=');
        auto name = percent_decode(part.substr(0, eq), true);
        auto value = percent_decode(eq == std::string_view::npos ? std::string_view{} : part.substr(eq + 1), true);
        if (!name || !value) {
            if (error) *error = fmt::format("the query parameter '{}' has a malformed %-escape", part.substr(0, 64));
            return std::nullopt;
        }
        out.emplace_back(std::move(*name), std::move(*value));
    }
    return out;
}

std::optional<std::string_view> query_value(const query_params& query, std::string_view name) {
    for (const auto& [n, v] : query) {
        if (n == name) return std::string_view(v);
    }
    return std::nullopt;
}

route_match route(std::string_view method, std::string_view target) {
    const auto question = target.find('?');
    const std::string_view raw_path = target.substr(0, question);
    const std::string_view raw_query = question == std::string_view::npos ? std::string_view{} : target.substr(question + 1);
    // Origin-form only ("/path"): absolute-form and "*" name nothing here.
    if (raw_path.empty() || raw_path.front() != '/') return refuse(404, "the request target must be a path starting with '/'");
    std::vector<std::string> segments;
    for (std::string_view raw : split_path(raw_path)) {
        auto decoded = percent_decode(raw);
        if (!decoded) return refuse(404, fmt::format("the path segment '{}' has a malformed %-escape", raw.substr(0, 64)));
        // Decoded '/' or NUL would make one segment look like two, or end a C string early.
        if (decoded->find('/') != std::string::npos || decoded->find('\0') != std::string::npos) {
            return refuse(404, "the path has an encoded '/' or NUL: no such resource");
        }
        if (*decoded == "." || *decoded == "..") return refuse(404, "the path has a '.' or '..' segment: no such resource");
        segments.push_back(std::move(*decoded));
    }
    // "/v1/status/" is not "/v1/status": an empty last segment names nothing (but "/" alone is the
    // dashboard's).
    std::string allow;
    for (const pattern& p : patterns) {
        const auto want = split_path(p.path);
        if (want.size() != segments.size()) continue;
        std::vector<std::string> params;
        bool same = true;
        for (std::size_t i = 0; i < want.size() && same; ++i) {
            if (want[i] == "{}") {
                if (segments[i].empty()) same = false;
                else params.push_back(segments[i]);
            } else {
                same = want[i] == segments[i];
            }
        }
        if (!same) continue;
        // HEAD is GET without the body (RFC 9110, 9.3.2): load balancers and uptime checks probe
        // with it, so every GET path takes it; the server leaves the body out.
        const bool head_of_get = method == "HEAD" && p.method == "GET";
        if (p.method != method && !head_of_get) {
            const std::string_view methods = p.method == "GET" ? "GET, HEAD" : p.method;
            if (allow.find(methods) == std::string::npos) allow += (allow.empty() ? "" : ", ") + std::string(methods);
            continue;
        }
        std::string query_error;
        auto query = parse_query(raw_query, &query_error);
        if (!query) return refuse(400, std::move(query_error));
        route_match m;
        m.route = p.route;
        m.needs = p.needs;
        m.params = std::move(params);
        m.query = std::move(*query);
        return m;
    }
    if (!allow.empty()) {
        route_match m = refuse(405, fmt::format("{} takes {}, not {}", raw_path.substr(0, 128), allow, method.substr(0, 16)));
        m.allow = std::move(allow);
        return m;
    }
    return refuse(404, fmt::format("no such resource: {}", raw_path.substr(0, 128)));
}

std::string_view route_name(route_id r) {
    for (const pattern& p : patterns) {
        if (p.route == r) return p.name;
    }
    return "(no route)";
}

}  // namespace meshmaster::master::http
