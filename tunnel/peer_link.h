// PeerLink: everything an agent holds for one peer, sans-IO (docs/architecture.md §2-4). One per pair of
// agents: every service between them is a stream of the same session.
//
//   Session       the Noise keys and the Connection (streams, loss recovery, congestion)
//   PathManager   which path the session's packets take: the relay, or a validated direct
//                 address; probes, fallback, rebinding (tunnel/path_manager.h)
//   routes        how a datagram leaves: kRouteRelay (the server's relay; the signalling client
//                 picks UDP or the TLS connection), kRouteMain (the agent's UDP socket), a
//                 birthday socket's route id, which the agent's core hands out, or a direct TCP
//                 connection's route id (add_tcp_path; its datagrams are length-prefixed on it,
//                 tunnel/stream_framer.h)
//   punching      the technique for the pair of NATs (tunnel/punch_planner.h) and the birthday
//                 side's schedule of opening probes
//   keepalives    the Connection's PINGs and the PathManager's checks of a quiet direct path
//
// Driven like every core:
//
//   on_datagram(route, from, bytes, now) -> verdict    any datagram for this peer (a
//                                                       mutable view: opened in place)
//   on_timer(now)                                       next_deadline() was reached
//   write_transmit(now, buf) -> {route, to, size}       built into buf, until nullopt
//   poll_transmit(now) -> {route, to, bytes}            the same into a new vector
//   poll_event()                                        what the agent must act on or log
//
// The session starts on the relay (its first handshake goes through the server at once); once
// it has keys, both sides punch, and the first validated direct path takes the traffic. A
// datagram on the main socket belongs to this link when claims() says so: a data or probe
// packet carrying one of the session's receiver indexes, or a handshake message from an
// address this link knows (the peer's direct path may be one we have not validated yet).
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <variant>
#include <vector>

#include "tunnel/nat_mapping.h"
#include "tunnel/path_manager.h"
#include "tunnel/port_prediction.h"
#include "tunnel/punch_planner.h"
#include "tunnel/rng.h"
#include "tunnel/session.h"
#include "tunnel/socket_address.h"
#include "tunnel/time.h"

