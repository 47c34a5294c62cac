// restart --wait's progress text; see restart_progress.hpp. ASCII only, so that a byte is a column
// and the width arithmetic holds on any terminal.
#include "restart_progress.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace meshmaster::master {

namespace json = boost::json;

namespace {

std::uint64_t unsigned_field(const json::object& o, std::string_view key) {
    const json::value* v = o.if_contains(key);
    if (!v) return 0;
    if (v->is_uint64()) return v->as_uint64();
    if (v->is_int64()) return v->as_int64() > 0 ? static_cast<std::uint64_t>(v->as_int64()) : 0;
    return 0;
}

std::uint32_t count_field(const json::object& o, std::string_view key) {
    return static_cast<std::uint32_t>(std::min<std::uint64_t>(unsigned_field(o, key), UINT32_MAX));
}

std::uint32_t tenths(const restart_progress& p) {
    if (p.total == 0) return 0;
    return static_cast<std::uint32_t>(std::min<std::uint64_t>(std::uint64_t{p.moved} * 10 / p.total, 10));
}

std::string eta_text(const restart_progress& p, double elapsed_s) {
    if (p.failing) return "rolling back";
    const auto eta = restart_eta_seconds(p, elapsed_s);
    return eta ? "ETA " + duration_text(*eta) : "ETA --";
}

}  // namespace

restart_progress restart_progress_from_json(const json::object& o) {
    const json::value* failing = o.if_contains("failing");
    return restart_progress{.id = unsigned_field(o, "id"),
                            .moved = count_field(o, "migrations_done"),
                            .total = count_field(o, "migrations_total"),
                            .pairs_done = count_field(o, "slaves_done"),
                            .pairs_total = count_field(o, "slaves_total"),
                            .in_flight = count_field(o, "in_flight"),
                            .failing = failing && failing->is_bool() && failing->as_bool()};
}

std::optional<double> restart_eta_seconds(const restart_progress& p, double elapsed_s) {
    if (p.failing || p.total == 0) return std::nullopt;
    if (p.moved >= p.total) return 0.0;
    if (p.moved == 0 || !(elapsed_s > 0)) return std::nullopt;
    const double rate = p.moved / elapsed_s;  // shards per second so far
    return (p.total - p.moved) / rate;
}

std::string duration_text(double seconds) {
    if (!(seconds >= 0) || !std::isfinite(seconds)) seconds = 0;
    if (seconds < 60) return fmt::format("{:.1f} s", seconds);
    const auto whole = static_cast<std::uint64_t>(seconds);
    if (whole < 3600) return fmt::format("{}m{:02}s", whole / 60, whole % 60);
    return fmt::format("{}h{:02}m", whole / 3600, whole % 3600 / 60);
}

std::string restart_progress_bar(const restart_progress& p, std::size_t width, double elapsed_s) {
    const std::size_t usable = width > 1 ? width - 1 : 0;
    const std::string tail = fmt::format(" {}/{} shards  {}/{} pairs  {}  {}", p.moved, p.total, p.pairs_done,
                                         p.pairs_total, duration_text(elapsed_s), eta_text(p, elapsed_s));
    constexpr std::size_t min_bar = 10;  // narrower, a bar says nothing: the numbers alone
    if (usable >= tail.size() + 2 + min_bar) {
        const std::size_t inner = usable - tail.size() - 2;
        const std::size_t filled =
            p.total == 0 ? 0 : static_cast<std::size_t>(std::uint64_t{std::min(p.moved, p.total)} * inner / p.total);
        return "[" + std::string(filled, '#') + std::string(inner - filled, '-') + "]" + tail;
    }
    std::string text = tail.substr(1);
    if (text.size() > usable) text.resize(usable);
    return text;
}

std::string restart_progress_line(const restart_progress& p, double elapsed_s) {
    const std::string percent = p.total == 0 ? "" : fmt::format(" ({} %)", std::uint64_t{p.moved} * 100 / p.total);
    std::string left;
    if (p.failing) {
        left = "failing, rolling back";
    } else if (const auto eta = restart_eta_seconds(p, elapsed_s)) {
        left = "about " + duration_text(*eta) + " left";
    } else {
        left = "no estimate of the time left yet";
    }
    return fmt::format("restart {}: {}/{} shards moved{}, {}/{} slave pairs done, {} in flight, {} elapsed, {}", p.id,
                       p.moved, p.total, percent, p.pairs_done, p.pairs_total, p.in_flight, duration_text(elapsed_s),
                       left);
}

bool restart_progress_throttle::due(const restart_progress& p, double now_s) {
    const std::uint32_t tenth = tenths(p);
    if (last_s_ && now_s - *last_s_ < interval_s_ && tenth <= last_tenth_) return false;
    last_s_ = now_s;
    last_tenth_ = tenth;
    return true;
}

}  // namespace meshmaster::master
