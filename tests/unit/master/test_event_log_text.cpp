// What the event log's lines look like to a reader: plain decimals (never Boost.JSON's "7.8E3"),
// and the shard count `meshmaster replay` finds in them.
#include "event_log.hpp"
#include "event_replay.hpp"

#include <meshmaster/protocol/json_text.hpp>

#include <boost/json/parse.hpp>

#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>

using namespace meshmaster::master;
namespace json = boost::json;
using meshmaster::protocol::json_text;

namespace {

struct temporary_directory {
    temporary_directory() {
        char pattern[] = "/tmp/meshmaster-event-log-XXXXXX";
        REQUIRE(::mkdtemp(pattern) != nullptr);
        path = pattern;
    }
    ~temporary_directory() { std::filesystem::remove_all(path); }
    std::string path;
};

std::string read_all(const std::string& path) {
    std::ifstream in(path);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

const std::regex exponent("[0-9][eE][-+]?[0-9]");

}  // namespace

TEST_CASE("json_text writes numbers with a fraction as plain decimals") {
    CHECK(json_text(json::value(7800.0)) == "7800");
    CHECK(json_text(json::value(1.25)) == "1.25");
    CHECK(json_text(json::value(5123.456)) == "5123.456");
    CHECK(json_text(json::value(0.000123)) == "0.000123");
    CHECK(json_text(json::value(-2.5)) == "-2.5");
    CHECK(json_text(json::value(1e21)) == "1000000000000000000000");
    CHECK(json_text(json::value(std::numeric_limits<double>::infinity())) == "null");
    CHECK(json_text(json::value(std::nan(""))) == "null");
    // Everything else as Boost.JSON writes it: integers, strings (escaped), nesting, key order.
    const json::value v = json::parse(R"({"b":[1,-2,18446744073709551615,"x\"y\n",true,null,{}],"a":0.5})");
    CHECK(json_text(v) == R"({"b":[1,-2,18446744073709551615,"x\"y\n",true,null,{}],"a":0.5})");
    // And it reads back as the same values.
    const json::value back = json::parse(json_text(json::value(5123.456)));
    CHECK(back.as_double() == 5123.456);
}

TEST_CASE("the event log writes plain decimals") {
    temporary_directory dir;
    const std::string path = dir.path + "/events.jsonl";
    {
        event_log log(path);
        log.write({.event = "migration_completed", .shard = 3, .duration_ms = 7800.0, .pause_ms = 12.5},
                  std::chrono::system_clock::now(), 5123.456);
        log.write({.event = "restart_completed", .duration_ms = 123456.789}, std::chrono::system_clock::now(), 98765.4321);
    }
    const std::string text = read_all(path);
    CHECK_MESSAGE(!std::regex_search(text, exponent), text);
    CHECK(text.find(R"("mono_ms":5123.456)") != std::string::npos);
    CHECK(text.find(R"("duration_ms":7800,)") != std::string::npos);
    CHECK(text.find(R"("pause_ms":12.5)") != std::string::npos);
    CHECK(text.find(R"("duration_ms":123456.789)") != std::string::npos);
    CHECK(text.find(R"("mono_ms":98765.432)") != std::string::npos);  // rounded to the microsecond
}

TEST_CASE("replay finds the shard count the log's last master ran") {
    temporary_directory dir;
    const std::string path = dir.path + "/events.jsonl";
    CHECK(!logged_shard_count(path));  // no log
    {
        std::ofstream out(path);
        out << R"({"seq":1,"event":"master_started","generation":1,"count":64})" "\n";
        out << R"({"seq":2,"event":"shard_started","shard":3,"count":2})" "\n";
    }
    CHECK(logged_shard_count(path) == 64u);
    {
        std::ofstream out(path, std::ios::app);
        out << "not json\n";
        out << R"({"seq":3,"event":"master_started","generation":2,"count":16})" "\n";
    }
    CHECK(logged_shard_count(path) == 16u);  // the last master's
    {
        // A rotated log starts with the epochs restated: as many as there are shards.
        std::ofstream out(path);
        out << R"({"seq":9,"event":"event_log_reopened"})" "\n";
        out << R"({"seq":10,"event":"epochs_snapshot","epochs":[1,1,2,1,5,1,1,1]})" "\n";
    }
    CHECK(logged_shard_count(path) == 8u);
    {
        std::ofstream out(path);
        out << R"({"seq":1,"event":"shard_started","shard":3})" "\n";
    }
    CHECK(!logged_shard_count(path));
}
