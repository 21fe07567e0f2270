#include "tunnel/token_bucket.h"

#include <algorithm>

namespace burrow {

void TokenBucket::refill(Time now) {
    if (!started_) {
        started_ = true;
        last_ = now;
        return;
    }
    if (now <= last_) return;  // a clock that stands still or steps back grants nothing
    constexpr double kMicrosPerSecond = 1e6;
    const double elapsed = static_cast<double>(to_us(now - last_)) / kMicrosPerSecond;
    tokens_ = std::min(burst_, tokens_ + elapsed * rate_);
    last_ = now;
}

bool TokenBucket::can_take(double cost, Time now) {
    refill(now);
    return tokens_ >= cost;
}

bool TokenBucket::take(double cost, Time now) {
    if (!can_take(cost, now)) return false;
    tokens_ -= cost;
    return true;
}

}  // namespace burrow
