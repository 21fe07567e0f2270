// burrow's own datagrams on the server's main UDP port, next to STUN and the agents' session
// packets (types 0x01-0x04). Their first bytes are 0x20-0x22: STUN starts with two zero bits
// and carries its magic cookie (signal/stun.h is_stun), session packets use 0x01-0x04, so one
// byte tells them apart.
//
//   Bind, agent -> server, exactly 17 bytes:
//   +------+------------------------------+
//   | 0x20 |   udp_token (128, AuthOk)    |
//   +------+------------------------------+
//
//   BindOk, server -> agent, exactly 17 bytes (no larger than the Bind it answers):
//   +------+------------------------------+
//   | 0x22 |   udp_token (128, echoed)    |
//   +------+------------------------------+
//
//   Relay, both directions:
//   +------+----------------------+------------------------------+----------------------+
//   | 0x21 |  session_id (64)     |  relay_token (128, PeerInfo) |  session packet ...  |
//   +------+----------------------+------------------------------+----------------------+
//
// The server forwards a Relay datagram to the session's other agent re-encoded with the same
// header, so the receiving agent sees which session it belongs to.
#pragma once

#include <cstdint>
#include <optional>

#include "signal/control.h"
#include "tunnel/bytes.h"

namespace burrow {

inline constexpr uint8_t kUdpTypeBind = 0x20;
inline constexpr uint8_t kUdpTypeRelay = 0x21;
inline constexpr uint8_t kUdpTypeBindOk = 0x22;

inline constexpr size_t kBindSize = 1 + kUdpTokenSize;
inline constexpr size_t kRelayHeaderSize = 1 + 8 + kRelayTokenSize;
// Above any datagram that fits an Ethernet MTU (1500), so every session packet passes; the cap
// bounds what one datagram can make the server copy. Relay payloads from TLS obey it too, so
// they can always go out as one UDP datagram.
inline constexpr size_t kMaxUdpDatagram = 2048;
inline constexpr size_t kMaxRelayPayload = kMaxUdpDatagram - kRelayHeaderSize;

Bytes encode_bind(const UdpToken& token);
Bytes encode_bind_ok(const UdpToken& token);
// nullopt unless the datagram is exactly a Bind (or BindOk).
std::optional<UdpToken> decode_bind(ByteView datagram);
std::optional<UdpToken> decode_bind_ok(ByteView datagram);

struct RelayDatagram {
    uint64_t session_id = 0;
    RelayToken token{};
    ByteView payload;  // views the datagram
};
// payload must be at most kMaxRelayPayload (asserted).
Bytes encode_relay_datagram(uint64_t session_id, const RelayToken& token, ByteView payload);
// nullopt unless the type is Relay and the header is complete (the payload may be empty).
std::optional<RelayDatagram> decode_relay_datagram(ByteView datagram);

}  // namespace burrow
