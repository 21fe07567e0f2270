// How a NAT maps outgoing UDP (RFC 4787 §4.1), as far as punching cares: one public port for
// every destination, or a new one per destination (a "symmetric" NAT). The agent learns its
// own from the server's two STUN ports (signal/nat_probe.h) and the peer's from the server;
// the punching strategy (tunnel/punch_planner.h) follows from the pair.
#pragma once

#include <cstdint>

namespace burrow {

enum class NatMapping : uint8_t { kUnknown = 0, kEndpointIndependent = 1, kPerDestination = 2 };

// "endpoint-independent", "per-destination", "unknown": as logs and `burrow status` say it.
const char* to_string(NatMapping m);

}  // namespace burrow
