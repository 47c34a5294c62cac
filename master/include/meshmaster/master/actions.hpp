// What the supervisor core asks its driver to do. The core never performs I/O: it returns these,
// and the driver (the daemon, or a test) carries them out in order. Actions own everything they
// carry, so a driver may queue them.
#pragma once

#include <meshmaster/master/event_record.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace meshmaster::master {

/// The driver's handle for one authenticated TCP connection.
using connection_id = std::uint64_t;
/// Immutable bytes shared between the core and the frames that carry them (shard states).
using shared_bytes = std::shared_ptr<const std::vector<std::byte>>;

namespace actions {

/// Queue these bytes on the connection: one or more whole frames, already encoded (a large state
/// arrives as state_chunk frames followed by the resume that closes it).
struct send_frame {
    connection_id connection = 0;
    std::vector<std::byte> frames;
};

/// Start a slave process for `slot` with this id (fork/exec; the id and secret go in its environment).
struct spawn_slave {
    std::string slave;
    std::optional<std::uint32_t> slot;  ///< empty for a spare
    std::uint64_t generation = 0;
};

/// Watch a process this master did not spawn (a slave adopted after a master restart) so its exit
/// is reported like a child's.
struct watch_process {
    std::string slave;
    std::int64_t pid = 0;
};

/// SIGKILL the slave's process group. Its exit is reported later through on_process_exited.
struct kill_slave {
    std::string slave;
    std::int64_t pid = 0;
};

/// Send an error frame with `code` and close the connection.
struct close_connection {
    connection_id connection = 0;
    std::string code;
    std::string message;
};

/// The state to resume `shard` from changed: keep it where a master that restarts after a crash
/// finds it (a null `state`: there is none any more). Only the newest per shard matters, so a
/// driver may coalesce these and write them behind.
struct store_checkpoint {
    std::uint32_t shard = 0;
    std::uint64_t epoch = 0;  ///< the epoch the shard was at when the state was taken
    shared_bytes state;
};

/// Append a record to the event log.
struct log_event {
    event_record record;
};

/// A named step of the protocol was reached (see protocol/failpoint.hpp): the daemon writes out
/// what is queued and triggers the failpoint, if a test armed it. Otherwise nothing happens.
struct hit_failpoint {
    std::string_view name;  ///< a string literal
};

/// Everything is shut down: the daemon may exit with `code`.
struct exit_daemon {
    int code = 0;
};

}  // namespace actions

using action = std::variant<actions::send_frame, actions::spawn_slave, actions::watch_process,
                            actions::kill_slave, actions::close_connection, actions::store_checkpoint,
                            actions::log_event, actions::hit_failpoint, actions::exit_daemon>;

}  // namespace meshmaster::master
