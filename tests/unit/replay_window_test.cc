#include <catch2/catch.hpp>

#include <set>

#include "tunnel/replay_window.h"
#include "tunnel/rng.h"

using namespace burrow;
using Verdict = ReplayWindow::Verdict;

namespace {

// The obvious model: remember every counter ever marked.
struct ReferenceWindow {
    std::set<uint64_t> seen;
    Verdict classify(uint64_t c) const {
        if (seen.empty()) return Verdict::kNew;
        const uint64_t largest = *seen.rbegin();
        if (c <= largest && largest - c >= ReplayWindow::kSize) return Verdict::kTooOld;
        return seen.count(c) ? Verdict::kDuplicate : Verdict::kNew;
    }
};

}  // namespace

TEST_CASE("replay window accepts counter zero first and rejects its repeat") {
    ReplayWindow w;
    CHECK(w.empty());
    CHECK(w.classify(0) == Verdict::kNew);
    w.mark(0);
    CHECK_FALSE(w.empty());
    CHECK(w.largest() == 0);
    CHECK(w.classify(0) == Verdict::kDuplicate);
    CHECK(w.classify(1) == Verdict::kNew);
}

TEST_CASE("replay window classify does not change state") {
    ReplayWindow w;
    CHECK(w.classify(5) == Verdict::kNew);
    CHECK(w.classify(5) == Verdict::kNew);
    CHECK(w.empty());
    w.mark(5);
    CHECK(w.classify(9) == Verdict::kNew);
    CHECK(w.largest() == 5);
}

TEST_CASE("replay window edges: exactly kSize - 1 behind is kept, kSize behind is too old") {
    ReplayWindow w;
    const uint64_t top = 10000;
    w.mark(top);
    CHECK(w.classify(top - (ReplayWindow::kSize - 1)) == Verdict::kNew);
    CHECK(w.classify(top - ReplayWindow::kSize) == Verdict::kTooOld);
    w.mark(top - (ReplayWindow::kSize - 1));
    CHECK(w.classify(top - (ReplayWindow::kSize - 1)) == Verdict::kDuplicate);
    // One step forward pushes that counter out of the window.
    w.mark(top + 1);
    CHECK(w.classify(top - (ReplayWindow::kSize - 1)) == Verdict::kTooOld);
}

TEST_CASE("replay window forgets nothing inside the window after a far jump and wrap") {
    ReplayWindow w;
    // Mark every counter of a full window, then jump far: old bits must not reappear as
    // duplicates of the new counters that reuse their ring positions.
    for (uint64_t c = 0; c < ReplayWindow::kSize; ++c) w.mark(c);
    const uint64_t far = 1'000'000 * ReplayWindow::kSize + 17;
    w.mark(far);
    for (uint64_t c = far - ReplayWindow::kSize + 1; c < far; ++c) {
        REQUIRE(w.classify(c) == Verdict::kNew);
    }
    CHECK(w.classify(far) == Verdict::kDuplicate);
}

TEST_CASE("replay window handles counters near 2^62") {
    ReplayWindow w;
    const uint64_t big = (uint64_t{1} << 62) - 1;
    w.mark(big - 3);
    w.mark(big);
    CHECK(w.classify(big - 3) == Verdict::kDuplicate);
    CHECK(w.classify(big - 2) == Verdict::kNew);
    CHECK(w.classify(0) == Verdict::kTooOld);
}

TEST_CASE("replay window matches a reference set under random traffic") {
    for (uint64_t seed = 1; seed <= 200; ++seed) {
        INFO("seed " << seed);
        SeededRng rng(seed);
        ReplayWindow w;
        ReferenceWindow ref;
        uint64_t head = rng.uniform(1000);
        for (int op = 0; op < 3000; ++op) {
            uint64_t c;
            const uint64_t kind = rng.uniform(100);
            if (kind < 50) {
                c = head++;  // in order
            } else if (kind < 75) {
                // reordering within the window (and occasionally just beyond it)
                const uint64_t back = rng.uniform(ReplayWindow::kSize + 64);
                c = head > back ? head - back : 0;
            } else if (kind < 85) {
                c = head + rng.uniform(4 * ReplayWindow::kSize);  // jump ahead
                head = c + 1;
            } else if (kind < 95) {
                // replay something recently seen
                c = ref.seen.empty() ? head : *ref.seen.rbegin() - rng.uniform(64);
            } else {
                c = rng.uniform(head + 1);  // anywhere in the past
            }
            const Verdict expected = ref.classify(c);
            REQUIRE(w.classify(c) == expected);
            // Authentication sometimes fails: those counters are never marked.
            if (expected == Verdict::kNew && !rng.chance(0.1)) {
                w.mark(c);
                ref.seen.insert(c);
                REQUIRE(w.largest() == *ref.seen.rbegin());
            }
        }
    }
}
