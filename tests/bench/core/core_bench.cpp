// The supervisor core alone at scale: no processes, no sockets, no daemon. Scripted slaves answer
// every frame the core sends after a fixed simulated delay, and the driver behaves like the daemon
// (after every input it takes the actions and asks for the next deadline), so what is timed is the
// work the master does per shard move — including the deadline bookkeeping a real driver triggers.
//
// For each fleet size it runs a cold start and then rolling restarts, and prints, for the restarts
// only: moves per second of driver wall time, nanoseconds per move spent inside supervisor calls
// (the steady clock read around each call), the process's peak RSS (each size runs in its own
// forked process, so the figure is that size's alone) and event-log bytes per move (each record as
// the daemon would write it). The last column is the ratio of ns per move to the first row's.
//
//   core_bench            256/4, 4096/16, 16384/64 shards/slaves, 2 restarts each, best of 3
//   core_bench --quick    256/4 and 1024/8, 1 restart, once: a smoke run for the suite
//
// Best of 3 (the run with the fewest ns per move, each in its own process): the time is read around
// each call, so on a shared machine a run that was preempted more reads slower; the fastest is the
// closest to the work itself.
//
// Not a timing assertion: the exit code says only whether every restart completed with every shard
// moved and nothing else went wrong (a slave killed, a migration failed).
#include "../../../master/src/event_log.hpp"

#include <meshmaster/master/supervisor.hpp>
#include <meshmaster/protocol/codec.hpp>
#include <meshmaster/protocol/frame_decoder.hpp>
#include <meshmaster/protocol/version.hpp>

#include <boost/json/serialize.hpp>
#include <fmt/format.h>

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <optional>
#include <queue>
#include <string>
#include <vector>

namespace {

namespace p = meshmaster::protocol;
using namespace meshmaster::master;
using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

struct fleet_size {
    std::uint32_t shards;
    std::uint32_t slaves;
};

struct row {
    std::uint64_t moves = 0;
    double wall_s = 0;         // driver wall time during the restarts
    double core_ns = 0;        // inside supervisor calls during the restarts
    std::uint64_t log_bytes = 0;
    long peak_rss_kib = 0;
    bool clean = false;
    std::string trouble;
};

/// The daemon's side of the loop, with slaves that answer at once (after `reply_delay` of
/// simulated time). Time is simulated: deadlines fire only when the queue would pass them.
class bench_world {
public:
    explicit bench_world(fleet_size size) : size_(size) {
        supervisor_config c;
        c.shard_count = size.shards;
        c.slave_count = size.slaves;
        c.migration_concurrency = 64;
        core_ = std::make_unique<supervisor>(c);
        state_ = std::make_shared<const std::vector<std::byte>>(256, std::byte{0x5a});
    }

    void start() {
        timed([&] { core_->start(now_); });
    }
    void restart() {
        timed([&] { (void)core_->request_restart(now_, "bench"); });
    }

    /// Delivers queued replies and due deadlines until the core waits for nothing but the clock's
    /// far future (a settled fleet) or `done` holds.
    template <class Done>
    bool run_until(Done done, std::uint64_t max_steps = 50'000'000) {
        for (std::uint64_t i = 0; i < max_steps; ++i) {
            if (done()) return true;
            if (!trouble_.empty()) return false;
            const auto deadline = next_deadline_;
            const bool have_reply = !queue_.empty();
            if (!have_reply && !deadline) return done();
            if (have_reply && (!deadline || queue_.top().at <= *deadline)) {
                pending p = queue_.top();
                queue_.pop();
                now_ = std::max(now_, p.at);
                deliver(p);
            } else {
                now_ = std::max(now_, *deadline);
                timed([&] { core_->on_tick(now_); });
            }
        }
        return false;
    }

