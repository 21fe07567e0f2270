// An event-driven, virtual-time network joining two sans-IO endpoints through two Links.
//
// Nothing sleeps: run_until() jumps virtual time straight to the next event (a datagram
// arriving, an endpoint's timer, a wake-up the harness asked for) and handles events one at
// a time in time order. Equal times are broken the same way every run (arrivals on a->b, then
// b->a, then a's timer, b's timer, then wake-ups), so a seed replays exactly.
//
// After each event the endpoint it concerned is drained (poll_transmit until nullopt) into its
// outgoing link, then the on_step hook runs (the application side reads and writes there),
// then both endpoints are drained again so what the application wrote goes out at once.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <set>

#include "tests/sim/net/link.h"
#include "tunnel/bytes.h"
#include "tunnel/time.h"

namespace burrow::sim {

// What the simulator drives: the sans-IO shape of docs/architecture.md §2.
class SimEndpoint {
  public:
    virtual ~SimEndpoint() = default;
    virtual void on_datagram(ByteView d, Time now) = 0;
    virtual void on_timer(Time now) = 0;
    virtual std::optional<Bytes> poll_transmit(Time now) = 0;
    virtual Time next_deadline() const = 0;
};

struct NetworkStats {
    uint64_t events = 0;
    uint64_t deliveries = 0;
    uint64_t timer_calls = 0;
    uint64_t wakeups = 0;
    // Times an endpoint still reported a deadline <= now right after on_timer(now): the
    // network stepped 1 us forward instead of spinning. Non-zero points at an endpoint bug.
    uint64_t livelock_steps = 0;
};

class Network {
  public:
    // Each link gets its own random stream derived from `seed`.
    Network(uint64_t seed, LinkConfig a_to_b, LinkConfig b_to_a);

    // The endpoints must outlive the Network (or at least every run_until call).
    void attach(SimEndpoint& a, SimEndpoint& b);
    Time now() const { return now_; }

    // Runs events in time order until done() is true or the next event lies beyond `limit`
    // (virtual time then stands at `limit`). Returns true if done() became true. done() is
    // checked before the first event and after each one.
    bool run_until(const std::function<bool()>& done, Time limit);

    // Called after every event with the current time: the application side acts here.
    void set_on_step(std::function<void(Time)> on_step) { on_step_ = std::move(on_step); }
    // Makes sure an event (and so an on_step call) happens at time t, e.g. for a paced reader.
    void wake_at(Time t);

    const Link& link_ab() const { return ab_; }
    const Link& link_ba() const { return ba_; }
    const NetworkStats& stats() const { return stats_; }

  private:
    enum class EventKind { kArriveAtB, kArriveAtA, kTimerA, kTimerB, kWakeup, kNone };
    struct Side {
        SimEndpoint* endpoint = nullptr;
        Link* out = nullptr;
        // After a livelocked on_timer, the earliest time the timer may fire again.
        Time timer_floor{};
    };

    Time effective_deadline(const Side& s) const;
    EventKind next_event(Time& when) const;
    void deliver(Link& link, Side& to);
    void fire_timer(Side& s);
    void drain(Side& s);

    Link ab_;
    Link ba_;
    Side a_;
    Side b_;
    Time now_{};
    std::set<Time> wakeups_;  // a set: asking twice for the same time wakes once
    std::function<void(Time)> on_step_;
    NetworkStats stats_;
};

}  // namespace burrow::sim
