// What `burrow status` shows of a running agent, as the agent's core reports it. src/ turns it
// into JSON for the admin endpoint (src/agent_status_json.cc); every drop has a counter.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "signal/agent_client.h"
#include "tunnel/connection.h"
#include "tunnel/path_manager.h"
#include "tunnel/session.h"

namespace burrow {

struct PeerStatus {
    std::string peer;
    uint64_t session_id = 0;  // the relay session that names the link at the server
    Role role = Role::kInitiator;
    SessionState state = SessionState::kHandshaking;
    std::string path;       // "direct ADDR", "relay-udp" or "relay-tcp"
    std::string technique;  // how it punches: "plain", "spray", "birthday" ("" before keys)
    double rtt_ms = 0;
    double loss = 0;
    ConnectionStats connection;
    SessionStats session;
    PathStats paths;
    uint64_t streams = 0;                    // forwarded connections open on the session
    std::vector<std::string> may_open;       // services the server lets us open on the peer
    std::vector<std::string> may_accept;     // services the server lets the peer open on us
    uint64_t streams_awaiting_approval = 0;  // opened before the server's approval arrived
};

// Why a forward closed connections without reaching the peer's service; each is counted.
struct ForwardRefusals {
    uint64_t stream_limit = 0;  // waited kStreamCreditWait for the peer's stream credit
    uint64_t queue_full = 0;    // kMaxWaitingConnections already waited
    uint64_t acl = 0;           // the server refused it (its ACL, or the peer is not online)
    uint64_t no_session = 0;    // the server connection or the session ended while it waited
    uint64_t peer = 0;          // the peer refused the stream (its allow list, the target)

    uint64_t total() const { return stream_limit + queue_full + acl + no_session + peer; }
};

struct ForwardStatus {
    std::string listen;
    std::string peer;
    std::string service;
    uint64_t connections = 0;
    uint64_t active = 0;
    uint64_t waiting = 0;  // accepted, waiting for the session, the approval or stream credit
    ForwardRefusals refused;
};

struct ExposeStatus {
    std::string service;
    std::string target;
    std::vector<std::string> allow;
    uint64_t streams = 0;
    uint64_t active = 0;
    uint64_t refused = 0;
};

// Datagrams and streams the core itself dropped or refused (the client's are in client).
struct AgentDrops {
    uint64_t udp_from_unknown = 0;       // no link claimed it
    uint64_t relay_unknown_session = 0;  // relayed for a session no link has
    uint64_t streams_refused = 0;        // incoming streams refused (service, allow, approval)
    uint64_t waiting_full = 0;           // forwarded connections closed: too many waited
    uint64_t listen_paused = 0;          // a forward stopped accepting: out of descriptors
};

struct AgentStatus {
    std::string name;
    std::string public_key;  // base64
    double uptime_s = 0;
    std::string server;  // as configured
    AgentClientState server_state = AgentClientState::kWaiting;
    bool registered = false;
    bool udp_bound = false;
    uint64_t reconnects = 0;
    // The UDP binding's refresh interval (signal/udp_binding.h), and whether it is learned.
    double keepalive_s = 0;
    bool keepalive_learned = true;
    std::optional<NatMapping> nat;
    std::optional<SocketAddress> reflexive;
    // `[agent] stun_servers`, in configuration order (signal/stun_servers.h).
    std::vector<StunServerStatus> stun_servers;
    StunServerStats stun_server_stats;
    std::vector<PeerStatus> peers;
    std::vector<ForwardStatus> forwards;
    std::vector<ExposeStatus> exposes;
    AgentClientStats client;
    AgentDrops drops;
};

}  // namespace burrow
