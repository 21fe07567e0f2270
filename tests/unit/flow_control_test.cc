#include <catch2/catch.hpp>

#include "tunnel/flow_control.h"
#include "tunnel/rng.h"

using namespace burrow;

TEST_CASE("initial windows cover the design's bandwidth-delay product") {
    // 50 Mbit/s x 40 ms, in bytes.
    constexpr uint64_t kBdp = 50'000'000 / 8 * 40 / 1000;
    CHECK(kInitialStreamWindow >= kBdp);
    CHECK(kInitialSessionWindow >= kInitialStreamWindow);
    CHECK(kInitialMaxStreams > 0);
}

TEST_CASE("receive controller rejects data past the limit without changing state") {
    RecvFlowController fc(1000, 1000);
    CHECK(fc.on_received(600));
    CHECK(fc.received() == 600);
    CHECK_FALSE(fc.on_received(1001));
    CHECK(fc.received() == 600);
    CHECK(fc.max() == 1000);
    CHECK(fc.on_received(1000));  // exactly at the limit is allowed
    CHECK(fc.received() == 1000);
}

TEST_CASE("receive controller keeps the highest offset, not a sum") {
    RecvFlowController fc(1000, 1000);
    CHECK(fc.on_received(500));
    CHECK(fc.on_received(200));  // reordered or duplicate: no change
    CHECK(fc.received() == 500);
}

TEST_CASE("receive controller grants credit after half a window is consumed") {
    RecvFlowController fc(1000, 1000);
    REQUIRE(fc.on_received(1000));
    CHECK_FALSE(fc.should_update());
    fc.on_consumed(499);
    CHECK_FALSE(fc.should_update());
    fc.on_consumed(1);
    CHECK(fc.consumed() == 500);
    REQUIRE(fc.should_update());
    CHECK(fc.take_update() == 1500);
    CHECK(fc.max() == 1500);
    CHECK_FALSE(fc.should_update());
    CHECK(fc.on_received(1500));
    CHECK_FALSE(fc.on_received(1501));
}

TEST_CASE("a window larger than the initial limit is granted at once") {
    // The peer starts at the protocol's initial limit; a bigger configured window should
    // reach it with the first update, without waiting for reads.
    RecvFlowController fc(kInitialStreamWindow, 4 * kInitialStreamWindow);
    REQUIRE(fc.should_update());
    CHECK(fc.take_update() == 4 * kInitialStreamWindow);
    CHECK_FALSE(fc.should_update());
}

TEST_CASE("take_update never lowers the limit") {
    RecvFlowController fc(5000, 1000);
    CHECK_FALSE(fc.should_update());
    CHECK(fc.take_update() == 5000);
    CHECK(fc.max() == 5000);
}

TEST_CASE("receive credit stays ahead of consumption under random reads") {
    for (uint64_t seed = 1; seed <= 50; ++seed) {
        INFO("seed " << seed);
        SeededRng rng(seed);
        const uint64_t window = 1 + rng.uniform(10000);
        RecvFlowController fc(window, window);
        uint64_t updates = 0;
        for (int step = 0; step < 2000; ++step) {
            const uint64_t target = fc.received() + rng.uniform(fc.max() - fc.received() + 1);
            REQUIRE(fc.on_received(target));
            fc.on_consumed(rng.uniform(fc.received() - fc.consumed() + 1));
            if (fc.should_update()) {
                const uint64_t before = fc.max();
                const uint64_t granted = fc.take_update();
                REQUIRE(granted == fc.consumed() + window);
                REQUIRE(granted > before);
                ++updates;
            }
            // Never more than a window of credit past what has been consumed, and never
            // less than half a window once the update has been taken.
            REQUIRE(fc.max() - fc.consumed() <= window);
            REQUIRE(fc.max() - fc.consumed() > window / 2);
        }
        CHECK(updates > 0);
    }
}

TEST_CASE("send credit only rises and is consumed") {
    SendCredit c(1000);
    CHECK(c.available() == 1000);
    c.consume(300);
    CHECK(c.used() == 300);
    CHECK(c.available() == 700);
    c.on_max(2000);
    CHECK(c.max() == 2000);
    CHECK(c.available() == 1700);
    c.on_max(1500);  // a reordered, older MAX_* frame
    CHECK(c.max() == 2000);
    c.consume(1700);
    CHECK(c.available() == 0);
    c.on_max(2000);
    CHECK(c.available() == 0);
}
