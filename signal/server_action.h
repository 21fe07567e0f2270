// What the server's sans-IO cores ask src/ to do, and the counters they keep.
//
// Every input (a connection opening, control bytes, a timer, a UDP datagram) returns a list of
// actions for src/ to carry out in order. CloseConnection means: send what is queued (an Error
// message usually precedes it), then close; the core has already forgotten the connection.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <variant>

#include "signal/cluster_core.h"
#include "signal/control.h"
#include "tunnel/socket_address.h"
#include "tunnel/bytes.h"

namespace burrow {

// src/'s handle for one accepted TLS connection; never reused while the server runs.
using ConnId = uint64_t;

// The server's two UDP sockets: STUN is answered on both (two ports tell an agent whether its
// NAT maps per destination); Bind and relay traffic use the main one only.
enum class UdpPort : uint8_t { kMain = 0, kSecondary = 1 };

struct SendControl {
    ConnId conn = 0;
    ControlMessage message;
};
struct CloseConnection {
    ConnId conn = 0;
    std::string reason;  // one line for the log
};
struct SendDatagram {
    UdpPort from = UdpPort::kMain;
    SocketAddress to;
    Bytes bytes;
};
// A notable event for the server's log (agent online, connect allowed or refused), one line.
struct LogEvent {
    std::string line;
};

// RedisCommand (signal/cluster_core.h): only with a [cluster] section.
using ServerAction =
    std::variant<SendControl, CloseConnection, SendDatagram, LogEvent, RedisCommand>;

// Every datagram or relay payload the server drops, by reason (for `burrow status`).
enum class DropReason : uint8_t {
    kTooLarge,             // above kMaxUdpDatagram
    kUnknownType,          // not STUN, Bind or Relay(From) (includes session packets sent to us)
    kWrongPort,            // Bind or Relay on the secondary STUN port
    kStunMalformed,        // looked like STUN, did not decode
    kStunNotRequest,       // a response, an indication or another method
    kStunAmplification,    // the answer would be larger than the request
    kBindMalformed,        // wrong size
    kBindUnknownToken,     // no online agent holds this token
    kRelayMalformed,       // shorter than the relay header
    kRelayUnboundSender,   // source address not bound to an agent
    kRelayUnknownSender,   // RelayFrom whose udp_token no online agent holds
    kRelayUnknownSession,  // no such session id
    kRelayBadToken,        // session id known, token wrong
    kRelayNotMember,       // sender is not one of the session's two agents
    kRelayPeerOffline,     // the other agent is not connected
    kRateLimitPackets,     // sender over its packets/s quota
    kRateLimitBytes,       // sender over its bytes/s quota
    kCount
};
const char* to_string(DropReason r);

class DropCounters {
  public:
    void count(DropReason r) { counts_[static_cast<size_t>(r)]++; }
    uint64_t get(DropReason r) const { return counts_[static_cast<size_t>(r)]; }
    uint64_t total() const;

  private:
    std::array<uint64_t, static_cast<size_t>(DropReason::kCount)> counts_{};
};

}  // namespace burrow
