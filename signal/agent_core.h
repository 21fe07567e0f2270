// AgentCore: everything the agent decides, sans-IO (docs/architecture.md §2), as ServerCore is for the
// server. src/agent_runtime.cc owns the sockets, the TLS connection, the timer and the admin
// endpoint and only executes what this returns (signal/agent_action.h).
//
//   AgentClient      the signalling protocol with the server (signal/agent_client.h)
//   one PeerLink     per peer (tunnel/peer_link.h): one session per pair of agents, every
//                    service between them a stream of it
//   forwards         [[forward]]: accepted TCP connections wait (bounded) for the peer's link
//                    and the server's approval of the service, then become streams; when the
//                    peer's stream limit is reached they wait (bounded, kStreamCreditWait) for
//                    its credit and open in order as it comes
//   exposes          [[expose]]: a stream the peer opens is checked against the service's allow
//                    list and the services the server approved for that peer, then connected
//                    to the target
//   pipes            one StreamPipe (tunnel/stream_pipe.h) per forwarded connection
//   UDP forwards     [[forward]] protocol "udp": a socket on the listen address; each client
//                    address is a flow of the session (signal/udp_flows.h), its datagrams
//                    DATAGRAM frames. Datagrams that arrive before the session and the
//                    server's approval wait in a small bounded queue.
//   UDP services     [[expose]] protocol "udp": a flow the peer opens is checked like a stream
//                    (allow list, the server's approval) and gets its own socket towards the
//                    target, so replies go back on that flow, as through a NAT
//                    (agent_core_udp.cc)
//
// Inputs are the on_* calls and on_timer(now); outputs are poll_action() (until nullopt) and
// poll_transmit(now) (until nullopt), drained after every input in the same turn, and one timer
// armed at next_deadline(). A session packet for the relay inside the TLS connection leaves as
// a WriteControl action that poll_transmit() produced: poll actions again after transmits.
//
// Links are keyed by peer name and named at the server by a relay session id. A rendezvous
// (PeerInfo) with the id of our link for that peer only adds an approved service; one with
// another id replaces the link (the peer lost its link: it restarted, or it timed out). A
// connect request names our link's id, so the server keeps the pair on it.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "signal/agent_action.h"
#include "signal/agent_client.h"
#include "signal/agent_settings.h"
#include "signal/agent_status.h"
#include "signal/log_throttle.h"
#include "signal/udp_flows.h"
#include "tunnel/peer_link.h"
#include "tunnel/stream_framer.h"
#include "tunnel/stream_pipe.h"

