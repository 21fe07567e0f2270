#include "tunnel/pacer.h"

#include <algorithm>
#include <cmath>

namespace burrow {

namespace {
constexpr double kMicrosPerSecond = 1e6;
}

Pacer::Pacer(size_t max_datagram_size)
    : max_datagram_size_(max_datagram_size),
      tokens_(static_cast<double>(kMinBurstDatagrams * max_datagram_size)) {}

double Pacer::capacity() const {
    const double floor = static_cast<double>(kMinBurstDatagrams * max_datagram_size_);
    const double tick =
        static_cast<double>(rate_) * static_cast<double>(kBurstTime.count()) / kMicrosPerSecond;
    return std::max(floor, tick);
}

double Pacer::tokens_at(Time now) const {
    if (!started_) return capacity();
    const double elapsed_us =
        now > last_update_ ? static_cast<double>((now - last_update_).count()) : 0.0;
    return std::min(capacity(),
                    tokens_ + static_cast<double>(rate_) * elapsed_us / kMicrosPerSecond);
}

void Pacer::set_rate(uint64_t bytes_per_second) {
    rate_ = bytes_per_second;
    tokens_ = std::min(tokens_, capacity());
}

Time Pacer::earliest_send_time(Time now, size_t bytes) const {
    if (rate_ == 0) return now;
    const double needed = std::min(static_cast<double>(bytes), capacity());
    const double tokens = tokens_at(now);
    if (tokens >= needed) return now;
    const double wait_us =
        std::ceil((needed - tokens) * kMicrosPerSecond / static_cast<double>(rate_));
    return now + Duration(static_cast<int64_t>(wait_us));
}

void Pacer::on_packet_sent(Time now, size_t bytes) {
    if (rate_ == 0) {
        // Unpaced: keep the bucket full for when a rate is set.
        tokens_ = capacity();
    } else {
        tokens_ = tokens_at(now) - static_cast<double>(bytes);
    }
    if (!started_ || now > last_update_) last_update_ = now;
    started_ = true;
}

}  // namespace burrow
