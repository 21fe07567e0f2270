// The signalling server, sans-IO: control connections, authentication, registry, rendezvous
// and relay. src/ owns the TLS connections, the UDP sockets and the timer and drives this:
//
//   on_connection_open(conn, now)        a TLS handshake finished     -> ServerHello
//   on_control_bytes(conn, bytes, now)   decrypted bytes arrived      -> actions
//   on_connection_closed(conn, now)      the peer or the network went away
//   on_timer(now)                        next_deadline() was reached  -> actions
//   on_udp(port, from, bytes, now)       a datagram on either port    -> reply or forward
//
// Relay sessions outlive the server: their tokens derive from the server's identity key
// (signal/relay_token.h), so after a restart (a new ServerCore with the same key) an agent's
// RelayAttach re-creates its session under the same id and token, and the agents' end-to-end
// sessions go on.
// A connection's life:
//
//   open --ServerHello--> awaiting Auth --Auth ok--> authenticated --close/idle/replaced--> gone
//                              |
//                              +-- wrong proof, replayed proof, unknown key, server full,
//                                  oversize frame, garbage, kPreAuthDeadline passed --> gone
//
// Before Auth a frame may be at most kMaxPreAuthFrame bytes and the connection lives at most
// kPreAuthDeadline. Every rejection sends an Error, then closes with a one-line reason for the
// log. An agent connecting again replaces its old connection. The server pings every agent
// (measuring RTT, which times the rendezvous) and drops one that has been silent for
// idle_timeout, so agents need only answer Ping with Pong.
//
// For `burrow doctor` the core keeps each pair's last rendezvous and both agents' PunchReports
// (DoctorBook, bounded) and answers a DoctorRequest behind the same ACL as a connect.
#pragma once

#include <array>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "signal/acl.h"
#include "signal/cluster_core.h"
#include "signal/control.h"
#include "signal/doctor_book.h"
#include "signal/registry.h"
#include "signal/relay_forwarder.h"
#include "signal/relay_table.h"
#include "signal/server_action.h"
#include "signal/udp_server.h"
#include "tunnel/noise.h"
#include "tunnel/rng.h"
#include "tunnel/time.h"

namespace burrow {

// The bound: an unauthenticated connection is closed after at most 10 s.
inline constexpr Duration kPreAuthDeadline = std::chrono::seconds(10);
// PeerInfo asks both agents to start punching this long after the server sends it, less each
// one's one-way delay: above the one-way delay of nearly every path to the server, so both
// start at about the same moment.
inline constexpr Duration kRendezvousLead = std::chrono::milliseconds(500);
// How many accepted proofs are remembered to tell a replay from a wrong proof in the log
// (either way it fails: the nonce is fresh).
inline constexpr size_t kRecentProofs = 1024;

// Why the server turned an agent or a request away (each also logged, most also answered with
// an Error or ConnectRefused).
enum class Refusal : uint8_t {
    kAuthFailed,          // a wrong or replayed proof
    kUnknownKey,          // a key server.toml does not list
    kServerFull,          // max_agents online
    kAuthTimeout,         // no Auth within kPreAuthDeadline
    kIdleTimeout,         // an authenticated agent went silent
    kProtocol,            // garbage, an oversize frame, an unexpected message
    kConnectNotAllowed,   // a ConnectRequest the ACL refuses
    kConnectPeerOffline,  // a ConnectRequest for an agent that is not online
    kConnectInvalid,      // an empty service name, or the agent itself
    kAttachRefused,       // a RelayAttach the server would not re-create
    kConnectClusterFailed,  // a connect to another server's agent: Redis or that server failed
    kCount
};
// "auth_failed", "unknown_key", ... as the metrics label them.
const char* to_string(Refusal r);

// Counters of the control plane, for the server's metrics (src/server_metrics.cc).
struct ServerStats {
    uint64_t registrations = 0;  // Auth accepted: an agent came online (or reconnected)
    uint64_t rendezvous = 0;     // ConnectRequests answered with PeerInfo to both agents
    // Sessions whose agents got each other's candidates again, one's having changed (a port
    // mapping granted late, a new network) while the session lived.
    uint64_t rendezvous_refreshed = 0;
    uint64_t punch_reports = 0;  // PunchReports kept for `burrow doctor`
    uint64_t punch_reports_dropped = 0;  // about a pair with no rendezvous on record
    uint64_t doctor_requests = 0;        // DoctorRequests answered (any status)
    std::array<uint64_t, static_cast<size_t>(Refusal::kCount)> refusals{};
    void refuse(Refusal r) { refusals[static_cast<size_t>(r)]++; }
};

struct ServerLimits {
    size_t max_agents = 256;    // agents online at once
    size_t max_pending = 1024;  // connections awaiting Auth
    Duration pre_auth_deadline = kPreAuthDeadline;
    // Below the 30 s after which many NATs and firewalls forget a quiet flow.
    Duration ping_interval = std::chrono::seconds(25);
    Duration idle_timeout = std::chrono::seconds(3 * 25);  // three missed pings
    size_t max_sessions_per_agent = 64;
    RelayLimits relay;
};

struct ServerCoreConfig {
    PrivateKey static_key;  // the server's X25519 key for Auth (not its TLS key)
    std::array<uint16_t, 2> stun_ports{};
    uint16_t relay_udp_port = 0;  // the main UDP port, normally stun_ports[0]
    std::string software = "burrow";
    // Answer standard 20-byte STUN Binding requests too (signal/udp_server.h).
    bool stun_standard_clients = false;
    ServerLimits limits;
    // [cluster]: share presence and rendezvous with other servers through Redis. nullopt:
    // one server, no Redis, nothing below about the cluster happens.
    std::optional<ClusterConfig> cluster;
};

class ServerCore {
  public:
    ServerCore(ServerCoreConfig config, Acl acl, Rng& rng);
    // The parts hold references to one another.
    ServerCore(const ServerCore&) = delete;
    ServerCore& operator=(const ServerCore&) = delete;