namespace burrow {

// Forwarded connections that wait, per peer and service for the link or the server's approval,
// and per peer for its stream credit. Each holds a descriptor and an idle socket, so a burst
// beyond this (a misbehaving client on the forward's port) is closed rather than held without
// bound; 4096 still takes a load generator's few thousand connections on a cold forward.
inline constexpr size_t kMaxWaitingConnections = 4096;
// A connection that finds the peer's stream limit reached waits this long for credit (the
// peer's MAX_STREAMS as its streams close), then is closed cleanly: long enough to ride out a
// burst of short connections, short enough that a client is not left hanging on a session
// that stays full.
inline constexpr Duration kStreamCreditWait = std::chrono::seconds(10);
// When the process is short of descriptors a forward stops accepting for this long: connections
// wait in the kernel's backlog instead of being accepted and dropped in a loop, and a quarter
// second is short against a client's connect timeout but long enough for connections to end.
inline constexpr Duration kAcceptPause = std::chrono::milliseconds(250);
// A warning that repeats per connection is logged once, then as one summary line with a count
// at most this often (signal/log_throttle.h).
inline constexpr Duration kRepeatedLogInterval = std::chrono::seconds(10);
// A peer may open a stream a moment before the server's approval of that service reaches us
// (its PeerInfo went out at the same time as ours, on another connection). Streams that wait
// for it are held this long, then refused.
// How long a doctor request waits for the server: an answer takes one round trip on the control
// connection; below the admin endpoint's 5 s request timeout, so the CLI gets our reason.
inline constexpr Duration kDoctorAnswerWait = std::chrono::seconds(3);
// Doctor requests waiting for the server at once; more are answered with an error at once.
inline constexpr size_t kMaxDoctorPending = 16;
inline constexpr Duration kApprovalWait = std::chrono::seconds(3);
inline constexpr size_t kMaxAwaitingApproval = 64;  // per peer; more are refused at once
// Datagrams held per flow while it waits for the server's approval; more are dropped (counted
// as refused).
inline constexpr size_t kMaxHeldFlowDatagrams = 16;
// A target that has not accepted within this is treated as unreachable; the client behind the
// forward sees a clean close instead of hanging on a stream that never starts.
inline constexpr Duration kTargetConnectTimeout = std::chrono::seconds(10);
// Datagrams a UDP forward holds while its session comes up or the server's approval is on its
// way (about one round trip to the server): enough for a client's first burst (a DNS query and
// its retries, a VPN handshake), and bounded; beyond it they are dropped and counted.
inline constexpr size_t kMaxHeldDatagrams = 64;
inline constexpr size_t kMaxHeldDatagramBytes = 64 * 1024;
// Datagrams for the local UDP sockets queued inside the core between drains; the executor takes
// them in the same turn, so this only bounds a pathological burst.
inline constexpr size_t kMaxLocalDatagrams = 4096;
// Socket buffers for a UDP forward's socket and each flow's socket towards its target: a few
// hundred datagrams of burst at 50 Mbit/s.
inline constexpr int kUdpForwardSocketBuffer = 1024 * 1024;
inline constexpr int kUdpFlowSocketBuffer = 256 * 1024;
// The largest datagram a UDP forward's socket takes (IPv4's UDP maximum): anything larger than
// the session carries is dropped and counted by the core, not truncated unseen by the socket.
inline constexpr size_t kMaxForwardedUdpDatagram = 65507;

// Direct TCP paths (issue 15, agent_core_tcp.cc).
// One connect to a peer's TCP candidate is given this long: a SYN the peer's NAT drops is
// resent by the kernel after 1 s, and the peer's own SYN (which opens its NAT for ours, or
// crosses ours: a simultaneous open) leaves at the same start time, so a crossing happens well
// within it; a failed attempt is tried again on the UDP punch's schedule.
inline constexpr Duration kTcpPunchConnectTimeout = std::chrono::seconds(3);
// A connection on the peer listener must carry a frame some link's session knows (the peer's
// PATH_CHALLENGE, sealed with the session's keys) within this, or it is closed: the peer sends
// its first challenge at once when it has keys, and the relayed handshake takes a round trip.
inline constexpr Duration kTcpClaimWait = std::chrono::seconds(5);
// Unclaimed connections at once, and the bytes each may send before a link claims it: a few
// honest challenges fit; a scanner or a stranger holding connections open does not get more.
inline constexpr size_t kMaxUnclaimedTcp = 16;
inline constexpr size_t kMaxUnclaimedTcpBytes = 16 * 1024;

enum class ConnectFailure : uint8_t {
    kUnresolved,  // the target's name did not resolve
    kRefused,     // connect() failed or timed out
};

struct AgentCoreConfig {
    std::string name;  // [agent] name, for the first log lines
    PrivateKey key;
    HostPort server;
    // Every server of the cluster the agent may use (issue 21), `server` among them; empty
    // means just `server`. The agent starts at a random one (so agents spread over the
    // servers), or at the first with ServerOrder::kListed, and moves to the next each time
    // its connection fails or ends.
    std::vector<HostPort> servers;
    ServerOrder server_order = ServerOrder::kRandom;
    std::string software = "burrow";
    std::vector<ExposeConfig> expose;
    std::vector<ForwardConfig> forward;
    SessionConfig session;              // every link's
    int64_t wall_clock_at_zero_us = 0;  // see Session
    // `[agent] keepalive`: the relay binding's refresh interval; nullopt: learned.
    std::optional<Duration> keepalive;
    // `[agent] stun_servers`: standard STUN servers asked from the main socket; names are
    // resolved through ResolveStunServer actions.
    std::vector<HostPort> stun_servers;
    // `[agent] udp_idle_timeout`, and the cap on flows per UDP forward or service.
    Duration udp_idle_timeout = kDefaultUdpIdleTimeout;
    size_t max_udp_flows = kDefaultMaxUdpFlows;
    // `[agent] port_mapping`: ask the gateway for a mapping of the main UDP socket's port
    // (signal/port_mapper.h). Off here so a core built by a test asks nothing unless told;
    // the config file's default is on.
    bool port_mapping = false;
};

// The peer's candidates from a PeerInfo as the link punches them: UDP addresses (the first
// server-reflexive and mapped ones named apart) and TCP addresses (issue 15) kept apart.
PunchPlan punch_plan_from(const std::vector<Candidate>& candidates);

class AgentCore {
  public:
    // Precondition: crypto_init() has succeeded.
    AgentCore(AgentCoreConfig config, Rng& rng, Time now);
    AgentCore(const AgentCore&) = delete;
    AgentCore& operator=(const AgentCore&) = delete;

