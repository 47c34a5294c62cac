// What `meshmaster restart --wait` prints while it waits: on a terminal, one line redrawn in place
// (a bar, shards moved/total, slave pairs done/total, elapsed and an ETA from the rate so far); in a
// log or a pipe, a plain sentence now and then (restart_progress_throttle says when), so that a long
// restart leaves a readable trace rather than ten lines a second.
//
// Pure: progress data, width and elapsed time in, text out; no clock is read here (the caller
// passes the restart's elapsed time, as the daemon measured it). A field missing from the daemon's
// answer (an older daemon) counts as 0, never throws. Thread safety: plain functions and a value type.
#pragma once

#include <boost/json/object.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

namespace meshmaster::master {

/// One progress report of a running restart (the daemon's `restart_json`, control_status.hpp).
struct restart_progress {
    std::uint64_t id = 0;
    std::uint32_t moved = 0;        ///< shards moved so far
    std::uint32_t total = 0;        ///< shards to move (0 until the pairs are ready)
    std::uint32_t pairs_done = 0;   ///< old slaves replaced
    std::uint32_t pairs_total = 0;
    std::uint32_t in_flight = 0;
    bool failing = false;           ///< rolling back: no ETA is shown
};

/// The daemon's progress object as restart_progress; missing or mistyped fields are 0 / false.
restart_progress restart_progress_from_json(const boost::json::object& progress);

/// Seconds left at the rate so far (shards moved per second of `elapsed_s`): nothing until a shard
/// has moved (no rate yet), while rolling back or when the total is not known; 0 once all moved.
std::optional<double> restart_eta_seconds(const restart_progress& p, double elapsed_s);

/// "0.4 s", "12.3 s", "2m05s", "1h02m": short enough for a progress line.
std::string duration_text(double seconds);

/// The terminal line, at most `width - 1` columns (the last column would wrap on some terminals
/// and break the redraw): "[#####-----] 12/16 shards  2/4 pairs  3.1 s  ETA 1.0 s". The bar takes
/// what the text leaves; under 10 columns it is left out, and the text is cut to fit.
std::string restart_progress_bar(const restart_progress& p, std::size_t width, double elapsed_s);

/// The plain line, a sentence: "restart 3: 12/16 shards moved (75 %), 2/4 slave pairs done, 1 in
/// flight, 3.1 s elapsed, about 1.0 s left".
std::string restart_progress_line(const restart_progress& p, double elapsed_s);

/// When a plain line is due: the first report, then once `interval_s` has passed since the last
/// line or the count of moved shards has crossed another tenth of the total.
class restart_progress_throttle {
public:
    explicit restart_progress_throttle(double interval_s = 1.0) : interval_s_(interval_s) {}
    /// Whether to print the report `p` at time `now_s` (any monotonic origin); records it if so.
    bool due(const restart_progress& p, double now_s);

private:
    double interval_s_;
    std::optional<double> last_s_;
    std::uint32_t last_tenth_ = 0;
};

}  // namespace meshmaster::master
