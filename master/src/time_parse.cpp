#include "time_parse.hpp"

#include "quantity.hpp"

// g++ 12 at -O2 warns that a local of date.h's from_stream "may be used uninitialized" where it
// is assigned on every path that reads it (a false positive in its fractional-seconds parsing).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <date/date.h>
#pragma GCC diagnostic pop

#include <algorithm>
#include <cctype>
#include <charconv>
#include <ctime>
#include <sstream>
#include <string>

namespace meshmaster::master {

using std::chrono::milliseconds;
using std::chrono::nanoseconds;
using std::chrono::sys_seconds;
using std::chrono::system_clock;

std::optional<milliseconds> parse_duration(std::string_view text) {
    // A bare number is whole milliseconds.
    static constexpr unit_factor units[] = {
        {"", 1, false}, {"ms", 1}, {"s", 1'000}, {"m", 60'000}, {"h", 3'600'000}, {"d", 86'400'000}};
    const auto total = parse_quantity(text, units, static_cast<std::uint64_t>(max_duration.count()));
    if (!total) return std::nullopt;
    return milliseconds(static_cast<milliseconds::rep>(*total));
}

namespace {

// Parses all of `text` with one of `formats` into `out` (a sys_time or a local_time).
template <class TimePoint>
bool parse_whole(const std::string& text, std::initializer_list<const char*> formats, TimePoint& out) {
    for (const char* format : formats) {
        std::istringstream in(text);
        TimePoint t{};
        in >> date::parse(format, t);
        if (!in.fail() && in.peek() == std::char_traits<char>::eof()) {
            out = t;
            return true;
        }
    }
    return false;
}

// RFC 3339 allows a lower-case 't' and 'z', and (section 5.6's note) a space for the 'T'.
std::string normalized(std::string_view text) {
    std::string s(text);
    std::transform(s.begin(), s.end(), s.begin(), [](char c) { return c == 't' ? 'T' : c == 'z' ? 'Z' : c; });
    if (s.size() > 10 && s[10] == ' ') s[10] = 'T';
    return s;
}

}  // namespace

std::optional<system_clock::time_point> parse_rfc3339(std::string_view text) {
    date::sys_time<nanoseconds> t;
    if (!parse_whole(normalized(text), {"%FT%T%Ez", "%FT%TZ"}, t)) return std::nullopt;
    return system_clock::time_point(std::chrono::duration_cast<system_clock::duration>(t.time_since_epoch()));
}

std::optional<sys_seconds> system_local_time(sys_seconds wall) {
    // gmtime_r splits the reading into its fields (it was given as if UTC); mktime reads them as
    // local time, finding the offset (and summer time) that applies then.
    const std::time_t as_utc = static_cast<std::time_t>(wall.time_since_epoch().count());
    std::tm fields{};
    if (::gmtime_r(&as_utc, &fields) == nullptr) return std::nullopt;
    fields.tm_isdst = -1;
    const std::time_t t = std::mktime(&fields);
    if (t == static_cast<std::time_t>(-1)) return std::nullopt;
    return sys_seconds(std::chrono::seconds(t));
}

std::optional<since_point> parse_since(std::string_view text, system_clock::time_point now,
                                       const local_time_conversion& local) {
    if (text.empty()) return std::nullopt;
    if (text.front() == '#') {
        std::uint64_t seq = 0;
        const auto [end, ec] = std::from_chars(text.data() + 1, text.data() + text.size(), seq);
        if (ec != std::errc{} || end != text.data() + text.size()) return std::nullopt;
        return since_point{.seq = seq};
    }
    // A bare number could mean a sequence number, seconds or milliseconds: ask for the unit.
    if (std::all_of(text.begin(), text.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)) != 0; })) {
        return std::nullopt;
    }
    if (auto d = parse_duration(text)) return since_point{.time = now - *d};
    if (auto t = parse_rfc3339(text)) return since_point{.time = *t};
    date::local_time<nanoseconds> reading;
    if (!parse_whole(normalized(text), {"%FT%T", "%FT%R", "%F"}, reading)) return std::nullopt;
    const auto whole = date::floor<std::chrono::seconds>(reading);
    const auto at = local(sys_seconds(whole.time_since_epoch()));
    if (!at) return std::nullopt;
    return since_point{.time = system_clock::time_point(*at) +
                               std::chrono::duration_cast<system_clock::duration>(reading - whole)};
}

}  // namespace meshmaster::master