    // The forwards start listening and the first dial is due. host_addresses: this machine's
    // interface addresses with the main UDP socket's port (the same-LAN candidates, and the
    // public ones of IPv6). udp_ipv6: the main socket is dual-stack, so it reaches IPv6
    // addresses (STUN servers, peers) as well as IPv4 ones.
    void start(std::vector<SocketAddress> host_addresses, Time now, bool udp_ipv6 = false);
    // Closes everything; ends with Exit{0}.
    void stop(Time now);
    // [[expose]] and [[forward]] from a reloaded file: added forwards listen, removed ones stop,
    // open connections and links stay.
    void reload(std::vector<ExposeConfig> expose, std::vector<ForwardConfig> forward, Time now);

    // --- the server ---
    // server: the address the control connection reached; resolved: every address the
    // server's name gave (the core probes the server's address of the other family too, so a
    // dual-stack agent learns its reflexive address of both families).
    void on_control_connected(const SocketAddress& server, std::span<const SocketAddress> resolved,
                              Time now);
    void on_control_bytes(ByteView bytes, Time now);
    // The connection or the attempt ended (also after a CloseControl).
    void on_control_closed(std::string_view reason, Time now);
    // What a MapPort{kMap} gave.
    void on_port_mapping_result(PortMappingResult result, Time now);
    // What a ResolveStunServer gave: an address, or the error (one line).
    void on_stun_server_resolved(size_t index, std::optional<SocketAddress> address,
                                 std::string_view error, Time now);

    // --- UDP ---
    // The mutable form lets a link open a data packet in place (the datagram's bytes are
    // scratch afterwards); the const form copies it once.
    void on_udp(RouteId route, const SocketAddress& from, MutableByteView datagram, Time now);
    void on_udp(RouteId route, const SocketAddress& from, ByteView datagram, Time now);
    // A vector, the way tests hold datagrams they may deliver again: the copying form (a
    // non-const vector would otherwise convert to both views).
    void on_udp(RouteId route, const SocketAddress& from, const Bytes& datagram, Time now) {
        on_udp(route, from, ByteView(datagram), now);
    }
    void on_udp_socket_failed(RouteId route, std::string_view error);
    // Every datagram of one socket read was handed in: each link acknowledges what it got in
    // one ACK (Connection::on_receive_batch_end); call before draining the output.
    void on_udp_batch_end();

