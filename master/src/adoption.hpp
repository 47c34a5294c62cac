// Start-up and adoption: the master's start (with an adoption window when a previous master left
// slaves running), a slave's hello (a spawned slave, an external one, or one adopted from the
// previous master: its slot, its shards reconciled with the table, then its work), and the end of
// adoption (slaves that did not come back are killed, moves the previous master left open get their
// migration_abandoned record, missing slots are spawned). It owns what the previous master left
// behind, the adoption_rec below; supervisor::state derives from it, so the fields read as the
// state's own in every unit (failure handling reaps the killed ones, the slave pool skips the used
// ids). The behaviour is in adoption.cpp, as members of supervisor::state (supervisor_state.hpp).
//
// Thread safety: none (the supervisor's driver thread only).
#pragma once

#include <meshmaster/master/supervisor.hpp>

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace meshmaster::master {

struct adoption_rec {
    std::set<std::string> used_ids;  // by a previous master (seed_ids): never handed out again
    // Slaves a previous master left running (expect_slaves) that have not said hello yet, and
    // those killed for not coming back, whose exit must be seen before any shard is granted.
    std::map<std::string, std::int64_t> expected;
    bool expecting = false;
    std::map<std::string, mono_time> awaiting_exit;
    std::optional<mono_time> adopting_until;  // set while the adoption window is open
    std::vector<supervisor::abandoned_migration> abandoned;  // moves the previous master left open
    std::vector<std::uint64_t> abandoned_restarts;           // a restart it was killed in the middle of

    [[nodiscard]] bool adopting() const { return adopting_until.has_value(); }
};

}  // namespace meshmaster::master
