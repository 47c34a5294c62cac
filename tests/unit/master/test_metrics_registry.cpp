// The metrics registry and its text exposition format 0.0.4 (metrics_registry.hpp): what
// Prometheus and promtool read from `/metrics` and `meshmaster metrics`.
#include "metrics_registry.hpp"

#include <doctest/doctest.h>

#include <limits>
#include <stdexcept>

using namespace meshmaster::master::metrics;

TEST_CASE("a small registry is written exactly: HELP and TYPE, then one line per series, in first-use order") {
    registry r;
    auto& requests = r.counter("app_requests_total", "Requests served", {"method", "code"});
    auto& temperature = r.gauge("app_temperature_celsius", "Current temperature");
    auto& idle = r.counter("app_idle_total", "Never touched: exposed at 0");
    requests.add({"get", "200"});
    requests.add({"post", "500"}, 2);
    requests.add({"get", "200"}, 3);
    temperature.set({}, -3.25);
    (void)idle;
    CHECK(r.text() ==
          "# HELP app_requests_total Requests served\n"
          "# TYPE app_requests_total counter\n"
          "app_requests_total{method=\"get\",code=\"200\"} 4\n"
          "app_requests_total{method=\"post\",code=\"500\"} 2\n"
          "# HELP app_temperature_celsius Current temperature\n"
          "# TYPE app_temperature_celsius gauge\n"
          "app_temperature_celsius -3.25\n"
          "# HELP app_idle_total Never touched: exposed at 0\n"
          "# TYPE app_idle_total counter\n"
          "app_idle_total 0\n");
}

TEST_CASE("label values escape backslash, double quote and newline; HELP escapes backslash and newline") {
    registry r;
    auto& g = r.gauge("odd_values", "A \\ backslash,\na newline and \"quotes\"", {"v"});
    g.set({"C:\\dir \"quoted\"\nnext line"}, 1);
    CHECK(r.text() ==
          "# HELP odd_values A \\\\ backslash,\\na newline and \"quotes\"\n"
          "# TYPE odd_values gauge\n"
          "odd_values{v=\"C:\\\\dir \\\"quoted\\\"\\nnext line\"} 1\n");
    CHECK(escape_label_value("plain") == "plain");
    CHECK(escape_label_value("") == "");
}

TEST_CASE("a histogram's buckets are cumulative, bounds inclusive, +Inf last, then _sum and _count") {
    registry r;
    auto& h = r.histogram("op_duration_seconds", "How long", {0.25, 1, 4});
    for (double v : {0.125, 0.25, 0.5, 2.0, 3.0, 8.0}) h.observe({}, v);  // binary fractions: an exact sum
    CHECK(r.text() ==
          "# HELP op_duration_seconds How long\n"
          "# TYPE op_duration_seconds histogram\n"
          "op_duration_seconds_bucket{le=\"0.25\"} 2\n"
          "op_duration_seconds_bucket{le=\"1\"} 3\n"
          "op_duration_seconds_bucket{le=\"4\"} 5\n"
          "op_duration_seconds_bucket{le=\"+Inf\"} 6\n"
          "op_duration_seconds_sum 13.875\n"
          "op_duration_seconds_count 6\n");
}

TEST_CASE("a labelled histogram puts le after its own labels; an unobserved one is all zeros") {
    registry r;
    auto& h = r.histogram("op_seconds", "By kind", {1}, {"kind"});
    h.observe({"a"}, 0.5);
    auto& empty = r.histogram("idle_seconds", "Nothing yet", {0.5, 2});
    (void)empty;
    CHECK(r.text() ==
          "# HELP op_seconds By kind\n"
          "# TYPE op_seconds histogram\n"
          "op_seconds_bucket{kind=\"a\",le=\"1\"} 1\n"
          "op_seconds_bucket{kind=\"a\",le=\"+Inf\"} 1\n"
          "op_seconds_sum{kind=\"a\"} 0.5\n"
          "op_seconds_count{kind=\"a\"} 1\n"
          "# HELP idle_seconds Nothing yet\n"
          "# TYPE idle_seconds histogram\n"
          "idle_seconds_bucket{le=\"0.5\"} 0\n"
          "idle_seconds_bucket{le=\"2\"} 0\n"
          "idle_seconds_bucket{le=\"+Inf\"} 0\n"
          "idle_seconds_sum 0\n"
          "idle_seconds_count 0\n");
}

TEST_CASE("the duration buckets resolve 1 ms to 30 s, increasing") {
    const auto& b = duration_buckets();
    REQUIRE(b.size() >= 10);
    CHECK(b.front() == doctest::Approx(0.001));
    CHECK(b.back() == doctest::Approx(30));
    for (std::size_t i = 1; i < b.size(); ++i) CHECK(b[i] > b[i - 1]);
}

TEST_CASE("non-finite values take the format's spellings; cleared gauges vanish, the unlabelled one too") {
    registry r;
    auto& g = r.gauge("g", "x", {"k"});
    g.set({"inf"}, std::numeric_limits<double>::infinity());
    g.set({"ninf"}, -std::numeric_limits<double>::infinity());
    g.set({"nan"}, std::numeric_limits<double>::quiet_NaN());
    auto& u = r.gauge("u", "y");
    u.clear();
    CHECK(r.text() ==
          "# HELP g x\n# TYPE g gauge\ng{k=\"inf\"} +Inf\ng{k=\"ninf\"} -Inf\ng{k=\"nan\"} NaN\n"
          "# HELP u y\n# TYPE u gauge\n");
    g.clear();
    u.set({}, 2);
    CHECK(r.text() == "# HELP g x\n# TYPE g gauge\n# HELP u y\n# TYPE u gauge\nu 2\n");
}

TEST_CASE("misuse is refused with the metric named") {
    registry r;
    CHECK_THROWS_AS(r.gauge("bad-name", "x"), std::invalid_argument);
    CHECK_THROWS_AS(r.gauge("0starts_with_digit", "x"), std::invalid_argument);
    CHECK_THROWS_AS(r.gauge("no_help", ""), std::invalid_argument);
    CHECK_THROWS_AS(r.gauge("bad_label", "x", {"a:b"}), std::invalid_argument);
    CHECK_THROWS_AS(r.gauge("reserved_label", "x", {"__name"}), std::invalid_argument);
    CHECK_THROWS_AS(r.histogram("h_le", "x", {1}, {"le"}), std::invalid_argument);
    CHECK_THROWS_AS(r.histogram("h_none", "x", {}), std::invalid_argument);
    CHECK_THROWS_AS(r.histogram("h_down", "x", {1, 0.5}), std::invalid_argument);
    auto& c = r.counter("c_total", "x", {"k"});
    CHECK_THROWS_WITH_AS(c.add({"a", "b"}), "metric c_total: 2 label values given for 1 label names", std::invalid_argument);
    CHECK_THROWS_AS(c.add({"a"}, -1), std::invalid_argument);
    c.set({"a"}, 5);
    CHECK_THROWS_AS(c.set({"a"}, 4), std::invalid_argument);
    CHECK_THROWS_AS(c.observe({"a"}, 1), std::invalid_argument);
    CHECK_THROWS_AS(r.counter("c_total", "again"), std::invalid_argument);
    auto& h = r.histogram("h_seconds", "x", {1});
    CHECK_THROWS_AS(h.add({}, 1), std::invalid_argument);
    CHECK_THROWS_AS(h.observe({}, std::numeric_limits<double>::quiet_NaN()), std::invalid_argument);
}