    // --- forwards and TCP ---
    void on_listen_failed(std::string_view forward, std::string_view error, Time now);
    // The forward's last accepted connection left the process few of its limit's descriptors.
    void on_descriptors_low(std::string_view forward, int limit, Time now);
    // A connection accepted on a forward's listener; src/ does not read it until
    // TcpResumeReading. nullopt: close it at once.
    std::optional<TcpId> on_tcp_accepted(std::string_view forward, Time now);
    void on_tcp_connected(TcpId id, Time now);
    void on_tcp_connect_failed(TcpId id, ConnectFailure why, std::string_view error, Time now);
    // How many bytes src/ may read from the socket now.
    size_t tcp_read_space(TcpId id) const;
    void on_tcp_data(TcpId id, ByteView data, Time now);
    void on_tcp_eof(TcpId id, Time now);
    // After TcpFlush: bytes for the socket, until 0 or the socket's queue is full.
    size_t tcp_output(TcpId id, MutableByteView out, Time now);
    // The socket's queue has room again after tcp_output filled it.
    void on_tcp_drained(TcpId id, Time now);
    void on_tcp_shutdown_done(TcpId id, Time now);
    // The socket is gone (whoever closed it); the last call for id.
    void on_tcp_closed(TcpId id, Time now);

    // --- direct TCP paths to peers (issue 15) ---
    // src/ listens on `port` (shared with the control connection, SO_REUSEPORT) on every local
    // address: they are offered as tcp-host candidates and the peers' TCP candidates are
    // connected to when punching starts. Again with a new port when src/ moves the listener
    // (each new control connection leaves from a fresh port); 0: no TCP paths from now on.
    // Takes effect at the next registration.
    void enable_tcp_paths(uint16_t port);
    // A connection accepted on that listener, from `from`; nullopt: close it (too many wait to
    // be claimed). Its first frame must be one a link's session knows.
    std::optional<RouteId> on_peer_tcp_accepted(const SocketAddress& from, Time now);
    // A ConnectPeerTcp succeeded (also by a simultaneous open).
    void on_peer_tcp_connected(RouteId route, Time now);
    void on_peer_tcp_data(RouteId route, ByteView data, Time now);
    // The socket's unsent queue is above its high-water mark (false), or drained (true).
    void on_peer_tcp_writable(RouteId route, bool writable);
    // The connection ended or the connect failed (also after ClosePeerTcp); the last call.
    void on_peer_tcp_closed(RouteId route, std::string_view reason, Time now);

    // --- time and output ---
    void on_timer(Time now);
    Time next_deadline() const;
    std::optional<AgentAction> poll_action();
    // The next datagram, built into the front of `out`; nullopt when there is nothing to
    // send now. Precondition: out.size() >= kMaxUdpDatagram (signal/udp_messages.h), the
    // largest datagram the agent sends.
    std::optional<UdpWrite> write_transmit(Time now, MutableByteView out);
    // write_transmit into a vector of its own.
    std::optional<UdpTransmit> poll_transmit(Time now);

    // `burrow doctor PEER`: asks the server for the pair's last rendezvous. A DoctorResult
    // action with the returned id follows: at once when offline, else when the server answers,
    // or after kDoctorAnswerWait.
    uint32_t doctor(std::string_view peer, Time now);

    AgentStatus status(Time now) const;
    const AgentClient& client() const { return client_; }
    // The link with peer, if any (tests and the simulator look inside).
    const PeerLink* link(std::string_view peer) const;
    size_t pipe_count() const { return pipes_.size(); }

