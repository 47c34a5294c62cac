// Starting, watching and killing slave processes.
//
// Each slave is started with posix_spawn in a process group of its own (so a kill reaches
// everything it started), with stdout and stderr piped back to the master line by line, the
// secret in a pipe inherited as fd 3 (never in argv or the environment), and no other descriptor
// of the master. Exits are noticed through a pidfd the moment they happen, and every child is
// reaped: no zombies. A process the master did not start (a slave adopted after a master restart)
// can be watched and killed the same way, only without an exit status, and only once its
// environment shows it still is that slave (MESHMASTER_SLAVE_ID): a pid from an old event log
// may have been reused. kill() reaches only processes started or watched, never a bare pid.
//
// Thread safety: none; use from the io_context's thread. Callbacks run on that thread, never from
// inside spawn(), watch() or kill().
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace boost::asio {
class io_context;
}

namespace meshmaster::master {

class spawner {
public:
    struct callbacks {
        std::function<void(const std::string& slave, std::int64_t pid)> spawned;
        std::function<void(const std::string& slave, const std::string& error)> spawn_failed;
        std::function<void(const std::string& slave, const std::string& status)> exited;
        std::function<void(const std::string& slave, std::string_view stream, std::string_view line)> output;
    };
    struct request {
        std::string slave;
        std::vector<std::string> argv;
        std::vector<std::string> environment;  ///< KEY=VALUE added to the master's own environment
        std::string secret;                    ///< written into the pipe behind MESHMASTER_SECRET_FD=3
    };

    spawner(boost::asio::io_context& io, callbacks cb);
    ~spawner();

    void spawn(request r);
    void watch(const std::string& slave, std::int64_t pid);
    /// SIGKILL to the slave's process group (and the process itself, should it have left it), if
    /// it is one this spawner started or watches.
    void kill(const std::string& slave, std::int64_t pid);
    /// SIGKILL to every process started or watched, at once (the second SIGTERM).
    void kill_all();
    [[nodiscard]] std::size_t running() const;

private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

}  // namespace meshmaster::master
