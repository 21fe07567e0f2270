#include <catch2/catch.hpp>

#include <set>

#include "tunnel/range_set.h"
#include "tunnel/rng.h"

using namespace burrow;

TEST_CASE("range set merges adjacent and overlapping intervals") {
    RangeSet s;
    s.add(10, 20);
    s.add(20, 30);
    CHECK(s.interval_count() == 1);
    s.add(5, 12);
    CHECK(s.first() == Interval{5, 30});
    s.add(40, 50);
    s.add(0, 100);
    CHECK(s.interval_count() == 1);
    CHECK(s.first() == Interval{0, 100});
}

TEST_CASE("range set remove splits intervals") {
    RangeSet s;
    s.add(0, 100);
    s.remove(10, 20);
    CHECK(s.interval_count() == 2);
    CHECK_FALSE(s.contains(10));
    CHECK(s.contains(9));
    CHECK(s.contains(20));
    CHECK(s.first_from(10) == Interval{20, 100});
    CHECK(s.first_from(5) == Interval{5, 10});
}

TEST_CASE("range set matches a reference set under random operations") {
    SeededRng rng(7);
    for (int round = 0; round < 200; ++round) {
        RangeSet s;
        std::set<uint64_t> ref;
        for (int op = 0; op < 50; ++op) {
            const uint64_t a = rng.uniform(200), b = a + rng.uniform(30);
            if (rng.chance(0.6)) {
                s.add(a, b);
                for (uint64_t v = a; v < b; ++v) ref.insert(v);
            } else {
                s.remove(a, b);
                for (uint64_t v = a; v < b; ++v) ref.erase(v);
            }
        }
        for (uint64_t v = 0; v < 240; ++v) REQUIRE(s.contains(v) == (ref.count(v) == 1));
        // Minimal: no two intervals touch.
        uint64_t prev_end = 0;
        bool first = true;
        for (auto [start, end] : s) {
            REQUIRE(start < end);
            if (!first) REQUIRE(start > prev_end);
            prev_end = end;
            first = false;
        }
    }
}
