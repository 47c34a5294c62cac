// The durations and points in time an operator types: configuration durations and
// `meshmaster events --since`. No clock and no time zone of the machine: "now" and the local
// time conversion are passed in.
#include "time_parse.hpp"

#include <doctest/doctest.h>

#include <date/date.h>

using namespace meshmaster::master;
using namespace std::chrono_literals;
using std::chrono::milliseconds;
using std::chrono::system_clock;

namespace {

system_clock::time_point utc(int y, unsigned mo, unsigned d, int h, int mi, int s) {
    const auto day = date::sys_days(date::year(y) / mo / d);
    return system_clock::time_point(day) + std::chrono::hours(h) + std::chrono::minutes(mi) + std::chrono::seconds(s);
}

// A fixed zone one hour east of UTC, standing in for the machine's.
std::optional<std::chrono::sys_seconds> utc_plus_one(std::chrono::sys_seconds wall) { return wall - 1h; }

}  // namespace

TEST_CASE("durations: units ms, s, m, h, d; a bare integer is milliseconds") {
    CHECK(parse_duration("250ms") == milliseconds(250));
    CHECK(parse_duration("5s") == milliseconds(5'000));
    CHECK(parse_duration("2m") == milliseconds(120'000));
    CHECK(parse_duration("2h") == milliseconds(7'200'000));
    CHECK(parse_duration("1d") == milliseconds(86'400'000));
    CHECK(parse_duration("100") == milliseconds(100));
    CHECK(parse_duration("0") == milliseconds(0));
    CHECK(parse_duration("1.5s") == milliseconds(1'500));
    CHECK(parse_duration("0.25h") == milliseconds(900'000));
    CHECK(parse_duration("1.0005s") == milliseconds(1'001));  // rounded to the millisecond
}

TEST_CASE("durations: nothing negative, non-finite, unitless with a fraction, unknown or too large") {
    for (const char* bad : {"", "-5s", "+5s", "inf", "infs", "nan", "NaN", "1e400", "1e3", "1e3s", "5 s", "5S",
                            "5min", "5us", "1.5", ".5s", "5.s", "1.0000000001s", "s", "ms", "99999999999999999999",
                            "18446744073709551615d", "36501d", "0x10"}) {
        CHECK_MESSAGE(!parse_duration(bad), bad);
    }
    CHECK(parse_duration("36500d") == max_duration);
}

TEST_CASE("RFC 3339: Z, offsets, fractional seconds; not without an offset") {
    CHECK(parse_rfc3339("2026-12-06T14:00:00Z") == utc(2026, 12, 6, 14, 0, 0));
    CHECK(parse_rfc3339("2026-12-06T14:00:00+01:00") == utc(2026, 12, 6, 13, 0, 0));
    CHECK(parse_rfc3339("2026-12-06T14:00:00-02:30") == utc(2026, 12, 6, 16, 30, 0));
    CHECK(parse_rfc3339("2026-12-06t14:00:00z") == utc(2026, 12, 6, 14, 0, 0));
    CHECK(parse_rfc3339("2026-12-06 14:00:00Z") == utc(2026, 12, 6, 14, 0, 0));
    CHECK(parse_rfc3339("2026-11-23T10:04:05.123456Z") == utc(2026, 11, 23, 10, 4, 5) + 123'456us);
    CHECK(parse_rfc3339("2026-12-06T14:00:00.5+01:00") == utc(2026, 12, 6, 13, 0, 0) + 500ms);
    for (const char* bad : {"2026-12-06T14:00:00", "2026-13-06T14:00:00Z", "2026-02-30T14:00:00Z", "2026-12-06T25:00:00Z",
                            "2026-12-06T14:00:00Zjunk", "2026-12-06", "yesterday"}) {
        CHECK_MESSAGE(!parse_rfc3339(bad), bad);
    }
}

TEST_CASE("--since: a sequence number, a duration ago, RFC 3339, or local time") {
    const auto now = utc(2026, 12, 6, 15, 0, 0);
    auto since = [&](const char* text) { return parse_since(text, now, utc_plus_one); };

    REQUIRE(since("#812"));
    CHECK(since("#812")->seq == 812u);
    CHECK(!since("#812")->time);
    CHECK(since("90s")->time == now - 90s);
    CHECK(since("5m")->time == now - 5min);
    CHECK(since("2h")->time == now - 2h);
    CHECK(since("1d")->time == now - 24h);
    CHECK(since("2026-12-06T14:00:00+01:00")->time == utc(2026, 12, 6, 13, 0, 0));
    CHECK(since("2026-12-06T14:00:00.25Z")->time == utc(2026, 12, 6, 14, 0, 0) + 250ms);
    // Without an offset: local time (here UTC+1).
    CHECK(since("2026-12-06 14:00")->time == utc(2026, 12, 6, 13, 0, 0));
    CHECK(since("2026-12-06 14:00:30")->time == utc(2026, 12, 6, 13, 0, 30));
    CHECK(since("2026-12-06T14:00")->time == utc(2026, 12, 6, 13, 0, 0));
    CHECK(since("2026-12-06")->time == utc(2026, 12, 5, 23, 0, 0));

    for (const char* bad : {"", "#", "#-1", "#12x", "#inf", "812", "yesterday-ish", "-5m", "inf", "nan", "1e400s",
                            "2026-12-06 25:00", "2026-12-32", "2026-12-06 14:00 junk"}) {
        CHECK_MESSAGE(!since(bad), bad);
    }
}

TEST_CASE("--since: a local time that the conversion cannot place is refused") {
    const auto nowhere = [](std::chrono::sys_seconds) -> std::optional<std::chrono::sys_seconds> { return std::nullopt; };
    CHECK(!parse_since("2026-12-06 14:00", system_clock::time_point{}, nowhere));
}

TEST_CASE("the C library's local time: localtime_r reads the instant back as the same wall clock") {
    // The machine's zone is whatever it is: check the conversion against the C library's inverse.
    const std::chrono::sys_seconds wall(std::chrono::seconds(1'796'565'600));  // 2026-12-06 14:00 (as read)
    const auto at = system_local_time(wall);
    REQUIRE(at);
    const std::time_t t = static_cast<std::time_t>(at->time_since_epoch().count());
    std::tm back{};
    REQUIRE(::localtime_r(&t, &back) != nullptr);
    CHECK(back.tm_year + 1900 == 2026);
    CHECK(back.tm_mon + 1 == 12);
    CHECK(back.tm_mday == 6);
    CHECK(back.tm_hour == 14);
    CHECK(back.tm_min == 0);
}
