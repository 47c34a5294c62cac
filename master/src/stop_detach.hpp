// Stop and detach: a graceful stop (moves in flight finish, then the slaves shut down one by one,
// slot order then spares, and exit_daemon follows master_stopped), an immediate one (every slave
// killed now), and a detach (moves finish, then the master lets go of the slaves, which keep their
// shards for the next master: master_detached). It owns how far the master is on its way out, the
// stop_rec below; supervisor::state derives from it, and every unit reads it (nothing new starts
// while stopping; nothing at all happens once exited). The behaviour is in stop_detach.cpp, as
// members of supervisor::state (supervisor_state.hpp).
//
// Thread safety: none (the supervisor's driver thread only).
#pragma once

namespace meshmaster::master {

struct stop_rec {
    bool stopping = false;   // a stop or a detach was asked for: no restart, respawn, grant or spare
    bool detaching = false;  // stopping, but the slaves stay (request_detach)
    bool exited = false;     // master_stopped or master_detached is logged: every event is ignored
};

}  // namespace meshmaster::master
