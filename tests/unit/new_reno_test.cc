#include <catch2/catch.hpp>

#include "tunnel/new_reno.h"

using namespace burrow;
using std::chrono::milliseconds;

namespace {
constexpr size_t kMds = 1200;
Time ms(int64_t v) {
    return time_from_us(v * 1000);
}

// An ACK of `bytes` for packets sent at `sent`, with the window full beforehand.
AckEvent ack(Time now, uint64_t bytes, uint64_t prior_in_flight, Time sent,
             const RttEstimator* rtt = nullptr) {
    return AckEvent{now, bytes, prior_in_flight, prior_in_flight - bytes, sent, rtt, RateSample{}};
}
LossEvent loss(Time now, uint64_t bytes, Time largest_lost_sent, bool persistent = false) {
    return LossEvent{now, bytes, 0, 0, largest_lost_sent, persistent};
}
}  // namespace

TEST_CASE("new reno starts at the RFC 9002 initial window") {
    NewReno r(kMds);
    CHECK(r.congestion_window() == 10 * kMds);  // min(12000, max(14720, 2400))
    CHECK(initial_congestion_window(1500) == 14720);
    CHECK(initial_congestion_window(1000) == 10000);
    CHECK(std::string(r.name()) == "newreno");
}

TEST_CASE("new reno slow start doubles the window every round trip") {
    NewReno r(kMds);
    Time now = ms(0);
    for (int round = 0; round < 5; ++round) {
        const uint64_t cwnd = r.congestion_window();
        // One round: the whole window is acknowledged, one datagram at a time.
        for (uint64_t acked = 0; acked < cwnd; acked += kMds) {
            r.on_ack(ack(now, kMds, cwnd, now - milliseconds(50)));
        }
        CHECK(r.congestion_window() == 2 * cwnd);
        now += milliseconds(50);
    }
}

TEST_CASE("new reno does not grow a window the sender does not use") {
    NewReno r(kMds);
    const uint64_t cwnd = r.congestion_window();
    // Only two datagrams were ever in flight: app-limited, not window-limited.
    for (int i = 0; i < 50; ++i) r.on_ack(ack(ms(i), kMds, 2 * kMds, ms(i) - milliseconds(30)));
    CHECK(r.congestion_window() == cwnd);
}

TEST_CASE("new reno halves once per recovery period") {
    NewReno r(kMds);
    for (int i = 0; i < 30; ++i) r.on_ack(ack(ms(10), kMds, r.congestion_window(), ms(0)));
    const uint64_t before = r.congestion_window();
    REQUIRE(before == 40 * kMds);
    // Loss detected at 100 ms of a packet sent at 60 ms: halve, and enter recovery.
    r.on_loss(loss(ms(100), kMds, ms(60)));
    CHECK(r.congestion_window() == before / 2);
    CHECK(r.ssthresh() == before / 2);
    // More losses of packets sent before recovery began: the same congestion event.
    r.on_loss(loss(ms(110), 3 * kMds, ms(95)));
    r.on_loss(loss(ms(120), kMds, ms(100)));
    CHECK(r.congestion_window() == before / 2);
    // ACKs of packets sent before recovery began do not grow the window.
    r.on_ack(ack(ms(130), 10 * kMds, r.congestion_window(), ms(99)));
    CHECK(r.congestion_window() == before / 2);
    // A loss of a packet sent after recovery began is a new event.
    r.on_loss(loss(ms(200), kMds, ms(101)));
    CHECK(r.congestion_window() == before / 4);
}

TEST_CASE("new reno congestion avoidance adds one datagram per window acknowledged") {
    NewReno r(kMds);
    for (int i = 0; i < 30; ++i) r.on_ack(ack(ms(10), kMds, r.congestion_window(), ms(0)));
    r.on_loss(loss(ms(100), kMds, ms(60)));
    const uint64_t cwnd = r.congestion_window();  // 20 datagrams, now = ssthresh
    REQUIRE(cwnd == r.ssthresh());
    // Recovery ends with the first ACK of a packet sent after it began.
    for (uint64_t acked = 0; acked + kMds <= cwnd; acked += kMds) {
        r.on_ack(ack(ms(200), kMds, cwnd, ms(150)));
    }
    CHECK(r.congestion_window() == cwnd + kMds);
    // The next window's worth (now 21 datagrams) adds one more.
    const uint64_t cwnd2 = r.congestion_window();
    for (uint64_t acked = 0; acked + kMds <= cwnd2; acked += kMds) {
        r.on_ack(ack(ms(260), kMds, cwnd2, ms(210)));
    }
    CHECK(r.congestion_window() == cwnd2 + kMds);
}

TEST_CASE("new reno never goes below the minimum window; persistent congestion collapses to it") {
    NewReno r(kMds);
    for (int i = 0; i < 10; ++i) r.on_loss(loss(ms(100 * (i + 1)), kMds, ms(100 * (i + 1) - 1)));
    CHECK(r.congestion_window() == NewReno::kMinimumWindowPackets * kMds);
    NewReno p(kMds);
    for (int i = 0; i < 30; ++i) p.on_ack(ack(ms(10), kMds, p.congestion_window(), ms(0)));
    p.on_loss(loss(ms(1000), 20 * kMds, ms(900), true));
    CHECK(p.congestion_window() == NewReno::kMinimumWindowPackets * kMds);
    // Recovery is over with it: the next loss halves again (down to the floor).
    CHECK_FALSE(p.in_recovery(ms(999)));
}

TEST_CASE("new reno paces at 1.25 x cwnd / smoothed RTT") {
    NewReno r(kMds);
    // Before any sample: the initial RTT.
    CHECK(r.pacing_rate() == static_cast<uint64_t>(1.25 * 10 * kMds / 0.1));
    RttEstimator rtt;
    rtt.on_sample(milliseconds(20), Duration{0}, Duration{0});
    r.on_ack(ack(ms(30), kMds, r.congestion_window(), ms(10), &rtt));
    CHECK(static_cast<double>(r.pacing_rate()) ==
          Approx(1.25 * static_cast<double>(r.congestion_window()) / 0.020));
}
