// What an agent offers and uses, as config/ reads it from [[expose]] and [[forward]] and as
// the agent's core (signal/agent_core.h) acts on it: plain validated values, no I/O.
#pragma once

#include <string>
#include <vector>

#include "signal/host_port.h"

namespace burrow {

// What a forward carries: TCP connections (streams) or UDP datagrams (flows of DATAGRAM frames,
// tunnel/frame.h).
enum class ForwardProtocol : uint8_t { kTcp, kUdp };

inline const char* to_string(ForwardProtocol p) {
    return p == ForwardProtocol::kUdp ? "udp" : "tcp";
}

// Which of several servers (issue 21) an agent dials first: a random one, so agents spread
// over the cluster, or the first listed, so an operator can give each agent a home server
// and the others as fallbacks. Either way each lost connection moves on to the next listed.
enum class ServerOrder : uint8_t { kRandom, kListed };

struct ExposeConfig {
    std::string service;
    HostPort target;                 // IP literal or DNS name (an IP literal for UDP)
    std::vector<std::string> allow;  // peer agent names, non-empty, no repeats
    ForwardProtocol protocol = ForwardProtocol::kTcp;

    bool operator==(const ExposeConfig&) const = default;
};

struct ForwardConfig {
    HostPort listen;  // IP literal; no two forwards of one protocol can bind the same port
    std::string peer;
    std::string service;
    ForwardProtocol protocol = ForwardProtocol::kTcp;

    bool operator==(const ForwardConfig&) const = default;
};

}  // namespace burrow
