// The agent's UDP binding at the server: Bind (0x20 + udp_token, signal/udp_messages.h) to the
// main port until BindOk echoes the token. Only then does the server accept Relay datagrams from
// the agent's address and send the agent's relay traffic there; until then, and whenever UDP
// stops answering, relay traffic goes over TLS.
//
// Rounds: a round sends Bind on UdpRequestRetry's schedule until BindOk. A round that gets no
// answer makes the binding kBlocked. Either way a new round starts one refresh interval later:
// it keeps the NAT's mapping towards the server alive, rebinds the agent if the NAT moved it to
// another port, and notices both a UDP path that died and one that came back.
//
// The refresh interval is the relay keepalive. Configured (`[agent] keepalive`), it is fixed.
// Otherwise it starts at kBindRefreshInterval and is learned: a BindMoved answer says the
// server saw us from a new address since the last answered Bind, i.e. the NAT forgot our mapping
// within one interval, so the interval halves (down to kMinLearnedKeepalive) and stays there.
// Relay packets themselves carry the Bind's proof (RelayFrom), so a move costs no stall on our
// side; the interval matters for the other direction, whose packets a NAT drops once it has
// forgotten the mapping they come back on.
//
//   kUnknown --BindOk--> kBound <--BindOk-- kBlocked
//       |                  |                   ^
//       +---- round unanswered ----------------+
#pragma once

#include <chrono>
#include <deque>
#include <optional>

#include "signal/agent_udp.h"
#include "signal/control.h"
#include "tunnel/time.h"

namespace burrow {

// Many NATs forget an idle UDP mapping after 30 s (docs/architecture.md §4); refreshing below that keeps
// the server's view of our address valid with one 17-byte datagram per 25 s.
inline constexpr Duration kBindRefreshInterval = std::chrono::seconds(25);
// The shortest interval learning goes down to: a NAT that forgets a mapping within a second is
// not one a keepalive can serve, and a move for another reason (a conntrack flush, a new uplink)
// must not make the agent send ever faster.
inline constexpr Duration kMinLearnedKeepalive = std::chrono::seconds(1);

enum class BindAnswerKind {
    kNotOurs,  // not a BindOk/BindMoved for our token: nothing changed
    kOk,       // bound
    kMoved,    // bound, and the server had to move us: the NAT forgot our mapping
};

enum class UdpBindingStatus {
    kUnknown,  // the first round is still trying
    kBound,    // the last round was answered
    kBlocked,  // the last round went unanswered: relay over TLS
};

class UdpBinding {
  public:
    // A fixed refresh interval (`[agent] keepalive`), or nullopt to learn it.
    void set_keepalive(std::optional<Duration> fixed);
    // Starts the first round with the token from AuthOk; forgets any earlier binding.
    void start(const UdpToken& token, Time now, std::deque<ServerDatagram>& out);
    void stop();
    void on_timer(Time now, std::deque<ServerDatagram>& out);
    // Whether the datagram is a BindOk (or BindMoved) for our token; if so the binding is then
    // kBound, even if the answer came after its round gave up. Changes nothing otherwise.
    BindAnswerKind on_bind_ok(ByteView datagram, Time now);

    UdpBindingStatus status() const { return status_; }
    bool bound() const { return status_ == UdpBindingStatus::kBound; }
    Time next_deadline() const;
    // The current refresh interval (configured or learned).
    Duration refresh_interval() const { return fixed_ ? *fixed_ : learned_; }
    bool learning() const { return !fixed_; }

  private:
    void start_round(Time now, std::deque<ServerDatagram>& out);

    bool active_ = false;
    UdpToken token_{};
    UdpBindingStatus status_ = UdpBindingStatus::kUnknown;
    UdpRequestRetry retry_;
    Time next_round_ = kNever;
    std::optional<Duration> fixed_;
    // Learned across connections: the NAT is the same one.
    Duration learned_ = kBindRefreshInterval;
};

}  // namespace burrow
