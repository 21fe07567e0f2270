// Virtual time for the sans-IO cores.
//
// The cores never read a clock: every input carries `now`. `Time` is a point on a clock that
// has no now() of its own; src/ maps the event loop's monotonic clock onto it, and the
// simulator starts it at zero and steps it.
#pragma once

#include <chrono>
#include <cstdint>

namespace burrow {

struct CoreClock {
    using rep = int64_t;
    using period = std::micro;
    using duration = std::chrono::microseconds;
    using time_point = std::chrono::time_point<CoreClock>;
    static constexpr bool is_steady = true;
};

using Duration = std::chrono::microseconds;
using Time = CoreClock::time_point;

// "No deadline": what next_deadline() returns when nothing is scheduled.
inline constexpr Time kNever = Time::max();

inline constexpr Time time_from_us(int64_t us) { return Time(Duration(us)); }
inline constexpr int64_t to_us(Time t) { return t.time_since_epoch().count(); }
inline constexpr int64_t to_us(Duration d) { return d.count(); }
inline constexpr double to_ms(Duration d) { return static_cast<double>(d.count()) / 1000.0; }

}  // namespace burrow
