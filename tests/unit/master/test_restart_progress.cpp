// restart --wait's progress (restart_progress.hpp): the ETA from the rate so far, the bar filling
// exactly the terminal's width, a restart whose total is not known yet, completion, and the plain
// lines a log gets — few, and each a sentence with the counts.
#include "restart_progress.hpp"

#include <boost/json/parse.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <string>

using namespace meshmaster::master;

namespace {
restart_progress at(std::uint32_t moved, std::uint32_t total) {
    return restart_progress{.id = 7, .moved = moved, .total = total, .pairs_done = 1, .pairs_total = 4, .in_flight = 2};
}
std::size_t count(const std::string& s, char c) { return static_cast<std::size_t>(std::count(s.begin(), s.end(), c)); }
}  // namespace

TEST_CASE("restart_progress: the ETA is the shards left at the rate so far") {
    // 4 of 16 in 2 s: 2 shards a second, 12 left, 6 s.
    CHECK(restart_eta_seconds(at(4, 16), 2.0) == doctest::Approx(6.0));
    CHECK(restart_eta_seconds(at(15, 16), 30.0) == doctest::Approx(2.0));
    // No rate yet: nothing moved, no time passed, or the total is not known (pairs still starting).
    CHECK_FALSE(restart_eta_seconds(at(0, 16), 5.0));
    CHECK_FALSE(restart_eta_seconds(at(3, 16), 0.0));
    CHECK_FALSE(restart_eta_seconds(at(0, 0), 5.0));
    // All moved: nothing left. Rolling back: no estimate of an end that will not come.
    CHECK(restart_eta_seconds(at(16, 16), 8.0) == doctest::Approx(0.0));
    restart_progress failing = at(4, 16);
    failing.failing = true;
    CHECK_FALSE(restart_eta_seconds(failing, 2.0));
}

TEST_CASE("restart_progress: the bar line fills the terminal's width less one column, its bar in proportion") {
    for (const std::size_t width : {60U, 80U, 132U, 200U}) {
        const std::string line = restart_progress_bar(at(4, 16), width, 2.0);
        CAPTURE(line);
        CHECK(line.size() == width - 1);
        REQUIRE(line.front() == '[');
        const std::size_t inner = line.find(']') - 1;
        CHECK(count(line, '#') == inner * 4 / 16);
        CHECK(count(line, '#') + count(line, '-') == inner);
        CHECK(line.find("4/16 shards") != std::string::npos);
        CHECK(line.find("1/4 pairs") != std::string::npos);
        CHECK(line.find("2.0 s") != std::string::npos);
        CHECK(line.find("ETA 6.0 s") != std::string::npos);
    }
    CHECK(restart_progress_bar(at(4, 16), 80, 2.0) ==
          "[#########---------------------------] 4/16 shards  1/4 pairs  2.0 s  ETA 6.0 s");
}

TEST_CASE("restart_progress: a narrow terminal gets the numbers without a bar, cut to fit") {
    const std::string wide_enough = restart_progress_bar(at(4, 16), 50, 2.0);
    CHECK(wide_enough == "4/16 shards  1/4 pairs  2.0 s  ETA 6.0 s");
    CHECK(restart_progress_bar(at(4, 16), 20, 2.0) == "4/16 shards  1/4 pa");  // 19 columns
    CHECK(restart_progress_bar(at(4, 16), 0, 2.0).empty());
}

TEST_CASE("restart_progress: a total of 0 draws an empty bar and no ETA, without dividing by it") {
    const std::string line = restart_progress_bar(at(0, 0), 80, 0.3);
    CHECK(line.size() == 79);
    CHECK(count(line, '#') == 0);
    CHECK(line.find("0/0 shards") != std::string::npos);
    CHECK(line.find("ETA --") != std::string::npos);
    CHECK(restart_progress_line(at(0, 0), 0.3) ==
          "restart 7: 0/0 shards moved, 1/4 slave pairs done, 2 in flight, 0.3 s elapsed, no estimate of the time left yet");
}

TEST_CASE("restart_progress: complete, the bar is full and nothing is left") {
    restart_progress done = at(16, 16);
    done.pairs_done = 4;
    const std::string line = restart_progress_bar(done, 80, 75.0);
    CHECK(count(line, '-') == 0);
    CHECK(line.find("] 16/16 shards  4/4 pairs  1m15s  ETA 0.0 s") != std::string::npos);
    CHECK(restart_progress_line(done, 75.0) ==
          "restart 7: 16/16 shards moved (100 %), 4/4 slave pairs done, 2 in flight, 1m15s elapsed, about 0.0 s left");
}

TEST_CASE("restart_progress: a failing restart says it is rolling back instead of an ETA") {
    restart_progress failing = at(4, 16);
    failing.failing = true;
    CHECK(restart_progress_bar(failing, 80, 2.0).ends_with("2.0 s  rolling back"));
    CHECK(restart_progress_line(failing, 2.0).ends_with("2.0 s elapsed, failing, rolling back"));
}

TEST_CASE("restart_progress: the daemon's progress object is read field by field; missing fields are 0") {
    const auto full = restart_progress_from_json(
        boost::json::parse(R"({"id":3,"slaves_total":4,"slaves_done":2,"migrations_done":9,"migrations_total":16,)"
                           R"("in_flight":1,"elapsed_ms":1234.5,"failing":false})")
            .as_object());
    CHECK(full.id == 3);
    CHECK(full.moved == 9);
    CHECK(full.total == 16);
    CHECK(full.pairs_done == 2);
    CHECK(full.pairs_total == 4);
    CHECK(full.in_flight == 1);
    CHECK_FALSE(full.failing);
    const auto sparse = restart_progress_from_json(boost::json::parse(R"({"id":3,"failing":"yes"})").as_object());
    CHECK(sparse.total == 0);
    CHECK(sparse.moved == 0);
    CHECK_FALSE(sparse.failing);
}

TEST_CASE("restart_progress: plain lines come at most once a second, or at each further tenth moved") {
    restart_progress_throttle throttle;
    CHECK(throttle.due(at(0, 100), 0.0));        // the first report: at once
    CHECK_FALSE(throttle.due(at(1, 100), 0.1));  // 100 ms later, same tenth
    CHECK_FALSE(throttle.due(at(9, 100), 0.9));
    CHECK(throttle.due(at(10, 100), 0.95));      // a tenth crossed
    CHECK_FALSE(throttle.due(at(12, 100), 1.5));
    CHECK(throttle.due(at(12, 100), 1.96));      // a second since the last line
    // Reports every 100 ms for a minute of a slow restart: about sixty lines, not six hundred.
    restart_progress_throttle slow;
    int lines = 0;
    for (int tick = 0; tick < 600; ++tick) lines += slow.due(at(static_cast<std::uint32_t>(tick / 60), 100), tick * 0.1);
    CHECK(lines >= 55);
    CHECK(lines <= 65);
}

TEST_CASE("restart_progress: durations read as seconds, then minutes, then hours") {
    CHECK(duration_text(0.04) == "0.0 s");
    CHECK(duration_text(59.94) == "59.9 s");
    CHECK(duration_text(125) == "2m05s");
    CHECK(duration_text(3725) == "1h02m");
    CHECK(duration_text(-1) == "0.0 s");
}
