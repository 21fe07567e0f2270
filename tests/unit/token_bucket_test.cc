#include <catch2/catch.hpp>

#include "tunnel/token_bucket.h"
#include "tunnel/rng.h"

using namespace burrow;

TEST_CASE("a bucket starts full, then passes its rate and no more") {
    TokenBucket b(100, 10);  // 100/s, burst 10
    Time t = time_from_us(5'000'000);
    for (int i = 0; i < 10; ++i) CHECK(b.take(1, t));
    CHECK_FALSE(b.take(1, t));
    // 10 ms later one token has accrued.
    t += std::chrono::milliseconds(10);
    CHECK(b.take(1, t));
    CHECK_FALSE(b.take(1, t));
    // A long pause refills only up to the burst.
    t += std::chrono::seconds(60);
    for (int i = 0; i < 10; ++i) CHECK(b.take(1, t));
    CHECK_FALSE(b.take(1, t));
}

TEST_CASE("a refused take takes nothing; can_take takes nothing") {
    TokenBucket b(1000, 1000);
    const Time t = time_from_us(0);
    CHECK_FALSE(b.take(1001, t));
    CHECK(b.can_take(1000, t));
    CHECK(b.can_take(1000, t));
    CHECK(b.take(1000, t));
    CHECK_FALSE(b.can_take(1, t));
}

TEST_CASE("time going backwards grants nothing") {
    TokenBucket b(1000, 1);
    CHECK(b.take(1, time_from_us(1'000'000)));
    CHECK_FALSE(b.take(1, time_from_us(0)));
    CHECK_FALSE(b.take(1, time_from_us(1'000'000)));
    CHECK(b.take(1, time_from_us(1'001'000)));
}

TEST_CASE("long-run throughput matches the rate (property)") {
    for (int seed = 0; seed < 50; ++seed) {
        INFO("seed " << seed);
        SeededRng rng(seed);
        const double rate = 100 + static_cast<double>(rng.uniform(10'000));
        constexpr uint64_t kMaxCost = 5;
        const double max_cost = kMaxCost;
        const double burst = 2 * max_cost + static_cast<double>(rng.uniform(100));
        // Steps short enough that what is left (< max_cost) plus what accrues never overflows.
        const auto max_step = static_cast<uint64_t>((burst - max_cost) / rate * 1e6);
        TokenBucket b(rate, burst);
        Time t = time_from_us(0);
        const Time end = t + std::chrono::seconds(10);
        double passed = 0;
        while (t < end) {
            // Greedy demand: take until refused, so the bucket is always the limit.
            for (;;) {
                const double cost = 1 + static_cast<double>(rng.uniform(kMaxCost));
                if (!b.take(cost, t)) break;
                passed += cost;
            }
            t += Duration(1 + static_cast<int64_t>(rng.uniform(max_step)));
        }
        // Never more than burst + rate * elapsed; close to rate * elapsed under greedy demand.
        CHECK(passed <= burst + rate * 10 + 1e-6);
        CHECK(passed >= rate * 10 * 0.99);
    }
}
