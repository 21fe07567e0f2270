// A virtual-time network joining two agents by two ways at once, as a real deployment does:
// the server's relay (always there, slower) and a direct UDP path between the two agents'
// public addresses (faster, but it may be blackholed, and a NAT may rebind a side's address).
//
//          relay_ab / relay_ba (no addresses: the server forwards by session)
//     A  ==============================================================  B
//     a_address --------- direct_ab / direct_ba (addressed UDP) ------- b_address
//     a_address ========= tcp_ab / tcp_ba (one TCP connection) ========= b_address
//                              ^
//                              |  inject(): a third address (spoofed or replayed datagrams)
//
// An endpoint hands out datagrams with a destination: nullopt means the relay, an address
// means the direct path. A direct datagram is carried only when its destination is the other
// side's current public address; sent to an address the other side had before a rebind, it is
// dropped (the NAT forgot that mapping); sent anywhere else, dropped too. It arrives tagged
// with the sender's public address at the time it was sent, so after rebind() the receiver
// sees packets from the new port.
//
// Like Network (network.h), nothing sleeps: run_until() jumps to the next event (an arrival on
// one of the four links, an injected datagram, a timer, a wake-up). Equal times are broken in
// a fixed order, so a seed replays exactly.
//
// The TCP connection is a direct TCP path between the agents (issue 15): reliable and in order,
// as TCP delivers to the application (give its links no loss, reordering or jitter, and a queue
// that never drops: TCP's send buffer). Its datagrams arrive at on_tcp. set_tcp_up(false) is the
// connection's end (a reset, a dead NAT mapping): nothing more is carried, what was in flight is
// lost with it. The connection's send buffer is small, as TCP_NOTSENT_LOWAT keeps it on a real
// socket: an endpoint is told on_tcp_writable(false) while kTcpSendBuffer bytes of its are in
// the connection, and true again once they drain (a socket's writability). The tap sees every datagram an endpoint sends,
// before any loss: what an eavesdropper on both paths could capture and replay.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <vector>

#include "tunnel/socket_address.h"
#include "tests/sim/net/link.h"
#include "tunnel/bytes.h"
#include "tunnel/time.h"

namespace burrow::sim {

enum class PathSide { kA = 0, kB = 1 };

struct Outgoing {
    std::optional<SocketAddress> to;  // nullopt: through the relay
    Bytes data;
    bool tcp = false;  // on the TCP connection (to is the peer's end of it)
};

// What the path network drives: an agent's view of one session (src/agent_runtime.cc).
class PathEndpoint {
  public:
    virtual ~PathEndpoint() = default;
    virtual void on_relay(ByteView d, Time now) = 0;
    virtual void on_direct(const SocketAddress& from, ByteView d, Time now) = 0;
    // A datagram off the TCP connection (from: the peer's end of it).
    virtual void on_tcp(const SocketAddress& /*from*/, ByteView /*d*/, Time /*now*/) {}
    // Whether the TCP connection takes more now (see kTcpSendBuffer).
    virtual void on_tcp_writable(bool /*writable*/, Time /*now*/) {}
    virtual void on_timer(Time now) = 0;
    virtual std::optional<Outgoing> poll_transmit(Time now) = 0;
    virtual Time next_deadline() const = 0;
};

// What a side may have in the TCP connection before it stops being writable.
inline constexpr size_t kTcpSendBuffer = 64 * 1024;

struct PathNetworkConfig {
    LinkConfig relay_ab;
    LinkConfig relay_ba;
    LinkConfig direct_ab;
    LinkConfig direct_ba;
    SocketAddress a_address;  // each side's public address on the direct path at t = 0
    SocketAddress b_address;
    // The TCP connection's two directions (see above for what makes them TCP-like).
    LinkConfig tcp_ab = tcp_like();
    LinkConfig tcp_ba = tcp_like();
    static LinkConfig tcp_like() {
        LinkConfig c;
        c.delay = std::chrono::milliseconds(10);
        c.rate_mbit = 2.0;
        c.queue_bytes = 64 * 1024 * 1024;  // the kernel's send buffer: never drops
        c.mtu = 1 << 20;
        return c;
    }
};

struct PathNetworkStats {
    uint64_t events = 0;
    uint64_t timer_calls = 0;
    uint64_t livelock_steps = 0;  // see NetworkStats
    uint64_t sent_relay = 0;
    uint64_t sent_direct = 0;
    uint64_t dropped_direct_down = 0;  // sent while set_direct_up(false)
    uint64_t dropped_stale = 0;        // to an address the other side had before a rebind
    uint64_t dropped_no_route = 0;     // to an address nobody has
    uint64_t injected = 0;
    uint64_t sent_tcp = 0;
    uint64_t dropped_tcp_down = 0;  // sent on, or in flight in, a connection that ended
};

class PathNetwork {
  public:
    PathNetwork(uint64_t seed, PathNetworkConfig config);

