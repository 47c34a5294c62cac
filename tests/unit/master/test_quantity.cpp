// Numbers with units, as the configuration's sizes and durations are read (quantity.hpp).
#include "quantity.hpp"

#include <doctest/doctest.h>

using namespace meshmaster::master;

namespace {

constexpr unit_factor bytes[] = {{"", 1, false}, {"B", 1, false}, {"KiB", 1024}, {"MB", 1'000'000}, {"TiB", 1ull << 40}};

std::optional<std::uint64_t> size(std::string_view text) { return parse_quantity(text, bytes, 1ull << 62, 6); }

}  // namespace

TEST_CASE("a quantity is a whole number of its base unit, fractions rounded to the nearest") {
    CHECK(size("0") == 0u);
    CHECK(size("4096") == 4096u);
    CHECK(size("16B") == 16u);
    CHECK(size("16KiB") == 16384u);
    CHECK(size("1.5KiB") == 1536u);
    CHECK(size("0.0005KiB") == 1u);  // 0.512 bytes
    CHECK(size("2.25MB") == 2'250'000u);
    CHECK(size("1.999999TiB") == 2'199'022'156'040u);  // 1.999999 x 2^40, rounded
    CHECK(size("4194304TiB") == 1ull << 62);           // the limit itself
}

TEST_CASE("a quantity refuses signs, non-finite numbers, exponents, fractions of whole-only units and excess") {
    for (const char* bad : {"", "-1", "+1", "inf", "nan", "1e3", "1e3KiB", "1.5", "1.5B", ".5KiB", "1.KiB", "1 KiB",
                            "1kib", "1.0000001KiB", "4194305TiB", "18446744073709551616", "KiB", "0x10"}) {
        CHECK_MESSAGE(!size(bad), bad);
    }
}
