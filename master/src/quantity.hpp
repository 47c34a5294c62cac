// A number with a unit, as operators type them in configurations and on command lines: "250ms",
// "1.5s", "16MiB". One reader for durations (time_parse.hpp) and sizes (daemon_config.hpp), so both
// refuse the same things: a sign, "inf"/"nan", an exponent, an unknown unit, a value past a limit.
//
// Thread safety: a plain function.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

namespace meshmaster::master {

struct unit_factor {
    std::string_view unit;  ///< "" is the unit of a bare number
    std::uint64_t factor;   ///< how many of the base unit one of it is
    bool fractions = true;  ///< whether "1.5<unit>" is accepted (not for bytes, say)
};

/// `text` as a whole number of the base unit: digits, optionally '.' and 1 to
/// `max_fraction_digits` (at most 9) digits, then one of `units`; the fraction is rounded to the nearest base
/// unit. Nothing when the text is anything else or the value is above `limit`.
[[nodiscard]] std::optional<std::uint64_t> parse_quantity(std::string_view text, std::span<const unit_factor> units,
                                                          std::uint64_t limit, int max_fraction_digits = 9);

}  // namespace meshmaster::master
