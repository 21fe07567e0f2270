#include <catch2/catch.hpp>

#include <algorithm>
#include <deque>
#include <vector>

#include "tunnel/rng.h"
#include "tunnel/stream_scheduler.h"

using namespace burrow;

TEST_CASE("scheduler pops in push order and ignores duplicate pushes") {
    StreamScheduler s;
    CHECK(s.empty());
    CHECK_FALSE(s.pop());
    s.push(4);
    s.push(8);
    s.push(4);  // already queued: keeps its place
    CHECK(s.size() == 2);
    CHECK(s.contains(4));
    CHECK_FALSE(s.contains(5));
    CHECK(s.pop() == StreamId{4});
    CHECK_FALSE(s.contains(4));
    CHECK(s.pop() == StreamId{8});
    CHECK(s.empty());
    CHECK_FALSE(s.pop());
}

TEST_CASE("two busy streams alternate") {
    // A bulk stream and an interactive one both stay ready; each gets every other turn.
    StreamScheduler s;
    s.push(0);
    s.push(1);
    std::vector<StreamId> order;
    for (int i = 0; i < 10; ++i) {
        const auto id = s.pop();
        REQUIRE(id);
        order.push_back(*id);
        s.push(*id);
    }
    CHECK(order == std::vector<StreamId>{0, 1, 0, 1, 0, 1, 0, 1, 0, 1});
}

TEST_CASE("a stream that becomes ready waits at most one round") {
    StreamScheduler s;
    for (StreamId id = 0; id < 5; ++id) s.push(id * 4);
    CHECK(s.pop() == StreamId{0});
    s.push(0);
    s.push(99);  // newly ready: behind the four already waiting and the re-pushed one
    std::vector<StreamId> order;
    while (auto id = s.pop()) order.push_back(*id);
    CHECK(order == std::vector<StreamId>{4, 8, 12, 16, 0, 99});
}

TEST_CASE("scheduler removes from the head, middle and tail") {
    StreamScheduler s;
    for (StreamId id : {1, 2, 3, 4, 5}) s.push(id);
    s.remove(3);
    s.remove(1);
    s.remove(5);
    s.remove(42);  // not queued: no-op
    CHECK(s.size() == 2);
    CHECK(s.pop() == StreamId{2});
    CHECK(s.pop() == StreamId{4});
    CHECK(s.empty());
    s.push(7);  // usable again after emptying through remove/pop
    CHECK(s.pop() == StreamId{7});
}

TEST_CASE("scheduler matches a reference queue under random operations") {
    for (uint64_t seed = 1; seed <= 100; ++seed) {
        INFO("seed " << seed);
        SeededRng rng(seed);
        StreamScheduler s;
        std::deque<StreamId> ref;
        for (int op = 0; op < 500; ++op) {
            const StreamId id = rng.uniform(20);
            const uint64_t kind = rng.uniform(3);
            const bool queued = std::find(ref.begin(), ref.end(), id) != ref.end();
            if (kind == 0) {
                s.push(id);
                if (!queued) ref.push_back(id);
            } else if (kind == 1) {
                const auto got = s.pop();
                if (ref.empty()) {
                    REQUIRE_FALSE(got);
                } else {
                    REQUIRE(got == ref.front());
                    ref.pop_front();
                }
            } else {
                s.remove(id);
                ref.erase(std::remove(ref.begin(), ref.end(), id), ref.end());
            }
            REQUIRE(s.size() == ref.size());
            REQUIRE(s.contains(id) == (std::find(ref.begin(), ref.end(), id) != ref.end()));
        }
    }
}
