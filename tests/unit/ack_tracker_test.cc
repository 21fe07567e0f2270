#include <catch2/catch.hpp>

#include <set>

#include "tunnel/ack_tracker.h"
#include "tunnel/rng.h"

using namespace burrow;
using std::chrono::milliseconds;

namespace {
Time ms(int64_t v) {
    return time_from_us(v * 1000);
}

std::set<uint64_t> acked_numbers(const AckFrame& ack) {
    std::set<uint64_t> out;
    for (const AckRange& r : ack.ranges) {
        for (uint64_t pn = r.smallest; pn <= r.largest; ++pn) out.insert(pn);
    }
    return out;
}

// Descending, disjoint and non-adjacent, as frame.h requires.
bool well_formed(const AckFrame& ack) {
    for (size_t i = 0; i < ack.ranges.size(); ++i) {
        if (ack.ranges[i].smallest > ack.ranges[i].largest) return false;
        if (i > 0 && ack.ranges[i].largest + 1 >= ack.ranges[i - 1].smallest) return false;
    }
    return true;
}
}  // namespace

TEST_CASE("ack tracker acknowledges every second ack-eliciting packet") {
    AckTracker t;
    t.on_packet_received(0, true, ms(0));
    CHECK_FALSE(t.ack_now());
    t.on_packet_received(1, true, ms(1));
    CHECK(t.ack_now());
    t.on_ack_sent();
    CHECK_FALSE(t.ack_now());
    CHECK(t.ack_deadline() == kNever);
    t.on_packet_received(2, true, ms(2));
    CHECK_FALSE(t.ack_now());
    t.on_packet_received(3, true, ms(3));
    CHECK(t.ack_now());
}

TEST_CASE("ack tracker acknowledges every tenth packet once past the connection's start") {
    AckTracker t;
    uint64_t pn = 0;
    // The start: every second packet, as RFC 9000 §13.2.2 asks.
    while (pn < AckTracker::kEarlyPackets) {
        t.on_packet_received(pn, true, ms(0));
        CHECK(t.ack_now() == (pn % 2 == 1));
        if (t.ack_now()) t.on_ack_sent();
        ++pn;
    }
    // Bulk: nine packets in order owe only the delayed ACK; the tenth owes one at once.
    for (int round = 0; round < 3; ++round) {
        for (uint64_t i = 1; i < AckTracker::kBulkAckElicitingThreshold; ++i) {
            t.on_packet_received(pn++, true, ms(1));
            CHECK_FALSE(t.ack_now());
        }
        t.on_packet_received(pn++, true, ms(1));
        CHECK(t.ack_now());
        t.on_ack_sent();
    }
    // A gap still asks for an ACK at once, whatever the count.
    t.on_packet_received(pn + 1, true, ms(2));
    CHECK(t.ack_now());
}

TEST_CASE("ack tracker acknowledges what one receive batch brought when the batch ends") {
    AckTracker t;
    uint64_t pn = 0;
    while (pn <= AckTracker::kEarlyPackets) {
        t.on_packet_received(pn++, true, ms(0));
        if (t.ack_now()) t.on_ack_sent();
    }
    t.on_ack_sent();
    // A batch with nothing ack-eliciting in it owes nothing at its end.
    t.on_packet_received(pn++, false, ms(1));
    t.on_receive_batch_end();
    CHECK_FALSE(t.ack_now());
    // Three packets are below the bulk threshold: they would wait for the delayed-ACK timer;
    // the batch's end acknowledges them at once, and only once.
    for (int i = 0; i < 3; ++i) {
        t.on_packet_received(pn++, true, ms(1));
        CHECK_FALSE(t.ack_now());
    }
    t.on_receive_batch_end();
    CHECK(t.ack_now());
    t.on_ack_sent();
    CHECK_FALSE(t.ack_now());
    t.on_packet_received(pn++, true, ms(2));
    CHECK_FALSE(t.ack_now());
}

TEST_CASE("ack tracker delays an ACK by at most a quarter of the RTT") {
    AckTracker t;
    t.on_packet_received(0, true, ms(0));
    CHECK(t.ack_deadline() == ms(0) + AckTracker::kMaxAckDelay);  // no RTT yet
    t.on_rtt(milliseconds(8));
    CHECK(t.ack_deadline() == ms(2));
    t.on_rtt(milliseconds(400));  // a long path: kMaxAckDelay still caps it
    CHECK(t.ack_deadline() == ms(0) + AckTracker::kMaxAckDelay);
}

TEST_CASE("ack tracker: packets that are not ack-eliciting owe nothing") {
    AckTracker t;
    for (uint64_t pn = 0; pn < 10; ++pn) t.on_packet_received(pn, false, ms(pn));
    CHECK_FALSE(t.ack_now());
    CHECK(t.ack_deadline() == kNever);
    CHECK(t.has_ranges());  // still acknowledged when an ACK goes out anyway
    // Even a gap does not demand an ACK for a non-ack-eliciting packet.
    t.on_packet_received(20, false, ms(20));
    CHECK_FALSE(t.ack_now());
}

TEST_CASE("ack tracker delayed-ACK timer runs from the first unacknowledged packet") {
    AckTracker t;
    t.on_packet_received(0, false, ms(0));
    CHECK(t.ack_deadline() == kNever);
    t.on_packet_received(1, true, ms(5));
    CHECK(t.ack_deadline() == ms(5) + AckTracker::kMaxAckDelay);
    t.on_ack_sent();
    CHECK(t.ack_deadline() == kNever);
    t.on_packet_received(2, true, ms(40));
    CHECK(t.ack_deadline() == ms(40) + AckTracker::kMaxAckDelay);
}

