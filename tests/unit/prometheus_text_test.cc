#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <string>

#include "src/prometheus_text.h"

using namespace burrow;

TEST_CASE("a counter family: HELP, TYPE, then its samples") {
    PrometheusText t;
    t.family("burrow_test_bytes_total", MetricType::kCounter, "Bytes, all told.");
    t.sample({{"peer", "nas"}, {"path", "direct"}}, uint64_t{123456});
    t.sample({{"peer", "nas"}, {"path", "relay-udp"}}, uint64_t{0});
    CHECK(t.text() ==
          "# HELP burrow_test_bytes_total Bytes, all told.\n"
          "# TYPE burrow_test_bytes_total counter\n"
          "burrow_test_bytes_total{peer=\"nas\",path=\"direct\"} 123456\n"
          "burrow_test_bytes_total{peer=\"nas\",path=\"relay-udp\"} 0\n");
}

TEST_CASE("a gauge without labels has no braces") {
    PrometheusText t;
    t.family("burrow_test_up", MetricType::kGauge, "One.");
    t.sample(1.0);
    CHECK(t.text() ==
          "# HELP burrow_test_up One.\n# TYPE burrow_test_up gauge\nburrow_test_up 1\n");
}

TEST_CASE("label values escape backslash, double quote and newline, and nothing else") {
    CHECK(escape_label_value("plain-name_1.2:3") == "plain-name_1.2:3");
    CHECK(escape_label_value("a\\b") == "a\\\\b");
    CHECK(escape_label_value("say \"hi\"") == "say \\\"hi\\\"");
    CHECK(escape_label_value("two\nlines") == "two\\nlines");
    CHECK(escape_label_value("\\\"\n") == "\\\\\\\"\\n");
    CHECK(escape_label_value("tab\there, é") == "tab\there, é");

    PrometheusText t;
    t.family("burrow_test_total", MetricType::kCounter, "Back\\slash and\nnewline in help.");
    t.sample({{"forward", "127.0.0.1:8080 \"x\"\\\n"}}, uint64_t{7});
    CHECK(t.text() ==
          "# HELP burrow_test_total Back\\\\slash and\\nnewline in help.\n"
          "# TYPE burrow_test_total counter\n"
          "burrow_test_total{forward=\"127.0.0.1:8080 \\\"x\\\"\\\\\\n\"} 7\n");
}

TEST_CASE("values: shortest exact decimal, NaN and infinities spelled as Prometheus does") {
    CHECK(format_metric_value(0) == "0");
    CHECK(format_metric_value(0.1) == "0.1");
    CHECK(format_metric_value(1.25) == "1.25");
    CHECK(format_metric_value(-3) == "-3");
    CHECK(format_metric_value(1e-7) == "1e-07");
    CHECK(std::stod(format_metric_value(2.0 / 3.0)) == 2.0 / 3.0);
    CHECK(format_metric_value(std::numeric_limits<double>::quiet_NaN()) == "NaN");
    CHECK(format_metric_value(std::numeric_limits<double>::infinity()) == "+Inf");
    CHECK(format_metric_value(-std::numeric_limits<double>::infinity()) == "-Inf");
}

TEST_CASE("a histogram: cumulative buckets with le last, then +Inf, _sum and _count") {
    HistogramValues h({0.5, 1, 2});
    h.observe(0.25);
    h.observe(0.5);  // on the bound: in the 0.5 bucket ("less than or equal")
    h.observe(1.5);
    h.observe(10);
    CHECK(h.count() == 4);
    PrometheusText t;
    t.family("burrow_test_seconds", MetricType::kHistogram, "Time.");
    t.histogram({{"pair", "a/b"}}, h);
    CHECK(t.text() ==
          "# HELP burrow_test_seconds Time.\n"
          "# TYPE burrow_test_seconds histogram\n"
          "burrow_test_seconds_bucket{pair=\"a/b\",le=\"0.5\"} 2\n"
          "burrow_test_seconds_bucket{pair=\"a/b\",le=\"1\"} 2\n"
          "burrow_test_seconds_bucket{pair=\"a/b\",le=\"2\"} 3\n"
          "burrow_test_seconds_bucket{pair=\"a/b\",le=\"+Inf\"} 4\n"
          "burrow_test_seconds_sum{pair=\"a/b\"} 12.25\n"
          "burrow_test_seconds_count{pair=\"a/b\"} 4\n");
}

TEST_CASE("an empty histogram has every bucket at zero") {
    PrometheusText t;
    t.family("burrow_test_seconds", MetricType::kHistogram, "Time.");
    t.histogram({}, HistogramValues({1}));
    CHECK(t.text() ==
          "# HELP burrow_test_seconds Time.\n"
          "# TYPE burrow_test_seconds histogram\n"
          "burrow_test_seconds_bucket{le=\"1\"} 0\n"
          "burrow_test_seconds_bucket{le=\"+Inf\"} 0\n"
          "burrow_test_seconds_sum 0\n"
          "burrow_test_seconds_count 0\n");
}

TEST_CASE("take() hands the text over and starts empty") {
    PrometheusText t;
    t.family("burrow_test_up", MetricType::kGauge, "One.");
    t.sample(uint64_t{1});
    const std::string text = t.take();
    CHECK(!text.empty());
    CHECK(t.text().empty());
}