  private:
    struct Peer {
        std::string name;
        uint64_t relay_id = 0;
        std::unique_ptr<PeerLink> link;
        std::set<std::string> may_open;    // approved: we open these services on the peer
        std::set<std::string> may_accept;  // approved: the peer opens these on us
        std::map<StreamId, TcpId> streams;
        // A stream or flow the peer opened before the server's approval of its service
        // reached us (StreamId and FlowId are both the peer's 62-bit ids).
        struct Unapproved {
            uint64_t id;
            std::string service;
            Time deadline;
            // A flow's datagrams that came before the approval (at most
            // kMaxHeldFlowDatagrams): UDP is not resent, so dropping them would lose a
            // client's first request for good (iperf3's one UDP hello, a DNS query).
            std::deque<Bytes> datagrams = {};
        };
        std::deque<Unapproved> unapproved;
        // Forwarded connections waiting for the peer's stream credit, oldest first.
        struct CreditWaiter {
            TcpId id;
            std::string forward;
            Time deadline;
        };
        std::deque<CreditWaiter> credit_waiters;
        // UDP flows on this link: by flow id, the forward (listen key) or service that owns it.
        struct FlowOwner {
            bool forward = false;
            std::string key;
        };
        std::map<FlowId, FlowOwner> flows;
        std::deque<Unapproved> unapproved_flows;  // the same, for UDP flows
        PathTraffic traffic;
        bool dead = false;
        // TCP punching: the peer's TCP candidates are connected to at the start time and again
        // on the UDP punch's pace (punch_attempt_at) while there is no direct UDP path and no
        // TCP connection to the peer. A new session starts it afresh.
        struct TcpPunch {
            std::vector<SocketAddress> candidates;
            Time started = kNever;
            size_t round = 0;
            Time at = kNever;  // the next round
        };
        TcpPunch tcp_punch;
    };
    // A direct TCP connection to a peer: one we connect (peer known), or one the listener
    // accepted (peer unknown until a link claims its first frame).
    struct PeerTcp {
        std::string peer;  // empty: not claimed yet
        SocketAddress remote;
        bool initiated = false;  // a ConnectPeerTcp of ours
        bool connected = false;
        bool on_link = false;        // added to the link as a path
        bool closing = false;        // ClosePeerTcp asked; forgotten at on_peer_tcp_closed
        Time claim_deadline = kNever;
        size_t unclaimed_bytes = 0;
        StreamDeframer deframer{kTcpPathLengthSize, 1, kMaxTcpPathFrame};
    };
    struct Pipe {
        std::string peer;
        StreamPipe pipe;
        std::string origin;  // "forward 127.0.0.1:8080" or "expose web": status counts by it
        std::string label;   // names the connection in log lines
        bool noted = false;  // its PipeNote has been logged
    };
    struct Forward {
        ForwardConfig config;
        bool initial = false;  // from the file at start: failing to listen is fatal
        uint64_t connections = 0;
        ForwardRefusals refused;
        uint64_t resets = 0;
        Time paused_until = kNever;  // accepting again then (kNever: not paused)
    };
    struct ExposeCounters {
        uint64_t streams = 0;
        uint64_t refused = 0;
    };
    struct Waiter {
        TcpId id;
        std::string forward;
    };
    using PeerService = std::pair<std::string, std::string>;
    struct UdpForward {
        ForwardConfig config;
        RouteId route = 0;
        bool initial = false;
        UdpFlowTable<SocketAddress, FlowId> flows;
        std::map<FlowId, SocketAddress> clients;
        // Datagrams from clients waiting for the session or the server's approval.
        struct Held {
            SocketAddress from;
            Bytes data;
        };
        std::deque<Held> held;
        size_t held_bytes = 0;
        bool connect_asked = false;
        UdpCounters counters;
    };
    struct UdpFlowSocket {  // the exposing side's socket of one flow, towards the target
        std::string peer;
        FlowId flow = 0;
        std::string service;
        SocketAddress target;
    };
    struct UdpService {
        UdpFlowTable<std::pair<std::string, FlowId>, RouteId> flows;
        UdpCounters counters;
    };

