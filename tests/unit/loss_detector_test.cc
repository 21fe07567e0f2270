#include <catch2/catch.hpp>

#include <map>

#include "tunnel/loss_detector.h"
#include "tunnel/rng.h"

using namespace burrow;
using std::chrono::milliseconds;

namespace {
constexpr Duration kMaxAckDelay = milliseconds(10);
constexpr uint32_t kSize = 1200;

Time ms(int64_t v) {
    return time_from_us(v * 1000);
}

SentPacket packet(uint64_t pn, Time sent, bool ack_eliciting = true, uint32_t size = kSize) {
    SentPacket p;
    p.packet_number = pn;
    p.time_sent = sent;
    p.size = size;
    p.ack_eliciting = ack_eliciting;
    p.in_flight = ack_eliciting;
    if (ack_eliciting) p.frames.push_back(SentPing{});
    return p;
}

AckFrame ack_of(std::vector<AckRange> ranges, uint64_t delay_us = 0) {
    AckFrame a;
    for (const AckRange& r : ranges) a.ranges.push_back(r);
    a.ack_delay_us = delay_us;
    return a;
}

std::vector<uint64_t> numbers(const std::vector<SentPacket>& ps) {
    std::vector<uint64_t> out;
    for (const SentPacket& p : ps) out.push_back(p.packet_number);
    return out;
}
}  // namespace

TEST_CASE("loss detector: acked packets come back ascending and leave flight") {
    LossDetector d;
    RttEstimator rtt;
    for (uint64_t pn = 0; pn < 6; ++pn) d.on_packet_sent(packet(pn, ms(pn)));
    CHECK(d.bytes_in_flight() == 6 * kSize);
    auto out = d.on_ack(ack_of({{4, 5}, {0, 2}}), ms(50), rtt, kMaxAckDelay);
    CHECK(numbers(out.acked) == std::vector<uint64_t>{0, 1, 2, 4, 5});
    CHECK(out.lost.empty());  // 3 is only 2 below the largest: not yet lost
    CHECK(d.bytes_in_flight() == kSize);
    CHECK(d.largest_acked() == uint64_t{5});
    CHECK(out.largest_acked_sent_time == ms(5));
    // Acknowledging the same packets again changes nothing.
    auto again = d.on_ack(ack_of({{4, 5}, {0, 2}}), ms(60), rtt, kMaxAckDelay);
    CHECK(again.acked.empty());
    CHECK_FALSE(again.rtt_sampled);
    CHECK(d.bytes_in_flight() == kSize);
}

TEST_CASE("loss detector takes an RTT sample only when the largest is newly acked") {
    LossDetector d;
    RttEstimator rtt;
    d.on_packet_sent(packet(0, ms(5)));
    d.on_packet_sent(packet(1, ms(10)));
    auto out = d.on_ack(ack_of({{1, 1}}, 5000), ms(70), rtt, kMaxAckDelay);
    CHECK(out.rtt_sampled);
    CHECK(rtt.latest() == milliseconds(60));
    CHECK(out.lost.empty());
    // Largest (1) already acked: acking 0 now gives no sample.
    auto late = d.on_ack(ack_of({{0, 1}}), ms(200), rtt, kMaxAckDelay);
    CHECK(numbers(late.acked) == std::vector<uint64_t>{0});
    CHECK_FALSE(late.rtt_sampled);
    CHECK(rtt.latest() == milliseconds(60));
}

TEST_CASE("loss detector takes no RTT sample from packets that are not ack-eliciting") {
    LossDetector d;
    RttEstimator rtt;
    SentPacket ack_only = packet(0, ms(0), false);
    ack_only.frames.push_back(SentAck{7});
    d.on_packet_sent(std::move(ack_only));
    CHECK(d.bytes_in_flight() == 0);
    CHECK_FALSE(d.has_in_flight());
    CHECK(d.deadline(rtt, kMaxAckDelay) == kNever);  // nothing to probe for
    auto out = d.on_ack(ack_of({{0, 0}}), ms(900), rtt, kMaxAckDelay);
    REQUIRE(out.acked.size() == 1);
    CHECK(std::holds_alternative<SentAck>(out.acked[0].frames[0]));
    CHECK_FALSE(out.rtt_sampled);
    CHECK_FALSE(rtt.has_sample());
}

