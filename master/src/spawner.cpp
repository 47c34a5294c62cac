#include "spawner.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>

#include <fmt/format.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <map>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace meshmaster::master {

namespace asio = boost::asio;

namespace {

int pidfd_open(pid_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }

// Whether `pid` still runs the slave `slave`: a slave started by a master carries its id in its
// environment. A pid from an old event log may belong to someone else by now. An environment we
// may not read gives no answer either way: the pid is trusted then.
bool runs_slave(pid_t pid, const std::string& slave) {
    const int fd = ::open(fmt::format("/proc/{}/environ", pid).c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno != ENOENT;
    std::string environment;
    char chunk[4096];
    ssize_t n;
    while (environment.size() < (1u << 20) && (n = ::read(fd, chunk, sizeof chunk)) > 0) environment.append(chunk, static_cast<std::size_t>(n));
    ::close(fd);
    const std::string wanted = "MESHMASTER_SLAVE_ID=" + slave;
    for (std::size_t at = 0; at < environment.size();) {
        const std::size_t end = std::min(environment.find('\0', at), environment.size());
        if (std::string_view(environment).substr(at, end - at) == wanted) return true;
        at = end + 1;
    }
    return false;
}

std::string describe(const siginfo_t& info) {
    if (info.si_code == CLD_EXITED) return fmt::format("exited with code {}", info.si_status);
    const char* name = sigabbrev_np(info.si_status);
    return fmt::format("killed by signal {} (SIG{})", info.si_status, name ? name : "?");
}

// A line-oriented reader of one of a child's output pipes.
struct output_pipe : std::enable_shared_from_this<output_pipe> {
    output_pipe(asio::io_context& io, int fd, std::string slave, std::string_view stream,
                const std::function<void(const std::string&, std::string_view, std::string_view)>& sink)
        : descriptor(io, fd), slave(std::move(slave)), stream(stream), sink(sink), buffer(64 * 1024) {}

    void read() {
        asio::async_read_until(descriptor, buffer, '\n', [self = shared_from_this()](boost::system::error_code ec, std::size_t n) {
            if (!ec) {
                std::string line(asio::buffers_begin(self->buffer.data()), asio::buffers_begin(self->buffer.data()) + static_cast<std::ptrdiff_t>(n - 1));
                self->buffer.consume(n);
                if (self->sink) self->sink(self->slave, self->stream, line);
                self->read();
                return;
            }
            // EOF, or a line longer than the buffer: hand over what there is.
            if (self->buffer.size() > 0 && self->sink) {
                std::string rest(asio::buffers_begin(self->buffer.data()), asio::buffers_end(self->buffer.data()));
                self->buffer.consume(self->buffer.size());
                self->sink(self->slave, self->stream, rest);
                if (ec == asio::error::not_found) {
                    self->read();
                    return;
                }
            }
        });
    }

    asio::posix::stream_descriptor descriptor;
    std::string slave;
    std::string_view stream;
    const std::function<void(const std::string&, std::string_view, std::string_view)>& sink;
    asio::streambuf buffer;
};

}  // namespace

struct spawner::impl {
    impl(asio::io_context& context, callbacks c) : io(context), cb(std::move(c)) {}

    struct process {
        pid_t pid = 0;
        bool child = false;
        std::unique_ptr<asio::posix::stream_descriptor> pidfd;
    };

    void watch_exit(const std::string& slave, pid_t pid, bool child) {
        int fd = pidfd_open(pid);
        if (fd >= 0 && !child && !runs_slave(pid, slave)) {
            ::close(fd);
            fd = -1;
            errno = ESRCH;  // that slave is gone; its pid was reused
        }
        if (fd < 0) {
            // The process is already gone (ESRCH), or pidfds are unavailable: report what we know.
            const int error = errno;
            std::string status = error == ESRCH ? "exited before it could be watched" : std::string("cannot watch: ") + std::strerror(error);
            if (child) {
                int wstatus = 0;
                if (::waitpid(pid, &wstatus, 0) == pid) {
                    status = WIFEXITED(wstatus) ? fmt::format("exited with code {}", WEXITSTATUS(wstatus))
                                                : fmt::format("killed by signal {}", WTERMSIG(wstatus));
                }
            }
            asio::post(io, [this, slave, status] { if (cb.exited) cb.exited(slave, status); });
            return;
        }
        process& p = processes[slave];
        p.pid = pid;
        p.child = child;
        p.pidfd = std::make_unique<asio::posix::stream_descriptor>(io, fd);
        p.pidfd->async_wait(asio::posix::stream_descriptor::wait_read, [this, slave, pid](boost::system::error_code ec) {
            auto it = processes.find(slave);
            if (ec || it == processes.end() || it->second.pid != pid) return;
            std::string status = "exited (not a child of this master: status unknown)";
            if (it->second.child) {
                siginfo_t info{};
                // Reaps the child: the pidfd says it exited, so this does not block.
                if (::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(it->second.pidfd->native_handle()), &info,
                             WEXITED) == 0) {
                    status = describe(info);
                }
            }
            processes.erase(it);
            if (cb.exited) cb.exited(slave, status);
        });
    }

    asio::io_context& io;
    callbacks cb;
    std::function<void(const std::string&, std::string_view, std::string_view)> sink = [this](const std::string& s, std::string_view stream, std::string_view line) {
        if (cb.output) cb.output(s, stream, line);
    };
    std::map<std::string, process> processes;
};

