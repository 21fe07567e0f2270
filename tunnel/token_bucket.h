// A token bucket (RFC 2697's single-rate idea, without colours): `rate` tokens per second
// accrue up to `burst`; an event costing n tokens passes only if n are there.
//
// Time comes in as a parameter. The bucket starts full, so a fresh agent can send a burst at
// once; afterwards its long-run rate is capped at `rate`.
#pragma once

#include <cstdint>

#include "tunnel/time.h"

namespace burrow {

class TokenBucket {
  public:
    TokenBucket(double rate_per_second, double burst)
        : rate_(rate_per_second), burst_(burst), tokens_(burst) {}

    // Takes `cost` tokens and returns true, or returns false and takes nothing.
    bool take(double cost, Time now);
    // True if take(cost, now) would succeed; takes nothing.
    bool can_take(double cost, Time now);

  private:
    void refill(Time now);

    double rate_;
    double burst_;
    double tokens_;
    Time last_{};
    bool started_ = false;
};

}  // namespace burrow
