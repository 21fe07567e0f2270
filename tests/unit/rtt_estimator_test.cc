#include <catch2/catch.hpp>

#include "tunnel/rtt_estimator.h"

using namespace burrow;
using std::chrono::milliseconds;

TEST_CASE("rtt estimator starts from the initial RTT (RFC 9002 §5.3, §6.2.2)") {
    RttEstimator r;
    CHECK_FALSE(r.has_sample());
    CHECK(r.smoothed() == RttEstimator::kInitialRtt);
    CHECK(r.rttvar() == RttEstimator::kInitialRtt / 2);
    // 100 + 4 * 50 + 10
    CHECK(r.pto_base(milliseconds(10)) == milliseconds(310));
}

TEST_CASE("rtt estimator first sample sets smoothed, rttvar and min, ignoring ack delay") {
    RttEstimator r;
    r.on_sample(milliseconds(80), milliseconds(20), milliseconds(25));
    CHECK(r.has_sample());
    CHECK(r.latest() == milliseconds(80));
    CHECK(r.smoothed() == milliseconds(80));
    CHECK(r.rttvar() == milliseconds(40));
    CHECK(r.min() == milliseconds(80));
}

TEST_CASE("rtt estimator later samples follow RFC 9002 §5.3 and subtract ack delay") {
    RttEstimator r;
    r.on_sample(milliseconds(100), Duration{0}, milliseconds(25));
    // latest 120, ack_delay 10 -> adjusted 110
    r.on_sample(milliseconds(120), milliseconds(10), milliseconds(25));
    // rttvar = 3/4 * 50 + 1/4 * |100 - 110| = 40; smoothed = 7/8 * 100 + 1/8 * 110 = 101.25
    CHECK(r.rttvar() == milliseconds(40));
    CHECK(r.smoothed() == Duration(101250));
    CHECK(r.latest() == milliseconds(120));
    CHECK(r.min() == milliseconds(100));
}

TEST_CASE("rtt estimator clamps ack delay to max_ack_delay") {
    RttEstimator r;
    r.on_sample(milliseconds(50), Duration{0}, milliseconds(10));
    // Peer claims 40 ms of delay but promised at most 10: only 10 is subtracted.
    r.on_sample(milliseconds(100), milliseconds(40), milliseconds(10));
    // adjusted = 90: smoothed = (7 * 50 + 90) / 8 = 55, rttvar = (3 * 25 + 40) / 4 = 28.75
    CHECK(r.smoothed() == milliseconds(55));
    CHECK(r.rttvar() == Duration(28750));
}

TEST_CASE("rtt estimator never takes ack delay below min_rtt") {
    RttEstimator r;
    r.on_sample(milliseconds(50), Duration{0}, milliseconds(25));
    // 55 - 20 would be 35 < min 50: the delay is not subtracted.
    r.on_sample(milliseconds(55), milliseconds(20), milliseconds(25));
    // smoothed = (7 * 50 + 55) / 8 = 50.625
    CHECK(r.smoothed() == Duration(50625));
    CHECK(r.min() == milliseconds(50));
}

TEST_CASE("rtt estimator min follows the smallest sample; pto_base floors rttvar at granularity") {
    RttEstimator r;
    for (int i = 0; i < 200; ++i) r.on_sample(milliseconds(20), Duration{0}, milliseconds(10));
    r.on_sample(milliseconds(15), Duration{0}, milliseconds(10));
    CHECK(r.min() == milliseconds(15));
    // rttvar decays towards zero with identical samples; the probe timer still has 1 ms slack.
    RttEstimator steady;
    for (int i = 0; i < 200; ++i) steady.on_sample(milliseconds(20), Duration{0}, Duration{0});
    CHECK(steady.rttvar() < Duration(250));
    CHECK(steady.pto_base(milliseconds(10)) ==
          steady.smoothed() + RttEstimator::kGranularity + milliseconds(10));
}
