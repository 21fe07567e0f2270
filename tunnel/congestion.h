// Congestion control: how much may be in flight (congestion_window) and how fast it may
// leave (pacing_rate). The Connection asks the loss detector what was acked and lost, the
// delivery rate estimator how fast the path delivered, and feeds both in here.
//
// Two controllers: BBR (the default: it models the path's bandwidth and RTT instead of
// reading loss as congestion, so random loss does not collapse it) and NewReno (RFC 9002's
// reference, loss-based; kept as the baseline to measure against).
//
// Why BBR, measured with the simulator (one bulk stream, 50 Mbit/s, 40 ms RTT, 5 seeds):
//
//   build/burrow-sim transfer --seeds 5 --streams 1 --bytes 50000000 --delay-ms 20
//       --rate-mbit 50 --loss P --cc C
//
//                 loss 0%   loss 1%      (goodput as a fraction of the link rate)
//     BBR          0.961     0.949
//     NewReno      0.962     0.054
//
// A loss-based controller halves its window on every loss, so at 1% random loss (a busy
// Wi-Fi or mobile link, exactly where a tunnel like this runs) it holds about 1/18 of the
// link; BBR sizes its window from the delivery rate and minimum RTT and loses nothing.
// Our BBR departs from v1 where measurement showed it had to (see bbr.h): drain phases
// last until in-flight is one BDP, STARTUP also ends on an RTT rise (HyStart++) or on loss
// with a queue, ProbeRTT holds half a BDP, and the probe gain is 1.125. Together these keep
// an interactive stream beside the bulk one at p99 46.6 ms on the 40 ms path (v1: 162 ms).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "tunnel/delivery_rate.h"
#include "tunnel/rtt_estimator.h"
#include "tunnel/time.h"

namespace burrow {

enum class CongestionKind { kBbr, kNewReno };

// One per ACK that newly acknowledged packets in flight.
struct AckEvent {
    Time now;
    uint64_t bytes_acked;      // newly acked, in-flight packets only
    uint64_t prior_in_flight;  // before this ACK was processed
    uint64_t bytes_in_flight;  // after it (acked and lost packets removed)
    Time largest_acked_sent_time;
    const RttEstimator* rtt;  // already updated with this ACK's sample
    RateSample rate;
};

// One per batch of packets declared lost (from an ACK or the loss timer).
struct LossEvent {
    Time now;
    uint64_t bytes_lost;
    uint64_t prior_in_flight;
    uint64_t bytes_in_flight;
    Time largest_lost_sent_time;
    bool persistent_congestion;
};

class CongestionController {
  public:
    virtual ~CongestionController() = default;
    // bytes_in_flight: before this packet is counted.
    virtual void on_packet_sent(Time now, uint32_t bytes, uint64_t bytes_in_flight) = 0;
    virtual void on_ack(const AckEvent& ev) = 0;
    virtual void on_loss(const LossEvent& ev) = 0;
    virtual uint64_t congestion_window() const = 0;  // bytes
    virtual uint64_t pacing_rate() const = 0;        // bytes per second
    virtual const char* name() const = 0;
};

// RFC 9002 §7.2: min(10 * max_datagram_size, max(14720, 2 * max_datagram_size)).
uint64_t initial_congestion_window(size_t max_datagram_size);

std::unique_ptr<CongestionController> make_congestion_controller(CongestionKind kind,
                                                                 size_t max_datagram_size);

}  // namespace burrow
