// Round-trip time estimation, RFC 9002 §5.
//
// Fed one sample per ACK that newly acknowledges the largest acked packet (the loss detector
// decides that). Keeps the latest sample, the minimum, and the exponentially weighted
// smoothed RTT and variation that the loss and probe timers are built from.
#pragma once

#include <chrono>

#include "tunnel/time.h"

namespace burrow {

class RttEstimator {
  public:
    // RFC 9002 §6.2.2 suggests 333 ms for a path nothing is known about. Ours is not such a
    // path: by the time a session starts, the agents have already exchanged messages through
    // the server and finished the handshake, so the path is known to work and is rarely far
    // slower than 100 ms. A long guess would only make the first loss recovery slow; an
    // under-estimate costs at most a spurious probe before the first sample replaces it.
    static constexpr Duration kInitialRtt = std::chrono::milliseconds(100);
    static constexpr Duration kGranularity = std::chrono::milliseconds(1);  // RFC 9002 §6.1.2

    // RFC 9002 §5.3. ack_delay is the peer's reported delay, clamped to max_ack_delay (the
    // handshake is done by the time this layer runs, so the clamp always applies).
    void on_sample(Duration latest_rtt, Duration ack_delay, Duration max_ack_delay);

    bool has_sample() const { return has_sample_; }
    Duration latest() const { return latest_; }
    Duration smoothed() const { return smoothed_; }
    Duration rttvar() const { return rttvar_; }
    Duration min() const { return min_; }  // zero before the first sample
    // smoothed + max(4 * rttvar, kGranularity) + max_ack_delay  (RFC 9002 §6.2.1)
    Duration pto_base(Duration max_ack_delay) const;

  private:
    bool has_sample_ = false;
    Duration latest_{0};
    Duration smoothed_ = kInitialRtt;  // RFC 9002 §5.3: before the first sample
    Duration rttvar_ = kInitialRtt / 2;
    Duration min_{0};
};

}  // namespace burrow
