#include "tunnel/delivery_rate.h"

#include <algorithm>

namespace burrow {

namespace {
constexpr double kMicrosPerSecond = 1e6;
}

void DeliveryRateEstimator::on_packet_sent(SentPacket& p, uint64_t bytes_in_flight, Time now) {
    if (bytes_in_flight == 0) {
        first_sent_time_ = now;
        delivered_time_ = now;
    }
    p.delivery.delivered = delivered_;
    p.delivery.delivered_time = delivered_time_;
    p.delivery.first_sent_time = first_sent_time_;
    p.delivery.is_app_limited = app_limited_until_ != 0;
}

void DeliveryRateEstimator::on_packet_acked(const SentPacket& p, Time now) {
    if (!p.in_flight) return;
    delivered_ += p.size;
    delivered_time_ = now;
    rs_newly_acked_ += p.size;
    // The sample comes from the most recently sent packet of the ACK: it spans the most
    // recent flight, the freshest view of the path.
    const bool newest =
        !has_sample_ || p.delivery.delivered > rs_prior_delivered_ ||
        (p.delivery.delivered == rs_prior_delivered_ && p.time_sent > rs_sent_time_);
    if (!newest) return;
    has_sample_ = true;
    rs_prior_delivered_ = p.delivery.delivered;
    rs_sent_time_ = p.time_sent;
    rs_app_limited_ = p.delivery.is_app_limited;
    rs_send_elapsed_ = p.time_sent - p.delivery.first_sent_time;
    rs_ack_elapsed_ = delivered_time_ - p.delivery.delivered_time;
    // The next packet's send interval starts where this one's ended.
    first_sent_time_ = p.time_sent;
}

RateSample DeliveryRateEstimator::generate(Time now, uint64_t newly_lost) {
    RateSample rs;
    rs.newly_lost = newly_lost;
    rs.newly_acked = rs_newly_acked_;
    rs_newly_acked_ = 0;
    // The bubble of app-limited data has been delivered: samples measure the path again.
    if (app_limited_until_ != 0 && delivered_ > app_limited_until_) app_limited_until_ = 0;
    if (!has_sample_) return rs;
    has_sample_ = false;

    rs.prior_delivered = rs_prior_delivered_;
    rs.delivered = delivered_ - rs_prior_delivered_;
    rs.is_app_limited = rs_app_limited_;
    rs.rtt = now - rs_sent_time_;
    if (rs.rtt > Duration{0}) min_rtt_ = std::min(min_rtt_, rs.rtt);
    rs.interval = std::max(rs_send_elapsed_, rs_ack_elapsed_);
    // An interval shorter than the path's minimum RTT cannot be right (the draft's check,
    // against the minimum this estimator has seen itself): skip the rate, keep the rest.
    if (rs.interval <= Duration{0} || rs.interval < min_rtt_) return rs;
    rs.delivery_rate = static_cast<double>(rs.delivered) * kMicrosPerSecond /
                       static_cast<double>(rs.interval.count());
    return rs;
}

void DeliveryRateEstimator::on_app_limited(uint64_t bytes_in_flight) {
    app_limited_until_ = std::max<uint64_t>(delivered_ + bytes_in_flight, 1);
}

}  // namespace burrow
