// What the agent sends to the server's UDP ports, and how it retries its small requests there
// (Bind, STUN Binding).
//
// Both requests are tiny and their answers come straight back, so they are retried on a short
// doubling timer: sends at 0, 100, 300, 700 and 1500 ms, given up at 3100 ms. A network that
// answers none of five tries drops UDP to the server; the agent then relays over TLS instead of
// waiting for a STUN-style 39.5 s (RFC 8489 §6.2.1) before registering.
#pragma once

#include <chrono>

#include "signal/server_action.h"
#include "tunnel/bytes.h"
#include "tunnel/time.h"

namespace burrow {

// Above the round trip to a server on the public internet from nearly anywhere, so a reply
// usually beats the first retry.
inline constexpr Duration kUdpRequestInitialRto = std::chrono::milliseconds(100);
inline constexpr int kUdpRequestMaxTries = 5;

// A datagram for one of the server's two UDP ports (UdpPort::kMain is the relay and Bind port,
// AuthOk's relay_udp_port; kSecondary is the other STUN port). src/ resolves the port number
// with AgentClient::server_udp_port().
struct ServerDatagram {
    UdpPort to = UdpPort::kMain;
    Bytes bytes;
    // To the server's address of the other family than the control connection's (the
    // reflexive address and NAT mapping of that family: AgentClient::set_other_family_server).
    bool other_family = false;
};

// The retry schedule of one request: due() says when to (re)send it, sent() records a send,
// exhausted() says the last try went unanswered for its full timeout.
class UdpRequestRetry {
  public:
    void start(Time now) {
        active_ = true;
        tries_ = 0;
        next_ = now;
    }
    void stop() { active_ = false; }
    bool active() const { return active_; }
    int tries() const { return tries_; }

    bool due(Time now) const { return active_ && tries_ < kUdpRequestMaxTries && now >= next_; }
    void sent(Time now) {
        next_ = now + kUdpRequestInitialRto * (1 << tries_);
        ++tries_;
    }
    bool exhausted(Time now) const {
        return active_ && tries_ >= kUdpRequestMaxTries && now >= next_;
    }
    Time deadline() const { return active_ ? next_ : kNever; }

  private:
    bool active_ = false;
    int tries_ = 0;
    Time next_ = kNever;
};

}  // namespace burrow