    void reset_counters() {
        core_ns_ = 0;
        log_bytes_ = 0;
        moves_ = 0;
    }
    std::uint64_t restarts_completed() const { return restarts_completed_; }
    std::uint64_t moves() const { return moves_; }
    double core_ns() const { return core_ns_; }
    std::uint64_t log_bytes() const { return log_bytes_; }
    std::uint32_t running() const { return running_; }
    const std::string& trouble() const { return trouble_; }

private:
    enum class input { spawned, hello, soft_started, started, stopped, resumed, shutdown_done, exited };
    struct pending {
        mono_time at;
        std::uint64_t order;  // FIFO among equal times
        input what;
        std::string slave;
        connection_id connection = 0;
        std::uint32_t shard = 0;
        std::uint64_t epoch = 0;
        std::uint64_t migration = 0;
        bool operator>(const pending& o) const { return at != o.at ? at > o.at : order > o.order; }
    };
    struct slave_model {
        std::string id;
        std::uint64_t generation = 0;
        connection_id connection = 0;
        p::frame_decoder decoder{p::default_max_body_size};
    };

    template <class F>
    void timed(F&& f) {
        const auto t0 = clock_type::now();
        f();
        auto actions = core_->take_actions();
        next_deadline_ = core_->next_deadline();  // the daemon rearms its timer after every input
        core_ns_ += static_cast<double>(std::chrono::duration_cast<std::chrono::nanoseconds>(clock_type::now() - t0).count());
        for (auto& a : actions) std::visit([&](auto& x) { perform(x); }, a);
    }

    void later(pending p) {
        p.at = now_ + reply_delay_;
        p.order = ++order_;
        queue_.push(std::move(p));
    }

    void perform(actions::spawn_slave& a) {
        later({.what = input::spawned, .slave = a.slave});
        slave_model& s = slaves_by_id_[a.slave];
        s.id = a.slave;
        s.generation = a.generation;
    }
    void perform(actions::send_frame& a) {
        const auto it = by_connection_.find(a.connection);
        if (it == by_connection_.end()) return;  // a closed connection
        slave_model& s = *it->second;
        s.decoder.feed(a.frames);
        while (true) {
            auto frame = s.decoder.next();
            if (!frame || !*frame) break;
            auto m = p::decode(**frame);
            if (!m) {
                trouble_ = "the core sent a frame the codec refuses: " + m.error().to_string();
                return;
            }
            std::visit([&](auto& msg) { answer(s, msg); }, *m);
        }
    }
    void answer(slave_model& s, const p::soft_start&) { later({.what = input::soft_started, .connection = s.connection}); }
    void answer(slave_model& s, const p::start_shard& m) {
        later({.what = input::started, .connection = s.connection, .shard = m.shard, .epoch = m.epoch});
    }
    void answer(slave_model& s, const p::stop_shard& m) {
        later({.what = input::stopped, .connection = s.connection, .shard = m.shard, .epoch = m.epoch,
               .migration = m.migration_id});
    }
    void answer(slave_model& s, const p::resume& m) {
        later({.what = input::resumed, .connection = s.connection, .shard = m.shard, .epoch = m.epoch,
               .migration = m.migration_id});
    }
    void answer(slave_model& s, const p::shutdown&) {
        later({.what = input::shutdown_done, .slave = s.id, .connection = s.connection});
    }
    template <class Other>
    void answer(slave_model&, const Other&) {}  // handoff_complete, mesh lists, full_start, …

    void perform(actions::kill_slave& a) { later({.what = input::exited, .slave = a.slave}); }
    void perform(actions::close_connection& a) {
        trouble_ = fmt::format("the core closed a connection: {} {}", a.code, a.message);
    }
    void perform(actions::log_event& a) {
        // The line as event_log writes it: the record plus seq, wall time and monotonic time.
        boost::json::object o = event_log::to_json(a.record);
        o["seq"] = 1'000'000;
        o["time"] = "2026-12-06T23:59:59.123456Z";
        o["mono_ms"] = 12345.678;
        log_bytes_ += boost::json::serialize(o).size() + 1;
        const event_id e = a.record.event;
        if (e == event_kind::migration_completed) ++moves_;
        if (e == event_kind::restart_completed) ++restarts_completed_;
        if (e == event_kind::shard_started) ++running_;
        if (e == event_kind::slave_killed || e == event_kind::slave_lost || e == event_kind::migration_failed ||
            e == event_kind::migration_rolled_back || e == event_kind::restart_failed ||
            e == event_kind::shard_orphaned) {
            trouble_ = fmt::format("{} (slave {}, shard {})", e.name(), a.record.slave,
                                   a.record.shard ? std::to_string(*a.record.shard) : "-");
        }
    }
    template <class Other>
    void perform(Other&) {}  // watch_process, store_checkpoint, failpoints, exit