    void log(Severity severity, std::string line);
    // A warning that may repeat per connection: key is the line without per-connection details.
    void warn_repeated(const std::string& key, Time now);
    void log_repeated_summaries(Time now);
    // Closes a forwarded connection that never got its stream, counting why.
    void refuse_forwarded(TcpId id, const std::string& forward, uint64_t ForwardRefusals::*why,
                          bool clean);
    // Closes everything and asks src/ to exit with status (and message on stderr).
    void shut_down(int status, std::string message, Time now);
    void act(AgentAction action) { actions_.push_back(std::move(action)); }
    void after_client(Time now);
    void on_client_event(const Registered& e, Time now);
    void on_client_event(const AuthFailed& e, Time now);
    void on_client_event(const PeerReady& e, Time now);
    void on_client_event(const ConnectRefusedEvent& e, Time now);
    void on_client_event(const RelayReceived& e, Time now);
    void on_client_event(const Disconnected& e, Time now);
    void on_client_event(const NatDiscovered& e, Time now);
    void on_client_event(const UdpBound& e, Time now);
    void on_client_event(const UdpBlocked& e, Time now);
    void on_client_event(const UdpMoved& e, Time now);
    void on_client_event(const RelaySessionDetached& e, Time now);
    void on_client_event(const StunServerReport& e, Time now);
    void on_client_event(const DoctorAnswer& e, Time now);
    void report_punch(Peer& peer, const std::optional<SocketAddress>& direct, DirectKind kind,
                      DirectSource source, std::optional<Duration> time_to_direct);
    ReportPath report_path(std::optional<DirectKind> direct) const;
    void expire_doctor(Time now);
    void fail_doctor(std::string reason);
    uint32_t next_doctor_id_ = 1;
    std::map<uint32_t, Time> doctor_pending_;  // request id -> when to give up
    bool udp_ipv6_ = false;  // start()
    // ResolveStunServer for each configured name without an address (at start, and again at
    // each registration for those that failed).
    void resolve_stun_servers();
    std::vector<bool> stun_resolving_;  // by index: a ResolveStunServer is out
    // The port mapper's requests become MapPort actions, its lines logs, its mapping our
    // kMapped candidate.
    void after_port_mapper();

    void start_forward(const ForwardConfig& f, bool initial);
    void open_waiters(Peer& peer, Time now);
    void open_forward_stream(Peer& peer, TcpId id, const std::string& forward, Time now);
    // false: the peer's stream limit is reached.
    bool try_open_stream(Peer& peer, TcpId id, const Forward& fw);
    void open_credit_waiters(Peer& peer);
    void expire_credit_waiters(Peer& peer, Time now);
    void resume_forwards(Time now);
    void on_stream_opened(Peer& peer, StreamId id, const std::string& service, Time now);
    void accept_stream(Peer& peer, StreamId id, const ExposeConfig& expose, Time now);
    void refuse_stream(Peer& peer, StreamId id, const std::string& service, ResetReason reason,
                       const std::string& why, Time now);
    void expire_unapproved(Peer& peer, Time now);
    const ExposeConfig* find_expose(std::string_view service) const;

    // --- UDP forwards and services (agent_core_udp.cc) ---
    void start_udp_forward(const ForwardConfig& f, bool initial);
    void stop_udp_forward(const std::string& key, Time now);
    UdpService& udp_service(const std::string& service);
    void on_forward_datagram(UdpForward& fw, const SocketAddress& from, ByteView data, Time now);
    void send_forward_datagram(Peer& peer, UdpForward& fw, const SocketAddress& from,
                               ByteView data, Time now);
    void on_target_datagram(RouteId route, const SocketAddress& from, ByteView data, Time now);
    // Counts what send_datagram said.
    static void count_send(UdpCounters& c, DatagramVerdict verdict);
    void release_held_datagrams(Peer& peer, Time now);
    void refuse_held_datagrams(const std::string& peer, const std::string& service);
    void on_flow_opened(Peer& peer, FlowId flow, const std::string& service, Time now);
    void refuse_flow(Peer& peer, FlowId flow, const std::string& service, const std::string& why,
                     Time now);
    void expire_unapproved_flows(Peer& peer, Time now);
    // After on_flow_opened for a flow that waited: its held datagrams go to the target, wait
    // on (still unapproved), or are counted as refused.
    void hand_on_held_flow_datagrams(Peer& peer, Peer::Unapproved& waited, Time now);
    void on_flow_closed(Peer& peer, FlowId flow);
    void on_flow_datagram(Peer& peer, FlowId flow, Bytes data, Time now);
    // Forgets one flow on our side (its socket too, on the exposing side).
    void drop_flow(Peer& peer, FlowId flow);
    void expire_udp_flows(Time now);
    void queue_local_datagram(RouteId route, const SocketAddress& to, Bytes data,
                              UdpCounters& counters);
    uint64_t max_datagram_for(const std::string& peer) const;

