// Signals and reload: SIGTERM/SIGINT stop (gracefully, then at once), SIGUSR2 starts a rolling
// restart, SIGUSR1 reopens the event log (after a rotation) and SIGHUP reloads the configuration —
// which the control socket's and the HTTP API's `reload` do too: validated first (the HTTP token
// files read again), nothing applied when anything is wrong, restart-only settings kept and named. Thread safety: none; the signal set delivers on the
// daemon's io_context thread, never in a signal handler.
#include "daemon_runtime.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <csignal>

namespace meshmaster::master {

namespace asio = boost::asio;

daemon_runtime::awaitable daemon_runtime::signal_loop() {
    while (true) {
        auto [ec, signal] = co_await signals_.async_wait(asio::as_tuple(asio::use_awaitable));
        if (ec) co_return;
        switch (signal) {
            case SIGUSR2:
                log_line("info", "SIGUSR2: rolling restart");
                drive([&] { core_.request_restart(now(), "SIGUSR2"); });
                break;
            case SIGHUP:
                reload("SIGHUP");
                break;
            case SIGUSR1:
                if (auto problem = log_.reopen()) {
                    log_line("error", *problem);
                } else {
                    log_event({.event = event_kind::event_log_reopened});
                    // A rotated-away log takes the epoch history with it: restate it here.
                    event_record snapshot{.event = event_kind::epochs_snapshot};
                    for (const auto& sh : core_.status(now()).shards) snapshot.epochs.push_back(sh.epoch);
                    log_event(std::move(snapshot));
                }
                break;
            case SIGTERM:
            case SIGINT: {
                const std::string name = signal == SIGTERM ? "SIGTERM" : "SIGINT";
                if (!stop_requested_) {
                    stop_requested_ = true;
                    notify_.stopping();
                    log_line("info", fmt::format("{}: stopping gracefully (again to stop at once)", name));
                    drive([&] { core_.request_stop(now(), false, name); });
                } else {
                    log_line("warn", "second stop signal: killing every slave and exiting now");
                    spawner_.kill_all();
                    drive([&] { core_.request_stop(now(), true, "second stop signal: " + name); });
                }
                break;
            }
        }
    }
}

// Validate first; on any error keep the running configuration. Settings read only at start keep
// their running values and are named; everything else applies now. Slots (and spares) given up
// after failed starts are tried again: the reload may have fixed their command.
daemon_runtime::reload_outcome daemon_runtime::reload(std::string_view trigger) {
    reload_outcome out;
    notify_.reloading();
    struct ready_again {  // applied or rejected, the daemon serves on: READY=1 again
        systemd_notifier& notify;
        ~ready_again() { notify.reloaded(); }
    } ready_again{notify_};
    auto reject = [&] {
        std::string all;
        for (const auto& e : out.errors) all += (all.empty() ? "" : "; ") + e;
        log_event({.event = event_kind::config_rejected, .reason = all}, true);
        log_line("error", fmt::format("{}: configuration rejected, keeping the running one", trigger),
                 {{"seq", log_.last_seq()}, {"event", name(event_kind::config_rejected)}, {"errors", all}});
        return out;
    };
    auto loaded = reload_();
    if (auto* errors = std::get_if<std::vector<std::string>>(&loaded)) {
        out.errors = std::move(*errors);
        return reject();
    }
    daemon_config next = std::get<daemon_config>(std::move(loaded));
    out.not_applied = restart_only_change(cfg_, next);
    keep_restart_only(cfg_, next);
    // What applies must hold together with the running values of what does not.
    for (auto& problem : validate(next)) {
        out.errors.push_back(out.not_applied.empty()
                                 ? std::move(problem)
                                 : fmt::format("{} (kept at their running values until meshmaster restarts: {})",
                                               problem, fmt::join(out.not_applied, ", ")));
    }
    // The HTTP token files are read again (rotation): a file that no longer reads rejects the
    // reload, rather than leave the API with no token or an old one.
    std::optional<http::tokens> tokens;
    if (next.http.enabled) {
        auto loaded = http::load_tokens({.read_token_file = next.http.read_token_file, .admin_token_file = next.http.admin_token_file});
        if (auto* problem = std::get_if<std::string>(&loaded)) out.errors.push_back(*problem);
        else tokens = std::get<http::tokens>(std::move(loaded));
    }
    if (!out.errors.empty()) {
        out.not_applied.clear();
        return reject();
    }
    cfg_ = std::move(next);
    if (tokens) http_tokens_ = std::move(*tokens);
    http_refusals_.set_limits(refusal_limits_of(cfg_));
    refusals_.set_limits(refusal_limits_of(cfg_));
    refusals_armed_for_.reset();
    rearm_refusals();
    session_settings_.max_state_size = cfg_.max_state_size;  // for connections from now on
    log_event({.event = event_kind::config_reloaded, .count = out.not_applied.size(), .reason = std::string(trigger)});
    if (!out.not_applied.empty()) {
        const std::string keys = fmt::format("{}", fmt::join(out.not_applied, ", "));
        log_event({.event = event_kind::config_not_applied, .count = out.not_applied.size(),
                   .reason = keys + ": these change only when meshmaster itself restarts; the running values are kept"},
                  true);
        log_line("warn",
                 fmt::format("{}: configuration reloaded, but NOT applied (they change only when meshmaster itself "
                             "restarts): {}",
                             trigger, keys),
                 {{"seq", log_.last_seq()}, {"event", name(event_kind::config_not_applied)}});
    }
    drive([&] {
        core_.apply_config(cfg_.supervisor, now());
        out.retried = core_.retry_failed_starts(now(), "configuration reloaded");
    });
    return out;
}

}  // namespace meshmaster::master
