// The replay's check of the restarts' guarantee: every restart_started ends in exactly one
// terminal record, also across master restarts.
#include "event_replay.hpp"

#include <doctest/doctest.h>

#include <string>
#include <vector>

using namespace meshmaster::master;

namespace {

event_replay replay(const std::vector<std::string>& lines) {
    event_replayer r(4);
    for (const auto& line : lines) r.add_line(line);
    return r.result();
}

}  // namespace

TEST_CASE("a restart open at the end of a live log is in progress, not an error") {
    const auto r = replay({R"({"seq":1,"event":"master_started"})", R"({"seq":2,"event":"adoption_finished"})",
                           R"({"seq":3,"event":"restart_started","restart":77})"});
    CHECK(r.open_restarts == std::vector<std::uint64_t>{77});
    CHECK(r.unterminated_restarts.empty());
}

TEST_CASE("a restart a later master finished adopting without closing is an error naming it") {
    const auto r = replay({R"({"seq":1,"event":"master_started"})", R"({"seq":2,"event":"adoption_finished"})",
                           R"({"seq":3,"event":"restart_started","restart":77})",
                           R"({"seq":4,"event":"master_started"})", R"({"seq":5,"event":"adoption_started"})",
                           R"({"seq":6,"event":"adoption_finished"})"});
    REQUIRE(r.unterminated_restarts.size() == 1);
    CHECK(r.unterminated_restarts[0].restart == 77);
    CHECK(r.unterminated_restarts[0].started_seq == 3);
    CHECK(r.unterminated_restarts[0].problem.find("seq 4") != std::string::npos);
    CHECK(r.open_restarts == std::vector<std::uint64_t>{77});  // the next master still closes it
}

TEST_CASE("a restart closed by the next master, or still in that master's adoption window, is no error") {
    std::vector<std::string> log{R"({"seq":1,"event":"master_started"})", R"({"seq":2,"event":"adoption_finished"})",
                                 R"({"seq":3,"event":"restart_started","restart":77})",
                                 R"({"seq":4,"event":"master_started"})", R"({"seq":5,"event":"adoption_started"})"};
    CHECK(replay(log).unterminated_restarts.empty());  // the new master is still adopting
    log.push_back(R"({"seq":6,"event":"restart_abandoned","restart":77})");
    log.push_back(R"({"seq":7,"event":"adoption_finished"})");
    const auto r = replay(log);
    CHECK(r.unterminated_restarts.empty());
    CHECK(r.open_restarts.empty());
}

TEST_CASE("a restart still open when its master stopped is an error; queued records do not close it") {
    const auto r = replay({R"({"seq":1,"event":"master_started"})", R"({"seq":2,"event":"restart_started","restart":5})",
                           R"({"seq":3,"event":"restart_queued","restart":5})",
                           R"({"seq":4,"event":"restart_started","restart":6})",
                           R"({"seq":5,"event":"restart_completed","restart":6})",
                           R"({"seq":6,"event":"master_stopped"})"});
    REQUIRE(r.unterminated_restarts.size() == 1);
    CHECK(r.unterminated_restarts[0].restart == 5);
    CHECK(r.unterminated_restarts[0].problem == "still open at master_stopped (seq 6)");
}
