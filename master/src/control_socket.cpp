// The control socket: the Unix socket the CLI talks to, one JSON request a line per connection —
// status, restart (with --wait: progress, then the outcome), reload, stop (or detach), metrics. Answers are
// JSON lines; the status projection itself is control_status.cpp. Thread safety: none; every
// session runs on the daemon's io_context thread.
#include "daemon_runtime.hpp"

#include "control_status.hpp"

#include <meshmaster/protocol/json_text.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/json/parse.hpp>

#include <fmt/format.h>

#include <sys/socket.h>

namespace meshmaster::master {

namespace asio = boost::asio;
namespace json = boost::json;
namespace p = meshmaster::protocol;
using namespace asio::experimental::awaitable_operators;
using std::chrono::milliseconds;

namespace {
constexpr auto tuple_awaitable = asio::as_tuple(asio::use_awaitable);

// One answer: a JSON line. False once the CLI has gone.
asio::awaitable<bool> write_line(asio::local::stream_protocol::socket& socket, const json::value& v) {
    const std::string text = p::json_text(v) + "\n";
    auto [ec, n] = co_await asio::async_write(socket, asio::buffer(text), tuple_awaitable);
    co_return !ec;
}

// Who asked, for the audit (restart_started's and master_stopping's reason, the log lines): the
// kernel's word for the client's process (SO_PEERCRED), not anything the client says.
std::string requester(asio::local::stream_protocol::socket& socket) {
    ucred cred{};
    socklen_t size = sizeof cred;
    if (::getsockopt(socket.native_handle(), SOL_SOCKET, SO_PEERCRED, &cred, &size) != 0) return "control socket";
    return fmt::format("control socket from pid {} (uid {})", cred.pid, cred.uid);
}
}  // namespace

daemon_runtime::awaitable daemon_runtime::accept_control() {
    while (true) {
        auto [ec, socket] = co_await control_.async_accept(tuple_awaitable);
        if (ec) {
            if (ec == asio::error::operation_aborted) co_return;
            continue;
        }
        asio::co_spawn(io_, control_session(std::move(socket)), asio::detached);
    }
}

daemon_runtime::awaitable daemon_runtime::control_session(asio::local::stream_protocol::socket socket) {
    asio::streambuf in(64 * 1024);
    auto [ec, n] = co_await asio::async_read_until(socket, in, '\n', tuple_awaitable);
    if (ec) co_return;
    std::string line(asio::buffers_begin(in.data()), asio::buffers_begin(in.data()) + static_cast<std::ptrdiff_t>(n));
    auto reply = [&](const json::value& v) { return write_line(socket, v); };
    boost::system::error_code pec;
    json::value request = json::parse(line, pec);
    const json::object* req = pec ? nullptr : request.if_object();
    const json::value* command = req ? req->if_contains("command") : nullptr;
    if (!command || !command->is_string()) {
        const json::value message1 = json::object{{"error", "expected {\"command\": ...}"}};
        co_await reply(message1);
        co_return;
    }
    const std::string_view cmd = command->as_string();
    const bool wait = req->contains("wait") && req->at("wait").is_bool() && req->at("wait").as_bool();
    const std::string trigger = requester(socket);
    // The actions themselves are daemon_control.cpp's, shared with the HTTP API.
    if (cmd == "status") {
        // "detail": "summary" leaves out the per-shard arrays (control_status.hpp); absent, the
        // full answer, as before the summary existed.
        status_detail detail = status_detail::full;
        if (const json::value* d = req->if_contains("detail")) {
            if (d->is_string() && d->as_string() == "summary") {
                detail = status_detail::summary;
            } else if (!d->is_string() || d->as_string() != "full") {
                const json::value bad = json::object{
                    {"error", fmt::format("status: detail must be \"full\" or \"summary\", not {}", p::json_text(*d))}};
                co_await reply(bad);
                co_return;
            }
        }
        co_await reply(control_status(detail));
    } else if (cmd == "restart") {
        const restart_answer answer = control_restart(trigger);
        co_await reply(answer.answer);
        if (!answer.accepted || !wait) co_return;
        co_await follow_restart(socket, answer.outcomes_before + (answer.busy ? 2 : 1));
    } else if (cmd == "drain") {
        const json::value* slave = req->if_contains("slave");
        if (!slave || !slave->is_string() || slave->as_string().empty()) {
            const json::value bad = json::object{{"error", "drain: expected {\"command\": \"drain\", \"slave\": \"<id>\"}"}};
            co_await reply(bad);
            co_return;
        }
        const std::uint64_t before = restarts_ended_;
        drain_answer answer = control_drain(std::string(slave->as_string()), trigger);
        co_await reply(answer.answer);
        if (answer.result != supervisor::drain_request::outcome::started || !wait) co_return;
        co_await follow_restart(socket, before + 1);
    } else if (cmd == "metrics") {
        const json::value metrics = json::object{{"metrics", metrics_text()}};
        co_await reply(metrics);
    } else if (cmd == "reload") {
        co_await reply(control_reload(trigger).answer);
    } else if (cmd == "stop") {
        const bool leave = req->contains("leave_slaves") && req->at("leave_slaves").is_bool() &&
                           req->at("leave_slaves").as_bool();
        co_await reply(control_stop(leave, trigger).answer);
    } else {
        const json::value message6 = json::object{{"error", fmt::format("unknown command '{}'", cmd)}};
        co_await reply(message6);
    }
}

// restart --wait, drain --wait: progress every 100 ms, then the outcome of the `goal`-th restart
// to end since the daemon started, as soon as it is logged (not at the next tick).
daemon_runtime::awaitable daemon_runtime::follow_restart(asio::local::stream_protocol::socket& socket, std::uint64_t goal) {
    auto reply = [&](const json::value& v) { return write_line(socket, v); };
    asio::steady_timer t(io_);
    while (restarts_ended_ < goal) {
        t.expires_after(milliseconds(100));
        co_await (t.async_wait(tuple_awaitable) || restart_finished_.async_wait(tuple_awaitable));
        if (restarts_ended_ >= goal) break;
        json::object progress;
        // The restart alone: status() would build every shard's row ten times a second.
        const auto c = core_.counts(now());
        progress["progress"] = c.restart ? json::value(restart_json(*c.restart)) : json::value(nullptr);
        if (!co_await reply(progress)) co_return;
    }
    // The waiter wakes at each outcome, so its own is among the newest kept; were it not, the
    // answer says so rather than name another restart's outcome.
    const std::uint64_t age = restarts_ended_ - goal;
    if (age >= restart_outcomes_.size()) {
        const json::value gone =
            json::object{{"error", "the restart ended, but its outcome is no longer kept: see the event log"}};
        co_await reply(gone);
        co_return;
    }
    co_await reply(outcome_json(restart_outcomes_[restart_outcomes_.size() - 1 - age]));
}

}  // namespace meshmaster::master
