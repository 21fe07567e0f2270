// burrow's own datagrams on the server's main UDP port, next to STUN and the agents' session
// packets (types 0x01-0x04). Their first bytes are 0x20-0x24: STUN starts with two zero bits
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
//   | 0x22 |   udp_token (128, echoed)    |   0x24 (BindMoved) instead: the binding had to
//   +------+------------------------------+   move since the last Bind answered: the NAT gave
//                                              the agent a new address (signal/udp_binding.h)
//
//   Relay, both directions:
//   +------+----------------------+------------------------------+----------------------+
//   | 0x21 |  session_id (64)     |  relay_token (128, PeerInfo) |  session packet ...  |
//   +------+----------------------+------------------------------+----------------------+
//
//   RelayFrom, agent -> server: a Relay that also proves who sent it
//   +------+------------------+--------------------------+-------------------------+---------+
//   | 0x23 | session_id (64)  | relay_token (128)        | udp_token (128, AuthOk) | packet  |
//   +------+------------------+--------------------------+-------------------------+---------+
//
// The server forwards a Relay or RelayFrom datagram to the session's other agent as a Relay
// (the sender's udp_token never leaves the server), so the receiving agent sees which session
// it belongs to. RelayFrom carries the same proof a Bind does, so the server moves the sender's
// binding to the datagram's source when its NAT gave it a new address: relay traffic does not
// wait for the next Bind (a spoofer without the token cannot move it; signal/udp_server.h).
#pragma once

#include <cstdint>
#include <optional>

#include "signal/control.h"
#include "tunnel/bytes.h"

namespace burrow {

inline constexpr uint8_t kUdpTypeBind = 0x20;
inline constexpr uint8_t kUdpTypeRelay = 0x21;
inline constexpr uint8_t kUdpTypeBindOk = 0x22;
inline constexpr uint8_t kUdpTypeRelayFrom = 0x23;
inline constexpr uint8_t kUdpTypeBindMoved = 0x24;

inline constexpr size_t kBindSize = 1 + kUdpTokenSize;
inline constexpr size_t kRelayHeaderSize = 1 + 8 + kRelayTokenSize;
inline constexpr size_t kRelayFromHeaderSize = kRelayHeaderSize + kUdpTokenSize;
// Above any datagram that fits an Ethernet MTU (1500), so every session packet passes; the cap
// bounds what one datagram can make the server copy. Relay payloads from TLS obey it too, so
// they can always go out as one UDP datagram, under either header.
inline constexpr size_t kMaxUdpDatagram = 2048;
inline constexpr size_t kMaxRelayPayload = kMaxUdpDatagram - kRelayFromHeaderSize;

Bytes encode_bind(const UdpToken& token);
Bytes encode_bind_ok(const UdpToken& token);
// moved: answer with BindMoved instead of BindOk.
Bytes encode_bind_ok(const UdpToken& token, bool moved);
// nullopt unless the datagram is exactly a Bind (or BindOk).
std::optional<UdpToken> decode_bind(ByteView datagram);
std::optional<UdpToken> decode_bind_ok(ByteView datagram);
struct BindAnswer {
    UdpToken token{};
    bool moved = false;  // BindMoved
};
// nullopt unless the datagram is exactly a BindOk or a BindMoved.
std::optional<BindAnswer> decode_bind_answer(ByteView datagram);

struct RelayDatagram {
    uint64_t session_id = 0;
    RelayToken token{};
    ByteView payload;  // views the datagram
};
// payload must be at most kMaxRelayPayload (asserted).
Bytes encode_relay_datagram(uint64_t session_id, const RelayToken& token, ByteView payload);
// nullopt unless the type is Relay and the header is complete (the payload may be empty).
std::optional<RelayDatagram> decode_relay_datagram(ByteView datagram);

struct RelayFromDatagram {
    RelayDatagram relay;
    UdpToken sender{};  // the sender's udp_token
};
// payload must be at most kMaxRelayPayload (asserted).
Bytes encode_relay_from_datagram(uint64_t session_id, const RelayToken& token,
                                 const UdpToken& sender, ByteView payload);
// nullopt unless the type is RelayFrom and the header is complete.
std::optional<RelayFromDatagram> decode_relay_from_datagram(ByteView datagram);

}  // namespace burrow
