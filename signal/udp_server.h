// The server's UDP side, sans-IO: STUN on both ports, Bind and Relay on the main one
// (signal/udp_messages.h).
//
// Rebinding: a NAT with a short UDP timeout gives an idle agent a new public port. A RelayFrom
// datagram carries the sender's udp_token, the same proof a Bind carries, so when one arrives
// from a new address with a valid token the binding moves there at once and the packet is
// relayed: the agent's traffic does not stall until its next Bind. A datagram with a wrong
// token changes nothing (kRelayUnknownSender). The next BindOk tells the agent it moved.
//
// Cheapest check first, state last: size, then the first byte, then the message's own checks,
// and only a datagram that passes them all changes anything. Every drop is counted.
//
// Amplification: to a source that has not proven itself (everything but a bound agent's
// address), the server never sends more bytes than the datagram it answers. A STUN answer is
// trimmed (SOFTWARE, then FINGERPRINT left out) to fit, and not sent when even the bare
// XOR-MAPPED-ADDRESS answer does not fit: a standard 20-byte Binding request gets no answer,
// so agents pad theirs (e.g. with SOFTWARE) to at least kStunMinAnsweredRequest bytes.
//
// With stun_standard_clients (server.toml, off by default) a Binding request too small for that
// still gets the minimal answer, header + XOR-MAPPED-ADDRESS (32 bytes for IPv4, 44 for IPv6),
// so standard clients such as turnutils_stunclient work: a bounded 2.2x gain for an attacker,
// the price of serving them. Malformed requests and other methods are still dropped.
#pragma once

#include <optional>
#include <string>

#include "signal/registry.h"
#include "signal/relay_forwarder.h"
#include "signal/server_action.h"
#include "signal/stun.h"

namespace burrow {

// Header + XOR-MAPPED-ADDRESS for IPv6 (4 + 20 bytes): the smallest request answered for any
// source address.
inline constexpr size_t kStunMinAnsweredRequest = kStunHeaderSize + 24;

class UdpServer {
  public:
    UdpServer(AgentRegistry& registry, RelayForwarder& forwarder, DropCounters& drops,
              std::string software, bool stun_standard_clients = false)
        : registry_(registry),
          forwarder_(forwarder),
          drops_(drops),
          software_(std::move(software)),
          stun_standard_clients_(stun_standard_clients) {}

    // One datagram that arrived on `port` from `from`. Returns the reply (a SendDatagram from
    // the same port), a relayed packet (SendDatagram to a peer's bound address, or SendControl
    // to its TLS connection), or nothing.
    std::optional<ServerAction> on_udp(UdpPort port, const SocketAddress& from, ByteView datagram,
                                       Time now);

  private:
    std::optional<ServerAction> on_stun(UdpPort port, const SocketAddress& from, ByteView datagram);
    std::optional<ServerAction> on_bind(const SocketAddress& from, ByteView datagram);
    std::optional<ServerAction> on_relay(const SocketAddress& from, ByteView datagram, Time now);
    std::optional<ServerAction> on_relay_from(const SocketAddress& from, ByteView datagram,
                                              Time now);
    std::optional<ServerAction> drop(DropReason r) {
        drops_.count(r);
        return std::nullopt;
    }

    AgentRegistry& registry_;
    RelayForwarder& forwarder_;
    DropCounters& drops_;
    std::string software_;
    bool stun_standard_clients_;
};

}  // namespace burrow