    void deliver(pending& p) {
        switch (p.what) {
        case input::spawned: {
            slave_model& s = slaves_by_id_.at(p.slave);
            s.connection = ++next_connection_;
            by_connection_[s.connection] = &s;
            const std::int64_t pid = 1000 + static_cast<std::int64_t>(s.connection);
            timed([&] { core_->on_spawned(s.id, pid, now_); });
            slave_hello_info hello{.id = s.id, .pid = pid, .generation = s.generation,
                                   .version_minor = p::current_version.minor};
            timed([&] { core_->on_slave_connected(s.connection, hello, now_); });
            break;
        }
        case input::soft_started: timed([&] { core_->on_soft_start_complete(p.connection, now_); }); break;
        case input::started: timed([&] { core_->on_shard_started(p.connection, p.shard, p.epoch, now_); }); break;
        case input::stopped:
            timed([&] {
                core_->on_state_received(p.connection, now_);
                core_->on_shard_stopped(p.connection, p.shard, p.epoch, p.migration, state_, now_);
            });
            break;
        case input::resumed: timed([&] { core_->on_resumed(p.connection, p.shard, p.epoch, p.migration, now_); }); break;
        case input::shutdown_done: {
            timed([&] { core_->on_shutdown_complete(p.connection, now_); });
            timed([&] { core_->on_disconnected(p.connection, now_); });
            by_connection_.erase(p.connection);
            timed([&] { core_->on_process_exited(p.slave, "exited 0", now_); });
            break;
        }
        case input::exited: timed([&] { core_->on_process_exited(p.slave, "killed", now_); }); break;
        case input::hello: break;
        }
    }

    fleet_size size_;
    std::unique_ptr<supervisor> core_;
    shared_bytes state_;
    mono_time now_{1s};
    mono_time reply_delay_ = std::chrono::microseconds(200);
    std::optional<mono_time> next_deadline_;
    std::priority_queue<pending, std::vector<pending>, std::greater<>> queue_;
    std::uint64_t order_ = 0;
    std::map<std::string, slave_model> slaves_by_id_;
    std::map<connection_id, slave_model*> by_connection_;
    connection_id next_connection_ = 0;
    double core_ns_ = 0;
    std::uint64_t log_bytes_ = 0;
    std::uint64_t moves_ = 0;
    std::uint64_t restarts_completed_ = 0;
    std::uint32_t running_ = 0;
    std::string trouble_;
};

row measure(fleet_size size, int restarts) {
    row r;
    bench_world w(size);
    w.start();
    if (!w.run_until([&] { return w.running() >= size.shards; })) {
        r.trouble = "cold start did not finish: " + w.trouble();
        return r;
    }
    w.reset_counters();
    const auto t0 = clock_type::now();
    for (int i = 0; i < restarts; ++i) {
        w.restart();
        const std::uint64_t before = w.restarts_completed();
        if (!w.run_until([&] { return w.restarts_completed() > before; })) {
            r.trouble = fmt::format("restart {} did not complete: {}", i + 1, w.trouble());
            return r;
        }
    }
    r.wall_s = std::chrono::duration<double>(clock_type::now() - t0).count();
    r.moves = w.moves();
    r.core_ns = w.core_ns();
    r.log_bytes = w.log_bytes();
    const std::uint64_t expected = std::uint64_t{size.shards} * static_cast<std::uint64_t>(restarts);
    r.clean = w.trouble().empty() && r.moves == expected;
    if (!r.clean) r.trouble = fmt::format("{} moves of {} expected; {}", r.moves, expected, w.trouble());
    return r;
}

/// Runs one size in a child process, so its peak RSS is its own.
std::optional<row> measure_in_child(fleet_size size, int restarts) {
    int fds[2];
    if (pipe(fds) != 0) return std::nullopt;
    const pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        row r = measure(size, restarts);
        const std::string line = fmt::format("{} {} {} {} {} {}", r.moves, r.wall_s, r.core_ns, r.log_bytes,
                                             r.clean ? 1 : 0, r.trouble);
        (void)!write(fds[1], line.data(), line.size());
        _exit(0);
    }
    close(fds[1]);
    std::string text;
    char buf[4096];
    for (ssize_t n; (n = read(fds[0], buf, sizeof buf)) > 0;) text.append(buf, static_cast<std::size_t>(n));
    close(fds[0]);
    int status = 0;
    rusage usage{};
    if (wait4(pid, &status, 0, &usage) != pid) return std::nullopt;
    row r;
    int clean = 0;
    int consumed = 0;
    if (std::sscanf(text.c_str(), "%lu %lf %lf %lu %d %n", &r.moves, &r.wall_s, &r.core_ns, &r.log_bytes, &clean,
                    &consumed) < 5) {
        r.trouble = "the child process died (status " + std::to_string(status) + ")";
        return r;
    }
    r.clean = clean == 1;
    r.trouble = text.substr(static_cast<std::size_t>(consumed));
    r.peak_rss_kib = usage.ru_maxrss;
    return r;
}

}  // namespace