    // The endpoints must outlive every run_until call.
    void attach(PathEndpoint& a, PathEndpoint& b);
    Time now() const { return now_; }

    // As Network::run_until: events in time order until done() or the next event is past
    // `limit`. Returns true if done() became true.
    bool run_until(const std::function<bool()>& done, Time limit);

    void set_on_step(std::function<void(Time)> on_step) { on_step_ = std::move(on_step); }
    void set_tap(std::function<void(PathSide from, const Outgoing&, Time)> tap) {
        tap_ = std::move(tap);
    }
    void wake_at(Time t);

    // From now on every direct datagram, both ways, is lost (false) or carried (true).
    // Datagrams already in flight still arrive.
    void set_direct_up(bool up) { direct_up_ = up; }
    bool direct_up() const { return direct_up_; }
    // The TCP connection carries (true), or has ended (false: in flight is lost too).
    void set_tcp_up(bool up) { tcp_up_ = up; }
    bool tcp_up() const { return tcp_up_; }
    // From now on `side`'s NAT maps its direct traffic to `address`: it sends from there, and
    // datagrams to its previous addresses are dropped.
    void rebind(PathSide side, const SocketAddress& address);
    const SocketAddress& address(PathSide side) const { return current(side); }

    // A datagram from a third party: arrives at `to` at time `at` (>= now) from `from`.
    void inject(PathSide to, const SocketAddress& from, Bytes data, Time at);

    const Link& relay_link(PathSide from) const {
        return from == PathSide::kA ? relay_ab_ : relay_ba_;
    }
    const Link& direct_link(PathSide from) const {
        return from == PathSide::kA ? direct_ab_ : direct_ba_;
    }
    const PathNetworkStats& stats() const { return stats_; }

  private:
    struct Side {
        PathEndpoint* endpoint = nullptr;
        Time timer_floor{};
        std::vector<size_t> addresses;  // indexes into addresses_, the last one current
    };
    struct Injected {
        PathSide to;
        size_t from;
        Bytes data;
    };

    Side& side(PathSide s) { return s == PathSide::kA ? a_ : b_; }
    const SocketAddress& current(PathSide s) const {
        const Side& x = s == PathSide::kA ? a_ : b_;
        return addresses_[x.addresses.back()];
    }
    size_t address_index(const SocketAddress& address);
    Time effective_deadline(const Side& s) const;
    void drain(PathSide from);
    void send(PathSide from, Outgoing out);
    void deliver_relay(Link& link, PathSide to);
    void deliver_direct(Link& link, PathSide to);
    void deliver_tcp(Link& link, PathSide to);
    // Tells each side when its TCP connection's writability changed.
    void update_tcp_writable();
    void fire_timer(PathSide s);

    Link relay_ab_;
    Link relay_ba_;
    Link direct_ab_;
    Link direct_ba_;
    Link tcp_ab_;
    Link tcp_ba_;
    Side a_;
    Side b_;
    std::vector<SocketAddress> addresses_;  // a direct datagram carries its source as an index
    bool direct_up_ = true;
    bool tcp_up_ = true;
    bool tcp_writable_[2] = {true, true};
    Time now_{};
    std::set<Time> wakeups_;
    std::multimap<Time, Injected> injected_;  // equal times: insertion order
    std::function<void(Time)> on_step_;
    std::function<void(PathSide, const Outgoing&, Time)> tap_;
    PathNetworkStats stats_;
};

}  // namespace burrow::sim
