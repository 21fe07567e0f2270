#include "src/clock.h"

#include <uv.h>

namespace burrow {

namespace {
constexpr uint64_t kNsPerUs = 1000;
constexpr int64_t kUsPerSecond = 1000000;
}  // namespace

LoopClock::LoopClock() : origin_ns_(uv_hrtime()) {}

Time LoopClock::now() const {
    return time_from_us(static_cast<int64_t>((uv_hrtime() - origin_ns_) / kNsPerUs));
}

uint64_t LoopClock::monotonic_ns(Time t) const {
    const int64_t us = to_us(t);
    return origin_ns_ + static_cast<uint64_t>(us > 0 ? us : 0) * kNsPerUs;
}

int64_t wall_clock_us() {
    uv_timeval64_t tv;
    uv_gettimeofday(&tv);  // cannot fail with a non-null argument
    return tv.tv_sec * kUsPerSecond + tv.tv_usec;
}

}  // namespace burrow
