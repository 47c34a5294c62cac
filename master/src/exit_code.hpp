// The exit codes of the `meshmaster` program, daemon and CLI alike: one table, in the style of
// sysexits(3), so that a script (or systemd's RestartPreventExitStatus=) can tell a start refused for
// its configuration (which a retry cannot fix) from a port that is taken or a daemon that is not
// there (which a retry may). Plain constants: no state, safe from any thread.
#pragma once

namespace meshmaster::master {

enum class exit_code : int {
    ok = 0,            ///< done; for `status`: every configured shard runs
    failure = 1,       ///< it ran and failed, or was refused (the reason printed)
    usage = 64,        ///< EX_USAGE: a bad command line
    unavailable = 69,  ///< EX_UNAVAILABLE: the port or control socket is taken, no daemon answers
    cant_create = 73,  ///< EX_CANTCREAT: a file or directory the daemon keeps cannot be created
    config = 78,       ///< EX_CONFIG: the configuration (or a file it names) is wrong
};

/// What main() returns and the CLI functions hand back.
constexpr int to_int(exit_code c) noexcept { return static_cast<int>(c); }

}  // namespace meshmaster::master
