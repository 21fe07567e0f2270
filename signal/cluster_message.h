// What signalling servers of one cluster say to each other over Redis publish/subscribe
// (signal/cluster_core.h): a rendezvous for an agent on another server and its answer, relayed
// packets, and for a pair split over two servers the candidates told again and the punch reports
// (so that both servers can answer `burrow doctor` for the pair).
// Each server subscribes to "burrow:server:<name>"; a message is one PUBLISH payload.
//
//   0        1        2
//   +--------+--------+------------------------------------------------+
//   | version| type   | body                                           |
//   +--------+--------+------------------------------------------------+
//
//   Rendezvous (type 1)               RendezvousReply (type 2)
//     varint  request_id                varint  request_id
//     text    from_server               u8      ok (0 or 1)
//     text    requester                 text    reason   (why not; empty when ok)
//     text    peer                      blob    to_requester (PeerInfo frame; ok only)
//     text    service
//     blob    to_peer (PeerInfo frame)
//
//   Relay (type 3): a relayed session packet for an agent of the receiving server
//     u64     session_id (random, all 64 bits: beyond a varint's 62)
//     16      relay token (the session's, checked again on arrival)
//     text    sender
//     text    from_server (where the sender is now: the answer goes there)
//     blob    payload (end-to-end encrypted; no server can read it)
//
//   PunchReport (type 4): an agent's PunchReport about its peer on the receiving server
//     text    from_server
//     text    agent (the reporter, on from_server)
//     blob    report (PunchReport frame)
//
//   Refresh (type 5): an agent's candidates changed; its peer on the receiving server is told
//     text    from_server            again under the pair's live relay session
//     text    agent (on from_server)
//     text    peer (on the receiving server)
//     u8      answer (0 or 1: 1 asks for a Refresh back about the peer, for the agent)
//     blob    to_peer (PeerInfo frame about agent)
//
// text and blob are a varint length then the bytes. A blob holds a whole control frame as
// encode_control() writes it (signal/control.h), so both agents get exactly the PeerInfo
// they get from one server. Decoding checks the whole payload; anything else is rejected.
#pragma once

#include <optional>
#include <string>
#include <variant>

#include "signal/control.h"
#include "tunnel/bytes.h"
#include "tunnel/frame.h"
#include "signal/udp_messages.h"

namespace burrow {

inline constexpr uint8_t kClusterVersion = 1;
// The longest server name; server names share the agents' rule (letters, digits, '-', '_').
inline constexpr size_t kMaxServerNameLen = kMaxAgentNameLen;

struct ClusterRendezvous {
    uint64_t request_id = 0;
    std::string from_server;  // where the answer goes
    std::string requester;    // the agent that asked (on from_server)
    std::string peer;         // the agent it wants (on the receiving server)
    std::string service;
    PeerInfo to_peer;  // about the requester, for the peer
    bool operator==(const ClusterRendezvous&) const = default;
};

struct ClusterRendezvousReply {
    uint64_t request_id = 0;
    bool ok = false;
    std::string reason;     // when !ok, for the requester's ConnectRefused
    PeerInfo to_requester;  // about the peer, for the requester (when ok)
    bool operator==(const ClusterRendezvousReply&) const = default;
};

// The relay between two servers: an agent's relayed packet whose peer is on the receiving
// server (both servers hold the pair's relay session under the same id and token).
struct ClusterRelay {
    uint64_t session_id = 0;
    RelayToken token{};
    std::string sender;
    std::string from_server;  // the sender's server: the receiver relays the answers there
    Bytes payload;
    bool operator==(const ClusterRelay&) const = default;
};

// An agent's PunchReport about a peer on the receiving server: the receiving server keeps it in
// its DoctorBook as the agent's, so either agent's `burrow doctor` sees both sides.
struct ClusterPunchReport {
    std::string from_server;
    std::string agent;  // the reporter
    PunchReport report;
    bool operator==(const ClusterPunchReport&) const = default;
};

// `agent` registered other candidates (or NAT behaviour or port allocation) while its relay
// session with `peer` on the receiving server lives: that server sends `peer` to_peer again and,
// when `answer` is set, sends back a Refresh about `peer` (answer unset) for `agent`.
struct ClusterRefresh {
    std::string from_server;
    std::string agent;
    std::string peer;
    bool answer = false;
    PeerInfo to_peer;  // about agent, for peer, under the session's id and token
    bool operator==(const ClusterRefresh&) const = default;
};

using ClusterMessage = std::variant<ClusterRendezvous, ClusterRendezvousReply, ClusterRelay,
                                    ClusterPunchReport, ClusterRefresh>;

Bytes encode_cluster(const ClusterMessage& m);
// nullopt: not a message of this version, or malformed (a cluster message comes from another
// server of ours, but Redis is shared infrastructure: it is checked all the same).
std::optional<ClusterMessage> decode_cluster(ByteView payload);

}  // namespace burrow
