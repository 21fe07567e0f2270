// LogThrottle: the first occurrence logs, the rest of an interval become one summary with a
// count, and a key that went quiet logs at once again.
#include <catch2/catch.hpp>

#include "signal/log_throttle.h"

using namespace burrow;
using namespace std::chrono_literals;

TEST_CASE("a repeated line logs once, then one summary with its count per interval") {
    LogThrottle t(10s);
    const Time t0{};
    CHECK(t.note("refused", t0));
    CHECK(t.next_deadline() == kNever);  // nothing held back yet
    for (int i = 0; i < 500; ++i) CHECK_FALSE(t.note("refused", t0 + 1ms * i));
    CHECK(t.note("other", t0 + 1s));  // keys are independent
    CHECK(t.next_deadline() == t0 + 10s);
    CHECK(t.due(t0 + 9s).empty());
    const auto s = t.due(t0 + 10s);
    REQUIRE(s.size() == 1);
    CHECK(s[0].key == "refused");
    CHECK(s[0].count == 500);
    CHECK(s[0].over == 10s);
    // Still repeating: counted into the next summary, not logged.
    CHECK_FALSE(t.note("refused", t0 + 12s));
    const auto s2 = t.due(t0 + 20s);
    REQUIRE(s2.size() == 1);
    CHECK(s2[0].count == 1);
}

TEST_CASE("a line that went quiet for an interval logs at once again") {
    LogThrottle t(10s);
    const Time t0{};
    CHECK(t.note("refused", t0));
    CHECK_FALSE(t.note("refused", t0 + 1s));
    CHECK(t.due(t0 + 10s).size() == 1);
    CHECK(t.due(t0 + 20s).empty());  // quiet since the summary: forgotten
    CHECK(t.note("refused", t0 + 21s));
    // Without a due() call in between, a quiet interval also resets the key.
    CHECK(t.note("burst", t0 + 30s));
    CHECK(t.note("burst", t0 + 41s));
}
