// The agent's side of the signalling protocol, sans-IO: one agent's relationship with the
// server (docs/architecture.md §5-5). src/ owns the TLS connection, the UDP socket and the timer and
// drives this object:
//
//   want_connect(now) / reconnect_at()     when to dial the server
//   on_dial_started(now)                   a TCP+TLS connection attempt began
//   on_connected(now)                      the TLS handshake finished
//   on_control_bytes(bytes, now)           decrypted bytes from the server
//   on_disconnected(reason, now)           the attempt failed or the connection went away
//   on_udp(port, bytes, now)               a datagram from one of the server's two UDP ports
//   on_timer(now)                          next_deadline() was reached
//   connect / send_relay / set_host_candidates / forget_session    the agent's requests
//
// and drains, after every call: poll_control() (bytes for the TLS connection), poll_udp()
// (datagrams for the server's ports), poll_event() (what the agent must know).
//
// A connection's life:
//
//   waiting --dial--> dialing --TLS up--> awaiting hello --ServerHello/Auth--> awaiting AuthOk
//      ^                                                                            |
//      |                                                                          AuthOk
//      |                                                                            v
//      +--- backoff <-- closed, garbage, server Error, timeout <-- online: Bind + STUN to both
//                                                                   ports, then Register
//   any state --wrong key, unknown key, replaced--> failed (AuthFailed, never dials again)
//
// Online, the client binds its UDP address (signal/udp_binding.h) and learns its reflexive
// address and NAT mapping (signal/nat_probe.h), over the control connection's family and, when
// the server has an address of the other family too (set_other_family_server), over that one;
// when the probes are done it registers its host candidates plus the reflexive ones. Connects asked for before that wait (up to
// kPendingConnectTimeout), so the peer always learns our candidates. The configured standard
// STUN servers (signal/stun_servers.h) are asked at the same time as the server's ports, again
// when the host addresses change or the server says the NAT moved us; registration does not
// wait for them, and an answer that changes the candidates (extra reflexive ones) or the
// mapping (a second opinion) sends Register again. Relay packets go by UDP
// (as RelayFrom, which lets the server follow a NAT that moved us) while the binding is
// confirmed, else over TLS; while offline they are dropped and counted.
//
// Relay sessions outlive the connection: the client keeps each session's token (until
// forget_session) and, once authenticated again (with the same server or one that restarted),
// sends a RelayAttach for each, so the server re-creates them; RelayDetached means it will not.
//
// When the client ends a connection itself (garbage, a protocol error, a timeout) it emits
// Disconnected or AuthFailed; src/ then writes what poll_control() returns and closes the TLS
// connection. A later on_disconnected for that connection is ignored, so src/ must not report
// one for a connection it has already replaced by a new dial.
#pragma once

#include <chrono>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "signal/agent_events.h"
#include "signal/agent_udp.h"
#include "signal/control.h"
#include "signal/nat_probe.h"
#include "signal/reconnect_backoff.h"
#include "signal/stun_servers.h"
#include "signal/udp_binding.h"
#include "tunnel/noise.h"
#include "tunnel/rng.h"
#include "tunnel/time.h"