    Peer* find_peer_by_relay(uint64_t relay_id);
    // Which of the server's UDP ports `from` is, if it is one.
    std::optional<UdpPort> from_server_port(const SocketAddress& from) const;
    // The same for the server's other-family address (other_server_address_).
    std::optional<UdpPort> from_other_server_port(const SocketAddress& from) const;
    void process(Peer& peer, Time now);
    void wake_relayed_links(Time now);
    bool relay_wait_logged_ = false;  // "relayed sessions waiting for the server", this outage
    void on_link_event(Peer& peer, const LinkEvent& e, Time now);
    void on_stream_event(Peer& peer, const ConnectionEvent& e, Time now);
    void end_link(Peer& peer, const std::string& reason, bool log_it, Time now);
    std::string path_of(const PeerLink& link) const;

    // --- direct TCP paths (agent_core_tcp.cc) ---
    void start_tcp_punch(Peer& peer, const std::vector<SocketAddress>& candidates, Time now);
    void tcp_punch_round(Peer& peer, Time now);
    // A claimed connection's frame for its link.
    void deliver_tcp_frame(RouteId route, PeerTcp& c, MutableByteView frame, Time now);
    // The connection goes to its peer's link as a path; duplicates are tie-broken.
    void add_tcp_to_link(RouteId route, PeerTcp& c, Time now);
    void close_peer_tcp(RouteId route, Time now);
    void close_link_tcps(const std::string& peer, Time now);
    void expire_unclaimed_tcp(Time now);
    Time tcp_deadline() const;
    uint16_t tcp_port_ = 0;
    std::vector<SocketAddress> host_addresses_;  // start()'s, for the tcp-host candidates
    std::map<RouteId, PeerTcp> peer_tcps_;

    Pipe* find_pipe(TcpId id);
    // Carries out what the pipe asks, and forgets it once done.
    void drain_pipe(TcpId id, Time now);
    Connection* connection_of(const Pipe& p);

    AgentCoreConfig config_;
    Rng& rng_;
    size_t server_index_ = 0;  // config_.server is config_.servers[server_index_]
    Time started_at_;
    AgentClient client_;
    PortMapper port_mapper_;  // after config_: built from it
    std::optional<SocketAddress> server_address_;
    // The server's first address of the other family, when our socket can reach it.
    std::optional<SocketAddress> other_server_address_;
    std::optional<NatDiscovered> nat_;
    std::map<std::string, Peer, std::less<>> peers_;
    std::map<RouteId, std::string> socket_owner_;  // link sockets, by the peer that holds them
    RouteId next_route_ = kRouteMain + 1;
    std::map<TcpId, Pipe> pipes_;
    TcpId next_tcp_ = 1;
    std::map<std::string, Forward, std::less<>> forwards_;  // by listen address as written
    std::map<std::string, ExposeCounters> expose_counters_;
    std::map<std::string, UdpForward, std::less<>> udp_forwards_;  // by listen address
    std::map<RouteId, std::string> udp_forward_routes_;           // their sockets
    std::map<RouteId, UdpFlowSocket> udp_flow_sockets_;           // exposing side, by route
    std::map<std::string, UdpService> udp_services_;              // by service
    std::deque<UdpTransmit> local_datagrams_;  // for UDP forwards' clients and targets
    std::map<PeerService, std::deque<Waiter>> waiting_;
    std::deque<AgentAction> actions_;
    std::deque<UdpTransmit> final_transmits_;  // CLOSE packets of links ended by stop()
    Bytes receive_copy_;  // what the const on_udp hands a link to open in place, reused
    AgentDrops drops_;
    PunchStats punch_;
    LogThrottle repeated_{kRepeatedLogInterval};
    // The Diffie-Hellman budget all links' responders share (tunnel/cookie.h): a handshake
    // flood spread over several peers' links still puts the agent under load.
    HandshakeLoad handshake_load_;
    bool stopping_ = false;
    bool dial_pending_ = false;  // DialServer emitted, no connected/closed report yet
};

}  // namespace burrow