namespace burrow {

// How a datagram travels: a UDP socket of the agent's (the main one, or one the core opened
// for this link), or the server's relay.
using RouteId = uint32_t;
inline constexpr RouteId kRouteMain = 0;
inline constexpr RouteId kRouteRelay = UINT32_MAX;

// What a datagram is, as far as the link knows without looking inside: for counters, logs
// and tests.
enum class DatagramKind : uint8_t {
    kHandshake,  // a Noise handshake message
    kData,       // a session packet (streams, ACKs, keepalives)
    kChallenge,  // a probe that asks a path to answer (PathManager's)
    kResponse,   // a probe's answer
    kOpening,    // a birthday socket's probe: opens its NAT mapping; nobody tracks its answer
};

// A datagram write_transmit built into the caller's buffer: its first `size` bytes.
struct LinkWrite {
    RouteId route = kRouteMain;
    SocketAddress to;  // unused for kRouteRelay
    size_t size = 0;
    DatagramKind kind = DatagramKind::kData;
    DirectKind path = DirectKind::kUdp;  // kTcp: route is a TCP connection of add_tcp_path
};

struct LinkTransmit {
    RouteId route = kRouteMain;
    SocketAddress to;  // unused for kRouteRelay
    Bytes data;
    DatagramKind kind = DatagramKind::kData;
    DirectKind path = DirectKind::kUdp;
};

struct PeerLinkConfig {
    Role role = Role::kInitiator;  // the Noise role, fixed for the link's life
    PrivateKey local_key;
    PublicKey peer_key{};
    SessionConfig session;
    int64_t wall_clock_at_zero_us = 0;  // see Session
};

// What the rendezvous told us about the peer, and what we know of our own NAT.
struct PunchPlan {
    std::vector<SocketAddress> candidates;   // the peer's host and reflexive addresses
    std::optional<SocketAddress> reflexive;  // the peer's server-reflexive address
    NatMapping ours = NatMapping::kUnknown;
    NatMapping theirs = NatMapping::kUnknown;
    // The peer's gateway-mapped address (UPnP IGD, PCP, NAT-PMP; also among candidates).
    std::optional<SocketAddress> mapped = std::nullopt;
    // The peer's TCP addresses (its listening port, and what its NAT mapped it to): where the
    // agent connects for a direct TCP path. Not among candidates, which are UDP addresses.
    std::vector<SocketAddress> tcp_candidates = {};
    // The peer's server-reflexive TCP address (tcp-srflx; also among tcp_candidates).
    std::optional<SocketAddress> tcp_reflexive = std::nullopt;
    // How each NAT gives out ports (tunnel/port_prediction.h): ours as we measured it, the
    // peer's as it registered it. A predictable per-destination NAT is punched by prediction.
    PortAllocation our_allocation = {};
    PortAllocation their_allocation = {};
};

// A link that found no direct path this long after punching started gives its verdict: it stays
// on the relay (LinkPunchFallback; plain punching still probes every 5 s and may go direct
// later). Longer than a whole birthday spray (kSprayRounds x kSprayInterval = 15 s).
inline constexpr Duration kPunchVerdictAfter = std::chrono::seconds(20);

// Where the first direct path led, as ICE names candidates (RFC 8445 §5.1.1): one of the peer's
// host addresses, its server-reflexive address, an address learned from its probes
// (peer-reflexive), a mapping found by the birthday technique (spray or birthday sockets), or
// the mapping the peer's gateway made for it on request (UPnP IGD, PCP, NAT-PMP).
// kPredicted: a mapping found by port prediction (tunnel/punch_planner.h).
// A direct TCP path (DirectKind::kTcp) leads to one of the peer's TCP candidates: its listening
// address (kTcpHost), the address the server saw its control connection come from
// (kTcpServerReflexive), or neither (kTcpPeerReflexive: a connection our listener accepted from
// an address we were not told, e.g. through a NAT that maps per destination).
enum class DirectSource : uint8_t {
    kHost,
    kServerReflexive,
    kPeerReflexive,
    kBirthday,
    kMapped,
    kPredicted,
    kTcpHost,
    kTcpServerReflexive,
    kTcpPeerReflexive
};
// "host", "srflx", "prflx", "birthday", "mapped", "predicted", "tcp-host", "tcp-srflx",
// "tcp-prflx".
const char* to_string(DirectSource s);

// --- events ----------------------------------------------------------------------------------
struct LinkUp {};  // the first handshake completed: the session carries streams
struct LinkPunching {
    PunchTechnique technique;
    // Port prediction: what it predicts ("lockstep with the peer's sequential delta 1 from
    // 40002, stride 2", ...), for the debug log; empty otherwise.
    std::string prediction = {};
};
struct LinkPathChanged {
    std::optional<SocketAddress> direct;  // nullopt: the relay
    DirectKind kind = DirectKind::kUdp;       // of direct
    std::string reason;
    Duration rtt{};  // of the probe that validated a direct path
    // Set on the link's first direct path: the time from the link's start (its creation) to
    // it, and where it led. Set again, with moved_up, on its first direct UDP path when the
    // first direct path was TCP: how punching finally settled, for `burrow doctor` (reported
    // again, not counted again).
    std::optional<Duration> time_to_direct;
    DirectSource source = DirectSource::kHost;
    bool moved_up = false;
};
// kPunchVerdictAfter passed since punching started with no direct path: on the relay.
struct LinkPunchFallback {
    PunchTechnique technique;
};
// Birthday: open `count` UDP sockets for this link and hand their routes to add_sockets().
struct LinkWantsSockets {
    size_t count = 0;
};
// These sockets are no longer needed: close them.
struct LinkReleasesSockets {
    std::vector<RouteId> routes;
};
using LinkEvent = std::variant<LinkUp, LinkPunching, LinkPathChanged, LinkPunchFallback,
                               LinkWantsSockets, LinkReleasesSockets>;

// --- verdicts --------------------------------------------------------------------------------
enum class LinkDrop : uint8_t {
    kNotOurs,  // not addressed to this link's session
    kRefused,  // the session or the probe check refused it (SessionStats says why)
};
struct LinkAccepted {
    DatagramKind kind;
};
struct LinkDropped {
    LinkDrop reason;
};
using LinkVerdict = std::variant<LinkAccepted, LinkDropped>;

// Cookie replies waiting to be sent: one socket read's worth (the executor drains after every
// read batch, at most 256 datagrams). A reply that finds the queue full is not sent; its
// initiation was refused anyway.
inline constexpr size_t kMaxQueuedCookieReplies = 256;

struct LinkStats {
    uint64_t probes_unsealed = 0;   // a probe to send while there were no keys: skipped
    uint64_t opening_probes = 0;    // birthday probes sent
    uint64_t birthday_sockets = 0;  // opened for this link, all told
    uint64_t sockets_failed = 0;    // of those, the OS refused
    uint64_t cookie_replies_dropped = 0;  // the queue was full: refused without a reply
};

class PeerLink {
  public:
    PeerLink(const PeerLinkConfig& config, Rng& rng, Time now);
    PeerLink(const PeerLink&) = delete;
    PeerLink& operator=(const PeerLink&) = delete;

    // Initiator: the first handshake, through the relay. A responder waits for it.
    void start(Time now);
    // The peer's candidates (again after a later rendezvous: more candidates). Punching starts
    // once the session has keys to seal probes with.
    void set_punch_plan(PunchPlan plan, Time now);
    // Whether a datagram that came in on the main socket from `from` belongs to this link.
    bool claims(const SocketAddress& from, ByteView datagram) const;
    // The mutable form opens data packets in place (the datagram's bytes are scratch
    // afterwards); the const form copies once into a buffer the link keeps.
    LinkVerdict on_datagram(RouteId route, const SocketAddress& from, MutableByteView datagram,
                            Time now);
    LinkVerdict on_datagram(RouteId route, const SocketAddress& from, ByteView datagram, Time now);
    // A vector, the way tests hold datagrams they may deliver again: the copying form (a
    // non-const vector would otherwise convert to both views).
    LinkVerdict on_datagram(RouteId route, const SocketAddress& from, const Bytes& datagram,
                            Time now) {
        return on_datagram(route, from, ByteView(datagram), now);
    }
    void on_timer(Time now);
    // Every datagram of one socket read was handed in (Connection::on_receive_batch_end).
    void on_receive_batch_end() { session_.on_receive_batch_end(); }
    // Precondition: out.size() >= max_datagram_size().
    std::optional<LinkWrite> write_transmit(Time now, MutableByteView out);
    std::optional<LinkTransmit> poll_transmit(Time now);
    size_t max_datagram_size() const { return session_.connection().max_datagram_size(); }
    Time next_deadline() const;
    std::optional<LinkEvent> poll_event();

