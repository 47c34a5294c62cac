// Reading the durations and points in time an operator types: the configuration's durations
// ("250ms", "5s", "2m") and `meshmaster events --since` ("90s" ago, "2026-12-06T14:00:00+01:00",
// "2026-12-06 14:00" local time, "#812"). Calendar arithmetic is Howard Hinnant's date library's
// (the basis of C++20's <chrono> calendar, which libstdc++ 12 lacks); the local time zone is the C
// library's.
//
// No clock: the caller passes "now" in, and the conversion from local time, so tests fix both.
// Thread safety: plain functions.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string_view>

namespace meshmaster::master {

/// The longest duration parse_duration() accepts: far beyond any sensible setting, short enough
/// that no clock arithmetic on it overflows (in nanoseconds, added to any clock's "now").
inline constexpr std::chrono::milliseconds max_duration = std::chrono::hours(24 * 365 * 100);

/// "250ms", "5s", "1.5s", "2m", "2h", "1d" (units ms, s, m, h, d) or a bare integer of
/// milliseconds; fractions are rounded to the millisecond. Nothing negative, no "inf"/"nan", at
/// most max_duration.
std::optional<std::chrono::milliseconds> parse_duration(std::string_view text);

/// An RFC 3339 date-time with its offset: "2026-12-06T14:00:00Z", "2026-12-06T14:00:00.25+01:00"
/// ('T' or a space between date and time).
std::optional<std::chrono::system_clock::time_point> parse_rfc3339(std::string_view text);

/// The wall-clock reading of the local time zone (given as if it were UTC: the fields of the
/// date and time, no offset) to the instant it names; nullopt if there is none.
using local_time_conversion = std::function<std::optional<std::chrono::sys_seconds>(std::chrono::sys_seconds)>;
/// The C library's: the TZ environment variable, else /etc/localtime. Ambiguous readings (the
/// hour a summer time ends) take what mktime() picks.
std::optional<std::chrono::sys_seconds> system_local_time(std::chrono::sys_seconds wall);

/// Where `meshmaster events --since` starts: at a time, or at a sequence number.
struct since_point {
    std::optional<std::chrono::system_clock::time_point> time;
    std::optional<std::uint64_t> seq;
};

/// "#812" (sequence 812 on), a duration ("90s", "5m", "2h", "1d": that long before `now`), an
/// RFC 3339 date-time with offset, or a local date and time without one ("2026-12-06 14:00",
/// "2026-12-06T14:00:30", "2026-12-06"). nullopt: none of these.
std::optional<since_point> parse_since(std::string_view text, std::chrono::system_clock::time_point now,
                                       const local_time_conversion& local = system_local_time);

}  // namespace meshmaster::master
