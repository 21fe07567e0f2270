// What the signalling client (signal/agent_client.h) tells the agent, and the counters it keeps.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "signal/control.h"
#include "tunnel/socket_address.h"
#include "tunnel/bytes.h"
#include "tunnel/port_prediction.h"
#include "tunnel/time.h"

namespace burrow {

// The agent is online: the server knows its candidates and forwards connects to it. Comes
// again after every reconnect.
struct Registered {
    std::string name;  // as the server's configuration calls this agent
    std::vector<Candidate> candidates;
    NatMapping nat = NatMapping::kUnknown;
};

// The server will not take this agent (unknown key, wrong proof, the server's key is not the
// pinned one, another process holds the agent's identity). Fatal: the client stops, and the
// agent exits with `reason` as its one line.
struct AuthFailed {
    std::string reason;
};

// A session to set up (docs/architecture.md §5): as initiator after our connect(), as responder when a
// peer connected to us. Punching starts at start_at.
struct PeerReady {
    PeerInfo info;
    Time start_at{};
};

// connect() failed: refused by the server (ACL, peer offline) or locally (see reason). The
// control message type serves as the event.
using ConnectRefusedEvent = ConnectRefused;

enum class RelayTransport : uint8_t { kUdp, kTls };

// A session packet the server relayed to us.
struct RelayReceived {
    uint64_t session_id = 0;
    Bytes payload;
    RelayTransport via = RelayTransport::kUdp;
};

// The control connection (or the attempt to make one) ended. src/ writes what poll_control()
// still returns, closes the TLS connection if it is open, and dials again once
// want_connect(now) says so, at retry_at.
struct Disconnected {
    std::string reason;
    Time retry_at{};
};

// What STUN against the server's two ports showed, before every registration.
struct NatDiscovered {
    std::array<std::optional<SocketAddress>, 2> mapped;  // by UdpPort: main, secondary
    NatMapping mapping = NatMapping::kUnknown;
    // How the NAT gave out the ports of the socket's successive mappings (AgentClient::allocation).
    PortAllocation allocation;
};

// The server confirmed our UDP address: relay traffic goes over UDP from now on.
struct UdpBound {};
// No BindOk after kUdpRequestMaxTries: relay traffic goes over TLS until a later Bind round is
// answered (UdpBound again).
struct UdpBlocked {
    int tries = 0;
};

// The server had to move our UDP binding: the NAT gave us a new public address since the last
// Bind was answered (it forgot the mapping). keepalive: the binding's refresh interval now
// (halved if learning, else the configured one, which is evidently too long for this NAT).
struct UdpMoved {
    Duration keepalive{};
    bool learning = true;
};

// The server will not relay this session any more (signal/control.h RelayDetached).
struct RelaySessionDetached {
    uint64_t session_id = 0;
    std::string reason;
};

// A standard STUN server (signal/stun_servers.h) answered with a new mapped address, or went
// unanswered for a whole round (once, until it answers again).
struct StunServerReport {
    std::string server;                   // as configured
    std::optional<SocketAddress> mapped;  // nullopt: no answer
    Duration rtt{};
    int requests = 0;
};

// The server's answer to request_doctor().
struct DoctorAnswer {
    DoctorReply reply;
};

using AgentEvent =
    std::variant<Registered, AuthFailed, PeerReady, ConnectRefusedEvent, RelayReceived,
                 Disconnected, NatDiscovered, UdpBound, UdpBlocked, UdpMoved, RelaySessionDetached,
                 StunServerReport, DoctorAnswer>;

// Counters for `burrow status`; every input the client drops is counted under its reason.
struct AgentClientStats {
    uint64_t dials = 0;          // on_dial_started
    uint64_t connections = 0;    // on_connected
    uint64_t registrations = 0;  // Register sent after a (re)connect
    uint64_t disconnects = 0;    // Disconnected events
    uint64_t relay_attaches = 0;  // RelayAttach sent for a session kept across a reconnect
    uint64_t udp_moves = 0;       // BindMoved answers: the NAT gave us a new address

    uint64_t relay_sent_udp = 0;
    uint64_t relay_sent_tls = 0;
    uint64_t relay_received_udp = 0;
    uint64_t relay_received_tls = 0;

    uint64_t drop_relay_offline = 0;          // send_relay while not authenticated
    uint64_t drop_relay_unknown_session = 0;  // sent or received for a session we do not know
    uint64_t drop_relay_too_large = 0;        // above kMaxRelayPayload
    uint64_t drop_relay_queue_full = 0;       // src/ is not draining our output
    uint64_t drop_relay_bad_token = 0;        // a UDP relay datagram with the wrong token
    uint64_t drop_udp_malformed = 0;          // none of STUN, BindOk, Relay, or a bad header
    uint64_t drop_udp_unexpected = 0;         // while offline, wrong port, stale BindOk
    uint64_t drop_stun_malformed = 0;         // not a Binding success with an address
    uint64_t drop_stun_unmatched = 0;         // not our transaction on that port
    uint64_t drop_control_unexpected = 0;     // a Pong we never asked for, bytes while closed
    uint64_t connects_refused_locally = 0;    // bad name, queue full, timeout, stopped

    bool operator==(const AgentClientStats&) const = default;
};

}  // namespace burrow
