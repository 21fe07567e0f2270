// NAT discovery: one STUN Binding request (RFC 8489) to each of the server's two UDP ports,
// from the agent's one UDP socket, tells the agent its server-reflexive address and how its
// NAT maps (RFC 4787 §4.1): the same mapped address towards both ports means
// endpoint-independent mapping, different ones mean a mapping per destination (a "symmetric"
// NAT, for which the peer must guess ports).
//
// Requests carry SOFTWARE padded so the server's answer (XOR-MAPPED-ADDRESS for IPv6 plus
// FINGERPRINT) is no larger than the request: the server never answers with more bytes than an
// unproven source sent it (signal/udp_server.h), so an unpadded 20-byte request gets nothing.
//
// Each port's request is retried on UdpRequestRetry's schedule with the same transaction id
// (RFC 8489 §6.2.1). The probe is finished when each port has answered or given up; a port that
// gave up leaves its address unknown, and then so is the mapping: one answer alone proves
// nothing about how the NAT maps.
#pragma once

#include <array>
#include <deque>
#include <optional>
#include <span>
#include <string>

#include "signal/agent_udp.h"
#include "signal/control.h"
#include "tunnel/socket_address.h"
#include "signal/stun.h"
#include "signal/udp_server.h"
#include "tunnel/rng.h"
#include "tunnel/time.h"

namespace burrow {

// XOR-MAPPED-ADDRESS for IPv6 is 24 bytes, FINGERPRINT 8 (RFC 8489 §14.2, §14.7): a request
// this large gets the answer with its FINGERPRINT whatever our address family.
inline constexpr size_t kStunFingerprintAttrSize = 8;
inline constexpr size_t kStunProbeRequestSize = kStunMinAnsweredRequest + kStunFingerprintAttrSize;

struct NatProbeResult {
    // Indexed by UdpPort: what the server's main and secondary ports saw.
    std::array<std::optional<SocketAddress>, 2> mapped;
    NatMapping mapping = NatMapping::kUnknown;
    bool operator==(const NatProbeResult&) const = default;
};

enum class StunAnswer {
    kAccepted,   // the answer to one of our requests, first of its kind
    kUnmatched,  // not a transaction of ours on that port (late, duplicate or stray)
    kMalformed,  // not a valid success response with an address
};

// A Binding request padded to at least kStunProbeRequestSize, with FINGERPRINT.
Bytes encode_probe_request(const StunTransactionId& txid, std::string_view software);

// The mapping behaviour two reflexive addresses show (kUnknown unless both are known).
NatMapping classify_mapping(const std::optional<SocketAddress>& main,
                            const std::optional<SocketAddress>& secondary);

// The server probe's verdict with a second opinion: what standard STUN servers
// (signal/stun_servers.h) saw of the same socket. Any two observed addresses that differ (the
// server's main port's and the STUN servers') mean the NAT maps per destination; two or more
// that agree stand in for a server probe that could not tell. An observation equal to one of
// our host addresses is left out: no NAT lies between us and that server (it sits on our side
// of the NAT, or we have none), so it says nothing about how the NAT maps.
NatMapping refine_mapping(NatMapping server_verdict,
                          const std::optional<SocketAddress>& server_main,
                          std::span<const SocketAddress> stun_servers,
                          std::span<const SocketAddress> host_addresses);

class NatProbe {
  public:
    explicit NatProbe(std::string software) : software_(std::move(software)) {}

    // Forgets any earlier probe and sends both requests now, with fresh transaction ids.
    void start(Rng& rng, Time now, std::deque<ServerDatagram>& out);
    void stop();
    // Retries due requests; gives up on ports whose last try went unanswered.
    void on_timer(Time now, std::deque<ServerDatagram>& out);
    // A STUN datagram that arrived from the server's `port`. Changes nothing unless accepted.
    StunAnswer on_stun(UdpPort port, ByteView datagram);

    bool running() const { return started_ && !finished(); }
    // Every port has answered or given up.
    bool finished() const;
    Time next_deadline() const;
    NatProbeResult result() const;

  private:
    struct Port {
        StunTransactionId txid{};
        UdpRequestRetry retry;
        std::optional<SocketAddress> mapped;
        bool gave_up = false;
        bool done() const { return mapped.has_value() || gave_up; }
    };

    std::string software_;
    bool started_ = false;
    std::array<Port, 2> ports_;
};

}  // namespace burrow
