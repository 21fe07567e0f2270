#include "tunnel/new_reno.h"

#include <algorithm>

namespace burrow {

namespace {
constexpr double kMicrosPerSecond = 1e6;
}

NewReno::NewReno(size_t max_datagram_size)
    : max_datagram_size_(max_datagram_size),
      minimum_window_(kMinimumWindowPackets * max_datagram_size),
      cwnd_(initial_congestion_window(max_datagram_size)),
      smoothed_rtt_(RttEstimator::kInitialRtt) {}

void NewReno::on_packet_sent(Time, uint32_t, uint64_t) {}

bool NewReno::in_recovery(Time sent_time) const {
    return recovering_ && sent_time <= recovery_start_;
}

void NewReno::on_ack(const AckEvent& ev) {
    if (ev.rtt != nullptr) smoothed_rtt_ = ev.rtt->smoothed();
    // RFC 9002 B.5: packets sent before the recovery period began do not grow the window.
    if (in_recovery(ev.largest_acked_sent_time)) return;
    // RFC 9002 §7.8: do not grow a window the sender is not using, or it becomes a promise
    // of a burst the path never carried. Pacing at 1.25 x cwnd / srtt keeps in-flight below
    // the window even when the sender is busy, so "using" means at least half of it (Linux's
    // tcp_is_cwnd_limited uses the same test in slow start).
    if (ev.prior_in_flight * 2 < cwnd_) return;
    if (cwnd_ < ssthresh_) {
        cwnd_ += ev.bytes_acked;  // slow start
        return;
    }
    // Congestion avoidance: one datagram per window acknowledged.
    bytes_acked_in_ca_ += ev.bytes_acked;
    while (bytes_acked_in_ca_ >= cwnd_) {
        bytes_acked_in_ca_ -= cwnd_;
        cwnd_ += max_datagram_size_;
    }
}

void NewReno::on_loss(const LossEvent& ev) {
    // RFC 9002 B.6: one reduction per congestion event.
    if (!in_recovery(ev.largest_lost_sent_time)) {
        recovering_ = true;
        recovery_start_ = ev.now;
        ssthresh_ = std::max<uint64_t>(
            static_cast<uint64_t>(static_cast<double>(cwnd_) * kLossReductionFactor),
            minimum_window_);
        cwnd_ = ssthresh_;
        bytes_acked_in_ca_ = 0;
    }
    // RFC 9002 B.8
    if (ev.persistent_congestion) {
        cwnd_ = minimum_window_;
        recovering_ = false;
    }
}

uint64_t NewReno::pacing_rate() const {
    const double rtt_us =
        static_cast<double>(std::max(smoothed_rtt_, RttEstimator::kGranularity).count());
    return static_cast<uint64_t>(kPacingGain * static_cast<double>(cwnd_) * kMicrosPerSecond /
                                 rtt_us);
}

}  // namespace burrow
