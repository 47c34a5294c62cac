// What the daemon tells systemd through sd_notify(3) when it runs as a Type=notify service:
// READY=1 once the initial shards run, STATUS= lines with the shard count, RELOADING=1 and READY=1
// around a reload, STOPPING=1 and WATCHDOG=1 pings from the daemon's own io_context (so a hung event
// loop stops them and systemd's WatchdogSec= catches it). Without NOTIFY_SOCKET every call is a
// no-op and no timer runs. libsystemd stays in systemd_notify.cpp: this header names none of it.
// Thread safety: none; everything runs on the daemon's one io_context thread.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

namespace meshmaster::master {

/// What the notifier asks the daemon for, a few times a second.
struct fleet_progress {
    std::uint32_t running = 0;  ///< shards running (as `meshmaster status` counts them)
    std::uint32_t total = 0;    ///< configured shards
    /// The initial start is over: every shard runs (or moves between live slaves), the slaves are
    /// external (spawn = false), or a slot was given up after failed starts — nothing more comes
    /// without an operator, so waiting longer to say READY=1 would only time systemd's start out.
    bool settled = false;
    bool stopping = false;  ///< a stop (or detach) is under way
};

class systemd_notifier {
public:
    using probe = std::function<fleet_progress()>;
    /// How often the progress is looked at: at most this many STATUS= lines a second and READY=1 at
    /// most this late.
    static constexpr std::chrono::milliseconds status_interval{250};

    systemd_notifier(boost::asio::any_io_executor executor, probe progress);

    /// Starts the status and watchdog loops when NOTIFY_SOCKET is set (call once the daemon
    /// listens and its initial start is asked for); tells READY=1 at once if already settled.
    void begin();
    /// A reload starts (SIGHUP or the control socket's `reload`): RELOADING=1 with MONOTONIC_USEC.
    void reloading();
    /// The reload is over, applied or rejected: READY=1 again.
    void reloaded();
    /// A stop or detach begins: STOPPING=1 (once).
    void stopping();

private:
    using awaitable = boost::asio::awaitable<void>;
    void check();
    void send(const std::string& message);
    awaitable status_loop();
    awaitable watchdog_loop(std::chrono::microseconds period);

    boost::asio::any_io_executor executor_;
    probe progress_;
    bool enabled_ = false;
    bool ready_sent_ = false;
    bool reloading_ = false;
    bool stopping_sent_ = false;
    std::string last_status_;
    boost::asio::steady_timer status_timer_;
    boost::asio::steady_timer watchdog_timer_;
};

}  // namespace meshmaster::master