namespace burrow {

// A TCP connect plus a TLS handshake that has not finished in this time will not: the network
// or the server is down, and the next attempt (after backoff) does better than waiting.
inline constexpr Duration kDialTimeout = std::chrono::seconds(15);
// The server closes an unauthenticated connection after kPreAuthDeadline (10 s): if it has not
// answered our Auth by then, it never will.
inline constexpr Duration kAuthTimeout = std::chrono::seconds(10);
// The server pings every 25 s (ServerLimits::ping_interval); three missed pings and a margin
// mean the connection is dead even if TCP has not noticed.
inline constexpr Duration kServerSilenceTimeout = std::chrono::seconds(90);
// Sooner than that, the agent asks itself: when nothing has come from the server for longer
// than its ping interval and a margin, the agent pings, and a server that does not answer
// within kPongTimeout is gone. A NAT that forgot the connection (a router reboot, a conntrack
// flush) drops the server's pings silently, and a server restarted meanwhile would otherwise
// wait 90 s for us to re-register, its relays refusing our bindings all that time.
inline constexpr Duration kQuietBeforePing = std::chrono::seconds(30);
inline constexpr Duration kPongTimeout = std::chrono::seconds(10);
// A connect() waits this long for the client to be online and registered: long enough for a
// reconnect's first backoff steps and a registration whose STUN probes all went unanswered
// (3.1 s), short enough that a forwarded TCP client does not hang.
inline constexpr Duration kPendingConnectTimeout = std::chrono::seconds(10);
// One forwarded port's burst of new TCP connections fits; more means the server is gone.
inline constexpr size_t kMaxPendingConnects = 64;
// Four times the server's default per-agent cap (ServerLimits::max_sessions_per_agent), so the
// client never forgets a session the server still relays; the oldest is forgotten beyond it.
inline constexpr size_t kMaxRelaySessions = 256;
// About 180 full session packets: more than src/ ever leaves unwritten between two drains.
// Beyond it a relay packet is dropped and the session's loss recovery resends it, which does
// better than a queue that grows without bound.
inline constexpr size_t kMaxQueuedRelayBytes = 256 * 1024;
// The server asks for a start within kRendezvousLead (500 ms); a larger value is a broken server,
// and waiting longer than this would only delay the connection.
inline constexpr Duration kMaxRendezvousDelay = std::chrono::seconds(5);

struct AgentClientConfig {
    PrivateKey key;  // the agent's static key; its public half is its identity
    // When set, the server's auth key (ServerHello) must be this one. The TLS certificate pin
    // already authenticates the server; this also catches a server whose identity key changed.
    std::optional<PublicKey> server_key;
    std::string software = "burrow";  // Auth and STUN SOFTWARE; cut to the protocol's caps
    // `[agent] keepalive`: how often the UDP binding is refreshed; nullopt: learned
    // (signal/udp_binding.h).
    std::optional<Duration> keepalive;
    // `[agent] stun_servers` (signal/stun_servers.h): more reflexive candidates and a second
    // opinion on the NAT's mapping. Names are resolved by the caller (set_stun_server_address).
    std::vector<HostPort> stun_servers;
};

enum class AgentClientState {
    kWaiting,         // not connected; dial at reconnect_at()
    kDialing,         // TCP/TLS in progress
    kAwaitingHello,   // TLS up, no ServerHello yet
    kAwaitingAuthOk,  // Auth sent
    kOnline,          // authenticated (registered() once Register is sent)
    kFailed,          // AuthFailed: never dials again
};
const char* to_string(AgentClientState s);

class AgentClient {
  public:
    // Precondition: crypto_init() has succeeded. The first dial is wanted at `now`.
    AgentClient(AgentClientConfig config, Rng& rng, Time now);
    AgentClient(const AgentClient&) = delete;
    AgentClient& operator=(const AgentClient&) = delete;

    // --- dialing ---
    // True when src/ should start a connection attempt now.
    bool want_connect(Time now) const;
    // When the next attempt is due; kNever while connected, dialing or failed.
    Time reconnect_at() const;

    // --- inputs ---
    void on_dial_started(Time now);
    void on_connected(Time now);
    void on_control_bytes(ByteView bytes, Time now);
    void on_disconnected(std::string_view reason, Time now);
    // A datagram whose source is the server's `from` port (src/ filters by address).
    void on_udp(UdpPort from, ByteView datagram, Time now);
    // --- the server's address of the other family (issue 17) ---
    // The family (true: IPv6) of the server's address that the control connection does not use
    // and our UDP socket can reach; nullopt: none (told before on_connected). Once online, when
    // we have a host address of that family, the client also runs the NAT probe against that
    // address's two STUN ports (ServerDatagram::other_family), and registers when both probes
    // are done: a dual-stack agent whose control connection is IPv6 still learns its public
    // IPv4 address and how its IPv4 NAT maps. (Without a host address of the family, e.g. on
    // an IPv6-only machine, the probe could only wait out its 3.1 s.)
    void set_other_family_server(std::optional<bool> v6) { other_family_v6_ = v6; }
    // A datagram from the other-family address's `from` port: only its STUN answers are taken
    // (Bind and the relay use the control connection's family).
    void on_other_family_udp(UdpPort from, ByteView datagram, Time now);
    void on_timer(Time now);
    // --- standard STUN servers (signal/stun_servers.h), from the agent's main socket ---
    // What resolving stun_servers[i] gave; probed at once if online.
    void set_stun_server_address(size_t i, std::optional<SocketAddress> address,
                                 std::string error, Time now);
    // Whether a datagram from `from` is the answer a STUN server of ours is waiting for.
    bool expects_stun_server(const SocketAddress& from, ByteView datagram) const {
        return stun_servers_.expects(from, datagram);
    }
    bool knows_stun_server(const SocketAddress& from) const { return stun_servers_.knows(from); }
    // A STUN datagram from a configured server's address (counted and dropped unless it
    // answers our request).
    void on_stun_server_udp(const SocketAddress& from, ByteView datagram, Time now);

