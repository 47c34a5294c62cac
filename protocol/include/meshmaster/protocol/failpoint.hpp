// Named failpoints: places in the master and the slave library where a test can make the process
// crash, freeze or stall on purpose, to prove every step of the handoff survives it.
//
// Armed from the environment, read once per process:
//   MESHMASTER_FAILPOINTS="name=action[,name=action...]"
//     action: abort        the process dies at once (SIGKILL to itself: no cleanup, like a crash)
//             hang         the process freezes (SIGSTOP to itself; SIGCONT resumes it)
//             delay:<ms>   the calling thread sleeps (an event loop stuck in a callback)
//   A name may be prefixed with g<generation>/ to arm it only in slaves of that generation
//   (MESHMASTER_GENERATION), e.g. "g2/slave.resume.after_callback=abort" hits only the new slaves
//   of the first rolling restart.
// Unarmed failpoints cost one lookup in an empty table. docs/operations.md lists the names.
//
// Thread safety: safe from any thread after the first call.
#pragma once

#include <string_view>

namespace meshmaster::protocol {

/// Triggers the failpoint `name` if it is armed.
void failpoint(std::string_view name);

/// Whether any failpoint is armed in this process.
[[nodiscard]] bool failpoints_armed();

}  // namespace meshmaster::protocol
