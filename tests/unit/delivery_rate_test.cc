#include <catch2/catch.hpp>

#include <deque>

#include "tunnel/delivery_rate.h"

using namespace burrow;
using std::chrono::microseconds;
using std::chrono::milliseconds;

namespace {
Time us(int64_t v) {
    return time_from_us(v);
}

SentPacket data_packet(uint64_t pn, Time sent, uint32_t size = 1000) {
    SentPacket p;
    p.packet_number = pn;
    p.time_sent = sent;
    p.size = size;
    p.ack_eliciting = true;
    p.in_flight = true;
    return p;
}

// Sender side of a flow: sends, remembers in-flight, acks in order.
struct Flow {
    DeliveryRateEstimator est;
    std::deque<SentPacket> in_flight;
    uint64_t bytes_in_flight = 0;
    uint64_t next_pn = 0;

    void send(Time now, uint32_t size = 1000) {
        SentPacket p = data_packet(next_pn++, now, size);
        est.on_packet_sent(p, bytes_in_flight, now);
        bytes_in_flight += p.size;
        in_flight.push_back(std::move(p));
    }
    // Acknowledges the oldest n packets in one ACK.
    RateSample ack(Time now, size_t n = 1) {
        for (size_t i = 0; i < n && !in_flight.empty(); ++i) {
            est.on_packet_acked(in_flight.front(), now);
            bytes_in_flight -= in_flight.front().size;
            in_flight.pop_front();
        }
        return est.generate(now, 0);
    }
};
}  // namespace

TEST_CASE("delivery rate: a paced flow measures its sending rate") {
    // 1000 bytes every 1 ms = 1 MB/s, RTT 50 ms, every packet acked on its own.
    Flow f;
    const int64_t rtt = 50'000;
    std::vector<RateSample> samples;
    for (int64_t t = 0; t < 500'000; t += 1000) {
        if (t >= rtt) samples.push_back(f.ack(us(t)));
        f.send(us(t));
    }
    REQUIRE(samples.size() > 100);
    for (size_t i = 60; i < samples.size(); ++i) {
        INFO("sample " << i);
        REQUIRE(samples[i].delivery_rate == Approx(1e6).epsilon(0.03));
        REQUIRE(samples[i].rtt == microseconds(rtt));
        REQUIRE_FALSE(samples[i].is_app_limited);
        REQUIRE(samples[i].newly_acked == 1000);
    }
}

TEST_CASE("delivery rate: a burst sent at once is measured at the rate ACKs return") {
    // The whole window leaves at t = 0; a 500 kB/s bottleneck spaces the ACKs 2 ms apart.
    Flow f;
    for (int i = 0; i < 50; ++i) f.send(us(0));
    RateSample last;
    for (int i = 0; i < 50; ++i) last = f.ack(us(40'000 + 2000 * i));
    // Send interval is 0; the ACK interval (98 ms for 49 packets after the first) rules.
    CHECK(last.delivery_rate == Approx(50'000.0 / 0.138).epsilon(0.05));
    CHECK(last.delivery_rate < 500e3 * 1.05);
}

TEST_CASE("delivery rate: ACK compression cannot inflate the rate above the send rate") {
    // Paced at 1 MB/s but all ACKs of a round arrive in one bunch.
    Flow f;
    for (int i = 0; i < 100; ++i) f.send(us(1000 * i));
    RateSample s1 = f.ack(us(150'000), 50);
    CHECK(s1.delivery_rate <= 1e6 * 1.02);
    RateSample s2 = f.ack(us(150'010), 50);
    CHECK(s2.delivery_rate <= 1e6 * 1.02);
    CHECK(s2.delivery_rate > 0);
    CHECK(s2.newly_acked == 50'000);
}

TEST_CASE("delivery rate: an ACK with nothing newly acked is no sample") {
    Flow f;
    f.send(us(0));
    RateSample s = f.est.generate(us(10'000), 1200);
    CHECK(s.delivery_rate == 0);
    CHECK(s.newly_acked == 0);
    CHECK(s.newly_lost == 1200);
    CHECK(s.rtt == Duration{0});
}

TEST_CASE("delivery rate: ACK-only packets carry no congestion-controlled data") {
    DeliveryRateEstimator est;
    SentPacket ack_only = data_packet(0, us(0), 60);
    ack_only.in_flight = false;
    ack_only.ack_eliciting = false;
    est.on_packet_sent(ack_only, 0, us(0));
    est.on_packet_acked(ack_only, us(30'000));
    CHECK(est.delivered() == 0);
    CHECK(est.generate(us(30'000), 0).newly_acked == 0);
}

TEST_CASE("delivery rate: samples are app-limited until the bubble is delivered") {
    Flow f;
    for (int i = 0; i < 10; ++i) f.send(us(1000 * i));
    f.est.on_app_limited(f.bytes_in_flight);
    CHECK(f.est.app_limited());
    f.send(us(10'000));  // sent while app-limited
    // The ten packets sent before on_app_limited produce ordinary samples.
    for (int i = 0; i < 10; ++i) {
        RateSample s = f.ack(us(50'000 + 1000 * i));
        CHECK_FALSE(s.is_app_limited);
    }
    // The bubble (delivered + in flight at that moment) is not yet exceeded...
    CHECK(f.est.app_limited());
    // ...until the packet sent while app-limited is delivered: its sample is app-limited,
    // and after it the mark clears.
    RateSample s = f.ack(us(60'000));
    CHECK(s.is_app_limited);
    CHECK_FALSE(f.est.app_limited());
    f.send(us(61'000));
    CHECK_FALSE(f.ack(us(111'000)).is_app_limited);
}

TEST_CASE("delivery rate: idle time before a new flight is not counted") {
    // The same 20-packet flight (1 ms apart, RTT 50 ms) at the start and after 10 s of
    // silence must measure the same: a sample spanning the idle gap would be ~500x lower.
    Flow f;
    auto flight = [&](int64_t start) {
        for (int i = 0; i < 20; ++i) f.send(us(start + 1000 * i));
        RateSample s;
        for (int i = 0; i < 20; ++i) s = f.ack(us(start + 50'000 + 1000 * i));
        return s;
    };
    const RateSample first = flight(0);
    REQUIRE(f.bytes_in_flight == 0);
    const RateSample restarted = flight(10'000'000);
    REQUIRE(first.delivery_rate > 0);
    CHECK(restarted.delivery_rate == Approx(first.delivery_rate).epsilon(0.01));
    CHECK(restarted.prior_delivered + restarted.delivered == f.est.delivered());
}
