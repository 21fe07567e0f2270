// When to dial the signalling server again after a connection failed or ended: exponential
// backoff with jitter, so that a server restart is not met by every agent at the same instant
// and a server that stays down costs each agent one attempt per half minute.
//
//   delay(n) = min(kReconnectInitial * 2^n, kReconnectMax) * (1 +- kReconnectJitterPercent %)
//
// n counts the failures since the last successful registration; reset() starts over.
#pragma once

#include <chrono>

#include "tunnel/rng.h"
#include "tunnel/time.h"

namespace burrow {

// Short enough that a dropped connection on a good network heals before a user notices.
inline constexpr Duration kReconnectInitial = std::chrono::milliseconds(500);
// A server that stays down is tried twice a minute: quick to notice it back, cheap meanwhile.
inline constexpr Duration kReconnectMax = std::chrono::seconds(30);
// +-20%: enough to spread agents that lost the server together over several round trips.
inline constexpr int64_t kReconnectJitterPercent = 20;

class ReconnectBackoff {
  public:
    // The delay before the next attempt; counts one more failure.
    Duration next_delay(Rng& rng);
    void reset() { failures_ = 0; }
    int failures() const { return failures_; }

    // The delay without jitter after `failures` failures.
    static Duration base_delay(int failures);

  private:
    int failures_ = 0;
};

}  // namespace burrow
