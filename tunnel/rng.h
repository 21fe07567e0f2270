// Injected randomness.
//
// Cores never call a random source themselves: they take an Rng&. The simulator and the tests
// use SeededRng so every run replays from its seed; src/ passes SystemRng (libsodium's
// randombytes, a CSPRNG) wherever the randomness is security-relevant.
#pragma once

#include <cstdint>
#include <span>

namespace burrow {

class Rng {
public:
    virtual ~Rng() = default;
    virtual uint64_t next_u64() = 0;

    // Uniform in [0, n); n == 0 returns 0. Lemire's multiply-shift, bias below 2^-64 * n.
    uint64_t uniform(uint64_t n) {
        if (n == 0) return 0;
        __extension__ using U128 = unsigned __int128;  // GCC/Clang builtin
        return static_cast<uint64_t>((static_cast<U128>(next_u64()) * n) >> 64);
    }
    // Uniform in [0, 1).
    double unit() { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }
    bool chance(double p) { return unit() < p; }
    void fill(std::span<uint8_t> out) {
        size_t i = 0;
        while (i < out.size()) {
            uint64_t v = next_u64();
            for (int b = 0; b < 8 && i < out.size(); ++b, ++i) out[i] = static_cast<uint8_t>(v >> (8 * b));
        }
    }
};

// xoshiro256** seeded through splitmix64: fast, deterministic, NOT for keys.
class SeededRng final : public Rng {
public:
    explicit SeededRng(uint64_t seed) {
        for (auto& s : state_) {
            seed += 0x9e3779b97f4a7c15ULL;
            uint64_t z = seed;
            z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
            z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
            s = z ^ (z >> 31);
        }
    }
    uint64_t next_u64() override {
        const uint64_t result = rotl(state_[1] * 5, 7) * 9;
        const uint64_t t = state_[1] << 17;
        state_[2] ^= state_[0];
        state_[3] ^= state_[1];
        state_[1] ^= state_[2];
        state_[0] ^= state_[3];
        state_[2] ^= t;
        state_[3] = rotl(state_[3], 45);
        return result;
    }

private:
    static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
    uint64_t state_[4];
};

}  // namespace burrow
