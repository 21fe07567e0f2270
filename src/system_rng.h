// The OS-side random source the cores take as an Rng: libsodium's CSPRNG, because nonces,
// session indices and jitter must be unpredictable to an attacker.
#pragma once

#include <sodium.h>

#include "tunnel/rng.h"

namespace burrow {

class SystemRng final : public Rng {
  public:
    uint64_t next_u64() override {
        return randombytes_random() | uint64_t{randombytes_random()} << 32;
    }
};

}  // namespace burrow
