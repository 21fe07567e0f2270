#include "signal/reconnect_backoff.h"

#include <algorithm>

namespace burrow {
namespace {

constexpr int64_t kPercent = 100;

}  // namespace

Duration ReconnectBackoff::base_delay(int failures) {
    Duration d = kReconnectInitial;
    for (int i = 0; i < failures && d < kReconnectMax; ++i) d *= 2;
    return std::min(d, kReconnectMax);
}

Duration ReconnectBackoff::next_delay(Rng& rng) {
    const Duration base = base_delay(failures_);
    // Stop counting once the cap is reached, so the counter cannot overflow on a long outage.
    if (base < kReconnectMax) ++failures_;
    const int64_t span = to_us(base) * kReconnectJitterPercent / kPercent;
    const int64_t offset =
        static_cast<int64_t>(rng.uniform(static_cast<uint64_t>(2 * span + 1))) - span;
    return base + Duration(offset);
}

}  // namespace burrow
