#include "tests/sim/net/link.h"

#include <algorithm>
#include <cmath>

namespace burrow::sim {

namespace {

constexpr double kBitsPerByte = 8.0;
constexpr size_t kMinQueueMtus = 2;  // a queue must hold at least a small burst

// Bytes per microsecond of a rate in Mbit/s (1 Mbit/s = 1 bit/us).
double bytes_per_us(double rate_mbit) {
    return rate_mbit / kBitsPerByte;
}

}  // namespace

size_t default_queue_bytes(const LinkConfig& config) {
    if (config.rate_mbit <= 0) return 0;
    const Duration rtt = std::max<Duration>(2 * config.delay, kMinQueueDelay);
    const auto bdp = static_cast<size_t>(bytes_per_us(config.rate_mbit) * to_us(rtt));
    return std::max(bdp, kMinQueueMtus * config.mtu);
}

Link::Link(const LinkConfig& config, uint64_t seed)
    : config_(config),
      queue_limit_(config.queue_bytes != 0 ? config.queue_bytes : default_queue_bytes(config)),
      rng_(seed) {}

bool Link::in_blackhole(Time now) const {
    return std::any_of(config_.blackholes.begin(), config_.blackholes.end(),
                       [now](const auto& w) { return now >= w.first && now < w.second; });
}

bool Link::burst_drops() {
    if (config_.burst_loss <= 0) return false;
    // Gilbert-Elliott with one transition per packet: move, then the state decides.
    if (burst_bad_) {
        if (rng_.chance(config_.burst_recover)) burst_bad_ = false;
    } else if (rng_.chance(config_.burst_loss)) {
        burst_bad_ = true;
    }
    return burst_bad_;
}

std::optional<Time> Link::through_bottleneck(size_t size, Time now) {
    if (config_.rate_mbit <= 0) return now;
    const double rate = bytes_per_us(config_.rate_mbit);
    const auto now_us = static_cast<double>(to_us(now));
    const double start_us = std::max(now_us, bottleneck_free_at_us_);
    const double backlog = (start_us - now_us) * rate;  // bytes queued ahead of this one
    if (backlog + static_cast<double>(size) > static_cast<double>(queue_limit_)) {
        return std::nullopt;
    }
    bottleneck_free_at_us_ = start_us + static_cast<double>(size) / rate;
    // The last bit leaves at free_at; round up so nothing arrives before it was serialised.
    return time_from_us(static_cast<int64_t>(std::ceil(bottleneck_free_at_us_)));
}

void Link::schedule(Time arrival, uint64_t send_seq, Bytes data) {
    bytes_in_flight_ += data.size();
    in_flight_.push(InFlight{arrival, next_order_++, send_seq, std::move(data)});
}

void Link::send(Bytes datagram, Time now) {
    const uint64_t seq = next_send_seq_++;
    const size_t size = datagram.size();
    ++stats_.sent;
    stats_.bytes_sent += size;

    if (size > config_.mtu) {
        ++stats_.dropped_mtu;
        return;
    }
    if (in_blackhole(now)) {
        ++stats_.dropped_blackhole;
        return;
    }
    if (burst_drops()) {
        ++stats_.dropped_burst;
        return;
    }
    if (config_.loss > 0 && rng_.chance(config_.loss)) {
        ++stats_.dropped_loss;
        return;
    }
    const std::optional<Time> departed = through_bottleneck(size, now);
    if (!departed) {
        ++stats_.dropped_queue;
        return;
    }

    Time arrival = *departed + config_.delay;
    if (config_.jitter.count() > 0) {
        // Inclusive upper bound: the jitter is uniform in [0, jitter].
        const auto span = static_cast<uint64_t>(to_us(config_.jitter)) + 1;
        arrival += Duration(static_cast<int64_t>(rng_.uniform(span)));
    }
    if (config_.reorder > 0 && rng_.chance(config_.reorder)) {
        arrival += config_.reorder_delay;
        ++stats_.reordered;
    }
    if (config_.duplicate > 0 && rng_.chance(config_.duplicate)) {
        ++stats_.duplicated;
        schedule(arrival, seq, datagram);
    }
    schedule(arrival, seq, std::move(datagram));
}

Time Link::next_arrival() const {
    return in_flight_.empty() ? kNever : in_flight_.top().arrival;
}

std::optional<Bytes> Link::pop_arrival(Time now) {
    if (in_flight_.empty() || in_flight_.top().arrival > now) return std::nullopt;
    // priority_queue::top() is const; the element is discarded right after, so moving its
    // payload out is safe.
    auto& top = const_cast<InFlight&>(in_flight_.top());
    Bytes data = std::move(top.data);
    const uint64_t seq = top.send_seq;
    in_flight_.pop();
    bytes_in_flight_ -= data.size();

    if (delivered_any_ && seq < highest_delivered_seq_) ++stats_.out_of_order;
    if (!delivered_any_ || seq > highest_delivered_seq_) highest_delivered_seq_ = seq;
    delivered_any_ = true;
    ++stats_.delivered;
    stats_.bytes_delivered += data.size();
    return data;
}

}  // namespace burrow::sim