    // The sockets a LinkWantsSockets asked for (fewer if the OS refused some).
    void add_sockets(const std::vector<RouteId>& routes, Time now);
    // A socket the OS would not open after all.
    void remove_socket(RouteId route);
    // A TCP connection to the peer (we connected, or it did) is established: its datagrams come
    // in by on_datagram(route, peer, ...) and ours leave as LinkWrites with this route. It is
    // probed, and carries the session once validated (unless a direct UDP path works).
    void add_tcp_path(RouteId route, const SocketAddress& peer, Time now);
    // That connection closed or failed; the session moves off it at once.
    void remove_tcp_path(RouteId route, Time now);
    // The connection's socket takes more (true) or its unsent queue is full (false).
    void set_tcp_writable(RouteId route, bool writable);
    // Whether a route is one of this link's TCP connections.
    bool is_tcp_route(RouteId route) const { return tcp_routes_.contains(route); }
    // Every socket this link holds (to close when the link ends).
    const std::vector<RouteId>& sockets() const { return sockets_; }

    Session& session() { return session_; }
    const Session& session() const { return session_; }
    Connection& connection() { return session_.connection(); }
    const Connection& connection() const { return session_.connection(); }
    const PathManager& paths() const { return paths_; }
    // The direct path in use; nullopt on the relay.
    const std::optional<SocketAddress>& direct() const { return paths_.active(); }
    // Its kind (meaningful when direct()).
    DirectKind direct_kind() const { return paths_.active_kind(); }
    std::optional<PunchTechnique> technique() const { return technique_; }
    // What the rendezvous said (the NAT pair among it); nullopt before the first.
    const std::optional<PunchPlan>& punch_plan() const { return plan_; }
    const LinkStats& stats() const { return stats_; }

  private:
    void after_input(Time now);
    void start_punching(Time now);
    void birthday_round(Time now);
    std::string start_prediction(Time now);
    void release_sockets(std::optional<RouteId> keep);
    void release_unheard();
    void follow_socket(const SocketAddress& from, RouteId route);
    RouteId route_to(const SocketAddress& to) const;
    RouteId answer_route(const ProbeToSend& response);

    DirectSource direct_source(const SocketAddress& direct, DirectKind kind) const;

    Rng& rng_;
    Time created_at_;
    Time punch_verdict_at_ = kNever;  // kPunchVerdictAfter after punching started, until given
    Session session_;
    PathManager paths_;
    std::optional<PunchPlan> plan_;
    std::optional<PunchTechnique> technique_;  // set when punching starts
    bool announced_up_ = false;

    // Birthday: our sockets, the peer's reflexive address they open mappings towards, and the
    // opening probes of the current round still to send.
    std::vector<RouteId> sockets_;
    Time birthday_round_at_ = kNever;
    Time direct_since_ = kNever;  // the first direct path
    bool direct_udp_seen_ = false;  // a direct UDP path was taken once (LinkPathChanged::moved_up)
    int birthday_rounds_ = 0;
    std::deque<RouteId> openings_;
    // Direct addresses reached through a socket other than the main one, and the sockets an
    // authenticated probe of the peer's reached.
    std::map<SocketAddress, RouteId> routes_;
    std::set<RouteId> heard_;
    // The socket each challenge still to be answered came in on (at most kMaxQueuedProbes, as
    // the PathManager's queue of answers): the answer leaves there.
    struct AnswerRoute {
        SocketAddress to;
        PathData data;
        RouteId route;
    };
    std::deque<AnswerRoute> answer_routes_;
    // Direct TCP connections: by route, and the route to each peer address.
    std::map<RouteId, SocketAddress> tcp_routes_;
    std::set<RouteId> tcp_blocked_;  // connections whose socket is not writable
    void update_path_writable();
    std::optional<RouteId> tcp_route_to(const SocketAddress& to) const;
    // Paths are probed once punching started, or a TCP connection came, with keys to seal.
    bool probing() const {
        return technique_.has_value() || (!tcp_routes_.empty() && session_.established());
    }

    std::deque<LinkEvent> events_;
    // Cookie replies to send where their initiations came from, at most
    // kMaxQueuedCookieReplies (more are dropped and counted).
    std::deque<LinkTransmit> cookie_replies_;
    LinkStats stats_;
    Bytes receive_copy_;  // what the const on_datagram opens in place, reused
};

}  // namespace burrow
