#include "src/core_timer.h"

#include <sys/timerfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <utility>

namespace burrow {

namespace {

constexpr uint64_t kNsPerSecond = 1000000000;

// A timerfd set to an absolute time in the past (but not zero, which disarms) fires at once.
constexpr uint64_t kAlreadyDueNs = 1;

}  // namespace

std::shared_ptr<CoreTimer> CoreTimer::create(uv_loop_t* loop, const LoopClock& clock, Hooks hooks) {
    const int fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (fd < 0) return nullptr;
    std::shared_ptr<CoreTimer> timer(new CoreTimer(clock, std::move(hooks), fd));
    if (uv_poll_init(loop, &timer->poll_, fd) != 0) {
        ::close(fd);
        errno = EINVAL;
        return nullptr;
    }
    timer->poll_.data = timer.get();
    timer->self_ = timer;
    uv_poll_start(&timer->poll_, UV_READABLE, &CoreTimer::on_readable);
    return timer;
}

CoreTimer::CoreTimer(const LoopClock& clock, Hooks hooks, int fd)
    : fd_(fd), clock_(clock), hooks_(std::move(hooks)) {}

CoreTimer::~CoreTimer() = default;

std::string timer_error_text() {
    return std::string("cannot create a timer: ") + std::strerror(errno);
}

void CoreTimer::kick() {
    if (closed_ || draining_) return;  // a kick from inside a drain: the drain re-arms anyway
    drain_and_arm(clock_.now());
}

void CoreTimer::close() {
    if (closed_) return;
    closed_ = true;
    hooks_ = {};
    armed_ = kNever;
    uv_poll_stop(&poll_);
    uv_close(reinterpret_cast<uv_handle_t*>(&poll_), &CoreTimer::on_closed);
}

void CoreTimer::on_readable(uv_poll_t* handle, int status, int /*events*/) {
    auto* self = static_cast<CoreTimer*>(handle->data);
    if (self->closed_) return;
    uint64_t expirations = 0;
    // Reading resets the timerfd's readiness; EAGAIN means a re-arm beat us to it.
    const ssize_t n = ::read(self->fd_, &expirations, sizeof expirations);
    if (status < 0 || n != static_cast<ssize_t>(sizeof expirations)) return;
    self->fire();
}

void CoreTimer::fire() {
    ++stats_.timer_fires;
    armed_ = kNever;
    wake_ = kNever;
    const Time now = clock_.now();
    in_fire_ = true;
    if (now >= hooks_.next_deadline()) {
        ++stats_.on_timer_calls;
        hooks_.on_timer(now);
    }
    if (!closed_) drain_and_arm(now);
    in_fire_ = false;
}

void CoreTimer::on_closed(uv_handle_t* handle) {
    auto* self = static_cast<CoreTimer*>(handle->data);
    ::close(self->fd_);
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
        set(Time{}, now);
        return;
    }
    arm(now, hooks_.next_deadline());
}

void CoreTimer::arm(Time now, Time deadline) {
    if (deadline == kNever) {
        set(kNever, kNever);
        return;
    }
    Time wake = deadline;
    if (deadline <= now && in_fire_) {
        // The core's own on_timer left its deadline in the past: a core that cannot make
        // progress. Waking at once would spin.
        wake = now + kOverdueRetry;
        ++stats_.overdue_rearms;
    }
    set(wake, deadline);
}

void CoreTimer::set(Time wake, Time deadline) {
    armed_ = deadline;
    if (wake == wake_) return;  // already set there: no system call
    wake_ = wake;
    itimerspec spec{};
    if (wake != kNever) {
        const uint64_t ns = wake <= Time{} ? kAlreadyDueNs : clock_.monotonic_ns(wake);
        spec.it_value.tv_sec = static_cast<time_t>(ns / kNsPerSecond);
        spec.it_value.tv_nsec = static_cast<long>(ns % kNsPerSecond);
    }
    // Cannot fail with a valid descriptor and a normalised time.
    timerfd_settime(fd_, TFD_TIMER_ABSTIME, &spec, nullptr);
    ++stats_.timer_sets;
}

}  // namespace burrow