TEST_CASE("loss detector declares loss by packet threshold") {
    LossDetector d;
    RttEstimator rtt;
    for (uint64_t pn = 0; pn < 8; ++pn) d.on_packet_sent(packet(pn, ms(pn)));
    auto out = d.on_ack(ack_of({{5, 5}}), ms(30), rtt, kMaxAckDelay);
    // 5 >= pn + 3 for pn <= 2
    CHECK(numbers(out.lost) == std::vector<uint64_t>{0, 1, 2});
    CHECK(d.bytes_in_flight() == 4 * kSize);  // 3, 4, 6, 7
    // 3 and 4 wait for the time threshold: the loss timer is armed.
    const Time loss_deadline = d.deadline(rtt, kMaxAckDelay);
    CHECK(loss_deadline < ms(30) + rtt.pto_base(kMaxAckDelay));
}

TEST_CASE("loss detector declares loss by time threshold when the loss timer fires") {
    LossDetector d;
    RttEstimator rtt;
    d.on_packet_sent(packet(0, ms(0)));
    d.on_packet_sent(packet(1, ms(5)));
    auto out = d.on_ack(ack_of({{1, 1}}), ms(105), rtt, kMaxAckDelay);  // rtt 100 ms
    CHECK(out.lost.empty());  // 0 was sent 105 ms ago, less than 9/8 * 100
    // RFC 9002 §6.1.2: lost 9/8 * max(smoothed, latest) after it was sent.
    const Time expected = ms(0) + Duration(112500);
    CHECK(d.deadline(rtt, kMaxAckDelay) == expected);
    CHECK(d.on_timeout(expected - Duration(1), rtt, kMaxAckDelay).lost.empty());
    auto fired = d.on_timeout(expected, rtt, kMaxAckDelay);
    CHECK(numbers(fired.lost) == std::vector<uint64_t>{0});
    CHECK(fired.probes == 0);
    CHECK(d.bytes_in_flight() == 0);
    CHECK(d.deadline(rtt, kMaxAckDelay) == kNever);
}

TEST_CASE("loss detector: an ACK that makes old packets time out declares them at once") {
    LossDetector d;
    RttEstimator rtt;
    d.on_packet_sent(packet(0, ms(0)));
    d.on_packet_sent(packet(1, ms(1)));
    d.on_ack(ack_of({{1, 1}}), ms(21), rtt, kMaxAckDelay);  // rtt 20 ms
    d.on_packet_sent(packet(2, ms(200)));
    // 0 was left behind (1 below the largest): by now it is far past 9/8 RTT.
    auto out = d.on_ack(ack_of({{2, 2}}), ms(220), rtt, kMaxAckDelay);
    CHECK(numbers(out.lost) == std::vector<uint64_t>{0});
}

TEST_CASE("loss detector PTO: deadline, probes, exponential backoff, cap and reset") {
    LossDetector d;
    RttEstimator rtt;
    rtt.on_sample(milliseconds(100), Duration{0}, kMaxAckDelay);  // smoothed 100, var 50
    const Duration base = rtt.pto_base(kMaxAckDelay);             // 310 ms
    REQUIRE(base == milliseconds(310));
    d.on_packet_sent(packet(0, ms(0)));
    d.on_packet_sent(packet(1, ms(5)));
    CHECK(d.deadline(rtt, kMaxAckDelay) == ms(5) + base);  // from the last ack-eliciting send
    CHECK(d.on_timeout(ms(5) + base - Duration(1), rtt, kMaxAckDelay).probes == 0);
    CHECK(d.pto_count() == 0);
    auto t1 = d.on_timeout(ms(5) + base, rtt, kMaxAckDelay);
    CHECK(t1.probes == 2);   // two outstanding: two probes
    CHECK(t1.lost.empty());  // a PTO declares nothing lost
    CHECK(d.pto_count() == 1);
    CHECK(d.deadline(rtt, kMaxAckDelay) == ms(5) + 2 * base);
    d.on_timeout(ms(5) + 2 * base, rtt, kMaxAckDelay);
    CHECK(d.pto_count() == 2);
    CHECK(d.deadline(rtt, kMaxAckDelay) == ms(5) + 4 * base);  // 1240 ms
    d.on_timeout(ms(5) + 4 * base, rtt, kMaxAckDelay);
    CHECK(d.deadline(rtt, kMaxAckDelay) == ms(5) + LossDetector::kMaxPto);     // 2480 capped
    for (int i = 0; i < 70; ++i) d.on_timeout(ms(100000), rtt, kMaxAckDelay);  // no overflow
    CHECK(d.deadline(rtt, kMaxAckDelay) == ms(5) + LossDetector::kMaxPto);
    // A probe is a new ack-eliciting packet: the timer runs from it.
    d.on_packet_sent(packet(2, ms(3000)));
    CHECK(d.deadline(rtt, kMaxAckDelay) == ms(3000) + LossDetector::kMaxPto);
    // Any ACK of something new resets the backoff.
    d.on_ack(ack_of({{2, 2}}), ms(3100), rtt, kMaxAckDelay);
    CHECK(d.pto_count() == 0);
}

