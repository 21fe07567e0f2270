// One check over a sweep of seeds (tests/sim/seed_range.h): every seed's run must pass; the
// first failure is shown with its seed, so it can be replayed, and the worst of a measured
// duration is printed beside the count.
#pragma once

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdio>
#include <string>

#include "tests/sim/seed_range.h"
#include "tunnel/time.h"

namespace burrow::sim {

// What one seed's run found: a problem (empty: it passed) and what it measured.
struct SeedOutcome {
    std::string problem;
    Duration measured{0};
};

// Runs fn(seed) -> SeedOutcome for every seed of s, prints
// "PREFIX: LABEL seeds=N failures=F worst X ms" and checks that no seed failed.
template <class Fn>
void check_every_seed(const char* prefix, const char* label, const SeedRange& s, Fn fn) {
    uint64_t failures = 0;
    Duration worst{0};
    std::string first;
    for (uint64_t seed = s.first; seed <= s.last; ++seed) {
        const SeedOutcome o = fn(seed);
        if (!o.problem.empty()) {
            if (failures++ == 0) first = "seed " + std::to_string(seed) + ": " + o.problem;
            continue;
        }
        worst = std::max(worst, o.measured);
    }
    std::printf("%s: %-40s seeds=%llu failures=%llu worst %.0f ms\n", prefix, label,
                static_cast<unsigned long long>(s.count()),
                static_cast<unsigned long long>(failures), to_ms(worst));
    INFO(label << ": " << first);
    CHECK(failures == 0);
}

}  // namespace burrow::sim
