// Congestion control: how much may be in flight (congestion_window) and how fast it may
// leave (pacing_rate). The Connection asks the loss detector what was acked and lost, the
// delivery rate estimator how fast the path delivered, and feeds both in here.
//
// Two controllers: BBR (the default: it models the path's bandwidth and RTT instead of
// reading loss as congestion, so random loss does not collapse it) and NewReno (RFC 9002's
// reference, loss-based; kept as the baseline to measure against).
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
