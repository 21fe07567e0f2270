#include "tunnel/rtt_estimator.h"

#include <algorithm>

namespace burrow {

namespace {
// RFC 9002 §5.3: smoothed_rtt = 7/8 smoothed_rtt + 1/8 adjusted_rtt,
//                rttvar = 3/4 rttvar + 1/4 |smoothed_rtt - adjusted_rtt|
constexpr int kSmoothedKeep = 7, kSmoothedDiv = 8;
constexpr int kVarKeep = 3, kVarDiv = 4;
constexpr int kPtoVarianceFactor = 4;  // RFC 9002 §6.2.1
}  // namespace

void RttEstimator::on_sample(Duration latest_rtt, Duration ack_delay, Duration max_ack_delay) {
    latest_rtt = std::max(latest_rtt, Duration{0});
    ack_delay = std::clamp(ack_delay, Duration{0}, std::max(max_ack_delay, Duration{0}));
    latest_ = latest_rtt;
    if (!has_sample_) {
        has_sample_ = true;
        min_ = latest_rtt;
        smoothed_ = latest_rtt;
        rttvar_ = latest_rtt / 2;
        return;
    }
    min_ = std::min(min_, latest_rtt);
    // Subtract the peer's delay only when that cannot take the sample below min_rtt: the
    // reported delay may be wrong, min_rtt is measured.
    Duration adjusted = latest_rtt;
    if (latest_rtt >= min_ + ack_delay) adjusted = latest_rtt - ack_delay;
    const Duration deviation = smoothed_ > adjusted ? smoothed_ - adjusted : adjusted - smoothed_;
    rttvar_ = (kVarKeep * rttvar_ + deviation) / kVarDiv;
    smoothed_ = (kSmoothedKeep * smoothed_ + adjusted) / kSmoothedDiv;
}

Duration RttEstimator::pto_base(Duration max_ack_delay) const {
    return smoothed_ + std::max(kPtoVarianceFactor * rttvar_, kGranularity) + max_ack_delay;
}

}  // namespace burrow
