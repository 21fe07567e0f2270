#include <catch2/catch.hpp>

#include <set>

#include "signal/reconnect_backoff.h"

using namespace burrow;
using std::chrono::milliseconds;
using std::chrono::seconds;

TEST_CASE("base delays double from 0.5 s and stop at 30 s") {
    const std::vector<Duration> expected = {milliseconds(500), seconds(1), seconds(2),
                                            seconds(4),        seconds(8), seconds(16),
                                            seconds(30),       seconds(30)};
    for (size_t i = 0; i < expected.size(); ++i) {
        CHECK(ReconnectBackoff::base_delay(static_cast<int>(i)) == expected[i]);
    }
    CHECK(ReconnectBackoff::base_delay(1000) == kReconnectMax);
}

TEST_CASE("jittered delays stay within 20% of the base and use the whole range") {
    for (uint64_t seed = 1; seed <= 200; ++seed) {
        INFO("seed " << seed);
        SeededRng rng(seed);
        ReconnectBackoff b;
        for (int i = 0; i < 20; ++i) {
            const Duration base = ReconnectBackoff::base_delay(i);
            const Duration d = b.next_delay(rng);
            CHECK(d >= base * 8 / 10);
            CHECK(d <= base * 12 / 10);
        }
        CHECK(b.failures() <= 7);  // stops counting at the cap
    }
    // Over many draws the jitter reaches close to both ends.
    SeededRng rng(7);
    Duration lo = kReconnectMax, hi{};
    for (int i = 0; i < 2000; ++i) {
        ReconnectBackoff b;
        const Duration d = b.next_delay(rng);
        lo = std::min(lo, d);
        hi = std::max(hi, d);
    }
    CHECK(lo < milliseconds(405));
    CHECK(hi > milliseconds(595));
}

TEST_CASE("reset starts the schedule over") {
    SeededRng rng(3);
    ReconnectBackoff b;
    for (int i = 0; i < 5; ++i) b.next_delay(rng);
    CHECK(b.failures() == 5);
    b.reset();
    CHECK(b.failures() == 0);
    const Duration d = b.next_delay(rng);
    CHECK(d <= kReconnectInitial * 12 / 10);
}
