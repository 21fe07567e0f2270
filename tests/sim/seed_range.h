// Which seeds a simulator test runs: 1..default_last, or what the environment says, so that
// anyone can replay a failing seed or run more of them.
//
//   BURROW_<NAME>_SEED=N    seed N only
//   BURROW_<NAME>_SEEDS=N   seeds 1..N (0 or garbage is ignored: a run of no seeds proves
//                           nothing)
#pragma once

#include <cstdint>
#include <cstdlib>
#include <string>

namespace burrow::sim {

struct SeedRange {
    uint64_t first = 1;
    uint64_t last = 1;
    uint64_t count() const { return last - first + 1; }
};

inline SeedRange seed_range(const std::string& name, uint64_t default_last) {
    const std::string prefix = "BURROW_" + name + "_SEED";
    if (const char* one = std::getenv(prefix.c_str())) {
        const uint64_t n = std::strtoull(one, nullptr, 10);
        return SeedRange{n, n};
    }
    if (const char* count = std::getenv((prefix + "S").c_str())) {
        const uint64_t n = std::strtoull(count, nullptr, 10);
        if (n > 0) return SeedRange{1, n};
    }
    return SeedRange{1, default_last};
}

}  // namespace burrow::sim
