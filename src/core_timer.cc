#include "src/core_timer.h"

#include <utility>

namespace burrow {

namespace {

constexpr int64_t kUsPerMs = 1000;
// libuv timers count whole milliseconds: the shortest wait that is not "this iteration".
constexpr uint64_t kTimerResolutionMs = 1;

// Milliseconds from now to deadline, rounded up so we never ask to wake before it.
uint64_t delay_ms(Time now, Time deadline) {
    const int64_t us = to_us(deadline - now);
    return static_cast<uint64_t>((us + kUsPerMs - 1) / kUsPerMs);
}

}  // namespace

std::shared_ptr<CoreTimer> CoreTimer::create(uv_loop_t* loop, const LoopClock& clock, Hooks hooks) {
    std::shared_ptr<CoreTimer> timer(new CoreTimer(loop, clock, std::move(hooks)));
    timer->self_ = timer;
    return timer;
}

CoreTimer::CoreTimer(uv_loop_t* loop, const LoopClock& clock, Hooks hooks)
    : clock_(clock), hooks_(std::move(hooks)) {
    uv_timer_init(loop, &timer_);  // cannot fail: it only links the handle into the loop
    timer_.data = this;
}

CoreTimer::~CoreTimer() = default;

void CoreTimer::kick() {
    if (closed_ || draining_) return;  // a kick from inside a drain: the drain re-arms anyway
    drain_and_arm(clock_.now());
}

void CoreTimer::close() {
    if (closed_) return;
    closed_ = true;
    hooks_ = {};
    armed_ = kNever;
    uv_close(reinterpret_cast<uv_handle_t*>(&timer_), &CoreTimer::on_closed);
}

void CoreTimer::on_fire(uv_timer_t* handle) {
    auto* self = static_cast<CoreTimer*>(handle->data);
    ++self->stats_.timer_fires;
    self->armed_ = kNever;
    const Time now = self->clock_.now();
    self->in_fire_ = true;
    if (now >= self->hooks_.next_deadline()) {
        ++self->stats_.on_timer_calls;
        self->hooks_.on_timer(now);
    }
    if (!self->closed_) self->drain_and_arm(now);
    self->in_fire_ = false;
}

void CoreTimer::on_closed(uv_handle_t* handle) {
    auto* self = static_cast<CoreTimer*>(handle->data);
    auto keep = std::move(self->self_);  // may free this object when it goes out of scope
}

void CoreTimer::drain_and_arm(Time now) {
    draining_ = true;
    int sent = 0;
    bool limited = false;
    while (!closed_ && hooks_.transmit_one(now)) {
        ++stats_.transmits;
        if (++sent >= kMaxTransmitsPerKick) {
            limited = true;
            ++stats_.drain_limited;
            break;
        }
    }
    draining_ = false;
    if (closed_) return;
    if (hooks_.flush) hooks_.flush();
    if (closed_) return;
    if (limited) {
        // More output is waiting: come back after the loop has polled I/O.
        start(in_fire_ ? kTimerResolutionMs : 0, now);
        return;
    }
    arm(now, hooks_.next_deadline());
}

void CoreTimer::arm(Time now, Time deadline) {
    if (deadline == kNever) {
        uv_timer_stop(&timer_);
        armed_ = kNever;
        return;
    }
    uint64_t ms = 0;
    if (deadline > now) {
        ms = delay_ms(now, deadline);
    } else if (in_fire_) {
        // Re-arming at 0 from inside the callback would fire again in this same pass of
        // libuv's timer phase, without polling I/O: a spin.
        ms = kTimerResolutionMs;
        ++stats_.overdue_rearms;
    }
    start(ms, deadline);
}

void CoreTimer::start(uint64_t ms, Time deadline) {
    // Count from the present rather than from the loop time cached at the start of this
    // iteration, which may be well behind after a long callback.
    uv_update_time(timer_.loop);
    uv_timer_start(&timer_, &CoreTimer::on_fire, ms, 0);
    armed_ = deadline;
}

}  // namespace burrow