    // observed: the connection's remote address (an agent's tcp-srflx candidate, control.h).
    std::vector<ServerAction> on_connection_open(
        ConnId conn, Time now, std::optional<SocketAddress> observed = std::nullopt);
    std::vector<ServerAction> on_control_bytes(ConnId conn, ByteView bytes, Time now);
    // After this the core forgets conn; closing a connection the core closed itself is a no-op.
    std::vector<ServerAction> on_connection_closed(ConnId conn, Time now);
    std::vector<ServerAction> on_timer(Time now);
    Time next_deadline() const;
    std::optional<ServerAction> on_udp(UdpPort port, const SocketAddress& from, ByteView datagram,
                                       Time now);

    // The cluster's inputs (src/redis_link.cc); no-ops without a [cluster] section.
    std::vector<ServerAction> on_redis_up(Time now);
    std::vector<ServerAction> on_redis_down(Time now);
    std::vector<ServerAction> on_redis_reply(uint64_t tag, const RedisReply& reply, Time now);
    std::vector<ServerAction> on_cluster_message(ByteView payload, Time now);
    // nullptr without a [cluster] section.
    const ClusterCore* cluster() const { return cluster_ ? &*cluster_ : nullptr; }

    const PublicKey& static_public_key() const { return static_pub_; }
    const AgentRegistry& registry() const { return registry_; }
    const RelayTable& relays() const { return relays_; }
    const DropCounters& drops() const { return drops_; }
    const ServerStats& stats() const { return stats_; }
    const DoctorBook& doctor_book() const { return doctor_; }
    const RelayStats& relay_stats() const { return forwarder_.stats(); }
    size_t pending_count() const;
    // Smoothed control-connection RTT of an online agent, once a Pong has come back.
    std::optional<Duration> rtt(std::string_view agent) const;

  private:
    using Actions = std::vector<ServerAction>;

    struct Connection {
        ConnId id = 0;
        AuthNonce nonce{};
        ControlDecoder decoder;
        Time deadline{};    // pre-auth only
        std::string agent;  // empty until authenticated
        Time last_input{};
        Time next_ping{};
        uint64_t ping_value = 0;
        std::optional<Time> ping_sent;
        std::optional<Duration> srtt;
        std::optional<SocketAddress> observed;  // its remote address
        Time scheduled = kNever;  // its entry in timers_
        bool authenticated() const { return !agent.empty(); }
    };
    // When the connection next needs on_timer: its auth deadline, else its ping or idle time.
    Time due(const Connection& c) const;
    // Files the connection under due(c) in timers_, so next_deadline() and on_timer() touch only
    // the connections that are due instead of scanning thousands of idle ones.
    void reschedule(Connection& c);

