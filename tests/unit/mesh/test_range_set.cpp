// range_set: the channel's SACK bookkeeping, checked against a plain std::set of numbers.
#include <meshmaster/mesh/range_set.hpp>

#include <doctest/doctest.h>

#include <random>
#include <set>
#include <utility>
#include <vector>

namespace mm = meshmaster::mesh;

namespace {

std::set<std::uint64_t> members(const mm::range_set& r) {
    std::set<std::uint64_t> out;
    std::uint64_t previous_end = 0;
    bool any = false;
    for (const auto& [first, last] : r.ranges()) {
        REQUIRE(first < last);                   // no empty range
        if (any) REQUIRE(first > previous_end);  // disjoint and not touching: merged
        for (std::uint64_t x = first; x < last; ++x) out.insert(x);
        previous_end = last;
        any = true;
    }
    return out;
}

}  // namespace

TEST_CASE("range_set: inserts merge, the new parts are reported once, erase_below trims") {
    mm::range_set r;
    std::vector<std::pair<std::uint64_t, std::uint64_t>> news;
    auto note = [&](std::uint64_t a, std::uint64_t b) { news.emplace_back(a, b); };
    r.insert_reporting_new(10, 20, note);
    r.insert_reporting_new(30, 40, note);
    CHECK(news == std::vector<std::pair<std::uint64_t, std::uint64_t>>{{10, 20}, {30, 40}});
    news.clear();
    r.insert_reporting_new(5, 45, note);  // the gaps around and between what is there
    CHECK(news == std::vector<std::pair<std::uint64_t, std::uint64_t>>{{5, 10}, {20, 30}, {40, 45}});
    CHECK(r.ranges().size() == 1);
    news.clear();
    r.insert_reporting_new(12, 18, note);  // nothing new
    CHECK(news.empty());
    r.insert(46, 50);
    CHECK(r.ranges().size() == 2);
    r.insert(45, 46);  // closes the gap: one range again
    CHECK(r.ranges().size() == 1);
    CHECK(r.contains(5));
    CHECK_FALSE(r.contains(50));
    r.erase_below(20);
    CHECK_FALSE(r.contains(19));
    CHECK(r.contains(20));
    CHECK(r.ranges().begin()->first == 20);
    r.erase_below(100);
    CHECK(r.empty());
}

TEST_CASE("range_set: random inserts and trims agree with a set of numbers") {
    std::mt19937_64 rng(7);
    for (int run = 0; run < 50; ++run) {
        mm::range_set r;
        std::set<std::uint64_t> model;
        for (int step = 0; step < 200; ++step) {
            const std::uint64_t a = rng() % 300, b = a + rng() % 12;
            if (rng() % 10 == 0) {
                r.erase_below(a);
                model.erase(model.begin(), model.lower_bound(a));
            } else {
                std::set<std::uint64_t> reported;
                r.insert_reporting_new(a, b, [&](std::uint64_t x, std::uint64_t y) {
                    for (std::uint64_t q = x; q < y; ++q) CHECK(reported.insert(q).second);
                });
                for (std::uint64_t q = a; q < b; ++q) CHECK(reported.contains(q) == !model.contains(q));
                for (std::uint64_t q = a; q < b; ++q) model.insert(q);
            }
            REQUIRE(members(r) == model);
        }
    }
}
