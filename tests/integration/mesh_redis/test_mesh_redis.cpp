// Integration test of meshmaster::mesh::redis_discovery against a real redis-server.
//
//   mesh_redis_test <scenario> <path of redis-server>
//   mesh_redis_test child <redis port> <prefix> <id>      (a node in a process of its own)
//
// Each scenario starts its own redis-server on a free loopback port and stops it by PID, on
// failure too. Every process this test starts dies with it (PR_SET_PDEATHSIG), so a test killed by
// ctest's timeout leaves nothing behind either. Discovery instances run on one io_context on a
// thread of their own; the main thread drives them through on_io() and checks what their sinks
// heard and what Redis holds (with hiredis' blocking client).
#include <meshmaster/mesh/redis_discovery.hpp>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include <fmt/format.h>
#include <hiredis/hiredis.h>

#include <arpa/inet.h>
#include <csignal>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace asio = boost::asio;
namespace mm = meshmaster::mesh;
using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;
using std::chrono::milliseconds;

namespace {

// How long to wait for what takes milliseconds to a few seconds: a liveness limit for a busy
// machine, never a measure of speed. (What a scenario measures, it prints.)
constexpr milliseconds liveness = 60s;

// ---- failing, and the processes to reap when failing -----------------------------------------

std::mutex children_mutex;
std::vector<pid_t> children;
std::vector<std::string> scratch_dirs;  // redis-server's --dir (empty: --save '')

void reap_children() {
    std::lock_guard lock(children_mutex);
    for (const pid_t pid : children) {
        ::kill(pid, SIGKILL);
        ::waitpid(pid, nullptr, 0);
    }
    children.clear();
    for (const auto& dir : scratch_dirs) ::rmdir(dir.c_str());
    scratch_dirs.clear();
}

[[noreturn]] void fail(const std::string& what) {
    std::fprintf(stderr, "FAIL: %s\n", what.c_str());
    std::fflush(stderr);
    reap_children();
    std::_Exit(1);
}

#define CHECK(cond, ...)                                                                       \
    do {                                                                                       \
        if (!(cond)) fail(fmt::format("{}:{}: {}: {}", __FILE__, __LINE__, #cond, fmt::format(__VA_ARGS__))); \
    } while (0)

void note(const std::string& text) { std::printf("  %s\n", text.c_str()), std::fflush(stdout); }

long long ms_since(clock_type::time_point t) {
    return std::chrono::duration_cast<milliseconds>(clock_type::now() - t).count();
}

// Forks and execs `argv`; the child dies with this process. stdout/stderr to /dev/null if `quiet`.
pid_t spawn(const std::vector<std::string>& argv, bool quiet) {
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    const pid_t parent = ::getpid();
    const pid_t pid = ::fork();
    CHECK(pid >= 0, "fork failed: {}", std::strerror(errno));
    if (pid == 0) {
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (::getppid() != parent) std::_Exit(1);  // the parent died before prctl
        if (quiet) {
            const int null = ::open("/dev/null", O_WRONLY);
            ::dup2(null, 1);
            ::dup2(null, 2);
        }
        ::execv(args[0], args.data());
        std::_Exit(127);
    }
    std::lock_guard lock(children_mutex);
    children.push_back(pid);
    return pid;
}

void kill_child(pid_t pid, int sig = SIGKILL) {
    ::kill(pid, sig);
    ::waitpid(pid, nullptr, 0);
    std::lock_guard lock(children_mutex);
    std::erase(children, pid);
}

std::uint16_t free_port() {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0, "bind: {}", std::strerror(errno));
    socklen_t len = sizeof a;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    ::close(fd);
    return ntohs(a.sin_port);
}

// ---- Redis: the server, and a blocking client for checks ---------------------------------------

struct reply_deleter {
    void operator()(redisReply* r) const { freeReplyObject(r); }
};
using reply_ptr = std::unique_ptr<redisReply, reply_deleter>;

class sync_client {
public:
    sync_client(std::uint16_t port, const std::string& password) {
        c_ = redisConnectWithTimeout("127.0.0.1", port, timeval{2, 0});
        CHECK(c_ && !c_->err, "cannot connect to redis on {}: {}", port, c_ ? c_->errstr : "out of memory");
        if (!password.empty()) {
            auto r = run({"AUTH", password});
            CHECK(r->type == REDIS_REPLY_STATUS, "AUTH refused");
        }
    }
    ~sync_client() { redisFree(c_); }
    sync_client(const sync_client&) = delete;
    sync_client& operator=(const sync_client&) = delete;

    reply_ptr run(const std::vector<std::string>& args) {
        std::vector<const char*> argv;
        std::vector<std::size_t> len;
        for (const auto& a : args) argv.push_back(a.c_str()), len.push_back(a.size());
        auto* r = static_cast<redisReply*>(redisCommandArgv(c_, static_cast<int>(argv.size()), argv.data(), len.data()));
        CHECK(r, "redis command {} failed: {}", args[0], c_->errstr);
        return reply_ptr(r);
    }
    long long integer(const std::vector<std::string>& args) {
        auto r = run(args);
        CHECK(r->type == REDIS_REPLY_INTEGER, "{}: not an integer reply ({})", args[0], r->str ? r->str : "");
        return r->integer;
    }
    redisContext* context() { return c_; }

private:
    redisContext* c_;
};

class redis_server {
public:
    redis_server(std::string binary, std::string password = {})
        : binary_(std::move(binary)), password_(std::move(password)), port_(free_port()) {
        char dir[] = "/tmp/meshmaster-redis-XXXXXX";
        CHECK(::mkdtemp(dir), "mkdtemp: {}", std::strerror(errno));
        dir_ = dir;
        {
            std::lock_guard lock(children_mutex);
            scratch_dirs.push_back(dir_);
        }
        start();
    }
    ~redis_server() {
        stop();
        ::rmdir(dir_.c_str());
        std::lock_guard lock(children_mutex);
        std::erase(scratch_dirs, dir_);
    }

    void start() {
        std::vector<std::string> argv{binary_, "--port", std::to_string(port_), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--dir", dir_, "--enable-debug-command", "yes"};
        if (!password_.empty()) argv.insert(argv.end(), {"--requirepass", password_});
        pid_ = spawn(argv, true);
        const auto t0 = clock_type::now();
        while (true) {
            redisContext* c = redisConnectWithTimeout("127.0.0.1", port_, timeval{0, 200000});
            const bool up = c && !c->err;
            if (c) redisFree(c);
            if (up) break;
            CHECK(ms_since(t0) < liveness.count(), "redis-server did not come up on port {}", port_);
            int status = 0;
            CHECK(::waitpid(pid_, &status, WNOHANG) == 0, "redis-server exited (status {})", status);
            std::this_thread::sleep_for(20ms);
        }
    }
    void stop() {
        if (pid_ > 0) kill_child(pid_);
        pid_ = -1;
    }
    std::uint16_t port() const { return port_; }
    const std::string& password() const { return password_; }
    sync_client client() const { return sync_client(port_, password_); }

private:
    std::string binary_;
    std::string password_;
    std::uint16_t port_;
    std::string dir_;
    pid_t pid_ = -1;
};

// ---- what a sink heard -------------------------------------------------------------------------

struct event {
    clock_type::time_point at;
    bool up;
    std::string id;
    mm::peer_record record;
};

class recorder final : public mm::discovery_sink {
public:
    explicit recorder(std::string self) : self_(std::move(self)) {}

    void peer_up(const mm::peer_record& p) override {
        std::lock_guard lock(m_);
        events_.push_back({clock_type::now(), true, p.id, p});
        view_[p.id] = p;
        cv_.notify_all();
    }
    void peer_down(std::string_view id) override {
        std::lock_guard lock(m_);
        events_.push_back({clock_type::now(), false, std::string(id), {}});
        view_.erase(std::string(id));
        cv_.notify_all();
    }

    template <class Pred>
    bool wait(Pred pred, milliseconds timeout) {
        std::unique_lock lock(m_);
        return cv_.wait_for(lock, timeout, [&] { return pred(view_, events_); });
    }
    bool wait_up(const std::string& id, milliseconds timeout) {
        return wait([&](const auto& view, const auto&) { return view.contains(id); }, timeout);
    }
    bool wait_down(const std::string& id, milliseconds timeout) {
        return wait([&](const auto& view, const auto&) { return !view.contains(id); }, timeout);
    }
    std::vector<event> events() const {
        std::lock_guard lock(m_);
        return events_;
    }
    std::vector<event> events_of(const std::string& id) const {
        std::vector<event> out;
        for (auto& e : events()) {
            if (e.id == id) out.push_back(e);
        }
        return out;
    }
    std::map<std::string, mm::peer_record> view() const {
        std::lock_guard lock(m_);
        return view_;
    }
    // The own node must never be reported.
    void check_never_self() const {
        for (const auto& e : events()) CHECK(e.id != self_, "{} was told about itself", self_);
    }

private:
    std::string self_;
    mutable std::mutex m_;
    std::condition_variable cv_;
    std::vector<event> events_;
    std::map<std::string, mm::peer_record> view_;
};

// ---- the executor the discovery instances share -------------------------------------------------

class io_thread {
public:
    io_thread() : work_(io_.get_executor()), thread_([this] { io_.run(); }) {}
    ~io_thread() {
        work_.reset();
        thread_.join();  // every discovery is gone: nothing may keep the context busy
    }
    template <class F>
    auto run(F f) -> decltype(f()) {
        std::packaged_task<decltype(f())()> task(std::move(f));
        auto result = task.get_future();
        asio::post(io_, [&task] { task(); });
        return result.get();
    }
    asio::any_io_executor executor() { return io_.get_executor(); }

private:
    asio::io_context io_{1};
    asio::executor_work_guard<asio::io_context::executor_type> work_;
    std::thread thread_;
};

std::uint64_t random_incarnation() {
    static std::mt19937_64 g(std::random_device{}());
    return g() | 1;
}

struct node {
    std::string id;
    recorder sink;
    mm::peer_record record;
    std::unique_ptr<mm::redis_discovery> discovery;
    std::promise<boost::system::error_code> left;

    explicit node(std::string name) : id(name), sink(name) {}
};

class cluster {
public:
    cluster(io_thread& io, const redis_server& redis, std::string prefix) : io_(io), redis_(redis), prefix_(std::move(prefix)) {}
    ~cluster() {
        io_.run([&] { nodes_.clear(); });
    }

    mm::redis_options options() const {
        mm::redis_options o;
        o.port = redis_.port();
        o.password = redis_.password();
        o.prefix = prefix_;
        o.log = [](std::string_view level, std::string_view text) {
            if (level != "info") std::fprintf(stderr, "    [discovery %.*s] %.*s\n", int(level.size()), level.data(),
                                              int(text.size()), text.data());
        };
        return o;
    }
    std::string key(const std::string& id) const { return prefix_ + "node:" + id; }

    node& start(const std::string& id, std::optional<mm::redis_options> custom = std::nullopt) {
        auto n = std::make_unique<node>(id);
        n->record = {.id = id,
                     .type = "test",
                     .host = "127.0.0.1",
                     .port = static_cast<std::uint16_t>(20000 + nodes_.size()),
                     .incarnation = random_incarnation(),
                     .values = {{"role", "tester"}}};
        io_.run([&] {
            n->discovery = std::make_unique<mm::redis_discovery>(io_.executor(), custom ? *custom : options(), n->sink);
            n->discovery->start(n->record);
        });
        auto& ref = *n;
        nodes_[id] = std::move(n);
        return ref;
    }
    bool connected(node& n) {
        return io_.run([&] { return n.discovery && n.discovery->connected(); });
    }
    void wait_connected(node& n, milliseconds timeout = liveness) {
        const auto t0 = clock_type::now();
        while (!connected(n)) {
            CHECK(ms_since(t0) < timeout.count(), "{} did not connect to Redis within {} ms", n.id, timeout.count());
            std::this_thread::sleep_for(10ms);
        }
    }
    void update(node& n, std::map<std::string, std::string> values) {
        n.record.values = std::move(values);
        io_.run([&] { n.discovery->update(n.record); });
    }
    // Calls leave(); the outcome arrives in n.left.
    void leave(node& n) {
        io_.run([&] {
            n.discovery->leave([&n](boost::system::error_code ec) { n.left.set_value(ec); });
        });
    }
    void destroy(node& n) {
        io_.run([&] { n.discovery.reset(); });
    }

private:
    io_thread& io_;
    const redis_server& redis_;
    std::string prefix_;
    std::map<std::string, std::unique_ptr<node>> nodes_;
};

boost::system::error_code wait_left(node& n, milliseconds timeout) {
    auto f = n.left.get_future();
    CHECK(f.wait_for(timeout) == std::future_status::ready, "leave() of {} did not complete within {} ms", n.id,
          timeout.count());
    return f.get();
}

std::string unique_prefix(const std::string& scenario) {
    return fmt::format("test:{}:{}:", scenario, ::getpid());
}

// ---- scenarios ------------------------------------------------------------------------------------

// Joins seen by SCAN at start and by pub/sub afterwards, updates, list(), database isolation and a
// plain graceful leave. Refresh is 10 minutes, so anything seen within the liveness limit came
// from the scan at start or from pub/sub, not from a periodic re-scan.
void join_update_leave(const std::string& redis_binary) {
    redis_server redis(redis_binary);
    io_thread io;
    cluster c(io, redis, unique_prefix("join"));
    auto slow = c.options();
    slow.ttl = 20min;
    slow.refresh = 10min;
    static_assert(liveness < 10min);

    auto& a = c.start("a", slow);
    c.wait_connected(a);
    auto t0 = clock_type::now();
    auto& b = c.start("b", slow);
    CHECK(b.sink.wait_up("a", liveness), "b did not find a by SCAN at start");
    CHECK(a.sink.wait_up("b", liveness), "a did not hear b join by pub/sub");
    note(fmt::format("a and b see each other after {} ms", ms_since(t0)));
    CHECK(b.sink.view().at("a") == a.record, "b's record of a differs");

    auto& n3 = c.start("c", slow);
    CHECK(n3.sink.wait([](const auto& v, const auto&) { return v.contains("a") && v.contains("b"); }, liveness),
          "c did not find a and b at start");
    CHECK(a.sink.wait_up("c", liveness) && b.sink.wait_up("c", liveness), "a or b did not hear c join");

    // update: values reach the others by pub/sub
    t0 = clock_type::now();
    c.update(a, {{"role", "tester"}, {"shards", "0-15"}});
    for (node* n : {&b, &n3}) {
        CHECK(n->sink.wait([](const auto& v, const auto&) { return v.contains("a") && v.at("a").values.contains("shards"); },
                           liveness),
              "{} did not hear a's update", n->id);
        CHECK(n->sink.view().at("a") == a.record, "{} holds a stale record of a", n->id);
    }
    note(fmt::format("update seen after {} ms", ms_since(t0)));
    {
        auto stored = mm::decode_redis_record(
            std::string(redis.client().run({"GET", c.key("a")})->str));
        CHECK(stored && *stored == a.record, "the key of a does not hold a's updated record");
    }

    // list(): every record under the prefix, sorted
    auto listed = mm::redis_discovery::list(c.options());
    CHECK(listed.has_value(), "list() failed: {}", listed.error().message());
    CHECK(listed->size() == 3 && (*listed)[0] == a.record && (*listed)[1] == b.record && (*listed)[2] == n3.record,
          "list() returned {} records, not a, b, c", listed->size());

    // Another database with the same prefix is another mesh, although pub/sub is server-wide.
    auto other_db = slow;
    other_db.database = 1;
    auto& d = c.start("d", other_db);
    c.wait_connected(d);
    std::this_thread::sleep_for(500ms);
    CHECK(d.sink.view().empty(), "d (database 1) sees nodes of database 0");
    CHECK(!a.sink.view().contains("d"), "a (database 0) sees d of database 1");
    auto listed1 = mm::redis_discovery::list(other_db);
    CHECK(listed1.has_value() && listed1->size() == 1 && (*listed1)[0].id == "d", "list() of database 1 is not [d]");

    // graceful leave: reported down by pub/sub at once, key gone
    t0 = clock_type::now();
    c.leave(b);
    const auto ec = wait_left(b, liveness);
    CHECK(!ec, "leave failed: {}", ec.message());
    CHECK(a.sink.wait_down("b", liveness) && n3.sink.wait_down("b", liveness), "b's leave was not heard");
    note(fmt::format("graceful leave seen after {} ms", ms_since(t0)));
    CHECK(redis.client().integer({"EXISTS", c.key("b")}) == 0, "b's key survived its leave");
    for (node* n : {&a, &b, &n3, &d}) n->sink.check_never_self();
}

// Reads MONITOR on a connection of its own, stamping each line with when it arrived.
class monitor {
public:
    monitor(const redis_server& redis) : client_(redis.port(), redis.password()) {
        auto r = client_.run({"MONITOR"});
        CHECK(r->type == REDIS_REPLY_STATUS, "MONITOR refused");
        thread_ = std::thread([this] {
            while (true) {
                void* r = nullptr;
                if (redisGetReply(client_.context(), &r) != REDIS_OK) return;  // closed by the destructor
                reply_ptr line(static_cast<redisReply*>(r));
                std::lock_guard lock(m_);
                lines_.emplace_back(line->str ? std::string(line->str, line->len) : std::string());
                cv_.notify_all();
            }
        });
    }
    ~monitor() {
        ::shutdown(client_.context()->fd, SHUT_RDWR);
        thread_.join();
    }
    // Index of the first line from `from` on containing every piece, waiting up to `timeout`.
    std::optional<std::size_t> find(const std::vector<std::string>& pieces, std::size_t from, milliseconds timeout) {
        std::unique_lock lock(m_);
        std::optional<std::size_t> found;
        cv_.wait_for(lock, timeout, [&] {
            for (std::size_t i = from; i < lines_.size(); ++i) {
                if (std::all_of(pieces.begin(), pieces.end(), [&](auto& p) { return lines_[i].find(p) != std::string::npos; })) {
                    found = i;
                    return true;
                }
            }
            return false;
        });
        return found;
    }
    std::vector<std::string> lines() {
        std::lock_guard lock(m_);
        return lines_;
    }

private:
    sync_client client_;
    std::thread thread_;
    std::mutex m_;
    std::condition_variable cv_;
    std::vector<std::string> lines_;
};

// Redis' own timestamp of a MONITOR line ("1700000000.123456 [0 127.0.0.1:1234] ..."), in ms.
double monitor_time_ms(const std::string& line) { return std::strtod(line.c_str(), nullptr) * 1000.0; }

// leave() must be final even when a refresh is due or in flight at that moment.
void leave_race(const std::string& redis_binary) {
    redis_server redis(redis_binary);
    io_thread io;
    cluster c(io, redis, unique_prefix("race"));
    // DEBUG SLEEP below stalls Redis for 1.5 s: nobody may give up on it meanwhile.
    auto patient = c.options();
    patient.command_timeout = 3000ms;

    auto& o = c.start("observer", patient);
    auto& x = c.start("x", patient);
    CHECK(o.sink.wait_up("x", liveness), "observer did not see x");
    const std::string xkey = c.key("x");

    // 1. A refresh in flight: stall Redis so that x's next refresh waits in x's connection, and
    //    call leave() meanwhile. Its delete must go behind the refresh and win.
    {
        monitor mon(redis);
        const auto refreshed = mon.find({"\"SET\" \"" + xkey + "\"", "\"XX\""}, 0, liveness);
        CHECK(refreshed, "no refresh of x seen");
        const auto t_refresh = clock_type::now();
        std::this_thread::sleep_until(t_refresh + 300ms);  // x's re-scan is over; its next refresh is due at +1000 ms
        const double sleep_started_ms =
            std::chrono::duration<double, std::milli>(std::chrono::system_clock::now().time_since_epoch()).count();
        std::thread staller([&] {
            auto stalling = redis.client();
            stalling.run({"DEBUG", "SLEEP", "1.5"});
        });
        std::this_thread::sleep_until(t_refresh + 1500ms);  // 1.2 s into the stall, the refresh is waiting
        c.leave(x);
        staller.join();
        const auto ec = wait_left(x, liveness);
        CHECK(!ec, "leave of x failed: {}", ec.message());
        CHECK(o.sink.wait_down("x", liveness), "observer did not hear x leave");

        const auto deleted = mon.find({"\"EVAL\"", xkey}, *refreshed, liveness);
        CHECK(deleted, "no delete of x's key seen");
        const auto lines = mon.lines();
        // The refresh that was in flight: a SET XX of x's key executed after the stall began,
        // right before the delete.
        std::optional<std::size_t> last_set;
        for (std::size_t i = *refreshed + 1; i < *deleted; ++i) {
            if (lines[i].find("\"SET\" \"" + xkey + "\"") != std::string::npos) last_set = i;
        }
        CHECK(last_set && lines[*last_set].find("\"XX\"") != std::string::npos, "no refresh of x before its delete");
        CHECK(monitor_time_ms(lines[*last_set]) >= sleep_started_ms + 1400,
              "x's last refresh ran {} ms after the stall began: it was not in flight during leave()",
              monitor_time_ms(lines[*last_set]) - sleep_started_ms);
        note(fmt::format("refresh in flight during leave(): executed {:.0f} ms after the stall began, {:.1f} ms before the delete",
                         monitor_time_ms(lines[*last_set]) - sleep_started_ms,
                         monitor_time_ms(lines[*deleted]) - monitor_time_ms(lines[*last_set])));

        // 2. Leaves spread over a whole refresh period, for eight more nodes, in every phase.
        std::vector<node*> ys;
        for (int i = 0; i < 8; ++i) ys.push_back(&c.start(fmt::format("y{}", i), patient));
        for (node* y : ys) CHECK(o.sink.wait_up(y->id, liveness), "observer did not see {}", y->id);
        std::this_thread::sleep_for(1000ms);  // every y refreshes at least once
        const auto t0 = clock_type::now();
        for (std::size_t i = 0; i < ys.size(); ++i) {
            std::this_thread::sleep_until(t0 + i * 125ms);
            c.leave(*ys[i]);
        }
        for (node* y : ys) {
            const auto yec = wait_left(*y, liveness);
            CHECK(!yec, "leave of {} failed: {}", y->id, yec.message());
            CHECK(o.sink.wait_down(y->id, liveness), "observer did not hear {} leave", y->id);
        }

        // Two TTLs later nothing came back: no key, no second "up", no refresh after a delete.
        std::this_thread::sleep_for(2 * patient.ttl);
        auto check = redis.client();
        for (const std::string id : {"x", "y0", "y1", "y2", "y3", "y4", "y5", "y6", "y7"}) {
            CHECK(check.integer({"EXISTS", c.key(id)}) == 0, "the key of {} is back after its leave", id);
            const auto heard = o.sink.events_of(id);
            CHECK(heard.size() == 2 && heard[0].up && !heard[1].up, "observer heard {} events about {}, not up+down",
                  heard.size(), id);
        }
        const auto all = mon.lines();
        for (std::size_t i = *deleted + 1; i < all.size(); ++i) {
            CHECK(all[i].find("\"SET\" \"" + xkey + "\"") == std::string::npos, "x's key was written after its delete: {}",
                  all[i]);
        }
    }
    auto listed = mm::redis_discovery::list(c.options());
    CHECK(listed.has_value() && listed->size() == 1 && (*listed)[0].id == "observer", "records left besides the observer");
    o.sink.check_never_self();
}

// A node killed with SIGKILL is reported down: within ttl + refresh on an idle machine (printed;
// asserting it would assert the machine's speed).
void sigkill(const std::string& redis_binary, const std::string& self_binary) {
    redis_server redis(redis_binary);
    io_thread io;
    const std::string prefix = unique_prefix("kill");
    cluster c(io, redis, prefix);
    auto& o = c.start("observer");
    c.wait_connected(o);
    const auto opts = c.options();
    const auto bound = opts.ttl + opts.refresh + 300ms;  // 300 ms: scheduling and a scan's round trips
    for (const std::string id : {"k1", "k2", "k3"}) {
        const pid_t pid = spawn({self_binary, "child", std::to_string(redis.port()), prefix, id}, false);
        CHECK(o.sink.wait_up(id, liveness), "observer did not see {} (pid {})", id, pid);
        // Kill at a different phase of the child's refresh each time.
        std::this_thread::sleep_for(milliseconds(300 + 350 * (id[1] - '1')));
        const auto t0 = clock_type::now();
        kill_child(pid, SIGKILL);
        CHECK(o.sink.wait_down(id, liveness), "observer never reported {} down", id);
        const auto took = std::chrono::duration_cast<milliseconds>(o.sink.events_of(id).back().at - t0);
        note(fmt::format("{} killed with SIGKILL: reported down after {} ms (ttl + refresh: {} ms){}", id, took.count(),
                         bound.count(), took <= bound ? "" : " - late: a busy machine?"));
        const auto heard = o.sink.events_of(id);
        CHECK(heard.size() == 2 && heard[0].up && !heard[1].up, "observer heard {} events about {}, not up+down",
              heard.size(), id);
    }
    o.sink.check_never_self();
}

// AUTH: the right password works (alone or with the default user), a wrong or missing one does not.
void password(const std::string& redis_binary) {
    redis_server redis(redis_binary, "s3cret pass");
    io_thread io;
    cluster c(io, redis, unique_prefix("auth"));
    auto& a = c.start("a");
    auto with_user = c.options();
    with_user.username = "default";
    auto& b = c.start("b", with_user);
    CHECK(a.sink.wait_up("b", liveness) && b.sink.wait_up("a", liveness), "a and b did not find each other with AUTH");

    auto wrong = c.options();
    wrong.password = "wrong";
    auto& w = c.start("w", wrong);
    std::this_thread::sleep_for(1500ms);
    CHECK(!c.connected(w) && w.sink.view().empty(), "a node with a wrong password connected");
    CHECK(!a.sink.view().contains("w"), "a node with a wrong password was published");

    auto listed = mm::redis_discovery::list(wrong);
    CHECK(!listed && listed.error() == mm::redis_errc::auth_failed, "list() with a wrong password: {}",
          listed ? "succeeded" : listed.error().message());
    auto none = c.options();
    none.password.clear();
    listed = mm::redis_discovery::list(none);
    CHECK(!listed && listed.error() == mm::redis_errc::auth_failed, "list() without a password: {}",
          listed ? "succeeded" : listed.error().message());
    listed = mm::redis_discovery::list(c.options());
    CHECK(listed && listed->size() == 2, "list() with the password did not return a and b");
    note("AUTH: password and user+password accepted, wrong and missing password refused");
}

// Redis killed and started again, empty, on the same port: nobody alive is reported down, every
// node publishes itself again, and nodes that died during the outage are reported down.
void redis_restart(const std::string& redis_binary) {
    redis_server redis(redis_binary);
    io_thread io;
    cluster c(io, redis, unique_prefix("restart"));
    auto& a = c.start("a");
    auto& b = c.start("b");
    auto& dead = c.start("dead");
    auto& quitter = c.start("quitter");
    for (node* n : {&a, &b}) {
        CHECK(n->sink.wait([](const auto& v, const auto&) { return v.size() == 3; }, liveness), "{} does not see 3 peers",
              n->id);
    }

    redis.stop();
    const auto t_down = clock_type::now();
    std::this_thread::sleep_for(300ms);
    c.destroy(dead);  // dies during the outage: its key will not come back
    c.leave(quitter);  // cannot reach Redis: fails within 3 × command_timeout
    const auto qec = wait_left(quitter, liveness);
    CHECK(qec, "leave() without Redis reported success");
    note(fmt::format("leave() without Redis: '{}' after {} ms", qec.message(), ms_since(t_down) - 300));
    {
        const auto t = clock_type::now();
        while (c.connected(a) || c.connected(b)) {
            CHECK(ms_since(t) < liveness.count(), "still connected to a dead Redis");
            std::this_thread::sleep_for(20ms);
        }
    }
    for (node* n : {&a, &b}) {
        CHECK(n->sink.view().size() == 3, "{} dropped peers while Redis was away", n->id);
    }

    redis.start();
    const auto t_up = clock_type::now();
    c.wait_connected(a);
    c.wait_connected(b);
    note(fmt::format("reconnected {} ms after Redis came back (outage {} ms)", ms_since(t_up),
                     std::chrono::duration_cast<milliseconds>(t_up - t_down).count()));
    auto check = redis.client();
    CHECK(check.integer({"EXISTS", c.key("a")}) == 1 && check.integer({"EXISTS", c.key("b")}) == 1,
          "a or b did not publish itself again");
    const auto opts = c.options();
    for (node* n : {&a, &b}) {
        CHECK(n->sink.wait([](const auto& v, const auto&) { return !v.contains("dead") && !v.contains("quitter"); },
                           liveness),
              "{} did not report the nodes gone during the outage down", n->id);
    }
    note(fmt::format("nodes gone during the outage reported down {} ms after Redis came back", ms_since(t_up)));
    std::this_thread::sleep_for(opts.ttl);  // a spurious late "down" would show up now
    CHECK(a.sink.view().size() == 1 && a.sink.view().contains("b"), "a does not see exactly b");
    CHECK(b.sink.view().size() == 1 && b.sink.view().contains("a"), "b does not see exactly a");
    const auto ab = a.sink.events_of("b");
    const auto ba = b.sink.events_of("a");
    CHECK(ab.size() == 1 && ba.size() == 1, "a heard {} and b heard {} events about each other, not one 'up' each",
          ab.size(), ba.size());
    a.sink.check_never_self();
    b.sink.check_never_self();
}

// A node in a process of its own, for the SIGKILL test.
int child(std::uint16_t port, const std::string& prefix, const std::string& id) {
    struct quiet_sink final : mm::discovery_sink {
        void peer_up(const mm::peer_record&) override {}
        void peer_down(std::string_view) override {}
    } sink;
    asio::io_context io(1);
    mm::redis_options o;
    o.port = port;
    o.prefix = prefix;
    mm::redis_discovery d(io.get_executor(), o, sink);
    d.start({.id = id, .type = "child", .host = "127.0.0.1", .port = 30000, .incarnation = random_incarnation()});
    io.run();
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    std::signal(SIGPIPE, SIG_IGN);
    const std::string scenario = argc > 1 ? argv[1] : "";
    if (scenario == "child" && argc == 5) return child(static_cast<std::uint16_t>(std::atoi(argv[2])), argv[3], argv[4]);
    if (argc != 3) {
        std::fprintf(stderr, "usage: %s join|race|kill|auth|restart <redis-server>\n", argv[0]);
        return 64;
    }
    const std::string redis = argv[2];
    const auto t0 = clock_type::now();
    std::printf("mesh redis discovery: %s\n", scenario.c_str());
    if (scenario == "join") join_update_leave(redis);
    else if (scenario == "race") leave_race(redis);
    else if (scenario == "kill") sigkill(redis, "/proc/self/exe");
    else if (scenario == "auth") password(redis);
    else if (scenario == "restart") redis_restart(redis);
    else fail("unknown scenario " + scenario);
    reap_children();
    std::printf("PASS (%lld ms)\n", ms_since(t0));
    return 0;
}