TEST_CASE("loss detector sends one probe for a lone packet") {
    LossDetector d;
    RttEstimator rtt;
    d.on_packet_sent(packet(0, ms(0)));
    auto out = d.on_timeout(ms(0) + rtt.pto_base(kMaxAckDelay), rtt, kMaxAckDelay);
    CHECK(out.probes == 1);
}

TEST_CASE("loss detector PTO cap never goes below the un-backed-off PTO") {
    LossDetector d;
    RttEstimator rtt;
    rtt.on_sample(std::chrono::seconds(3), Duration{0}, kMaxAckDelay);  // a very slow path
    d.on_packet_sent(packet(0, ms(0)));
    const Duration base = rtt.pto_base(kMaxAckDelay);
    CHECK(d.deadline(rtt, kMaxAckDelay) == ms(0) + base);
    d.on_timeout(ms(0) + base, rtt, kMaxAckDelay);
    CHECK(d.deadline(rtt, kMaxAckDelay) == ms(0) + base);
}

TEST_CASE("loss detector ignores acknowledgements of numbers never sent") {
    LossDetector d;
    RttEstimator rtt;
    for (uint64_t pn = 0; pn < 4; ++pn) d.on_packet_sent(packet(pn, ms(pn)));
    CHECK(d.largest_sent() == 3);
    // The peer claims 100..200 and 2: only 2 was really sent.
    auto out = d.on_ack(ack_of({{100, 200}, {2, 2}}), ms(50), rtt, kMaxAckDelay);
    CHECK(numbers(out.acked) == std::vector<uint64_t>{2});
    CHECK_FALSE(out.rtt_sampled);  // the claimed largest (200) was not newly acked by us
    CHECK(out.lost.empty());       // 3 is not "3 below 200"
    CHECK(d.largest_acked() <= d.largest_sent());
    CHECK(d.bytes_in_flight() == 3 * kSize);
    // 0 and 1 are below the real largest acked (2): the loss timer, not the lie, ends them.
    CHECK(numbers(d.on_timeout(ms(1000), rtt, kMaxAckDelay).lost) == std::vector<uint64_t>{0, 1});
    // Only lies: nothing changes, no PTO reset.
    CHECK(d.on_timeout(ms(1000), rtt, kMaxAckDelay).probes == 1);
    const uint32_t ptos = d.pto_count();
    REQUIRE(ptos == 1);
    auto lie = d.on_ack(ack_of({{1000, 5000}}), ms(1001), rtt, kMaxAckDelay);
    CHECK(lie.acked.empty());
    CHECK(lie.lost.empty());
    CHECK(d.pto_count() == ptos);
    CHECK(d.bytes_in_flight() == kSize);
    // An ACK before anything was sent, or with no ranges, is harmless too.
    LossDetector fresh;
    CHECK(fresh.on_ack(ack_of({{0, 9}}), ms(1), rtt, kMaxAckDelay).acked.empty());
    CHECK(fresh.on_ack(AckFrame{}, ms(1), rtt, kMaxAckDelay).acked.empty());
    CHECK_FALSE(fresh.largest_acked());
}

TEST_CASE("loss detector: a huge ack delay from the peer is clamped, not overflowed") {
    LossDetector d;
    RttEstimator rtt;
    d.on_packet_sent(packet(0, ms(0)));
    d.on_packet_sent(packet(1, ms(0)));
    d.on_ack(ack_of({{0, 0}}), ms(50), rtt, kMaxAckDelay);
    auto out = d.on_ack(ack_of({{0, 1}}, (uint64_t{1} << 62) - 1), ms(100), rtt, kMaxAckDelay);
    CHECK(out.rtt_sampled);
    // latest 100, delay clamped to 10 -> adjusted 90: smoothed = (7 * 50 + 90) / 8 = 55
    CHECK(rtt.smoothed() == milliseconds(55));
}

