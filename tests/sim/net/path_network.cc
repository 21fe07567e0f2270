#include "tests/sim/net/path_network.h"

#include <algorithm>
#include <cassert>
#include <stdexcept>

namespace burrow::sim {

namespace {

uint64_t link_seed(uint64_t seed, uint64_t which) {
    SeededRng rng(seed ^ 0x70617468);  // "path": apart from Network's streams for the same seed
    uint64_t v = 0;
    for (uint64_t i = 0; i <= which; ++i) v = rng.next_u64();
    return v;
}

constexpr Duration kLivelockStep{1};  // as Network: 1 us past a deadline that never moves
// A direct datagram travels with its source address as a 2-byte index in front (the Link
// carries bytes only, and it reorders, so the source cannot ride beside it).
constexpr size_t kSourceTag = 2;

}  // namespace

PathNetwork::PathNetwork(uint64_t seed, PathNetworkConfig config)
    : relay_ab_(config.relay_ab, link_seed(seed, 0)),
      relay_ba_(config.relay_ba, link_seed(seed, 1)),
      direct_ab_(config.direct_ab, link_seed(seed, 2)),
      direct_ba_(config.direct_ba, link_seed(seed, 3)),
      tcp_ab_(config.tcp_ab, link_seed(seed, 4)),
      tcp_ba_(config.tcp_ba, link_seed(seed, 5)) {
    a_.addresses.push_back(address_index(config.a_address));
    b_.addresses.push_back(address_index(config.b_address));
}

size_t PathNetwork::address_index(const SocketAddress& address) {
    auto it = std::find(addresses_.begin(), addresses_.end(), address);
    if (it != addresses_.end()) return static_cast<size_t>(it - addresses_.begin());
    if (addresses_.size() > 0xffff) throw std::logic_error("PathNetwork: too many addresses");
    addresses_.push_back(address);
    return addresses_.size() - 1;
}

void PathNetwork::attach(PathEndpoint& a, PathEndpoint& b) {
    a_.endpoint = &a;
    b_.endpoint = &b;
}

void PathNetwork::wake_at(Time t) {
    wakeups_.insert(t < now_ ? now_ : t);
}

void PathNetwork::rebind(PathSide s, const SocketAddress& address) {
    side(s).addresses.push_back(address_index(address));
}

void PathNetwork::inject(PathSide to, const SocketAddress& from, Bytes data, Time at) {
    injected_.emplace(std::max(at, now_), Injected{to, address_index(from), std::move(data)});
}

Time PathNetwork::effective_deadline(const Side& s) const {
    const Time d = s.endpoint->next_deadline();
    if (d == kNever) return kNever;
    return d < s.timer_floor ? s.timer_floor : d;
}

void PathNetwork::send(PathSide from, Outgoing out) {
    if (tap_) tap_(from, out, now_);
    const bool ab = from == PathSide::kA;
    if (!out.to) {
        ++stats_.sent_relay;
        (ab ? relay_ab_ : relay_ba_).send(std::move(out.data), now_);
        return;
    }
    if (out.tcp) {
        ++stats_.sent_tcp;
        if (!tcp_up_) {
            ++stats_.dropped_tcp_down;
            return;
        }
        (ab ? tcp_ab_ : tcp_ba_).send(std::move(out.data), now_);
        return;
    }
    ++stats_.sent_direct;
    const PathSide to = ab ? PathSide::kB : PathSide::kA;
    const Side& peer = side(to);
    if (*out.to != current(to)) {
        const bool stale = std::any_of(peer.addresses.begin(), peer.addresses.end(),
                                       [&](size_t i) { return addresses_[i] == *out.to; });
        ++(stale ? stats_.dropped_stale : stats_.dropped_no_route);
        return;
    }
    if (!direct_up_) {
        ++stats_.dropped_direct_down;
        return;
    }
    const size_t source = side(from).addresses.back();
    Bytes tagged(kSourceTag + out.data.size());
    tagged[0] = static_cast<uint8_t>(source >> 8);
    tagged[1] = static_cast<uint8_t>(source);
    std::copy(out.data.begin(), out.data.end(), tagged.begin() + kSourceTag);
    (ab ? direct_ab_ : direct_ba_).send(std::move(tagged), now_);
}

void PathNetwork::drain(PathSide from) {
    PathEndpoint& e = *side(from).endpoint;
    const Link& tcp = from == PathSide::kA ? tcp_ab_ : tcp_ba_;
    bool& writable = tcp_writable_[static_cast<int>(from)];
    while (std::optional<Outgoing> out = e.poll_transmit(now_)) {
        const bool on_tcp = out->tcp;
        send(from, std::move(*out));
        if (on_tcp && writable && tcp.bytes_in_flight() >= kTcpSendBuffer) {
            writable = false;  // the socket's buffer is full: the executor stops writing
            e.on_tcp_writable(false, now_);
        }
    }
}

void PathNetwork::deliver_relay(Link& link, PathSide to) {
    std::optional<Bytes> d = link.pop_arrival(now_);
    assert(d);
    side(to).endpoint->on_relay(*d, now_);
    drain(to);
}

void PathNetwork::deliver_direct(Link& link, PathSide to) {
    std::optional<Bytes> d = link.pop_arrival(now_);
    assert(d && d->size() >= kSourceTag);
    const size_t source = (size_t{(*d)[0]} << 8) | (*d)[1];
    side(to).endpoint->on_direct(addresses_[source], ByteView(*d).subspan(kSourceTag), now_);
    drain(to);
}

void PathNetwork::deliver_tcp(Link& link, PathSide to) {
    std::optional<Bytes> d = link.pop_arrival(now_);
    assert(d);
    if (!tcp_up_) {
        ++stats_.dropped_tcp_down;
        return;
    }
    const PathSide from = to == PathSide::kA ? PathSide::kB : PathSide::kA;
    side(to).endpoint->on_tcp(current(from), *d, now_);
    drain(to);
}

void PathNetwork::update_tcp_writable() {
    for (PathSide s : {PathSide::kA, PathSide::kB}) {
        const Link& link = s == PathSide::kA ? tcp_ab_ : tcp_ba_;
        const bool writable = link.bytes_in_flight() < kTcpSendBuffer;
        bool& told = tcp_writable_[static_cast<int>(s)];
        if (writable == told) continue;
        told = writable;
        side(s).endpoint->on_tcp_writable(writable, now_);
        drain(s);
    }
}

void PathNetwork::fire_timer(PathSide s) {
    ++stats_.timer_calls;
    Side& x = side(s);
    x.endpoint->on_timer(now_);
    drain(s);
    if (x.endpoint->next_deadline() <= now_) {
        ++stats_.livelock_steps;
        x.timer_floor = now_ + kLivelockStep;
    }
}

bool PathNetwork::run_until(const std::function<bool()>& done, Time limit) {
    if (a_.endpoint == nullptr || b_.endpoint == nullptr) {
        throw std::logic_error("PathNetwork::run_until before attach");
    }
    enum class Kind {
        kRelayAtB,
        kRelayAtA,
        kDirectAtB,
        kDirectAtA,
        kTcpAtB,
        kTcpAtA,
        kInjected,
        kTimerA,
        kTimerB,
        kWakeup,
        kNone
    };
    while (!done()) {
        Kind kind = Kind::kNone;
        Time when = kNever;
        auto consider = [&](Time t, Kind k) {
            if (t < when) {  // strict: earlier candidates win ties, which fixes the order
                when = t;
                kind = k;
            }
        };
        consider(relay_ab_.next_arrival(), Kind::kRelayAtB);
        consider(relay_ba_.next_arrival(), Kind::kRelayAtA);
        consider(direct_ab_.next_arrival(), Kind::kDirectAtB);
        consider(direct_ba_.next_arrival(), Kind::kDirectAtA);
        consider(tcp_ab_.next_arrival(), Kind::kTcpAtB);
        consider(tcp_ba_.next_arrival(), Kind::kTcpAtA);
        if (!injected_.empty()) consider(injected_.begin()->first, Kind::kInjected);
        consider(effective_deadline(a_), Kind::kTimerA);
        consider(effective_deadline(b_), Kind::kTimerB);
        if (!wakeups_.empty()) consider(*wakeups_.begin(), Kind::kWakeup);
        if (kind == Kind::kNone || when > limit) {
            if (now_ < limit) now_ = limit;
            return false;
        }
        if (when > now_) now_ = when;  // a deadline in the past fires now
        ++stats_.events;
        switch (kind) {
            case Kind::kRelayAtB:
                deliver_relay(relay_ab_, PathSide::kB);
                break;
            case Kind::kRelayAtA:
                deliver_relay(relay_ba_, PathSide::kA);
                break;
            case Kind::kDirectAtB:
                deliver_direct(direct_ab_, PathSide::kB);
                break;
            case Kind::kDirectAtA:
                deliver_direct(direct_ba_, PathSide::kA);
                break;
            case Kind::kTcpAtB:
                deliver_tcp(tcp_ab_, PathSide::kB);
                break;
            case Kind::kTcpAtA:
                deliver_tcp(tcp_ba_, PathSide::kA);
                break;
            case Kind::kInjected: {
                auto node = injected_.extract(injected_.begin());
                Injected& in = node.mapped();
                ++stats_.injected;
                side(in.to).endpoint->on_direct(addresses_[in.from], in.data, now_);
                drain(in.to);
                break;
            }
            case Kind::kTimerA:
                fire_timer(PathSide::kA);
                break;
            case Kind::kTimerB:
                fire_timer(PathSide::kB);
                break;
            case Kind::kWakeup:
                wakeups_.erase(wakeups_.begin());
                break;
            case Kind::kNone:
                break;
        }
        if (on_step_) on_step_(now_);
        drain(PathSide::kA);
        drain(PathSide::kB);
        update_tcp_writable();
    }
    return true;
}

}  // namespace burrow::sim