    void handle(Connection& c, ControlMessage&& m, Time now, Actions& out);
    void on_auth(Connection& c, const Auth& auth, Time now, Actions& out);
    void on_connect_request(Connection& c, const ConnectRequest& req, Time now, Actions& out);
    // `self` registered other candidates (or another NAT behaviour or port allocation): both
    // agents of each of its live sessions get each other's PeerInfo again (a peer on another
    // server of the cluster through refresh_across).
    void refresh_sessions_of(const AgentRecord& self, Time now, Actions& out);
    // The same for session s, whose other agent is on s.remote_server: that server tells it
    // and answers with the Refresh that tells `self`.
    void refresh_across(const RelaySession& s, const AgentRecord& self, Time now, Actions& out);
    // A service opened on s that the ACL still allows in the same direction (opener, service),
    // else nullptr.
    const std::pair<std::string, std::string>* approved_opening(const RelaySession& s,
                                                                const std::string& agent) const;
    // Kept for `burrow doctor`, and passed to the peer's server when the peer is on another.
    void on_punch_report(Connection& c, PunchReport report, Time now, Actions& out);
    // The pair's relay session when `peer` is on another server of the cluster, else nullptr.
    const RelaySession* remote_session(std::string_view agent, std::string_view peer) const;
    // Both online agents of session s get each other's PeerInfo for `service`, which `opener`
    // may open on `other`; the doctor book records the rendezvous.
    void send_rendezvous(const RelaySession& s, std::string_view service,
                         const AgentRecord& opener, const AgentRecord& other, Time now,
                         Actions& out);
    void on_relay_attach(Connection& c, const RelayAttach& req, Time now, Actions& out);
    void on_doctor_request(Connection& c, const DoctorRequest& req, Time now, Actions& out);
    void on_pong(Connection& c, const Pong& pong, Time now);
    void send_ping(Connection& c, Time now, Actions& out);
    // What `to` learns of `about`; opener: `to` asked to open service. `to` may be an agent on
    // another server of the cluster.
    PeerInfo peer_info(const RelaySession& s, std::string_view service, const AgentRecord& about,
                       std::string_view to, bool opener) const;
    // PeerInfo's start_in_ms for agent `to`: kRendezvousLead less its one-way delay.
    uint32_t start_in_ms(std::string_view to) const;
    // A connect to an agent that is not on this server: through the cluster.
    void connect_through_cluster(Connection& c, const ConnectRequest& req, Time now,
                                 Actions& out);
    // Another server's rendezvous for one of our agents.
    void on_cluster_rendezvous(const ClusterRendezvous& m, Time now, Actions& out);
    // Another server's agent's PunchReport, and its new candidates, about one of our agents.
    void on_cluster_punch_report(ClusterPunchReport& m, Time now);
    void on_cluster_refresh(const ClusterRefresh& m, Time now, Actions& out);
    // Carries out what the cluster core asked for.
    void apply(std::vector<ClusterEvent> events, Time now, Actions& out);
    // Sends Error (when code is set), closes and forgets the connection; an agent whose current
    // connection it was goes offline.
    void reject(ConnId id, std::optional<ControlErrorCode> code, std::string client_message,
                std::string log_reason, Time now, Actions& out);
    void forget(ConnId id, Time now, Actions& out);
    std::string who(const Connection& c) const;

    ServerCoreConfig config_;
    PublicKey static_pub_;
    Rng& rng_;
    Acl acl_;
    DropCounters drops_;
    ServerStats stats_;
    AgentRegistry registry_;
    RelayTable relays_;
    RelayForwarder forwarder_;
    UdpServer udp_;
    std::map<ConnId, Connection> conns_;
    std::set<std::pair<Time, ConnId>> timers_;
    std::deque<AuthProof> recent_proofs_;
    DoctorBook doctor_;
    std::optional<ClusterCore> cluster_;
};

}  // namespace burrow