    // --- the agent's requests ---
    // Asks the server for peer's service. session_id: the relay session of our link with the
    // peer (0: none), which the server keeps the pair on. The answer is a PeerReady or a
    // ConnectRefused event. Waits (bounded) while the client is not yet registered.
    void connect(std::string_view peer, std::string_view service, uint64_t session_id,
                 Time now);
    // A session packet for the peer of session_id, through the server's relay. False, and
    // counted, when dropped.
    bool send_relay(uint64_t session_id, ByteView payload, Time now);
    // The agent's local addresses with its UDP socket's port (the same-LAN candidates).
    // Registered again at once if the client is already registered (the network changed).
    void set_host_candidates(std::vector<SocketAddress> addresses, Time now);
    // The agent's local addresses with the port its peer TCP listener shares with the control
    // connection (issue 15): registered as tcp-host candidates after the UDP ones; the server
    // adds the tcp-srflx one it sees. Takes effect at the next registration.
    void set_tcp_host_candidates(std::vector<SocketAddress> addresses) {
        tcp_host_candidates_ = std::move(addresses);
    }
    // How a link's punching settled, for `burrow doctor` (signal/doctor_book.h). Sent only
    // while online (a report made while offline describes a path the server never joined):
    // false when it was not sent.
    bool send_punch_report(PunchReport report);
    // `burrow doctor`: asks the server for the pair's record; the answer is a DoctorAnswer
    // event with the same request_id. False when offline (nothing sent).
    bool request_doctor(uint32_t request_id, std::string_view peer);
    // Our candidates as last registered (empty before the first registration).
    std::vector<Candidate> registered_candidates() const {
        return registered_as_ ? registered_as_->candidates : std::vector<Candidate>{};
    }
    // The public address the gateway mapped to our UDP socket (signal/port_mapper.h), or nullopt
    // when none is held: registered again at once if it changed.
    void set_mapped_candidate(std::optional<SocketAddress> mapped);
    // The session ended: drop its relay token (the server is not told; its entry ages out).
    void forget_session(uint64_t session_id);
    // The binding's refresh interval now (configured or learned).
    Duration keepalive() const { return binding_.refresh_interval(); }

    // --- outputs ---
    std::optional<Bytes> poll_control();
    std::optional<ServerDatagram> poll_udp();
    // Binding requests for the standard STUN servers, to send from the main socket.
    std::optional<StunServerDatagram> poll_stun_server_udp() {
        return stun_servers_.poll_transmit();
    }
    std::optional<AgentEvent> poll_event();
    Time next_deadline() const;

    // --- state ---
    AgentClientState state() const { return state_; }
    bool online() const { return state_ == AgentClientState::kOnline; }
    bool registered() const { return online() && registered_; }
    bool udp_bound() const { return online() && binding_.bound(); }
    // The name the server gave us in AuthOk; empty before the first.
    const std::string& name() const { return name_; }
    // The server's port numbers from AuthOk (nullopt before it): kMain is relay_udp_port,
    // kSecondary its other STUN port.
    std::optional<uint16_t> server_udp_port(UdpPort port) const;
    const PublicKey& public_key() const { return public_key_; }
    size_t relay_session_count() const { return sessions_.size(); }
    const AgentClientStats& stats() const { return stats_; }
    const StunServerSet& stun_servers() const { return stun_servers_; }
    // The NAT mapping as registered: per family, the server probe's verdict refined by the
    // STUN servers' answers of that family; IPv4's when it is known (the family whose NAT
    // needs a technique: an IPv6 firewall does not translate), else the other one.
    NatMapping mapping() const;
    // How the NAT allocates ports (tunnel/port_prediction.h), from the main socket's mapped
    // ports in the order its mappings were made: the server's main port, its secondary port
    // (the probe's requests leave first: AgentCore drains them before the STUN servers'), then
    // the STUN servers in configuration order. Unknown with fewer than three answers, so an
    // agent without stun_servers cannot tell (the server has two ports).
    PortAllocation allocation() const;
    // What the probe of the other family's server address found (nullopt: none ran or it
    // has not finished).
    const std::optional<NatProbeResult>& other_family_nat() const { return other_nat_; }

