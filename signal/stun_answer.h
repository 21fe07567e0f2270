// The server's answer to a STUN Binding request, shared by its UDP ports (signal/udp_server.h)
// and the same port numbers over TCP (signal/stun_tcp.h). Pure.
#pragma once

#include <cstddef>
#include <optional>
#include <string_view>

#include "signal/stun.h"
#include "tunnel/bytes.h"
#include "tunnel/socket_address.h"

namespace burrow {

// The richest answer to a Binding request that is no larger than `limit` bytes: a success with
// XOR-MAPPED-ADDRESS `from`, SOFTWARE (when not empty) and FINGERPRINT (when the request had
// one), or a 420 listing the request's unknown comprehension-required attributes (RFC 8489
// §6.3.1.1). Too large, SOFTWARE goes first, then FINGERPRINT (which the client asked for by
// sending one, RFC 8489 §7.3.1, but can do without); nullopt when even that does not fit.
std::optional<Bytes> stun_binding_answer(const StunMessage& request, const SocketAddress& from,
                                         std::string_view software, size_t limit);

// Header + XOR-MAPPED-ADDRESS and nothing else: what a standard client needs.
Bytes stun_minimal_binding_answer(const StunMessage& request, const SocketAddress& from);

}  // namespace burrow
