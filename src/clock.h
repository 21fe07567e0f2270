// The two clocks the OS layer hands to the cores.
//
// LoopClock maps libuv's monotonic clock (uv_hrtime, nanoseconds since an arbitrary point) onto
// burrow::Time: microseconds, Time{0} when the clock is made, which is when the loop starts.
// Cores compare times and add durations; they never care what Time{0} was.
//
// wall_clock_us() is the calendar time, for what must be meaningful to another machine (the
// session's TAI64N handshake timestamps, certificate validity). It may jump; never use it for
// deadlines.
#pragma once

#include <cstdint>

#include "tunnel/time.h"

namespace burrow {

class LoopClock {
  public:
    LoopClock();
    // Monotonic, microsecond resolution. Reads the clock on each call (a vDSO call, no syscall)
    // rather than libuv's millisecond loop time, which is cached at the start of each loop
    // iteration and would make RTT samples coarse and stale.
    Time now() const;
    // `t` on the kernel's CLOCK_MONOTONIC (uv_hrtime's clock), in nanoseconds: for timerfds.
    uint64_t monotonic_ns(Time t) const;

  private:
    uint64_t origin_ns_;
};

// Microseconds since the Unix epoch.
int64_t wall_clock_us();

}  // namespace burrow
