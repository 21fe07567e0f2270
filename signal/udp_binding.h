// The agent's UDP binding at the server: Bind (0x20 + udp_token, signal/udp_messages.h) to the
// main port until BindOk echoes the token. Only then does the server accept Relay datagrams from
// the agent's address and send the agent's relay traffic there; until then, and whenever UDP
// stops answering, relay traffic goes over TLS.
//
// Rounds: a round sends Bind on UdpRequestRetry's schedule until BindOk. A round that gets no
// answer makes the binding kBlocked. Either way a new round starts kBindRefreshInterval later:
// it keeps the NAT's mapping towards the server alive, rebinds the agent if the NAT moved it to
// another port, and notices both a UDP path that died and one that came back.
//
//   kUnknown --BindOk--> kBound <--BindOk-- kBlocked
//       |                  |                   ^
//       +---- round unanswered ----------------+
#pragma once

#include <chrono>
#include <deque>

#include "signal/agent_udp.h"
#include "signal/control.h"
#include "tunnel/time.h"

namespace burrow {

// Many NATs forget an idle UDP mapping after 30 s (docs/architecture.md §4); refreshing below that keeps
// the server's view of our address valid with one 17-byte datagram per 25 s.
inline constexpr Duration kBindRefreshInterval = std::chrono::seconds(25);

enum class UdpBindingStatus {
    kUnknown,  // the first round is still trying
    kBound,    // the last round was answered
    kBlocked,  // the last round went unanswered: relay over TLS
};

class UdpBinding {
  public:
    // Starts the first round with the token from AuthOk; forgets any earlier binding.
    void start(const UdpToken& token, Time now, std::deque<ServerDatagram>& out);
    void stop();
    void on_timer(Time now, std::deque<ServerDatagram>& out);
    // True if the datagram is a BindOk for our token (the binding is then kBound, even if the
    // answer came after its round gave up). Changes nothing otherwise.
    bool on_bind_ok(ByteView datagram, Time now);

    UdpBindingStatus status() const { return status_; }
    bool bound() const { return status_ == UdpBindingStatus::kBound; }
    Time next_deadline() const;

  private:
    void start_round(Time now, std::deque<ServerDatagram>& out);

    bool active_ = false;
    UdpToken token_{};
    UdpBindingStatus status_ = UdpBindingStatus::kUnknown;
    UdpRequestRetry retry_;
    Time next_round_ = kNever;
};

}  // namespace burrow