TEST_CASE("ack tracker acknowledges at once after a gap") {
    AckTracker t;
    t.on_packet_received(0, true, ms(0));
    t.on_ack_sent();
    t.on_packet_received(2, true, ms(1));  // 1 missing
    CHECK(t.ack_now());
    t.on_ack_sent();
    // The next in-order packet after the gap is not a reason on its own.
    t.on_packet_received(3, true, ms(2));
    CHECK_FALSE(t.ack_now());
}

TEST_CASE("ack tracker acknowledges at once a packet that arrives out of order") {
    AckTracker t;
    t.on_packet_received(0, true, ms(0));
    t.on_packet_received(2, true, ms(1));
    t.on_ack_sent();
    t.on_packet_received(1, true, ms(2));  // fills the gap late
    CHECK(t.ack_now());
}

TEST_CASE("ack tracker builds descending ranges with the ack delay of the largest") {
    AckTracker t;
    for (uint64_t pn : {0, 1, 2, 5, 6, 9}) t.on_packet_received(pn, true, ms(pn));
    const AckFrame ack = t.build(ms(12));
    REQUIRE(ack.ranges.size() == 3);
    CHECK(ack.ranges[0] == AckRange{9, 9});
    CHECK(ack.ranges[1] == AckRange{5, 6});
    CHECK(ack.ranges[2] == AckRange{0, 2});
    CHECK(ack.ack_delay_us == 3000);  // 9 arrived at 9 ms
    // A late packet below the largest does not change whose delay is reported.
    t.on_packet_received(3, true, ms(20));
    CHECK(t.build(ms(21)).ack_delay_us == 12000);
    CHECK(t.build(ms(21)).ranges[2] == AckRange{0, 3});
}

TEST_CASE("ack tracker keeps at most kMaxRanges, dropping the oldest") {
    AckTracker t;
    const uint64_t n = AckTracker::kMaxRanges + 10;
    for (uint64_t i = 0; i < n; ++i) t.on_packet_received(2 * i, true, ms(i));
    const AckFrame ack = t.build(ms(100));
    REQUIRE(ack.ranges.size() == AckTracker::kMaxRanges);
    CHECK(ack.ranges.front().largest == 2 * (n - 1));
    CHECK(ack.ranges.back().smallest == 2 * (n - AckTracker::kMaxRanges));
    CHECK(well_formed(ack));
    // A straggler below the dropped ranges would only push a newer range out: ignored.
    t.on_packet_received(1, true, ms(101));
    CHECK(t.build(ms(102)).ranges == ack.ranges);
    // One inside the kept ranges' span still fills its gap.
    t.on_packet_received(2 * (n - 2) + 1, true, ms(103));
    CHECK(t.build(ms(104)).ranges.size() == AckTracker::kMaxRanges - 1);
}

TEST_CASE("ack tracker prunes ranges once an ACK covering them is acknowledged") {
    AckTracker t;
    for (uint64_t pn : {0, 1, 3, 4, 7, 8}) t.on_packet_received(pn, true, ms(pn));
    const AckFrame sent = t.build(ms(10));
    t.on_ack_sent();
    t.on_packet_received(10, true, ms(11));
    t.on_ack_acked(sent.ranges.front().largest);  // 8
    const AckFrame next = t.build(ms(12));
    REQUIRE(next.ranges.size() == 1);
    CHECK(next.ranges[0] == AckRange{10, 10});
}

TEST_CASE("ack tracker never prunes down to an empty ACK") {
    AckTracker t;
    for (uint64_t pn : {0, 1, 2, 5, 6}) t.on_packet_received(pn, true, ms(pn));
    t.on_ack_acked(6);
    REQUIRE(t.has_ranges());
    const AckFrame ack = t.build(ms(10));
    REQUIRE(ack.ranges.size() == 1);
    CHECK(ack.ranges[0] == AckRange{5, 6});
    CHECK(ack.ack_delay_us == 4000);
    // A stale ack-of-ack (for an older ACK) removes only what it covered.
    AckTracker u;
    for (uint64_t pn : {0, 1, 2, 5, 6}) u.on_packet_received(pn, true, ms(pn));
    u.on_ack_acked(1);
    CHECK(acked_numbers(u.build(ms(10))) == std::set<uint64_t>{2, 5, 6});
}

TEST_CASE("ack tracker ACKs match the received set under random arrival order") {
    for (uint64_t seed = 1; seed <= 100; ++seed) {
        INFO("seed " << seed);
        SeededRng rng(seed);
        AckTracker t;
        std::set<uint64_t> received;
        uint64_t pruned_below = 0;  // everything <= this (except the top range) may be gone
        bool pruned = false;
        for (int i = 0; i < 300; ++i) {
            const uint64_t pn = rng.uniform(400);
            if (received.count(pn)) continue;
            received.insert(pn);
            t.on_packet_received(pn, rng.chance(0.8), ms(i));
            if (rng.chance(0.05)) {
                const AckFrame a = t.build(ms(i));
                t.on_ack_sent();
                pruned_below = a.ranges.front().largest;
                pruned = true;
                t.on_ack_acked(pruned_below);
            }
            const AckFrame ack = t.build(ms(i));
            REQUIRE(well_formed(ack));
            REQUIRE(ack.ranges.size() <= AckTracker::kMaxRanges);
            REQUIRE(ack.ranges.front().largest == *received.rbegin());
            // Never acknowledges anything not received...
            for (uint64_t pn_acked : acked_numbers(ack)) REQUIRE(received.count(pn_acked));
            // ...and never forgets a packet above the pruned point unless the range cap
            // pushed it out (then it lies below the oldest range kept).
            const uint64_t floor = ack.ranges.back().smallest;
            for (uint64_t r : received) {
                if (r >= floor && (!pruned || r > pruned_below)) {
                    REQUIRE(acked_numbers(ack).count(r));
                }
            }
        }
    }
}
