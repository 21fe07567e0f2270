// NewReno congestion control, RFC 9002 §7 and Appendix B.
//
// Slow start doubles the window each round trip until the first loss; then the window halves
// once per recovery period (losses of packets sent before the period began are the same
// congestion event) and grows by one datagram per window acknowledged. Persistent congestion
// (RFC 9002 §7.6) collapses it to the minimum. Loss-based: at 1% random loss its window stays
// small, which is why BBR is the default; NewReno is the reference to compare against.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>

#include "tunnel/congestion.h"

namespace burrow {

class NewReno final : public CongestionController {
  public:
    static constexpr double kLossReductionFactor = 0.5;   // RFC 9002 §7.3.2 / B.2
    static constexpr uint64_t kMinimumWindowPackets = 2;  // RFC 9002 §7.2 / B.2
    static constexpr double kPacingGain = 1.25;           // RFC 9002 §7.7: N = 1.25

    explicit NewReno(size_t max_datagram_size);

    void on_packet_sent(Time now, uint32_t bytes, uint64_t bytes_in_flight) override;
    void on_ack(const AckEvent& ev) override;
    void on_loss(const LossEvent& ev) override;
    uint64_t congestion_window() const override { return cwnd_; }
    uint64_t pacing_rate() const override;
    const char* name() const override { return "newreno"; }

    uint64_t ssthresh() const { return ssthresh_; }
    bool in_recovery(Time sent_time) const;

  private:
    uint64_t max_datagram_size_;
    uint64_t minimum_window_;
    uint64_t cwnd_;
    uint64_t ssthresh_ = std::numeric_limits<uint64_t>::max();
    uint64_t bytes_acked_in_ca_ = 0;  // congestion avoidance: bytes toward the next +1 datagram
    bool recovering_ = false;
    Time recovery_start_{};
    Duration smoothed_rtt_;
};

}  // namespace burrow
