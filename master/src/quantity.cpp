#include "quantity.hpp"

#include <charconv>

namespace meshmaster::master {

std::optional<std::uint64_t> parse_quantity(std::string_view text, std::span<const unit_factor> units,
                                            std::uint64_t limit, int max_fraction_digits) {
    const char* p = text.data();
    const char* const end = p + text.size();
    // Integers only: from_chars<double> would take "inf", "nan" and "1e400".
    std::uint64_t whole = 0;
    const auto [after_whole, ec] = std::from_chars(p, end, whole);
    if (ec != std::errc{}) return std::nullopt;  // also a sign, or no digit at all
    p = after_whole;
    if (max_fraction_digits > 9) max_fraction_digits = 9;  // see the product below
    std::uint64_t fraction = 0, scale = 1;
    const bool has_fraction = p != end && *p == '.';
    if (has_fraction) {
        const char* const first = ++p;
        while (p != end && *p >= '0' && *p <= '9' && p - first < max_fraction_digits) {
            fraction = fraction * 10 + static_cast<std::uint64_t>(*p - '0');
            scale *= 10;
            ++p;
        }
        if (p == first || (p != end && *p >= '0' && *p <= '9')) return std::nullopt;
    }
    const std::string_view unit(p, static_cast<std::size_t>(end - p));
    const unit_factor* found = nullptr;
    for (const unit_factor& u : units) {
        if (u.unit == unit) found = &u;
    }
    if (!found || found->factor == 0 || (has_fraction && !found->fractions)) return std::nullopt;
    if (whole > limit / found->factor) return std::nullopt;
    // fraction × factor / scale, rounded, without overflow: factor = q × scale + r, and with at
    // most 9 fraction digits fraction × r < 10^18.
    const std::uint64_t q = found->factor / scale, r = found->factor % scale;
    const std::uint64_t part = fraction * q + (fraction * r + scale / 2) / scale;
    const std::uint64_t total = whole * found->factor + part;
    if (total < part || total > limit) return std::nullopt;
    return total;
}

}  // namespace meshmaster::master
