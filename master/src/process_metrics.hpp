// The facts behind the usual `process_*` metrics, as Prometheus's client libraries read them on
// Linux: CPU time, resident and virtual memory and start time from /proc/self/stat, open
// descriptors from /proc/self/fd, the descriptor limit from getrlimit. Read at each scrape.
// Errors: a fact that cannot be read is left empty (its metric is then not exposed) — a scrape
// must not fail because /proc is not mounted. Thread safety: none needed (reads only).
#pragma once

#include <optional>
#include <string_view>

namespace meshmaster::master {

struct process_facts {
    std::optional<double> cpu_seconds;         ///< user + system time
    std::optional<double> resident_bytes;
    std::optional<double> virtual_bytes;
    std::optional<double> start_time_seconds;  ///< since the Unix epoch
    std::optional<double> open_fds;
    std::optional<double> max_fds;             ///< the soft RLIMIT_NOFILE
};

/// This process's facts, now.
[[nodiscard]] process_facts read_process_facts();

/// The part of read_process_facts() that reads /proc/self/stat's text: `stat` that file's one line,
/// `boot_time` /proc/stat's btime (seconds since the epoch), with the clock ticks per second and
/// the page size. Separate so its parsing is tested on a line with spaces and parentheses in the
/// command name.
[[nodiscard]] process_facts facts_from_stat(std::string_view stat, std::optional<double> boot_time, double ticks_per_second,
                                            double page_size);

}  // namespace meshmaster::master
