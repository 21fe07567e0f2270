// Standard STUN servers (`[agent] stun_servers`) as extra sources of server-reflexive
// candidates, sans-IO. The agent sends an RFC 8489 Binding request from its main UDP socket to
// each configured server and reads the XOR-MAPPED-ADDRESS of the answer: the address its NAT
// gave that socket towards that server. Two servers that see different addresses are a second
// opinion on the NAT's mapping behaviour beside the burrow server's own two ports
// (signal/nat_probe.h refine_mapping).
//
// A server's request is retransmitted with the same transaction id on RFC 8489 §6.2.1's
// schedule: RTO 500 ms doubling, Rc = 7 requests (at 0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s), and
// after the last one a wait of Rm x RTO = 8 s: a server silent until 39.5 s has given up. A
// server that gives up is reported once (StunServerSilent) and skipped until the next round;
// it is not reported again until it has answered in between.
//
// The requests are the ones the burrow server takes (signal/nat_probe.h encode_probe_request:
// SOFTWARE padded so an answer is never larger than the request), so the burrow server's own
// STUN port works in the list too. A datagram is an answer only if it comes from the server's
// address, is a Binding success response without unknown comprehension-required attributes
// (§6.3.3), carries the transaction id of that server's outstanding request, and has a mapped
// address; anything else changes nothing and is counted.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "signal/host_port.h"
#include "signal/stun.h"
#include "tunnel/bytes.h"
#include "tunnel/rng.h"
#include "tunnel/socket_address.h"
#include "tunnel/time.h"

namespace burrow {

// RFC 8489 §6.2.1: the initial RTO, Rc (requests in all) and Rm (the last wait in RTOs).
inline constexpr Duration kStunServerInitialRto = std::chrono::milliseconds(500);
inline constexpr int kStunServerMaxRequests = 7;
inline constexpr int kStunServerLastWaitFactor = 16;
// More servers add no information: two already give the second opinion, and each is one more
// request per round from the agent's socket.
inline constexpr size_t kMaxStunServers = 8;

enum class StunServerState : uint8_t {
    kResolving,   // a DNS name not resolved yet
    kUnresolved,  // its name did not resolve (error says why)
    kIdle,        // an address, no round started yet (the agent is not online)
    kProbing,     // a request is outstanding
    kAnswered,    // the last round was answered (mapped, rtt)
    kNoAnswer,    // the last round gave up after kStunServerMaxRequests requests
};
const char* to_string(StunServerState s);

struct StunServerStatus {
    std::string server;  // as configured, "host:port"
    std::optional<SocketAddress> address;
    StunServerState state = StunServerState::kResolving;
    std::optional<SocketAddress> mapped;  // from the last answer
    Duration rtt{};  // of the last answer, from the last request sent (retries share one id)
    int requests = 0;                     // sent in the current or last round
    std::string error;                    // kUnresolved
};

struct StunServerStats {
    uint64_t requests_sent = 0;
    uint64_t answers = 0;
    uint64_t gave_up = 0;
    uint64_t drop_unmatched = 0;   // not the outstanding transaction of that server
    uint64_t drop_malformed = 0;   // not a Binding success with a mapped address
    bool operator==(const StunServerStats&) const = default;
};

// A Binding request for `to`, from the agent's main socket.
struct StunServerDatagram {
    SocketAddress to;
    Bytes bytes;
};

// What the set tells its owner, once each.
struct StunServerAnswered {
    size_t index = 0;
    SocketAddress mapped;
    bool changed = false;  // differs from the server's previous answer (or there was none)
};
struct StunServerSilent {
    size_t index = 0;
};
using StunServerEvent = std::variant<StunServerAnswered, StunServerSilent>;

enum class StunServerVerdict : uint8_t {
    kAccepted,   // the answer to a server's outstanding request
    kUnmatched,  // from a server of ours, but not its outstanding transaction
    kMalformed,  // from a server of ours, not a usable Binding success
    kNotOurs,    // not from any configured server's address
};

class StunServerSet {
  public:
    // IP literals have their address at once; names wait for set_address().
    StunServerSet(std::vector<HostPort> servers, std::string software);

    size_t size() const { return servers_.size(); }
    const HostPort& server(size_t i) const { return servers_[i].config; }

    // What resolving server i's name gave: an address, or why none (a new round probes it).
    void set_address(size_t i, std::optional<SocketAddress> address, std::string error);

    // A new round: every server with an address gets a request now, with a fresh transaction
    // id. Earlier answers stay (for status and candidates) until replaced.
    void start(Rng& rng, Time now);
    // A new round for server i alone (its name just resolved while the agent is online).
    void probe(size_t i, Rng& rng, Time now);
    // Ends the round: no more requests; answers to it are unmatched from now on.
    void stop();
    void on_timer(Time now);
    // Whether `from` is a configured server's address and `datagram` carries the transaction id
    // of its outstanding request (a cheap look at the header).
    bool expects(const SocketAddress& from, ByteView datagram) const;
    bool knows(const SocketAddress& from) const;
    StunServerVerdict on_datagram(const SocketAddress& from, ByteView datagram, Time now);

    std::optional<StunServerDatagram> poll_transmit();
    std::optional<StunServerEvent> poll_event();
    Time next_deadline() const;

    // The answered servers' mapped addresses, in configuration order, one per server (two
    // servers that agree appear twice: that agreement is what refine_mapping weighs).
    std::vector<SocketAddress> mapped() const;
    std::vector<StunServerStatus> status() const;
    const StunServerStats& stats() const { return stats_; }

  private:
    struct Server {
        HostPort config;
        std::optional<SocketAddress> address;
        std::string error;
        bool resolved = false;
        bool probing = false;
        bool silent_reported = false;  // StunServerSilent emitted, no answer since
        bool last_gave_up = false;
        StunTransactionId txid{};
        int requests = 0;
        Time last_sent{};
        Time next = kNever;  // the next request, or the give-up time after the last one
        std::optional<SocketAddress> mapped;
        Duration rtt{};
    };
    Server* find(const SocketAddress& from);
    const Server* find(const SocketAddress& from) const;

    std::string software_;
    std::vector<Server> servers_;
    std::deque<StunServerDatagram> out_;
    std::deque<StunServerEvent> events_;
    StunServerStats stats_;
};

}  // namespace burrow
