// The order in which the agent tries the server's addresses when its name has several (RFC 8305
// "Happy Eyeballs v2", §4 and §5), pure: src/agent_runtime.cc resolves the name, asks for the
// order, and starts one TLS connection attempt per address, each kConnectionAttemptDelay after
// the previous one or at once when the previous one fails; the first to finish its handshake
// is the control connection and the others are closed.
//
// Order (§4): IPv6 first, then the families alternate (First Address Family Count 1), each
// family in the resolver's order; repeats dropped. So a host whose IPv6 is broken still
// connects over IPv4 250 ms later, and one whose IPv6 works uses it.
#pragma once

#include <chrono>
#include <vector>

#include "tunnel/socket_address.h"
#include "tunnel/time.h"

namespace burrow {

// RFC 8305 §8: "the recommended value for the Connection Attempt Delay is 250 milliseconds".
inline constexpr Duration kConnectionAttemptDelay = std::chrono::milliseconds(250);

std::vector<SocketAddress> happy_eyeballs_order(const std::vector<SocketAddress>& resolved);

}  // namespace burrow
