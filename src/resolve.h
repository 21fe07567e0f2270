// Name resolution on the libuv loop: the server address and expose targets may be DNS names.
//
// resolve() runs getaddrinfo on libuv's thread pool and calls done(address, "") with the first
// IPv4 or IPv6 result, or done(nullopt, "resolve nas.local: Name or service not known"). done is
// always called later from the loop, never from inside resolve(), also for IP literals (parsed
// at once, answered from the loop), so callers have one code path. Lookups of names may finish
// in any order; literals are answered in the order asked.
#pragma once

#include <uv.h>

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "signal/host_port.h"
#include "tunnel/socket_address.h"

namespace burrow {

using ResolveDone = std::function<void(std::optional<SocketAddress>, const std::string& error)>;

void resolve(uv_loop_t* loop, const HostPort& where, ResolveDone done);

// Every IPv4 and IPv6 address of `where`, in the resolver's order (each once), or none and the
// error. For the control connection's Happy Eyeballs (signal/happy_eyeballs.h). Called later
// from the loop, like resolve().
using ResolveAllDone =
    std::function<void(std::vector<SocketAddress> addresses, const std::string& error)>;
void resolve_all(uv_loop_t* loop, const HostPort& where, ResolveAllDone done);

}  // namespace burrow
