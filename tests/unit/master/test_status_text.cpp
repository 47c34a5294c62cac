// `meshmaster status` at any fleet size: the daemon's answer (control_status.hpp) built from a
// supervisor status, and what the CLI prints of it (status_summary.hpp, status_shards.hpp) — the
// summary that fits a terminal at 1,024 shards and 64 slaves, the shard table and its selection.
#include "control_status.hpp"
#include "status_shards.hpp"
#include "status_summary.hpp"

#include <meshmaster/master/status.hpp>

#include <boost/json/array.hpp>

#include <doctest/doctest.h>

#include <fmt/format.h>

#include <algorithm>
#include <regex>
#include <string>
#include <variant>

using namespace meshmaster::master;
namespace json = boost::json;

namespace {

// A fleet whose `slaves` slaves each run their slot's even share of `shards`, all running.
supervisor_status fleet(std::uint32_t shards, std::uint32_t slaves) {
    supervisor_status st;
    st.generation = 2;
    const std::uint32_t share = shards / slaves;
    for (std::uint32_t i = 0; i < slaves; ++i) {
        const std::string id = fmt::format("s{}-g2", i);
        st.slaves.push_back({.id = id, .slot = i, .generation = 2, .pid = 1000 + i, .phase = "running",
                             .connected = true, .spawned_here = true, .shards = share});
        st.slots.push_back({.slot = i, .first_shard = i * share, .last_shard = (i + 1) * share - 1, .slave = id});
    }
    for (std::uint32_t n = 0; n < shards; ++n) {
        st.shards.push_back({.shard = n, .owner = fmt::format("s{}-g2", n / share), .epoch = 2, .phase = "running"});
    }
    st.shards_running = shards;
    return st;
}

// Slave `i`'s death, as the status shows it before anything is recovered: its shards unowned, its
// slot without a slave.
void lose(supervisor_status& st, std::uint32_t i) {
    slave_status& sl = st.slaves[i];
    sl.phase = "lost";
    sl.connected = false;
    sl.shards = 0;
    st.slots[i].slave.clear();
    for (auto& sh : st.shards) {
        if (sh.owner != sl.id) continue;
        sh.owner.clear();
        sh.phase = "unowned";
        --st.shards_running;
    }
}

daemon_facts facts(std::uint32_t shards) {
    return {.master_id = "host-a", .slave_address = "127.0.0.1:7400", .event_log = "events.jsonl",
            .shard_count = shards, .pid = 4242, .uptime_ms = 312'000};
}

std::string summary(const supervisor_status& st, const daemon_facts& f) {
    return status_summary_text(status_json(st, f, status_detail::summary));
}

std::size_t lines(const std::string& text) { return static_cast<std::size_t>(std::count(text.begin(), text.end(), '\n')); }

// A row of a shard table: a shard number, then its state.
const std::regex shard_row(R"(^ *\d+  (running|stopping|resuming|starting|unowned) )", std::regex::multiline);

std::size_t shard_rows_in(const std::string& text) {
    return static_cast<std::size_t>(std::distance(std::sregex_iterator(text.begin(), text.end(), shard_row), std::sregex_iterator()));
}

}  // namespace

TEST_CASE("the summary form leaves out the per-shard arrays, the full form has every shard, both count them by state") {
    supervisor_status st = fleet(1024, 16);
    lose(st, 3);
    const json::object summary_form = status_json(st, facts(1024), status_detail::summary);
    const json::object full = status_json(st, facts(1024), status_detail::full);
    CHECK_FALSE(summary_form.contains("shards"));
    CHECK_FALSE(summary_form.contains("unassigned_shards"));
    CHECK(summary_form.at("detail") == "summary");
    CHECK(full.at("detail") == "full");
    CHECK(full.at("shards").as_array().size() == 1024);
    CHECK(full.at("unassigned_shards").as_array().size() == 64);
    for (const json::object* o : {&summary_form, &full}) {
        CHECK(o->at("shard_states").as_object() ==
              json::object{{"unowned", 64}, {"starting", 0}, {"running", 960}, {"stopping", 0}, {"resuming", 0}});
        CHECK(o->at("shards_not_running") == 64);
        CHECK(o->at("shards_not_running_states").as_object() ==
              json::object{{"unowned", 64}, {"starting", 0}, {"stopping", 0}, {"resuming", 0}});
        CHECK(o->at("shards_not_running_first").as_array().size() == not_running_named);
        CHECK(o->at("shards_not_running_first").as_array().front() ==
              json::object{{"shard", 192}, {"owner", ""}, {"epoch", 2}, {"phase", "unowned"}});
        CHECK(o->at("master") == json::object{{"id", "host-a"}, {"pid", 4242}, {"uptime_ms", 312000.0}});
        CHECK(o->at("healthy") == false);
    }
}

TEST_CASE("a healthy fleet of 1,024 shards fits a terminal: counts, not rows") {
    supervisor_status st = fleet(1024, 16);
    st.slaves[15].heartbeat_rtt_ms = 0.1234;  // a protocol 1.3 slave's round trip, and where it connects from
    st.slaves[15].address = "10.0.0.7:51234";
    const std::string text = summary(st, facts(1024));
    CHECK(text.find("meshmaster on 127.0.0.1:7400  generation 2  shards 1024/1024 running") == 0);
    CHECK(text.find("master     host-a, pid 4242, up 5m 12s\n") != std::string::npos);
    CHECK(text.find("health     healthy: all 1024 shards running\n") != std::string::npos);
    CHECK(text.find("shards     1024 running\n") != std::string::npos);
    CHECK(text.find("restart    none since this master started\n") != std::string::npos);
    CHECK(text.find("slaves     16: 16 running\n") != std::string::npos);
    // One line a slave (16 of them), its home shards beside it; no shard has a row.
    CHECK(std::regex_search(text, std::regex(R"(\nSLAVE +SLOT +PID +PHASE +SHARDS +GENERATION +RTT +ADDRESS +HOME SHARDS\n)")));
    CHECK(std::regex_search(text, std::regex(R"(\ns15-g2 +15 +1015 running +64 +2 +0\.12 ms 10\.0\.0\.7:51234 +960\.\.1023\n)")));
    // Older slaves, or before the first echo: no figure rather than a false one.
    CHECK(std::regex_search(text, std::regex(R"(\ns14-g2 +14 +1014 running +64 +2 +- +- +896\.\.959\n)")));
    CHECK(shard_rows_in(text) == 0);
    CHECK(lines(text) < 30);
    // In slot order, whatever the answer's order (the daemon's is the ids' spelling: s10 before s2).
    supervisor_status shuffled = fleet(1024, 16);
    std::reverse(shuffled.slaves.begin(), shuffled.slaves.end());
    const std::string sorted = summary(shuffled, facts(1024));
    CHECK(sorted.find("\ns2-g2 ") < sorted.find("\ns10-g2 "));
    CHECK(sorted.find("\ns0-g2 ") < sorted.find("\ns1-g2 "));
}

TEST_CASE("a degraded fleet says so in words and names its first shards not running") {
    supervisor_status st = fleet(1024, 16);
    lose(st, 3);
    const std::string text = summary(st, facts(1024));
    CHECK(text.find("health     DEGRADED: 64 of 1024 shards not running: 64 unowned\n") != std::string::npos);
    // Every problem the daemon names, as the verdict's sentences.
    CHECK(text.find("  - 960 of 1024 shards running\n") != std::string::npos);
    CHECK(text.find("  - 64 shards unassigned (192..255): slot 3 has no slave\n") != std::string::npos);
    CHECK(text.find("shards     960 running, 64 unowned\n") != std::string::npos);
    CHECK(text.find("not running (64)\n") != std::string::npos);
    CHECK(shard_rows_in(text) == not_running_named);
    CHECK(text.find("     192  unowned   -                   2\n") != std::string::npos);
    CHECK(text.find("     211  unowned") != std::string::npos);
    CHECK(text.find("     212  unowned") == std::string::npos);
    CHECK(text.find("  ... and 44 more (meshmaster status --state not-running lists them all)\n") != std::string::npos);
    CHECK(std::regex_search(text, std::regex(R"(\ns3-g2 +3 +1003 lost +0 +2 +- +- +192\.\.255  \(disconnected\)\n)")));
    CHECK(lines(text) < 60);
}

TEST_CASE("shards recovered after their holder died do not run yet, shards in a planned move do") {
    supervisor_status st = fleet(256, 4);
    st.shards[0].phase = "stopping";  // a rolling restart's moves: owned throughout
    st.shards[0].moving = true;
    st.shards[1].phase = "resuming";
    st.shards[1].moving = true;
    st.shards[2].phase = "resuming";  // a recovery from a checkpoint
    st.shards[3].phase = "starting";
    st.shards_running = 252;
    const json::object o = status_json(st, facts(256), status_detail::summary);
    CHECK(o.at("shards_moving") == 2);
    CHECK(o.at("shards_not_running") == 2);
    const std::string text = status_summary_text(o);
    CHECK(o.at("shards_not_running_states") ==
          json::object{{"unowned", 0}, {"starting", 1}, {"stopping", 0}, {"resuming", 1}});
    CHECK(text.find("health     DEGRADED: 2 of 256 shards not running: 1 starting, 1 resuming\n") != std::string::npos);
    CHECK(text.find("shards     252 running, 1 stopping, 2 resuming, 1 starting; 2 in a planned handoff\n") !=
          std::string::npos);
    CHECK(text.find("       2  resuming  s0-g2") != std::string::npos);
    CHECK(text.find("       3  starting  s0-g2") != std::string::npos);
    CHECK(text.find("       0  stopping") == std::string::npos);
}

TEST_CASE("a rolling restart in progress is healthy and shows its progress, then the last one's outcome") {
    supervisor_status st = fleet(1024, 16);
    st.shards[5].phase = "resuming";
    st.shards[5].moving = true;
    st.shards_running = 1023;
    st.restart = restart_status{.id = 7, .slaves_total = 16, .slaves_done = 1, .migrations_done = 100,
                                .migrations_total = 2048, .in_flight = 64, .elapsed_ms = 2345};
    st.restart_queued = true;
    std::string text = summary(st, facts(1024));
    CHECK(text.find("health     healthy: all 1024 shards running, 1 of them moving in a planned handoff\n") !=
          std::string::npos);
    CHECK(text.find("restart    7 running: 100/2048 shards moved, 1/16 slaves, 64 in flight, 2.3 s; another one queued\n") !=
          std::string::npos);

    st = fleet(1024, 16);
    const event_record failed{.event = event_kind::restart_failed, .restart = 6, .duration_ms = 1250, .count = 3,
                              .reason = "new slave s0-g3 failed"};
    daemon_facts f = facts(1024);
    f.last_restart = &failed;
    text = summary(st, f);
    CHECK(text.find("restart    none running; the last, 6, FAILED in 1.250 s, 3 shards moved: new slave s0-g3 failed\n") !=
          std::string::npos);
    const event_record completed{.event = event_kind::restart_completed, .restart = 8, .duration_ms = 950.5, .count = 2048};
    f.last_restart = &completed;
    CHECK(summary(st, f).find("restart    none running; the last, 8, completed in 0.951 s, 2048 shards moved\n") !=
          std::string::npos);
}

TEST_CASE("past fifty slaves the summary counts them by phase and lists only those not running") {
    supervisor_status st = fleet(16384, 64);
    lose(st, 10);
    lose(st, 40);
    const std::string text = summary(st, facts(16384));
    CHECK(text.find("slaves     64: 2 lost, 62 running\n") != std::string::npos);
    CHECK(text.find("not running:\nSLAVE") != std::string::npos);
    CHECK(std::regex_search(text, std::regex(R"(\ns10-g2 +10 +1010 lost +0 +2 +- +- +2560\.\.2815  \(disconnected\)\n)")));
    CHECK(text.find("s40-g2") != std::string::npos);
    CHECK(text.find("s11-g2") == std::string::npos);
    CHECK(text.find("health     DEGRADED: 512 of 16384 shards not running: 512 unowned\n") != std::string::npos);
    CHECK(lines(text) < 60);
}

TEST_CASE("a problem sentence that names thousands of ranges is cut to a line") {
    supervisor_status st = fleet(16384, 64);
    for (std::uint32_t n = 0; n < 16384; n += 2) {  // every other shard starting: 8,192 ranges
        st.shards[n].phase = "starting";
        --st.shards_running;
    }
    const std::string text = summary(st, facts(16384));
    const auto at = text.find("  - 8192 shards starting, not acknowledged yet: 0, 2, 4");
    REQUIRE(at != std::string::npos);
    const auto end = text.find('\n', at);
    CHECK(end - at < 560);
    CHECK(text.substr(at, end - at).ends_with("... (in full: meshmaster status --json)"));
    CHECK(lines(text) < 120);
}

TEST_CASE("an answer without the summary's fields (an older daemon) still prints, without throwing") {
    const json::object old{{"healthy", false}, {"problems", json::array{"the master is stopping: its slaves are being shut down"}},
                           {"shard_count", 4}, {"shards_running", 4}, {"slaves", json::array{json::object{{"id", "s0-g1"}}}}};
    std::string text;
    REQUIRE_NOTHROW(text = status_summary_text(old));
    CHECK(text.find("health     DEGRADED: the master is stopping: its slaves are being shut down\n") != std::string::npos);
    CHECK(text.find("shards     4/4 running\n") != std::string::npos);
    CHECK_NOTHROW(status_summary_text(json::object{}));
}

TEST_CASE("--shards takes numbers and ranges, and a mistake is named") {
    auto ok = [](std::string_view text, std::vector<std::string> states = {}) {
        auto r = parse_shard_selection(text, states);
        REQUIRE_MESSAGE(std::holds_alternative<shard_selection>(r), std::get<std::string>(r));
        return std::get<shard_selection>(r);
    };
    auto error = [](std::string_view text, std::vector<std::string> states = {}) {
        auto r = parse_shard_selection(text, states);
        REQUIRE(std::holds_alternative<std::string>(r));
        return std::get<std::string>(r);
    };
    using ranges = std::vector<std::pair<std::uint32_t, std::uint32_t>>;
    CHECK(ok("").ranges.empty());
    CHECK(ok("0-99,512").ranges == ranges{{0, 99}, {512, 512}});
    CHECK(ok(" 0..3 , 7 ").ranges == ranges{{0, 3}, {7, 7}});
    CHECK(ok("", {"unowned", "not-running"}).states == std::vector<std::string>{"unowned", "not-running"});
    CHECK(error("9-3") == "--shards: '9-3' runs backwards: 9 is after 3");
    CHECK(error("0-99,abc") == "--shards: 'abc' is neither a shard number nor a range (write them like 0-99,512)");
    CHECK(error("-5") == "--shards: '-5' is neither a shard number nor a range (write them like 0-99,512)");
    CHECK(error("5-") == "--shards: '5-' is neither a shard number nor a range (write them like 0-99,512)");
    CHECK(error("99999999999") ==
          "--shards: '99999999999' is neither a shard number nor a range (write them like 0-99,512)");
    CHECK(error("1,,2") == "--shards: '1,,2' has an empty item between commas");
    CHECK(error("1,") == "--shards: '1,' ends with a comma");
    CHECK(error("", {"broken"}) ==
          "--state: 'broken' is not a state; the states are unowned, starting, running, stopping, resuming, moving, "
          "not-running");
}

TEST_CASE("the shard table lists the shards selected, by number and by state, and refuses shards past the fleet") {
    supervisor_status st = fleet(1024, 16);
    lose(st, 8);  // 512..575
    st.shards[3].phase = "stopping";
    st.shards[3].moving = true;
    st.shards[4].phase = "resuming";
    const json::object full = status_json(st, facts(1024), status_detail::full);

    shard_rows all = shard_rows_text(full, {});
    CHECK(all.error.empty());
    CHECK(all.rows == 1024);
    CHECK(shard_rows_in(all.text) == 1024);
    CHECK(all.text.find(" SHARD  STATE     OWNER           EPOCH  HANDOFF\n") == 0);
    CHECK(all.text.find("\n     3  stopping  s0-g2               2  planned\n") != std::string::npos);
    CHECK(all.text.find("\n     4  resuming  s0-g2               2  recovery\n") != std::string::npos);
    CHECK(all.text.find("\n     5  running   s0-g2               2  -\n") != std::string::npos);

    const shard_rows some = shard_rows_text(full, {.ranges = {{0, 9}, {512, 512}, {5, 6}}});
    CHECK(some.rows == 11);
    CHECK(some.text.find("\n   512  unowned   -                   2  -\n") != std::string::npos);
    CHECK(some.text.find("\n    10  ") == std::string::npos);

    CHECK(shard_rows_text(full, {.states = {"unowned"}}).rows == 64);
    CHECK(shard_rows_text(full, {.states = {"not-running"}}).rows == 65);  // the unowned and the recovery
    CHECK(shard_rows_text(full, {.states = {"moving"}}).rows == 1);
    CHECK(shard_rows_text(full, {.ranges = {{0, 600}}, .states = {"unowned", "stopping"}}).rows == 65);

    const shard_rows past = shard_rows_text(full, {.ranges = {{0, 3}, {1000, 1024}}});
    CHECK(past.text.empty());
    CHECK(past.error == "--shards: 1000-1024 is past the fleet's last shard: it has 1024 shards (0..1023)");
    CHECK(shard_rows_text(full, {.ranges = {{4096, 4096}}}).error ==
          "--shards: shard 4096 is past the fleet's last shard: it has 1024 shards (0..1023)");
    // The summary form has no table to list from.
    CHECK(shard_rows_text(status_json(st, facts(1024), status_detail::summary), {}).error ==
          "the daemon's answer has no shard table");
}
