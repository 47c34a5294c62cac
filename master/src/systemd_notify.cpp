// systemd_notify.hpp says what is told when. sd_notify(3) itself is a no-op without NOTIFY_SOCKET;
// the loops are not even started then, so a daemon outside systemd pays nothing.
#include "systemd_notify.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <fmt/format.h>

#include <systemd/sd-daemon.h>

#include <cstdlib>
#include <ctime>

namespace meshmaster::master {

namespace asio = boost::asio;

systemd_notifier::systemd_notifier(asio::any_io_executor executor, probe progress)
    : executor_(std::move(executor)), progress_(std::move(progress)), status_timer_(executor_), watchdog_timer_(executor_) {}

void systemd_notifier::begin() {
    const char* socket = std::getenv("NOTIFY_SOCKET");
    enabled_ = socket != nullptr && *socket != '\0';
    if (!enabled_) return;
    check();
    asio::co_spawn(executor_, status_loop(), asio::detached);
    // Set only when WATCHDOG_USEC is (and WATCHDOG_PID, if given, is us). Half the interval, as
    // sd_watchdog_enabled(3) advises, so one late ping is not yet a timeout.
    std::uint64_t usec = 0;
    if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
        asio::co_spawn(executor_, watchdog_loop(std::chrono::microseconds(usec / 2)), asio::detached);
    }
}

void systemd_notifier::reloading() {
    // Before READY=1 systemd still waits for the start: a reload then is no state change of its own.
    if (!enabled_ || !ready_sent_ || stopping_sent_) return;
    reloading_ = true;
    timespec ts{};
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    const auto usec = static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000 + static_cast<std::uint64_t>(ts.tv_nsec) / 1000;
    send(fmt::format("RELOADING=1\nMONOTONIC_USEC={}", usec));
}

void systemd_notifier::reloaded() {
    if (!reloading_) return;
    reloading_ = false;
    if (!stopping_sent_) send("READY=1");
}

void systemd_notifier::stopping() {
    if (!enabled_ || stopping_sent_) return;
    stopping_sent_ = true;
    send("STOPPING=1");
}

void systemd_notifier::check() {
    const fleet_progress p = progress_();
    if (p.stopping) stopping();
    std::string status = fmt::format("{}/{} shards running", p.running, p.total);
    if (stopping_sent_) status += "; stopping";
    if (!ready_sent_ && !stopping_sent_ && p.settled) {
        ready_sent_ = true;
        last_status_ = status;
        send(fmt::format("READY=1\nSTATUS={}", status));  // one datagram: systemd sees both at once
        return;
    }
    if (status != last_status_) {
        last_status_ = status;
        send("STATUS=" + status);
    }
}

void systemd_notifier::send(const std::string& message) {
    // A failure here (the socket gone, say) must not stop the daemon: systemd would notice by itself.
    (void)sd_notify(0, message.c_str());
}

systemd_notifier::awaitable systemd_notifier::status_loop() {
    while (true) {
        status_timer_.expires_after(status_interval);
        auto [ec] = co_await status_timer_.async_wait(asio::as_tuple(asio::use_awaitable));
        if (ec) co_return;
        check();
    }
}

systemd_notifier::awaitable systemd_notifier::watchdog_loop(std::chrono::microseconds period) {
    while (true) {
        send("WATCHDOG=1");
        watchdog_timer_.expires_after(period);
        auto [ec] = co_await watchdog_timer_.async_wait(asio::as_tuple(asio::use_awaitable));
        if (ec) co_return;
    }
}

}  // namespace meshmaster::master
