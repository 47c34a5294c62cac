// A small Prometheus metrics registry, sans-I/O: counters and gauges (with labels), histograms with
// fixed buckets, and the text exposition format 0.0.4 they are scraped in (`/metrics`, `meshmaster
// metrics`). No client library: the daemon needs three metric types and one output format, and
// fmt writes the numbers.
//
// A family is one metric name with its HELP, TYPE and label names; its series are told apart by
// their label values, in the order they were first used (an unlabelled family has its one series
// from the start, so it is exposed at 0 before anything happened). The text is what Prometheus's
// exposition-format document asks: `# HELP` and `# TYPE` lines, label values with `\`, `"` and
// newline escaped, a histogram as cumulative `_bucket{le="..."}` lines ending with `le="+Inf"`,
// then `_sum` and `_count`.
//
// Errors: a misuse is a programming error, not input — a name or label name Prometheus would not
// accept, label values that do not match the family's label names, a counter made to go down,
// bucket bounds that do not increase — and throws std::invalid_argument naming the metric and what
// is wrong. Thread safety: none; the daemon's one thread uses it.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace meshmaster::master::metrics {

enum class metric_type { counter, gauge, histogram };

/// Histogram bounds in seconds that resolve 1 ms … 30 s: the daemon's handoff pauses and
/// migrations (a pause of a few ms, a move of a large state over seconds).
[[nodiscard]] const std::vector<double>& duration_buckets();

/// One metric name and its series.
class family {
public:
    family(metric_type type, std::string name, std::string help, std::vector<std::string> label_names,
           std::vector<double> bounds = {});

    [[nodiscard]] const std::string& name() const noexcept { return name_; }
    [[nodiscard]] metric_type type() const noexcept { return type_; }

    /// Counters and gauges: adds `v` to the series with these label values (a new one starts at
    /// 0). A counter only goes up.
    void add(std::initializer_list<std::string_view> labels, double v = 1);
    void add(const std::vector<std::string_view>& labels, double v = 1);
    /// Gauges; and counters whose count is kept elsewhere (an array on a hot path), copied in when
    /// the text is written.
    void set(std::initializer_list<std::string_view> labels, double v);
    void set(const std::vector<std::string_view>& labels, double v);
    /// Histograms: one observation.
    void observe(std::initializer_list<std::string_view> labels, double v);
    /// Drops every series, the unlabelled one too (a gauge rebuilt from a status at each scrape:
    /// slaves come and go; a fact that could not be read is no sample rather than a false 0).
    void clear();

    /// Appends this family in the text format.
    void write(std::string& out) const;

private:
    struct series {
        std::vector<std::string> labels;
        double value = 0;
        std::vector<std::uint64_t> counts;  // histogram: per bucket (not cumulative), +Inf last
        double sum = 0;
        std::uint64_t count = 0;
    };
    series& at(const std::string_view* labels, std::size_t n);
    void add_to(series& s, double v);
    void set_to(series& s, double v);
    void observe_in(series& s, double v);

    metric_type type_;
    std::string name_;
    std::string help_;
    std::vector<std::string> label_names_;
    std::vector<double> bounds_;
    std::vector<series> series_;
};

/// The families, in the order they are written.
class registry {
public:
    family& counter(std::string name, std::string help, std::vector<std::string> label_names = {});
    family& gauge(std::string name, std::string help, std::vector<std::string> label_names = {});
    family& histogram(std::string name, std::string help, std::vector<double> bounds,
                      std::vector<std::string> label_names = {});

    /// The whole exposition (text format 0.0.4), every line ending in a newline.
    [[nodiscard]] std::string text() const;

private:
    family& add(std::unique_ptr<family> f);
    std::vector<std::unique_ptr<family>> families_;  // references handed out stay valid
};

/// A label value as the text format writes it inside quotes: `\` `"` and newline escaped.
[[nodiscard]] std::string escape_label_value(std::string_view value);

}  // namespace meshmaster::master::metrics