  private:
    void on_probe_answer(StunAnswer answer, Time now);
    PortAllocation reported_allocation_;  // in the last NatDiscovered
    struct KnownSession {
        RelayToken token{};
        std::string peer;
        SessionRole role = SessionRole::kInitiator;  // ours
        uint64_t age = 0;  // insertion order, for eviction
    };
    struct PendingConnect {
        std::string peer;
        std::string service;
        uint64_t session_id = 0;
        Time deadline{};
    };

    void handle(ControlMessage&& m, Time now);
    void on_server_hello(const ServerHello& hello, Time now);
    void on_auth_ok(AuthOk&& ok, Time now);
    void on_server_error(const ControlErrorMessage& e, Time now);
    void on_peer_info(PeerInfo&& info, Time now);
    void on_relay_datagram(ByteView datagram, Time now);
    void on_relay_data(RelayData&& data);
    void on_relay_detached(const RelayDetached& d);
    void attach_sessions();
    void report_binding();
    void queue_udp(std::deque<ServerDatagram>& staged);
    // The STUN servers' answers and silences since the last call: events, and a new Register
    // when they changed our candidates or mapping.
    void after_stun_servers();
    // Host candidates, the gateway's mapped address, the reflexive address the server's main port
    // saw (over the control connection's family, then over the other one), then those the STUN
    // servers saw; each address once.
    std::vector<Candidate> candidates() const;
    // Sends Register with candidates() and mapping() unless the server has exactly those.
    void send_register();
    void maybe_register(Time now);
    void flush_pending_connects(Time now);
    void expire_pending_connects(Time now);
    void refuse_locally(std::string peer, std::string service, std::string reason);
    void remember_session(const PeerInfo& info);

    void send_control(const ControlMessage& m);
    // When our liveness Ping is due, or its answer overdue.
    Time ping_deadline() const;
    // Ends the connection (or attempt) and schedules the next one.
    void disconnect(std::string reason, Time now);
    // Sends Error{kProtocol} to the server, then disconnects.
    void protocol_error(std::string reason, Time now);
    // Stops for good.
    void fail(std::string reason);
    void reset_connection();
    void emit(AgentEvent e) { events_.push_back(std::move(e)); }

    AgentClientConfig config_;
    PublicKey public_key_;
    Rng& rng_;
    AgentClientStats stats_;
    AgentClientState state_ = AgentClientState::kWaiting;

    ReconnectBackoff backoff_;
    Time reconnect_at_;
    Time state_deadline_ = kNever;  // dialing, or awaiting hello/AuthOk
    Time last_input_{};
    std::optional<Time> ping_sent_at_;  // our own Ping, nothing heard since (kQuietBeforePing)
    uint64_t ping_value_ = 0;

    ControlDecoder decoder_{kMaxControlFrame};
    std::string name_;
    UdpToken udp_token_{};
    std::optional<std::array<uint16_t, 2>> server_ports_;
    NatProbe probe_;
    NatProbe other_probe_;  // the server's other-family address (set_other_family_server)
    std::optional<bool> other_family_v6_;
    std::optional<NatProbeResult> other_nat_;
    StunServerSet stun_servers_;
    std::optional<Register> registered_as_;  // what the server was last told
    std::optional<NatProbeResult> nat_;
    UdpBinding binding_;
    UdpBindingStatus reported_binding_ = UdpBindingStatus::kUnknown;
    bool registered_ = false;

    std::vector<SocketAddress> host_candidates_;
    std::vector<SocketAddress> tcp_host_candidates_;
    std::optional<SocketAddress> mapped_candidate_;
    std::map<uint64_t, KnownSession> sessions_;
    uint64_t session_age_ = 0;
    std::deque<PendingConnect> pending_connects_;

    std::deque<Bytes> control_out_;
    size_t control_out_bytes_ = 0;
    std::deque<ServerDatagram> udp_out_;
    size_t udp_out_bytes_ = 0;
    std::deque<AgentEvent> events_;
};

}  // namespace burrow
