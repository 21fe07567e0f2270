// What `burrow status` shows of a running agent, as the agent's core reports it. src/ turns it
// into JSON for the admin endpoint (src/agent_status_json.cc); every drop has a counter.
#pragma once

#include <algorithm>
#include <cstdint>
#include <iterator>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "signal/agent_client.h"
#include "signal/port_mapper.h"
#include "tunnel/connection.h"
#include "tunnel/path_manager.h"
#include "tunnel/session.h"

namespace burrow {

// Datagrams of one session by the way they travelled, counted where the agent hands them to the
// network or takes them from it (wire size, accepted by the link). Relayed ones are split by
// how the server carried them: UDP, or inside the TLS connection.
struct TrafficCounters {
    uint64_t packets_sent = 0;
    uint64_t bytes_sent = 0;
    uint64_t packets_received = 0;
    uint64_t bytes_received = 0;

    void sent(size_t bytes) {
        packets_sent++;
        bytes_sent += bytes;
    }
    void received(size_t bytes) {
        packets_received++;
        bytes_received += bytes;
    }
};
struct PathTraffic {
    TrafficCounters direct;
    TrafficCounters relay_udp;
    TrafficCounters relay_tcp;
};

// Bounds of the time-to-direct histogram (seconds from the link's start to its first direct
// path): the dense punch schedule ends at 3.2 s, a birthday spray at 15 s.
inline constexpr double kTimeToDirectBounds[] = {0.1, 0.25, 0.5, 1, 2, 3.5, 5, 10, 20, 30};

// How punching ended, for every link this agent has held (links come and go, these stay).
struct PunchStats {
    // By (nat pair "ours/theirs", how the direct path was found: host, srflx, prflx, birthday).
    std::map<std::pair<std::string, std::string>, uint64_t> successes;
    // By (nat pair, the technique tried: plain, spray, birthday): no direct path within
    // kPunchVerdictAfter (tunnel/peer_link.h); the link stayed on the relay.
    std::map<std::pair<std::string, std::string>, uint64_t> fallbacks;
    // Time from each link's start to its first direct path: counts per bucket of
    // kTimeToDirectBounds (and one above the last), and their sum.
    std::vector<uint64_t> time_to_direct_counts =
        std::vector<uint64_t>(std::size(kTimeToDirectBounds) + 1, 0);
    double time_to_direct_sum_s = 0;

    void observe_time_to_direct(double seconds);
};

// The way a session's packets travel now, in docs/architecture.md §3's order of preference.
enum class PathKind { kDirect, kDirectTcp, kRelayUdp, kRelayTcp };

inline const char* to_string(PathKind kind) {
    switch (kind) {
        case PathKind::kDirect: return "direct";
        case PathKind::kDirectTcp: return "direct-tcp";
        case PathKind::kRelayUdp: return "relay-udp";
        case PathKind::kRelayTcp: return "relay-tcp";
    }
    return "unknown";
}

struct PeerStatus {
    std::string peer;
    uint64_t session_id = 0;  // the relay session that names the link at the server
    Role role = Role::kInitiator;
    SessionState state = SessionState::kHandshaking;
    PathKind path = PathKind::kRelayTcp;
    // Where the packets go: the peer's address on a direct path, the server's relay address
    // (its UDP relay port, or the control connection's address for relay-tcp); nullopt while
    // the server's address is not known yet.
    std::optional<SocketAddress> path_address;
    // How it punches: "plain", "spray", "birthday", "mapped", "predicted" ("" before keys).
    std::string technique;
    // Port prediction's latest round of probes (technique "predicted" on the probing side).
    std::optional<PredictionWindow> prediction;
    bool direct = false;    // the session's packets take a direct path now
    double rtt_ms = 0;
    double loss = 0;
    uint64_t congestion_window = 0;  // bytes
    PathTraffic traffic;
    ConnectionStats connection;
    SessionStats session;
    PathStats paths;
    uint64_t streams = 0;                    // forwarded connections open on the session
    std::vector<std::string> may_open;       // services the server lets us open on the peer
    std::vector<std::string> may_accept;     // services the server lets the peer open on us
    uint64_t streams_awaiting_approval = 0;  // opened before the server's approval arrived
};

// "direct ADDR", "direct-tcp ADDR", "relay-udp" or "relay-tcp": the words of the log and of
// `burrow status`.
inline std::string path_text(const PeerStatus& p) {
    if ((p.path == PathKind::kDirect || p.path == PathKind::kDirectTcp) && p.path_address) {
        return std::string(to_string(p.path)) + " " + to_string(*p.path_address);
    }
    return to_string(p.path);
}

// Why a forward closed connections without reaching the peer's service; each is counted.
struct ForwardRefusals {
    uint64_t stream_limit = 0;  // waited kStreamCreditWait for the peer's stream credit
    uint64_t queue_full = 0;    // kMaxWaitingConnections already waited
    uint64_t acl = 0;           // the server refused it (its ACL, or the peer is not online)
    uint64_t no_session = 0;    // the server connection or the session ended while it waited
    uint64_t peer = 0;          // the peer refused the stream (its allow list, the target)

