#include "metrics_registry.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <iterator>
#include <stdexcept>

namespace meshmaster::master::metrics {

namespace {

// [a-zA-Z_:][a-zA-Z0-9_:]* for metric names; label names without ':' and not reserved ("__").
bool valid_name(std::string_view s, bool label) {
    if (s.empty()) return false;
    if (label && s.starts_with("__")) return false;
    for (std::size_t i = 0; i < s.size(); ++i) {
        const char c = s[i];
        const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (!label && c == ':');
        if (!alpha && !(i > 0 && c >= '0' && c <= '9')) return false;
    }
    return true;
}

std::string_view type_name(metric_type t) {
    switch (t) {
        case metric_type::counter: return "counter";
        case metric_type::gauge: return "gauge";
        case metric_type::histogram: return "histogram";
    }
    return "untyped";
}

// Numbers as Go's ParseFloat reads them (Prometheus parses with it): shortest round-trip decimal,
// and the spellings of the non-finite values the format names.
void append_number(std::string& out, double v) {
    if (std::isnan(v)) {
        out += "NaN";
    } else if (std::isinf(v)) {
        out += v > 0 ? "+Inf" : "-Inf";
    } else {
        fmt::format_to(std::back_inserter(out), "{}", v);
    }
}

// HELP text escapes only `\` and newline (a quote needs none there).
std::string escape_help(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    for (const char c : text) {
        if (c == '\\') {
            out += "\\\\";
        } else if (c == '\n') {
            out += "\\n";
        } else {
            out += c;
        }
    }
    return out;
}

}  // namespace

const std::vector<double>& duration_buckets() {
    static const std::vector<double> b{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
    return b;
}

std::string escape_label_value(std::string_view value) {
    std::string out;
    out.reserve(value.size());
    for (const char c : value) {
        if (c == '\\') {
            out += "\\\\";
        } else if (c == '"') {
            out += "\\\"";
        } else if (c == '\n') {
            out += "\\n";
        } else {
            out += c;
        }
    }
    return out;
}

family::family(metric_type type, std::string name, std::string help, std::vector<std::string> label_names,
               std::vector<double> bounds)
    : type_(type), name_(std::move(name)), help_(std::move(help)), label_names_(std::move(label_names)), bounds_(std::move(bounds)) {
    if (!valid_name(name_, false)) throw std::invalid_argument(fmt::format("metric name '{}' is not a valid Prometheus name", name_));
    if (help_.empty()) throw std::invalid_argument(fmt::format("metric {}: no help text", name_));
    for (const auto& l : label_names_) {
        if (!valid_name(l, true)) throw std::invalid_argument(fmt::format("metric {}: label name '{}' is not valid", name_, l));
        if (type_ == metric_type::histogram && l == "le") {
            throw std::invalid_argument(fmt::format("metric {}: 'le' is the histogram's own label", name_));
        }
    }
    if (type_ == metric_type::histogram) {
        if (bounds_.empty()) throw std::invalid_argument(fmt::format("histogram {}: no bucket bounds", name_));
        for (std::size_t i = 0; i < bounds_.size(); ++i) {
            if (!std::isfinite(bounds_[i]) || (i > 0 && bounds_[i] <= bounds_[i - 1])) {
                throw std::invalid_argument(fmt::format("histogram {}: bucket bounds must be finite and increase", name_));
            }
        }
    }
    if (label_names_.empty()) (void)at(nullptr, 0);  // the one series, exposed from the start
}

family::series& family::at(const std::string_view* labels, std::size_t n) {
    if (n != label_names_.size()) {
        throw std::invalid_argument(
            fmt::format("metric {}: {} label values given for {} label names", name_, n, label_names_.size()));
    }
    for (series& s : series_) {
        if (std::equal(s.labels.begin(), s.labels.end(), labels, labels + n)) return s;
    }
    series s;
    s.labels.assign(labels, labels + n);
    if (type_ == metric_type::histogram) s.counts.assign(bounds_.size() + 1, 0);
    return series_.emplace_back(std::move(s));
}

void family::add_to(series& s, double v) {
    if (type_ == metric_type::histogram) throw std::invalid_argument(fmt::format("histogram {}: add() on a histogram", name_));
    if (type_ == metric_type::counter && !(v >= 0)) {
        throw std::invalid_argument(fmt::format("counter {}: cannot add {}", name_, v));
    }
    s.value += v;
}

void family::set_to(series& s, double v) {
    if (type_ == metric_type::histogram) throw std::invalid_argument(fmt::format("histogram {}: set() on a histogram", name_));
    if (type_ == metric_type::counter && v < s.value) {
        throw std::invalid_argument(fmt::format("counter {}: cannot go down from {} to {}", name_, s.value, v));
    }
    s.value = v;
}

void family::observe_in(series& s, double v) {
    if (type_ != metric_type::histogram) throw std::invalid_argument(fmt::format("metric {}: observe() needs a histogram", name_));
    if (std::isnan(v)) throw std::invalid_argument(fmt::format("histogram {}: cannot observe NaN", name_));
    // The first bucket whose bound is >= v (bounds are inclusive upper limits); +Inf past the last.
    const auto bucket = std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin();
    ++s.counts[static_cast<std::size_t>(bucket)];
    s.sum += v;
    ++s.count;
}

void family::add(std::initializer_list<std::string_view> labels, double v) { add_to(at(labels.begin(), labels.size()), v); }
void family::add(const std::vector<std::string_view>& labels, double v) { add_to(at(labels.data(), labels.size()), v); }
void family::set(std::initializer_list<std::string_view> labels, double v) { set_to(at(labels.begin(), labels.size()), v); }
void family::set(const std::vector<std::string_view>& labels, double v) { set_to(at(labels.data(), labels.size()), v); }
void family::observe(std::initializer_list<std::string_view> labels, double v) {
    observe_in(at(labels.begin(), labels.size()), v);
}

void family::clear() { series_.clear(); }

void family::write(std::string& out) const {
    fmt::format_to(std::back_inserter(out), "# HELP {} {}\n# TYPE {} {}\n", name_, escape_help(help_), name_, type_name(type_));
    // `{a="x",b="y"` without the closing brace, so a histogram can add its `le`.
    const auto open_labels = [&](const series& s) {
        std::string l;
        for (std::size_t i = 0; i < s.labels.size(); ++i) {
            l += i == 0 ? "{" : ",";
            l += label_names_[i];
            l += "=\"";
            l += escape_label_value(s.labels[i]);
            l += '"';
        }
        return l;
    };
    for (const series& s : series_) {
        const std::string labels = open_labels(s);
        const std::string closed = labels.empty() ? std::string() : labels + "}";
        if (type_ != metric_type::histogram) {
            fmt::format_to(std::back_inserter(out), "{}{} ", name_, closed);
            append_number(out, s.value);
            out += '\n';
            continue;
        }
        std::uint64_t cumulative = 0;
        for (std::size_t b = 0; b < s.counts.size(); ++b) {
            cumulative += s.counts[b];
            fmt::format_to(std::back_inserter(out), "{}_bucket{}{}le=\"", name_, labels.empty() ? "{" : labels,
                           labels.empty() ? "" : ",");
            if (b < bounds_.size()) {
                append_number(out, bounds_[b]);
            } else {
                out += "+Inf";
            }
            fmt::format_to(std::back_inserter(out), "\"}} {}\n", cumulative);
        }
        fmt::format_to(std::back_inserter(out), "{}_sum{} ", name_, closed);
        append_number(out, s.sum);
        fmt::format_to(std::back_inserter(out), "\n{}_count{} {}\n", name_, closed, s.count);
    }
}

family& registry::add(std::unique_ptr<family> f) {
    for (const auto& existing : families_) {
        if (existing->name() == f->name()) throw std::invalid_argument(fmt::format("metric {} registered twice", f->name()));
    }
    return *families_.emplace_back(std::move(f));
}

family& registry::counter(std::string name, std::string help, std::vector<std::string> label_names) {
    return add(std::make_unique<family>(metric_type::counter, std::move(name), std::move(help), std::move(label_names)));
}

family& registry::gauge(std::string name, std::string help, std::vector<std::string> label_names) {
    return add(std::make_unique<family>(metric_type::gauge, std::move(name), std::move(help), std::move(label_names)));
}

family& registry::histogram(std::string name, std::string help, std::vector<double> bounds, std::vector<std::string> label_names) {
    return add(std::make_unique<family>(metric_type::histogram, std::move(name), std::move(help), std::move(label_names),
                                        std::move(bounds)));
}

std::string registry::text() const {
    std::string out;
    for (const auto& f : families_) f->write(out);
    return out;
}

}  // namespace meshmaster::master::metrics
