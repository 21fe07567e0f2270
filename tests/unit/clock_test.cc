#include <catch2/catch.hpp>

#include <chrono>
#include <thread>

#include "src/clock.h"

using namespace burrow;
using namespace std::chrono_literals;

TEST_CASE("clock: loop time starts at zero and follows the monotonic clock") {
    const auto steady_start = std::chrono::steady_clock::now();
    LoopClock clock;
    const Time t0 = clock.now();
    CHECK(t0 >= Time{});
    CHECK(t0 < time_from_us(100000));  // just made: well under 100 ms
    std::this_thread::sleep_for(20ms);
    const Time t1 = clock.now();
    const auto steady_elapsed = std::chrono::steady_clock::now() - steady_start;
    CHECK(t1 - t0 >= 20ms);
    CHECK(t1 - t0 <= std::chrono::duration_cast<Duration>(steady_elapsed));
    // Two clocks made at different times have different origins.
    LoopClock later;
    CHECK(later.now() < clock.now());
}

TEST_CASE("clock: wall clock is microseconds since the Unix epoch") {
    const auto system = std::chrono::duration_cast<std::chrono::microseconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count();
    const int64_t ours = wall_clock_us();
    CHECK(ours - system < 1000000);
    CHECK(system - ours < 1000000);
}
