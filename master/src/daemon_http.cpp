// The HTTP API's endpoints (docs/http.md): routing and tokens (http_route.hpp, http_auth.hpp,
// sans-I/O), then each endpoint answered from the same daemon members as the control socket
// (daemon_control.cpp), with statuses that tell the truth (a refused action is 409, a rejected
// reload 422). Also binds the HTTP port at start and logs (limited per peer) and counts the
// requests refused. The server itself is http_server.cpp. Thread safety: none; runs on the
// daemon's io_context thread.
#include "daemon_runtime.hpp"
#include "dashboard_assets.hpp"

#include "http_errors.hpp"
#include "http_route.hpp"
#include "startup_checks.hpp"
#include "tls_context.hpp"

#include <meshmaster/protocol/json_text.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <fmt/format.h>

#include <charconv>

namespace meshmaster::master {

namespace asio = boost::asio;
namespace json = boost::json;
namespace p = meshmaster::protocol;
using asio::ip::tcp;

namespace {

http::response json_response(unsigned status, const json::value& body) {
    return {.status = status, .body = p::json_text(body)};
}

http::response error_response(unsigned status, std::string_view message) {
    return {.status = status, .body = http::error_body(message)};
}

constexpr std::string_view shard_phases[] = {"unowned", "starting", "running", "stopping", "resuming"};

}  // namespace

int daemon_runtime::listen_http() {
    if (!cfg_.http.enabled) return to_int(exit_code::ok);
    auto loaded = http::load_tokens({.read_token_file = cfg_.http.read_token_file, .admin_token_file = cfg_.http.admin_token_file});
    if (auto* problem = std::get_if<std::string>(&loaded)) {
        log_line("error", *problem);
        return to_int(exit_code::config);
    }
    http_tokens_ = std::get<http::tokens>(std::move(loaded));
    if (cfg_.http.https) {
        std::optional<asio::ssl::context> context;
        if (auto problem = load_tls_context(cfg_, context)) {
            log_line("error", "http.https: " + *problem);
            return to_int(exit_code::config);
        }
        http_tls_ = std::make_unique<asio::ssl::context>(std::move(*context));
    }
    if (const int code = open_listener(http_acceptor_, cfg_.http.listen, "http."); code != to_int(exit_code::ok)) return code;
    http_refusals_.set_limits(refusal_limits_of(cfg_));
    const auto bound = http_acceptor_.local_endpoint();
    // Which tokens exist is said, never what they are.
    log_line("info", "HTTP API listening",
             {{"http", fmt::format("{}://{}:{}", http_tls_ ? "https" : "http", bound.address().to_string(), bound.port())},
              {"read_token", !http_tokens_.read.empty()},
              {"admin_token", !http_tokens_.admin.empty()}});
    if (!http_tokens_.any()) {
        log_line("warn", "[http] has no read_token_file or admin_token_file: /v1 answers 401 to every request");
    }
    return to_int(exit_code::ok);
}

http::limits daemon_runtime::http_limits() const {
    return {.max_header = cfg_.http.max_header,
            .max_body = cfg_.http.max_body,
            .max_connections = cfg_.http.max_connections,
            .header_timeout = cfg_.http.header_timeout,
            .idle_timeout = cfg_.http.idle_timeout};
}

// Refusals on stderr through their own limiter (per peer, like the slave port's in the event log):
// a flood of bad requests is an HTTP client's problem, not the fleet's, so not in the event log.
void daemon_runtime::refused(std::string_view reason, const std::string& peer, std::string_view what) {
    count_refusal(reason);
    event_record r{.event = event_kind::connection_refused, .reason = fmt::format("{}: {}", reason, what), .address = peer};
    for (const event_record& out : http_refusals_.offer(std::move(r), now())) {
        log_line("warn", out.event == event_kind::refusals_suppressed ? "HTTP refusals held back" : "HTTP request refused",
                 {{"peer", out.address}, {"reason", out.reason}});
    }
    rearm_http_refusals();
}

void daemon_runtime::rearm_http_refusals() {
    const auto next = http_refusals_.next_due();
    if (next == http_refusals_armed_for_) return;
    http_refusals_armed_for_ = next;
    http_refusal_timer_.expires_at(next ? origin_ + std::chrono::duration_cast<std::chrono::steady_clock::duration>(*next)
                                        : std::chrono::steady_clock::time_point::max());
}

daemon_runtime::awaitable daemon_runtime::http_refusal_loop() {
    while (true) {
        auto [ec] = co_await http_refusal_timer_.async_wait(asio::as_tuple(asio::use_awaitable));
        if (ec && ec != asio::error::operation_aborted) co_return;
        if (http_refusal_timer_.expiry() > std::chrono::steady_clock::now()) continue;
        for (const event_record& out : http_refusals_.due(now())) {
            log_line("warn", "HTTP refusals held back", {{"peer", out.address}, {"reason", out.reason}});
        }
        http_refusals_armed_for_.reset();
        rearm_http_refusals();
    }
}

// 200 when every configured shard runs (a planned move counts as running); 503 with the reason
// while stopping, adopting a previous master's slaves, or with shards not running.
http::response daemon_runtime::readiness() const {
    const auto c = core_.counts(now());
    json::object o{{"shards_total", c.shards_total}, {"shards_running", c.shards_running}, {"shards_moving", c.shards_moving}};
    if (stop_requested_ || c.stopping) {
        o["ready"] = false;
        o["reason"] = "stopping";
        return json_response(503, o);
    }
    if (c.shards_running + c.shards_moving == c.shards_total) {
        o["ready"] = true;
        return json_response(200, o);
    }
    // Not all running: the full status says why (rarely asked for, so its cost is fine here).
    const auto st = core_.status(now());
    o["ready"] = false;
    if (st.adopting_ms) {
        o["reason"] = fmt::format("adopting: waiting {:.0f} ms more for the previous master's slaves to report", *st.adopting_ms);
    } else {
        // What `meshmaster status` names, the first few (a fleet of thousands of slots may have
        // as many problems): the count, then why.
        const auto problems = fleet_problems(st);
        std::string reason;
        for (std::size_t i = 0; i < problems.size() && i < 3; ++i) reason += (i ? "; " : "") + problems[i];
        o["reason"] = reason.empty() ? fmt::format("{} of {} shards running", c.shards_running + c.shards_moving, c.shards_total)
                                     : reason;
    }
    return json_response(503, o);
}

asio::awaitable<http::response> daemon_runtime::handle(const http::request& req, const std::string& peer) {
    const auto m = http::route(std::string_view(req.method_string()), std::string_view(req.target()));
    http::response r = co_await answer(req, m, peer);
    metrics_.count_http_request(m.route == http::route_id::none ? "other" : http::route_name(m.route), r.status);
    co_return r;
}

asio::awaitable<http::response> daemon_runtime::answer(const http::request& req, const http::route_match& m,
                                                       const std::string& peer) {
    if (m.route == http::route_id::none) {
        refused(http::refusal_reason(m.status), peer, m.error);
        http::response r = error_response(m.status, m.error);
        if (!m.allow.empty()) r.headers.emplace_back("Allow", m.allow);
        co_return r;
    }
    const auto auth = http::authorize(std::string_view(req[boost::beast::http::field::authorization]), m.needs, http_tokens_);
    if (!auth.allowed) {
        refused(http::refusal_reason(auth.status), peer, fmt::format("{}: {}", http::route_name(m.route), auth.error));
        http::response r = error_response(auth.status, auth.error);
        if (auth.status == 401) r.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"meshmaster\"");
        co_return r;
    }
    auto bad_request = [&](std::string message) {
        refused("http_bad_request", peer, message);
        return error_response(400, message);
    };
    // Who asked, for the audit (restart_started's and master_stopping's reason, the log lines).
    const std::string requester = "HTTP API from " + peer;
    // Every action may carry a JSON object body; a body that is not one is refused before acting.
    json::object body;
    if (m.needs == http::access::admin) {
        auto parsed = http::parse_json_body(req.body());
        if (auto* problem = std::get_if<std::string>(&parsed)) co_return bad_request(*problem);
        body = std::get<json::object>(std::move(parsed));
    }
    switch (m.route) {
        case http::route_id::healthz:
            co_return json_response(200, json::object{{"status", "ok"}});
        case http::route_id::readyz:
            co_return readiness();
        case http::route_id::metrics:
            co_return http::response{.body = metrics_text(), .content_type = "text/plain; version=0.0.4; charset=utf-8"};
        case http::route_id::status: {
            const auto detail = http::query_value(m.query, "detail");
            if (detail && *detail != "summary" && *detail != "full") {
                co_return bad_request(fmt::format("detail must be summary or full, not '{}'", detail->substr(0, 32)));
            }
            co_return json_response(200, control_status(detail == "summary" ? status_detail::summary : status_detail::full));
        }
        case http::route_id::slaves: {
            json::object st = control_status(status_detail::summary);
            co_return json_response(200, json::object{{"slaves", std::move(st["slaves"])}, {"slots", std::move(st["slots"])}});
        }
        case http::route_id::shards: {
            const auto state = http::query_value(m.query, "state");
            if (state && std::find(std::begin(shard_phases), std::end(shard_phases), *state) == std::end(shard_phases)) {
                co_return bad_request(fmt::format("state must be one of unowned, starting, running, stopping, resuming, not '{}'",
                                                  state->substr(0, 32)));
            }
            json::object st = control_status(status_detail::full);
            json::array shards;
            for (auto& s : st["shards"].as_array()) {
                if (!state || s.as_object().at("phase").as_string() == *state) shards.push_back(std::move(s));
            }
            co_return json_response(200, json::object{{"shards_total", cfg_.supervisor.shard_count}, {"shards", std::move(shards)}});
        }
        case http::route_id::restart_progress: {
            const std::string& text = m.params.at(0);
            std::uint64_t id = 0;
            const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), id);
            if (ec != std::errc{} || end != text.data() + text.size()) {
                co_return bad_request(fmt::format("the restart id must be a whole number, not '{}'", text.substr(0, 32)));
            }
            if (const auto c = core_.counts(now()); c.restart && c.restart->id == id) {
                co_return json_response(200, json::object{{"restart", id}, {"state", "running"}, {"progress", restart_json(*c.restart)}});
            }
            if (const event_record* outcome = restart_outcome(id)) {
                json::object o{{"restart", id}, {"state", outcome->event == event_kind::restart_completed ? "completed" : "failed"},
                               {"outcome", outcome_json(*outcome)}};
                co_return json_response(200, o);
            }
            co_return error_response(404, fmt::format("restart {} is not running and its outcome is not among the last {} kept: "
                                                      "older outcomes are in the event log (restart_completed, restart_failed)",
                                                      id, kept_restart_outcomes));
        }
        case http::route_id::restart: {
            restart_answer a = control_restart(requester);
            if (!a.accepted) {
                const std::string why = a.answer["refused"].as_string().c_str();
                co_return json_response(409, json::object{{"accepted", false}, {"error", why}});
            }
            a.answer["progress"] = fmt::format("/v1/restarts/{}", a.restart);
            co_return json_response(202, a.answer);
        }
        case http::route_id::reload: {
            reload_answer a = control_reload(requester);
            if (!a.applied) {
                std::string all;
                for (const auto& e : a.answer["errors"].as_array()) all += (all.empty() ? "" : "; ") + std::string(e.as_string());
                a.answer["error"] = "configuration rejected, the running one is kept: " + all;
                co_return json_response(422, a.answer);
            }
            co_return json_response(200, a.answer);
        }
        case http::route_id::stop: {
            bool leave = false;
            if (const json::value* l = body.if_contains("leave_slaves")) {
                if (!l->is_bool()) co_return bad_request("leave_slaves must be true or false");
                leave = l->as_bool();
            }
            stop_answer a = control_stop(leave, requester);
            if (!a.accepted) {
                a.answer["error"] = a.answer["refused"];
                co_return json_response(409, a.answer);
            }
            co_return json_response(202, a.answer);
        }
        case http::route_id::dashboard: {
            // Looked up by the raw path: a percent-encoded spelling of a file's name is not its path.
            const std::string_view target = req.target();
            const auto asset = find_dashboard_asset(target.substr(0, target.find('?')));
            if (!asset) co_return error_response(404, "no such resource: the dashboard's files are /, /dashboard.css, /dashboard.js");
            // Its own code only (no inline script or style, no other origin), types as declared, and
            // revalidated, so that a browser picks up the page of an upgraded daemon.
            co_return http::response{.body = std::string(asset->body),
                                     .content_type = std::string(asset->content_type),
                                     .headers = {{"Content-Security-Policy", "default-src 'self'"},
                                                 {"X-Content-Type-Options", "nosniff"},
                                                 {"Cache-Control", "no-cache"}}};
        }
        case http::route_id::events:
            co_return events_page(m, peer);
        case http::route_id::events_stream:
            co_return events_stream(req, m, peer);
        case http::route_id::drain: {
            drain_answer a = control_drain(m.params.at(0), requester);
            using outcome = supervisor::drain_request::outcome;
            if (a.result == outcome::unknown_slave) co_return error_response(404, a.answer["refused"].as_string());
            if (a.result == outcome::refused) {
                a.answer["error"] = a.answer["refused"];
                co_return json_response(409, a.answer);
            }
            a.answer["progress"] = fmt::format("/v1/restarts/{}", a.restart);
            co_return json_response(202, a.answer);
        }
        case http::route_id::none:
            break;
    }
    co_return error_response(500, "no handler for this route");
}

}  // namespace meshmaster::master