TEST_CASE("loss detector detects persistent congestion (RFC 9002 §7.6)") {
    RttEstimator rtt;
    auto setup = [&](LossDetector& d) {
        d.on_packet_sent(packet(0, ms(0)));
        d.on_ack(ack_of({{0, 0}}), ms(100), rtt, kMaxAckDelay);  // first RTT sample
    };
    SECTION("a long run of losses is persistent congestion") {
        LossDetector d;
        setup(d);
        // pto_base = 100 + 200 + 10 = 310 ms; duration = 3 * 310 = 930 ms.
        for (uint64_t pn = 1; pn <= 11; ++pn) d.on_packet_sent(packet(pn, ms(100 * pn + 100)));
        d.on_packet_sent(packet(12, ms(1300)));
        auto out = d.on_ack(ack_of({{12, 12}}), ms(1400), rtt, kMaxAckDelay);
        CHECK(out.lost.size() == 11);  // span 200 ms .. 1200 ms = 1000 ms > 930 ms
        CHECK(out.persistent_congestion);
    }
    SECTION("a short run is not") {
        LossDetector d;
        setup(d);
        for (uint64_t pn = 1; pn <= 5; ++pn) d.on_packet_sent(packet(pn, ms(100 * pn + 100)));
        d.on_packet_sent(packet(6, ms(700)));
        auto out = d.on_ack(ack_of({{6, 6}}), ms(800), rtt, kMaxAckDelay);
        CHECK(out.lost.size() == 5);
        CHECK_FALSE(out.persistent_congestion);
    }
    SECTION("an acknowledged packet in the middle breaks the run") {
        LossDetector d;
        setup(d);
        for (uint64_t pn = 1; pn <= 11; ++pn) d.on_packet_sent(packet(pn, ms(100 * pn + 100)));
        d.on_packet_sent(packet(12, ms(1300)));
        auto out = d.on_ack(ack_of({{12, 12}, {6, 6}}), ms(1400), rtt, kMaxAckDelay);
        CHECK(out.lost.size() == 10);
        CHECK_FALSE(out.persistent_congestion);
    }
    SECTION("packets sent before the first RTT sample do not count") {
        LossDetector d;
        for (uint64_t pn = 0; pn <= 10; ++pn) d.on_packet_sent(packet(pn, ms(100 * pn)));
        d.on_packet_sent(packet(11, ms(1100)));
        RttEstimator fresh;
        auto out = d.on_ack(ack_of({{11, 11}}), ms(1200), fresh, kMaxAckDelay);
        CHECK(out.lost.size() == 11);
        CHECK_FALSE(out.persistent_congestion);
    }
}

TEST_CASE("loss detector take_all returns everything and resets flight") {
    LossDetector d;
    RttEstimator rtt;
    for (uint64_t pn = 0; pn < 5; ++pn) d.on_packet_sent(packet(pn, ms(pn), pn != 2));
    d.on_ack(ack_of({{1, 1}}), ms(10), rtt, kMaxAckDelay);
    CHECK(d.on_timeout(ms(10000), rtt, kMaxAckDelay).lost.size() == 1);  // 0, by time
    CHECK(d.on_timeout(ms(10000), rtt, kMaxAckDelay).probes == 2);
    CHECK(d.pto_count() == 1);
    auto all = d.take_all();
    CHECK(numbers(all) == std::vector<uint64_t>{2, 3, 4});
    CHECK(d.bytes_in_flight() == 0);
    CHECK(d.tracked_count() == 0);
    CHECK(d.pto_count() == 0);
    CHECK(d.deadline(rtt, kMaxAckDelay) == kNever);
    // Numbering continues; the detector is usable again.
    d.on_packet_sent(packet(5, ms(20)));
    CHECK(d.bytes_in_flight() == kSize);
    CHECK(numbers(d.on_ack(ack_of({{5, 5}}), ms(40), rtt, kMaxAckDelay).acked) ==
          std::vector<uint64_t>{5});
}

