// Drives a sans-IO core from the libuv loop with one timer (docs/architecture.md §2).
//
//   core.on_datagram(path, bytes, timer->now());   // any input...
//   timer->kick();                                  // ...then drain and re-arm
//
// kick() drains poll_transmit into the send function, calls the flush hook, and arms one
// timer at next_deadline(). When the timer fires, the core's on_timer(now) runs, then the
// same drain and re-arm. The session, the server core and the signalling client each get one
// CoreTimer; the hooks say how to call them (core_hooks() builds them for any core with the
// usual methods).
//
// Deadlines: libuv's own timers count whole milliseconds from the loop's cached time, too
// coarse for a sub-millisecond path, where the session's delayed ACKs and pacing gaps are tens
// to hundreds of microseconds (rounded up to 1 ms they cost a one-stream transfer half its
// rate). So the timer is a Linux timerfd on CLOCK_MONOTONIC (the clock LoopClock reads), armed
// at the absolute deadline with microsecond precision, and watched by a uv_poll: the loop's
// epoll wakes exactly when it is due. on_timer(now) is only called once now >=
// next_deadline(); an early wake-up just re-arms. A deadline already in the past fires on the
// next loop iteration (after I/O has been polled), never in a tight loop: if the core still
// reports a past deadline right after its own on_timer, that is a core that cannot make
// progress, and we wait kOverdueRetry (1 ms) before asking again. Re-arming at the deadline
// already armed costs no system call.
//
// Lifetime: create() returns a shared_ptr (nullptr with errno set when the kernel refuses a
// timerfd: out of descriptors); the poll handle stays alive (and holds a reference
// to this object) until close() has run its course in libuv's close callback. The hooks are
// dropped at close(), so the core may be destroyed right after calling close().
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "src/clock.h"
#include "tunnel/time.h"

namespace burrow {

class CoreTimer : public std::enable_shared_from_this<CoreTimer> {
  public:
    struct Hooks {
        std::function<void(Time now)> on_timer;
        // Takes one datagram from the core and sends it; false once the core has none.
        std::function<bool(Time now)> transmit_one;
        std::function<Time()> next_deadline;
        // Optional: runs after every drain, so the datagrams of one drain reach the kernel
        // together (src/udp_socket.h batches them; this hands the batch over).
        std::function<void()> flush;
    };
    struct Stats {
        uint64_t timer_fires = 0;     // timer wake-ups, early ones included
        uint64_t timer_sets = 0;      // timerfd_settime calls (re-arms at a new deadline)
        uint64_t on_timer_calls = 0;  // calls into the core's on_timer
        uint64_t transmits = 0;       // datagrams handed to the send function
        uint64_t overdue_rearms = 0;  // the core kept a past deadline after its on_timer
        uint64_t drain_limited = 0;   // kick() stopped at kMaxTransmitsPerKick
    };

    // A drain never sends more than this many datagrams before letting the loop poll I/O again,
    // so one core with a full window cannot starve the others; the rest goes on the next
    // iteration. 256 x 1350-byte datagrams is ~350 kB, several ms of a fast path.
    static constexpr int kMaxTransmitsPerKick = 256;

    // A core that keeps a past deadline after its on_timer is asked again after this long.
    static constexpr Duration kOverdueRetry = std::chrono::milliseconds(1);

    static std::shared_ptr<CoreTimer> create(uv_loop_t* loop, const LoopClock& clock, Hooks hooks);
    ~CoreTimer();

    // Call after every input to the core: drains its output and re-arms the timer.
    void kick();
    // Stops for good: the hooks are never called again.
    void close();

    Time now() const { return clock_.now(); }
    // Where the timer is armed, kNever when it is not.
    Time armed_deadline() const { return armed_; }
    const Stats& stats() const { return stats_; }

  private:
    CoreTimer(const LoopClock& clock, Hooks hooks, int fd);
    static void on_readable(uv_poll_t* handle, int status, int events);
    static void on_closed(uv_handle_t* handle);
    void fire();
    void drain_and_arm(Time now);
    void arm(Time now, Time deadline);
    // Sets the timerfd to wake at `wake` (a LoopClock time; the past means at once).
    void set(Time wake, Time deadline);

    int fd_;
    uv_poll_t poll_;
    Time wake_ = kNever;  // where the timerfd is set
    LoopClock clock_;
    Hooks hooks_;
    Stats stats_;
    Time armed_ = kNever;
    bool in_fire_ = false;
    bool draining_ = false;
    bool closed_ = false;
    std::shared_ptr<CoreTimer> self_;  // held while the uv handle is open
};

// "cannot create a timer: <strerror(errno)>", for a create() that returned nullptr.
std::string timer_error_text();

// Hooks for a core with on_timer(Time), poll_transmit(Time) -> std::optional<T> and
// next_deadline(); send(T&&) puts one datagram on the wire.
template <class Core, class Send>
CoreTimer::Hooks core_hooks(Core& core, Send send) {
    CoreTimer::Hooks hooks;
    hooks.on_timer = [&core](Time now) { core.on_timer(now); };
    hooks.transmit_one = [&core, send = std::move(send)](Time now) mutable {
        auto datagram = core.poll_transmit(now);
        if (!datagram) return false;
        send(std::move(*datagram));
        return true;
    };
    hooks.next_deadline = [&core] { return core.next_deadline(); };
    return hooks;
}

}  // namespace burrow
