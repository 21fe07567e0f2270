#include "tests/sim/net/network.h"

#include <cassert>
#include <stdexcept>

namespace burrow::sim {

namespace {

// Derives the per-link seeds so both links are independent yet fixed by the one seed.
uint64_t link_seed(uint64_t seed, uint64_t which) {
    SeededRng rng(seed);
    uint64_t v = 0;
    for (uint64_t i = 0; i <= which; ++i) v = rng.next_u64();
    return v;
}

constexpr Duration kLivelockStep{1};  // the brief's 1 us step past a deadline that never moves

}  // namespace

Network::Network(uint64_t seed, LinkConfig a_to_b, LinkConfig b_to_a)
    : ab_(a_to_b, link_seed(seed, 0)), ba_(b_to_a, link_seed(seed, 1)) {}

void Network::attach(SimEndpoint& a, SimEndpoint& b) {
    a_ = Side{&a, &ab_, Time{}};
    b_ = Side{&b, &ba_, Time{}};
}

void Network::wake_at(Time t) {
    wakeups_.insert(t < now_ ? now_ : t);
}

Time Network::effective_deadline(const Side& s) const {
    const Time d = s.endpoint->next_deadline();
    if (d == kNever) return kNever;
    return d < s.timer_floor ? s.timer_floor : d;
}

Network::EventKind Network::next_event(Time& when) const {
    EventKind kind = EventKind::kNone;
    when = kNever;
    auto consider = [&](Time t, EventKind k) {
        if (t < when) {  // strict: earlier candidates win ties, which fixes the order
            when = t;
            kind = k;
        }
    };
    consider(ab_.next_arrival(), EventKind::kArriveAtB);
    consider(ba_.next_arrival(), EventKind::kArriveAtA);
    consider(effective_deadline(a_), EventKind::kTimerA);
    consider(effective_deadline(b_), EventKind::kTimerB);
    if (!wakeups_.empty()) consider(*wakeups_.begin(), EventKind::kWakeup);
    return kind;
}

void Network::drain(Side& s) {
    while (std::optional<Bytes> d = s.endpoint->poll_transmit(now_)) {
        s.out->send(std::move(*d), now_);
    }
}

void Network::deliver(Link& link, Side& to) {
    std::optional<Bytes> d = link.pop_arrival(now_);
    assert(d);
    ++stats_.deliveries;
    to.endpoint->on_datagram(*d, now_);
    drain(to);
}

void Network::fire_timer(Side& s) {
    ++stats_.timer_calls;
    s.endpoint->on_timer(now_);
    drain(s);
    // Checked after draining: a deadline that is due only until the pending packets are
    // polled is not a livelock.
    if (s.endpoint->next_deadline() <= now_) {
        ++stats_.livelock_steps;
        s.timer_floor = now_ + kLivelockStep;
    }
}

bool Network::run_until(const std::function<bool()>& done, Time limit) {
    if (a_.endpoint == nullptr || b_.endpoint == nullptr) {
        throw std::logic_error("Network::run_until before attach");
    }
    while (!done()) {
        Time when;
        const EventKind kind = next_event(when);
        if (kind == EventKind::kNone || when > limit) {
            if (now_ < limit) now_ = limit;
            return false;
        }
        if (when > now_) now_ = when;  // a deadline in the past fires now
        ++stats_.events;
        switch (kind) {
            case EventKind::kArriveAtB:
                deliver(ab_, b_);
                break;
            case EventKind::kArriveAtA:
                deliver(ba_, a_);
                break;
            case EventKind::kTimerA:
                fire_timer(a_);
                break;
            case EventKind::kTimerB:
                fire_timer(b_);
                break;
            case EventKind::kWakeup:
                ++stats_.wakeups;
                wakeups_.erase(wakeups_.begin());
                break;
            case EventKind::kNone:
                break;
        }
        if (on_step_) on_step_(now_);
        drain(a_);
        drain(b_);
    }
    return true;
}

}  // namespace burrow::sim
