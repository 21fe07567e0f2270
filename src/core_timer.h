// Drives a sans-IO core from the libuv loop with one timer (docs/architecture.md §2).
//
//   core.on_datagram(path, bytes, timer->now());   // any input...
//   timer->kick();                                  // ...then drain and re-arm
//
// kick() drains poll_transmit into the send function, calls the flush hook, and arms one
// uv_timer at next_deadline(). When the timer fires, the core's on_timer(now) runs, then the
// same drain and re-arm. The session, the server core and the signalling client each get one
// CoreTimer; the hooks say how to call them (core_hooks() builds them for any core with the
// usual methods).
//
// Deadlines and libuv: libuv timers have millisecond resolution and count from the loop's
// cached time, so a timer can fire up to a millisecond before the deadline. on_timer(now) is
// only called once now >= next_deadline(); an early wake-up just re-arms. A deadline already in
// the past fires on the next loop iteration (after I/O has been polled), never in a tight loop:
// if the core still reports a past deadline right after its own on_timer, that is a core that
// cannot make progress, and we wait the timer's resolution (1 ms) before asking again.
//
// Lifetime: create() returns a shared_ptr; the timer handle stays alive (and holds a reference
// to this object) until close() has run its course in libuv's close callback. The hooks are
// dropped at close(), so the core may be destroyed right after calling close().
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>

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
        uint64_t timer_fires = 0;     // libuv timer callbacks, early ones included
        uint64_t on_timer_calls = 0;  // calls into the core's on_timer
        uint64_t transmits = 0;       // datagrams handed to the send function
        uint64_t overdue_rearms = 0;  // the core kept a past deadline after its on_timer
        uint64_t drain_limited = 0;   // kick() stopped at kMaxTransmitsPerKick
    };

    // A drain never sends more than this many datagrams before letting the loop poll I/O again,
    // so one core with a full window cannot starve the others; the rest goes on the next
    // iteration. 256 x 1350-byte datagrams is ~350 kB, several ms of a fast path.
    static constexpr int kMaxTransmitsPerKick = 256;

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
    CoreTimer(uv_loop_t* loop, const LoopClock& clock, Hooks hooks);
    static void on_fire(uv_timer_t* handle);
    static void on_closed(uv_handle_t* handle);
    void drain_and_arm(Time now);
    void arm(Time now, Time deadline);
    void start(uint64_t ms, Time deadline);

    uv_timer_t timer_;
    LoopClock clock_;
    Hooks hooks_;
    Stats stats_;
    Time armed_ = kNever;
    bool in_fire_ = false;
    bool draining_ = false;
    bool closed_ = false;
    std::shared_ptr<CoreTimer> self_;  // held while the uv handle is open
};

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
