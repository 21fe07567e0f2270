// The Prometheus text exposition format (version 0.0.4), written by hand because it is small:
//
//   # HELP burrow_peer_bytes_sent_total Bytes sent to the peer, by path kind.
//   # TYPE burrow_peer_bytes_sent_total counter
//   burrow_peer_bytes_sent_total{peer="nas",path="direct"} 123456
//   # HELP burrow_punch_time_to_direct_seconds ...
//   # TYPE burrow_punch_time_to_direct_seconds histogram
//   burrow_punch_time_to_direct_seconds_bucket{le="0.5"} 3
//   burrow_punch_time_to_direct_seconds_bucket{le="+Inf"} 4
//   burrow_punch_time_to_direct_seconds_sum 2.75
//   burrow_punch_time_to_direct_seconds_count 4
//
// A pure formatter: no I/O, no clock. Families come one after another, each with its HELP and
// TYPE lines first and all its samples together, as the format requires. Label values escape
// backslash, double quote and newline (\\, \", \n); HELP text escapes backslash and newline.
// Numbers are written in their shortest exact form, NaN and infinities as NaN, +Inf, -Inf.
// Served with kPrometheusContentType (src/admin_server.h).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace burrow {

inline constexpr std::string_view kPrometheusContentType =
    "text/plain; version=0.0.4; charset=utf-8";

enum class MetricType : uint8_t { kCounter, kGauge, kHistogram };

// Label names and values, in the order they are written.
using MetricLabels = std::vector<std::pair<std::string, std::string>>;

// A histogram's state: bounds ascending (the +Inf bucket is implied), counts per bucket, not
// cumulative, with one more entry than bounds (observations above the last bound).
struct HistogramValues {
    std::vector<double> bounds;
    std::vector<uint64_t> counts;
    double sum = 0;

    explicit HistogramValues(std::vector<double> upper_bounds = {});
    void observe(double value);
    uint64_t count() const;
};

// "\"" -> "\\\"", "\\" -> "\\\\", newline -> "\\n".
std::string escape_label_value(std::string_view value);
// Shortest text that reads back as the same double; "NaN", "+Inf", "-Inf".
std::string format_metric_value(double value);

class PrometheusText {
  public:
    // Starts a family. Names follow [a-zA-Z_:][a-zA-Z0-9_:]* (asserted: they are constants).
    void family(std::string_view name, MetricType type, std::string_view help);
    // One sample of the current counter or gauge family.
    void sample(const MetricLabels& labels, double value);
    void sample(const MetricLabels& labels, uint64_t value);
    void sample(double value) { sample(MetricLabels{}, value); }
    void sample(uint64_t value) { sample(MetricLabels{}, value); }
    // The _bucket, _sum and _count lines of one histogram of the current histogram family.
    void histogram(const MetricLabels& labels, const HistogramValues& values);

    const std::string& text() const { return out_; }
    std::string take() { return std::move(out_); }

  private:
    void line(std::string_view suffix, const MetricLabels& labels, const std::string* le,
              std::string_view value);

    std::string out_;
    std::string name_;
    MetricType type_ = MetricType::kGauge;
};

}  // namespace burrow
