#include "src/prometheus_text.h"

#include <algorithm>
#include <cassert>
#include <charconv>
#include <cmath>

namespace burrow {
namespace {

[[maybe_unused]] bool valid_name(std::string_view name, bool colon_allowed) {
    if (name.empty()) return false;
    for (size_t i = 0; i < name.size(); ++i) {
        const char c = name[i];
        const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                           (colon_allowed && c == ':');
        const bool digit = c >= '0' && c <= '9';
        if (!alpha && !(digit && i > 0)) return false;
    }
    return true;
}

const char* type_name(MetricType t) {
    switch (t) {
        case MetricType::kCounter:
            return "counter";
        case MetricType::kGauge:
            return "gauge";
        case MetricType::kHistogram:
            return "histogram";
    }
    return "untyped";
}

std::string escape_help(std::string_view help) {
    std::string out;
    out.reserve(help.size());
    for (char c : help) {
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

HistogramValues::HistogramValues(std::vector<double> upper_bounds)
    : bounds(std::move(upper_bounds)), counts(bounds.size() + 1, 0) {
    assert(std::is_sorted(bounds.begin(), bounds.end()));
}

void HistogramValues::observe(double value) {
    // Prometheus buckets are "less than or equal to" their bound.
    const auto it = std::lower_bound(bounds.begin(), bounds.end(), value);
    counts[static_cast<size_t>(it - bounds.begin())]++;
    sum += value;
}

uint64_t HistogramValues::count() const {
    uint64_t n = 0;
    for (uint64_t c : counts) n += c;
    return n;
}

std::string escape_label_value(std::string_view value) {
    std::string out;
    out.reserve(value.size());
    for (char c : value) {
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

std::string format_metric_value(double value) {
    if (std::isnan(value)) return "NaN";
    if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
    char buf[32];
    const auto result = std::to_chars(buf, buf + sizeof buf, value);
    assert(result.ec == std::errc());
    return std::string(buf, result.ptr);
}

void PrometheusText::family(std::string_view name, MetricType type, std::string_view help) {
    assert(valid_name(name, true));
    name_ = name;
    type_ = type;
    out_ += "# HELP ";
    out_ += name;
    out_ += ' ';
    out_ += escape_help(help);
    out_ += "\n# TYPE ";
    out_ += name;
    out_ += ' ';
    out_ += type_name(type);
    out_ += '\n';
}

void PrometheusText::sample(const MetricLabels& labels, double value) {
    assert(type_ != MetricType::kHistogram);
    line("", labels, nullptr, format_metric_value(value));
}

void PrometheusText::sample(const MetricLabels& labels, uint64_t value) {
    assert(type_ != MetricType::kHistogram);
    line("", labels, nullptr, std::to_string(value));
}

void PrometheusText::histogram(const MetricLabels& labels, const HistogramValues& values) {
    assert(type_ == MetricType::kHistogram);
    assert(values.counts.size() == values.bounds.size() + 1);
    uint64_t cumulative = 0;
    for (size_t i = 0; i < values.bounds.size(); ++i) {
        cumulative += values.counts[i];
        const std::string le = format_metric_value(values.bounds[i]);
        line("_bucket", labels, &le, std::to_string(cumulative));
    }
    cumulative += values.counts.back();
    const std::string inf = "+Inf";
    line("_bucket", labels, &inf, std::to_string(cumulative));
    line("_sum", labels, nullptr, format_metric_value(values.sum));
    line("_count", labels, nullptr, std::to_string(cumulative));
}

void PrometheusText::line(std::string_view suffix, const MetricLabels& labels,
                          const std::string* le, std::string_view value) {
    assert(!name_.empty());
    out_ += name_;
    out_ += suffix;
    if (!labels.empty() || le) {
        out_ += '{';
        bool first = true;
        for (const auto& [label, text] : labels) {
            assert(valid_name(label, false) && label != "le");
            if (!first) out_ += ',';
            first = false;
            out_ += label;
            out_ += "=\"";
            out_ += escape_label_value(text);
            out_ += '"';
        }
        if (le) {
            if (!first) out_ += ',';
            out_ += "le=\"";
            out_ += *le;
            out_ += '"';
        }
        out_ += '}';
    }
    out_ += ' ';
    out_ += value;
    out_ += '\n';
}

}  // namespace burrow