TEST_CASE("loss detector accounting stays exact under random sends, ACKs and timeouts") {
    for (uint64_t seed = 1; seed <= 100; ++seed) {
        INFO("seed " << seed);
        SeededRng rng(seed);
        LossDetector d;
        RttEstimator rtt;
        std::map<uint64_t, SentPacket> model;  // what should still be tracked
        uint64_t next_pn = 0;
        Time now = ms(0);
        uint64_t settled = 0;  // acked + lost, each packet exactly once
        for (int step = 0; step < 400; ++step) {
            now += Duration(static_cast<int64_t>(rng.uniform(20'000)));
            const uint64_t kind = rng.uniform(10);
            if (kind < 5) {
                const bool eliciting = rng.chance(0.8);
                SentPacket p =
                    packet(next_pn, now, eliciting, static_cast<uint32_t>(50 + rng.uniform(1300)));
                model.emplace(next_pn, p);
                d.on_packet_sent(std::move(p));
                ++next_pn;
            } else if (kind < 9 && next_pn > 0) {
                // A random ACK, sometimes claiming numbers beyond what was sent.
                std::vector<AckRange> ranges;
                uint64_t top = rng.uniform(next_pn + 5);
                for (int r = 0; r < 4; ++r) {
                    const uint64_t len = rng.uniform(4);
                    const uint64_t low = top > len ? top - len : 0;
                    ranges.push_back({low, top});
                    if (low < 2) break;
                    top = low - 2 - rng.uniform(std::min<uint64_t>(low - 1, 5));
                }
                auto out = d.on_ack(ack_of(ranges, rng.uniform(30'000)), now, rtt, kMaxAckDelay);
                for (const auto& p : out.acked) {
                    REQUIRE(model.erase(p.packet_number) == 1);
                    bool covered = false;
                    for (const auto& r : ranges) {
                        covered |= r.smallest <= p.packet_number && p.packet_number <= r.largest;
                    }
                    REQUIRE(covered);
                }
                for (const auto& p : out.lost) REQUIRE(model.erase(p.packet_number) == 1);
                REQUIRE(std::is_sorted(out.acked.begin(), out.acked.end(), [](auto& a, auto& b) {
                    return a.packet_number < b.packet_number;
                }));
                settled += out.acked.size() + out.lost.size();
            } else {
                auto out = d.on_timeout(now, rtt, kMaxAckDelay);
                for (const auto& p : out.lost) REQUIRE(model.erase(p.packet_number) == 1);
                settled += out.lost.size();
            }
            uint64_t flight = 0;
            bool eliciting = false;
            for (const auto& [pn, p] : model) {
                if (p.in_flight) flight += p.size;
                eliciting |= p.ack_eliciting;
            }
            REQUIRE(d.bytes_in_flight() == flight);
            REQUIRE(d.tracked_count() == model.size());
            REQUIRE(settled + model.size() == next_pn);
            // A timer runs whenever something ack-eliciting is out (the loss timer may also
            // run for ACK-only packets), and none when nothing is tracked.
            if (eliciting) REQUIRE(d.deadline(rtt, kMaxAckDelay) != kNever);
            if (model.empty()) REQUIRE(d.deadline(rtt, kMaxAckDelay) == kNever);
            if (d.largest_acked()) REQUIRE(*d.largest_acked() < next_pn);
        }
    }
}

TEST_CASE("loss detector: a spurious loss raises the reordering threshold") {
    LossDetector d;
    RttEstimator rtt;
    // All sent together and acked 10 ms later, so the time threshold (9/8 RTT) never fires.
    for (uint64_t pn = 0; pn < 10; ++pn) d.on_packet_sent(packet(pn, ms(40)));
    // 5..9 arrive first: 0..4 are three or more below the largest, so declared lost.
    auto out = d.on_ack(ack_of({{5, 9}}), ms(50), rtt, kMaxAckDelay);
    CHECK(numbers(out.lost) == std::vector<uint64_t>{0, 1, 2, 3, 4});
    CHECK(d.packet_threshold() == LossDetector::kPacketThreshold);
    // Then 0..4 arrive after all: they were reordered, not lost.
    d.on_ack(ack_of({{0, 9}}), ms(51), rtt, kMaxAckDelay);
    CHECK(d.spurious_losses() == 5);
    CHECK(d.packet_threshold() == 2 * LossDetector::kPacketThreshold);
    // With the threshold at 6, acking 15..19 makes only 10..13 lost; at 3, 14 would be too.
    for (uint64_t pn = 10; pn < 20; ++pn) d.on_packet_sent(packet(pn, ms(52)));
    out = d.on_ack(ack_of({{15, 19}, {0, 9}}), ms(53), rtt, kMaxAckDelay);
    CHECK(numbers(out.lost) == std::vector<uint64_t>{10, 11, 12, 13});
    // Acknowledging an already-forgiven number again is not counted twice.
    d.on_ack(ack_of({{0, 2}}), ms(54), rtt, kMaxAckDelay);
    CHECK(d.spurious_losses() == 5);
}

TEST_CASE("loss detector: the reordering threshold stops at its cap") {
    LossDetector d;
    RttEstimator rtt;
    uint64_t pn = 0;
    for (int round = 0; round < 12; ++round) {
        const uint64_t base = pn;
        const uint64_t depth = d.packet_threshold() + 1;
        for (uint64_t i = 0; i <= depth; ++i) d.on_packet_sent(packet(pn++, ms(round * 100)));
        // The newest arrives first, making `base` look lost; then `base` arrives.
        d.on_ack(ack_of({{pn - 1, pn - 1}}), ms(round * 100 + 1), rtt, kMaxAckDelay);
        d.on_ack(ack_of({{base, pn - 1}}), ms(round * 100 + 2), rtt, kMaxAckDelay);
    }
    CHECK(d.packet_threshold() == LossDetector::kMaxPacketThreshold);
}
