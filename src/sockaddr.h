// Conversions between SocketAddress (tunnel/, a plain value) and the OS's sockaddr, and this
// machine's interface addresses.
//
// Dual-stack IPv6 sockets see IPv4 peers as IPv4-mapped addresses (::ffff:a.b.c.d); we turn
// those back into IPv4 on the way in, so a peer has one address whatever socket it reached, and
// map IPv4 destinations the same way on the way out of an IPv6 socket.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <optional>
#include <vector>

#include "tunnel/socket_address.h"

namespace burrow {

// nullopt for families other than AF_INET and AF_INET6.
std::optional<SocketAddress> from_sockaddr(const sockaddr* sa);

// The sockaddr for a. With to_v6_socket an IPv4 address becomes IPv4-mapped IPv6, the form a
// dual-stack IPv6 socket needs.
sockaddr_storage to_sockaddr(const SocketAddress& a, bool to_v6_socket = false);

// This machine's addresses, each with `port`: an agent's host candidates. IPv4: every
// non-loopback address (the same-LAN case). IPv6, with include_v6 (the agent's socket is
// dual-stack): global and unique-local addresses, which a peer can reach directly through at
// most a stateful firewall (issue 17); never loopback, link-local (needs a zone the peer cannot
// know), multicast, IPv4-mapped or unspecified ones.
std::vector<SocketAddress> interface_addresses(uint16_t port, bool include_v6 = false);

// Whether an IPv6 address may be offered to a peer as a host candidate (see above).
bool usable_v6_host(const SocketAddress& a);

}  // namespace burrow