spawner::spawner(asio::io_context& io, callbacks cb) : impl_(std::make_unique<impl>(io, std::move(cb))) {}
spawner::~spawner() = default;

void spawner::spawn(request r) {
    auto fail = [this, slave = r.slave](std::string what) {
        asio::post(impl_->io, [this, slave, what] { if (impl_->cb.spawn_failed) impl_->cb.spawn_failed(slave, what); });
    };
    if (r.argv.empty()) return fail("no command");

    int out[2], err[2], secret[2];
    if (::pipe2(out, O_CLOEXEC) != 0) return fail(std::string("pipe: ") + std::strerror(errno));
    if (::pipe2(err, O_CLOEXEC) != 0) {
        ::close(out[0]); ::close(out[1]);
        return fail(std::string("pipe: ") + std::strerror(errno));
    }
    if (::pipe2(secret, O_CLOEXEC) != 0) {
        ::close(out[0]); ::close(out[1]); ::close(err[0]); ::close(err[1]);
        return fail(std::string("pipe: ") + std::strerror(errno));
    }
    // The secret fits in the pipe's buffer, so this write does not block.
    const ssize_t written = ::write(secret[1], r.secret.data(), r.secret.size());
    ::close(secret[1]);

    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
    posix_spawn_file_actions_adddup2(&actions, err[1], STDERR_FILENO);
    posix_spawn_file_actions_adddup2(&actions, secret[0], 3);
    // Nothing else of the master leaks into the slave (listening sockets above all: a leaked one
    // would keep the port busy after the master died).
    posix_spawn_file_actions_addclosefrom_np(&actions, 4);

    posix_spawnattr_t attributes;
    posix_spawnattr_init(&attributes);
    sigset_t none, all_default;
    sigemptyset(&none);
    sigfillset(&all_default);
    sigdelset(&all_default, SIGKILL);
    sigdelset(&all_default, SIGSTOP);
    posix_spawnattr_setsigmask(&attributes, &none);
    posix_spawnattr_setsigdefault(&attributes, &all_default);
    posix_spawnattr_setpgroup(&attributes, 0);  // its own process group
    posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

    std::vector<std::string> env_strings;
    for (char** e = environ; *e; ++e) {
        const std::string_view kv(*e);
        if (kv.starts_with("MESHMASTER_SECRET")) continue;  // the pipe carries it, not the environment
        // systemd's word to the master (sd_notify, the watchdog): a slave that inherited it would
        // speak for the service, or be taken for it by a library that notifies on its own.
        if (kv.starts_with("NOTIFY_SOCKET=") || kv.starts_with("WATCHDOG_USEC=") || kv.starts_with("WATCHDOG_PID=") ||
            kv.starts_with("LISTEN_FDS=") || kv.starts_with("LISTEN_PID=") || kv.starts_with("LISTEN_FDNAMES=")) {
            continue;
        }
        env_strings.emplace_back(kv);
    }
    for (auto& kv : r.environment) env_strings.push_back(std::move(kv));
    env_strings.push_back("MESHMASTER_SECRET_FD=3");
    std::vector<char*> envp;
    for (auto& s : env_strings) envp.push_back(s.data());
    envp.push_back(nullptr);
    std::vector<char*> argv;
    for (auto& a : r.argv) argv.push_back(a.data());
    argv.push_back(nullptr);

    pid_t pid = 0;
    const int rc = ::posix_spawnp(&pid, argv[0], &actions, &attributes, argv.data(), envp.data());
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attributes);
    ::close(out[1]);
    ::close(err[1]);
    ::close(secret[0]);
    if (rc != 0 || written != static_cast<ssize_t>(r.secret.size())) {
        ::close(out[0]);
        ::close(err[0]);
        return fail(rc != 0 ? fmt::format("cannot start {}: {}", r.argv[0], std::strerror(rc)) : "cannot hand over the secret");
    }
    std::make_shared<output_pipe>(impl_->io, out[0], r.slave, "stdout", impl_->sink)->read();
    std::make_shared<output_pipe>(impl_->io, err[0], r.slave, "stderr", impl_->sink)->read();
    impl_->watch_exit(r.slave, pid, true);
    asio::post(impl_->io, [this, slave = r.slave, pid] { if (impl_->cb.spawned) impl_->cb.spawned(slave, pid); });
}

void spawner::watch(const std::string& slave, std::int64_t pid) {
    impl_->watch_exit(slave, static_cast<pid_t>(pid), false);
}

void spawner::kill(const std::string& slave, std::int64_t) {
    // Only a process we started or watch (whose identity was checked): never a bare pid.
    auto it = impl_->processes.find(slave);
    if (it == impl_->processes.end()) return;
    const pid_t target = it->second.pid;
    if (target <= 0) return;
    // The slave leads its own group: this reaches whatever it started too.
    ::kill(-target, SIGKILL);
    ::kill(target, SIGKILL);
}

void spawner::kill_all() {
    for (const auto& [slave, p] : impl_->processes) {
        ::kill(-p.pid, SIGKILL);
        ::kill(p.pid, SIGKILL);
    }
}

std::size_t spawner::running() const { return impl_->processes.size(); }

}  // namespace meshmaster::master
