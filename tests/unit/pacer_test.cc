#include <catch2/catch.hpp>

#include <vector>

#include "tunnel/pacer.h"

using namespace burrow;

namespace {
constexpr size_t kMds = 1250;
Time us(int64_t v) {
    return time_from_us(v);
}

// Sends `bytes`-sized packets as soon as the pacer allows, with a clock that can only wake
// at multiples of `tick_us` (1 = exact). Returns the send times.
std::vector<Time> run(Pacer& p, Time start, Time end, size_t bytes, int64_t tick_us = 1) {
    std::vector<Time> sent;
    Time now = start;
    while (now < end) {
        const Time when = p.earliest_send_time(now, bytes);
        if (when <= now) {
            p.on_packet_sent(now, bytes);
            sent.push_back(now);
            continue;
        }
        const int64_t t = to_us(when);
        now = us((t + tick_us - 1) / tick_us * tick_us);
    }
    return sent;
}
}  // namespace

TEST_CASE("pacer with rate 0 never delays") {
    Pacer p(kMds);
    for (int i = 0; i < 100; ++i) {
        REQUIRE(p.earliest_send_time(us(5), kMds) == us(5));
        p.on_packet_sent(us(5), kMds);
    }
}

TEST_CASE("pacer lets a small burst through, then spaces packets at the rate") {
    Pacer p(kMds);
    p.set_rate(1'250'000);  // 10 Mbit/s: one 1250-byte packet per ms
    const auto sent = run(p, us(0), us(1'000'000), kMds);
    // The burst: kMinBurstDatagrams at t = 0 (2 ms at this rate is only 2 datagrams).
    size_t at_start = 0;
    for (Time t : sent) at_start += t == us(0);
    CHECK(at_start == Pacer::kMinBurstDatagrams);
    // Then one per ms.
    for (size_t i = at_start + 1; i < sent.size(); ++i) {
        INFO("packet " << i);
        REQUIRE(sent[i] - sent[i - 1] == Duration(1000));
    }
    // Total over 1 s: the rate's worth plus the initial burst.
    CHECK(sent.size() == Approx(1000 + Pacer::kMinBurstDatagrams).margin(2));
}

TEST_CASE("pacer holds the rate when the loop can only wake once per millisecond") {
    // 400 Mbit/s = 50 MB/s: 40 packets per ms. A bucket of only a few datagrams would cap
    // this at a few packets per wake-up.
    Pacer p(kMds);
    p.set_rate(50'000'000);
    const auto sent = run(p, us(0), us(1'000'000), kMds, 1000);
    const double bytes = static_cast<double>(sent.size() * kMds);
    CHECK(bytes == Approx(50e6).epsilon(0.03));
    // No wake-up sends more than the bucket: 2 ms of rate.
    size_t burst = 0, worst = 0;
    for (size_t i = 0; i < sent.size(); ++i) {
        burst = (i > 0 && sent[i] == sent[i - 1]) ? burst + 1 : 1;
        worst = std::max(worst, burst);
    }
    CHECK(worst * kMds <= 50'000'000 * 2 / 1000 + kMds);
}

TEST_CASE("pacer does not save up credit while idle") {
    Pacer p(kMds);
    p.set_rate(1'250'000);
    run(p, us(0), us(100'000), kMds);
    // One second of nothing, then as much as the pacer allows at one instant.
    const Time later = us(1'100'000);
    size_t burst = 0;
    while (p.earliest_send_time(later, kMds) <= later) {
        p.on_packet_sent(later, kMds);
        ++burst;
    }
    CHECK(burst == Pacer::kMinBurstDatagrams);
}

TEST_CASE("pacer charges packets sent over budget to the next ones") {
    Pacer p(kMds);
    p.set_rate(1'250'000);
    // Ten packets at once (e.g. ACK-only packets the connection does not pace).
    for (int i = 0; i < 10; ++i) p.on_packet_sent(us(0), kMds);
    // Four were in the bucket; the other six are a 6 ms debt before the next packet.
    CHECK(p.earliest_send_time(us(0), kMds) == us(7000));
    CHECK(p.earliest_send_time(us(3000), kMds) == us(7000));
}

TEST_CASE("pacer follows rate changes") {
    Pacer p(kMds);
    p.set_rate(1'250'000);
    auto slow = run(p, us(0), us(100'000), kMds);
    p.set_rate(2'500'000);
    auto fast = run(p, us(100'000), us(200'000), kMds);
    CHECK(fast.size() == Approx(2.0 * static_cast<double>(slow.size() - 4)).margin(3));
    CHECK(fast.back() - fast[fast.size() - 2] == Duration(500));
}