int main(int argc, char** argv) {
    const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
    const std::vector<fleet_size> sizes = quick ? std::vector<fleet_size>{{256, 4}, {1024, 8}}
                                                : std::vector<fleet_size>{{256, 4}, {4096, 16}, {16384, 64}};
    const int restarts = quick ? 1 : 2;
    const int tries = quick ? 1 : 3;
    fmt::print("supervisor core alone: {} rolling restart(s) per size, replies after 200 us of simulated time, "
               "best of {}\n",
               restarts, tries);
    fmt::print("{:>7} {:>7} {:>8} {:>12} {:>12} {:>10} {:>13} {:>9}\n", "shards", "slaves", "moves", "moves/s",
               "core ns/move", "peak RSS", "log B/move", "vs first");
    double first_ns = 0;
    bool all_clean = true;
    for (const fleet_size size : sizes) {
        std::optional<row> r;
        for (int i = 0; i < tries; ++i) {
            auto next = measure_in_child(size, restarts);
            if (!next || !next->clean) {
                r = next;  // a failure is reported, not hidden by a better try
                break;
            }
            auto per_move = [](const row& x) { return x.moves ? x.core_ns / static_cast<double>(x.moves) : 0; };
            if (!r || per_move(*next) < per_move(*r)) r = next;
        }
        if (!r) {
            fmt::print("{:>7} {:>7}  could not run a child process\n", size.shards, size.slaves);
            all_clean = false;
            continue;
        }
        const double ns_per_move = r->moves ? r->core_ns / static_cast<double>(r->moves) : 0;
        if (first_ns == 0) first_ns = ns_per_move;
        fmt::print("{:>7} {:>7} {:>8} {:>12.0f} {:>12.0f} {:>7.1f} MB {:>13.0f} {:>8.2f}x{}\n", size.shards, size.slaves,
                   r->moves, r->wall_s > 0 ? static_cast<double>(r->moves) / r->wall_s : 0, ns_per_move,
                   static_cast<double>(r->peak_rss_kib) / 1024.0,
                   r->moves ? static_cast<double>(r->log_bytes) / static_cast<double>(r->moves) : 0,
                   first_ns > 0 ? ns_per_move / first_ns : 0, r->clean ? "" : "   NOT CLEAN: " + r->trouble);
        all_clean = all_clean && r->clean;
    }
    return all_clean ? 0 : 1;
}