    uint64_t total() const { return stream_limit + queue_full + acl + no_session + peer; }
};

// A UDP forward's or UDP service's traffic (signal/udp_flows.h): datagrams each way and every
// drop by its reason. "in" is what the local socket received (from clients on the forwarding
// side, from the target on the exposing side), "out" what it sent.
struct UdpCounters {
    uint64_t flows = 0;  // flows opened since start
    uint64_t datagrams_in = 0;
    uint64_t bytes_in = 0;
    uint64_t datagrams_out = 0;
    uint64_t bytes_out = 0;
    uint64_t drop_too_large = 0;   // larger than the session's max datagram payload
    uint64_t drop_congested = 0;   // the session's datagram queue was full
    uint64_t drop_no_session = 0;  // no session or approval yet and the holding queue was full,
                                   // or it never came
    uint64_t drop_flow_cap = 0;    // a new client beyond max flows
    uint64_t drop_refused = 0;     // the server or the peer refused the flow
    uint64_t drop_stray = 0;       // a flow socket heard from someone other than the target

    uint64_t drops() const {
        return drop_too_large + drop_congested + drop_no_session + drop_flow_cap + drop_refused +
               drop_stray;
    }
};
struct UdpStatus {
    uint64_t active_flows = 0;
    uint64_t max_flows = 0;
    double idle_timeout_s = 0;
    // The largest datagram the session carries (0: no session yet).
    uint64_t max_datagram = 0;
    UdpCounters counters;
};

struct ForwardStatus {
    std::string listen;
    std::string peer;
    std::string service;
    uint64_t connections = 0;
    uint64_t active = 0;
    uint64_t waiting = 0;  // accepted, waiting for the session, the approval or stream credit
    ForwardRefusals refused;
    uint64_t resets = 0;  // connections that ended with a TCP reset (either side aborted)
    std::string protocol = "tcp";
    std::optional<UdpStatus> udp;  // protocol udp
};

struct ExposeStatus {
    std::string service;
    std::string target;
    std::vector<std::string> allow;
    uint64_t streams = 0;
    uint64_t active = 0;
    uint64_t refused = 0;
    std::string protocol = "tcp";
    std::optional<UdpStatus> udp;  // protocol udp
};

// Datagrams and streams the core itself dropped or refused (the client's are in client).
struct AgentDrops {
    uint64_t udp_from_unknown = 0;       // no link claimed it
    uint64_t relay_unknown_session = 0;  // relayed for a session no link has
    uint64_t streams_refused = 0;        // incoming streams refused (service, allow, approval)
    uint64_t waiting_full = 0;           // forwarded connections closed: too many waited
    uint64_t listen_paused = 0;          // a forward stopped accepting: out of descriptors
    // Direct TCP paths (issue 15): connections on the peer listener that no link claimed.
    uint64_t tcp_unclaimed_frames = 0;   // a frame no link's session knows: dropped
    uint64_t tcp_unclaimed_closed = 0;   // closed: unclaimed too long, too many bytes, or full
    uint64_t tcp_bad_framing = 0;        // closed: a length past the limit, or cut short
    uint64_t tcp_duplicates_closed = 0;  // a second connection to one peer, tie-broken away
};

struct AgentStatus {
    std::string name;
    std::string public_key;  // base64
    double uptime_s = 0;
    std::string server;  // as configured
    // The address the control connection reached (of a name's addresses, the one Happy
    // Eyeballs picked), kept after a disconnect; nullopt before the first connection.
    std::optional<SocketAddress> server_address;
    AgentClientState server_state = AgentClientState::kWaiting;
    bool registered = false;
    bool udp_bound = false;
    uint64_t reconnects = 0;
    // The UDP binding's refresh interval (signal/udp_binding.h), and whether it is learned.
    double keepalive_s = 0;
    bool keepalive_learned = true;
    std::optional<NatMapping> nat;
    std::optional<SocketAddress> reflexive;
    // How the NAT allocates ports (AgentClient::allocation); kUnknown before registration.
    PortAllocation allocation;
    // `[agent] port_mapping` (signal/port_mapper.h): state kOff when turned off.
    PortMapperStatus port_mapping;
    // `[agent] stun_servers`, in configuration order (signal/stun_servers.h).
    std::vector<StunServerStatus> stun_servers;
    StunServerStats stun_server_stats;
    std::vector<PeerStatus> peers;
    std::vector<ForwardStatus> forwards;
    std::vector<ExposeStatus> exposes;
    AgentClientStats client;
    AgentDrops drops;
    PunchStats punch;
};

inline void PunchStats::observe_time_to_direct(double seconds) {
    // Prometheus buckets hold what is less than or equal to their bound.
    const auto* bound = std::lower_bound(std::begin(kTimeToDirectBounds),
                                         std::end(kTimeToDirectBounds), seconds);
    time_to_direct_counts[static_cast<size_t>(bound - std::begin(kTimeToDirectBounds))]++;
    time_to_direct_sum_s += seconds;
}

}  // namespace burrow
