// Whether the fleet is healthy, and if not why: `meshmaster status` exits on this (0 or 1) and
// prints the sentences. Pure: it reads a supervisor_status and nothing else.
#include <meshmaster/master/status.hpp>

#include <fmt/format.h>

#include <map>

namespace meshmaster::master {

std::string shard_ranges(const std::vector<std::uint32_t>& shards) {
    std::string out;
    for (std::size_t i = 0; i < shards.size();) {
        std::size_t j = i;
        while (j + 1 < shards.size() && shards[j + 1] == shards[j] + 1) ++j;
        if (!out.empty()) out += ", ";
        out += j == i ? fmt::format("{}", shards[i]) : fmt::format("{}..{}", shards[i], shards[j]);
        i = j + 1;
    }
    return out;
}

namespace {

std::string plural(std::size_t n, std::string_view one, std::string_view many) {
    return fmt::format("{} {}", n, n == 1 ? one : many);
}

// Why a slot's shards are unassigned, as its state tells.
std::string slot_state(const slot_status& slot, const supervisor_status& st) {
    if (slot.failed) {
        return fmt::format("slot {} failed: {}; `meshmaster reload` or `meshmaster restart` tries it again", slot.slot,
                           slot.failure);
    }
    if (!slot.slave.empty()) {
        std::string_view phase = "starting";
        for (const auto& s : st.slaves) {
            if (s.id == slot.slave) phase = s.phase;
        }
        return fmt::format("slot {}'s slave {} is {}", slot.slot, slot.slave, phase == "spawning" ? "starting" : phase);
    }
    if (slot.respawn_in_ms) {
        return fmt::format("slot {} has no slave: the next starts in {:.1f} s{}", slot.slot, *slot.respawn_in_ms / 1000,
                           slot.failed_starts ? fmt::format(" ({} recent failed starts)", slot.failed_starts) : "");
    }
    return fmt::format("slot {} has no slave", slot.slot);
}

}  // namespace

std::vector<std::string> fleet_problems(const supervisor_status& st) {
    std::vector<std::string> problems;
    if (st.stopping) {
        problems.push_back(st.detaching ? "the master is detaching: it exits soon, leaving its slaves running"
                                        : "the master is stopping: its slaves are being shut down");
    }
    if (st.adopting_ms) {
        problems.push_back(fmt::format(
            "adopting: waiting up to {:.1f} s more for the slaves of the previous master to report their shards",
            *st.adopting_ms / 1000));
    }

    std::vector<std::uint32_t> starting;  // granted or being recovered, not acknowledged yet
    std::map<std::uint32_t, std::vector<std::uint32_t>> unassigned;  // by home slot
    std::size_t not_running = 0;
    const auto slots = static_cast<std::uint64_t>(st.slots.size());
    for (const auto& sh : st.shards) {
        if (sh.phase == "running" || sh.moving) continue;
        ++not_running;
        if (sh.owner.empty()) {
            const auto home = slots ? static_cast<std::uint32_t>(std::uint64_t{sh.shard} * slots / st.shards.size()) : 0;
            unassigned[home].push_back(sh.shard);
        } else {
            starting.push_back(sh.shard);
        }
    }
    if (not_running > 0) {
        problems.push_back(fmt::format("{} of {} running", st.shards.size() - not_running,
                                       plural(st.shards.size(), "shard", "shards")));
    }
    for (const auto& [home, shards] : unassigned) {
        std::string why = home < st.slots.size() ? slot_state(st.slots[home], st) : "no slot serves them";
        problems.push_back(fmt::format("{} unassigned ({}): {}", plural(shards.size(), "shard", "shards"),
                                       shard_ranges(shards), why));
    }
    // A failed slot whose shards still run somewhere (a slave left from before) is a problem too.
    for (const auto& slot : st.slots) {
        if (slot.failed && !unassigned.contains(slot.slot)) problems.push_back(slot_state(slot, st));
    }
    if (!starting.empty()) {
        problems.push_back(fmt::format("{} starting, not acknowledged yet: {}",
                                       plural(starting.size(), "shard", "shards"), shard_ranges(starting)));
    }
    if (st.spares_failed) {
        problems.push_back(fmt::format("spares failed: {}; `meshmaster reload` or `meshmaster restart` tries again",
                                       st.spares_failure));
    }
    return problems;
}

}  // namespace meshmaster::master
