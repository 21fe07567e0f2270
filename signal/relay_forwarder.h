// Forwards relayed session packets between the two agents of a relay session, over UDP or the
// TLS connections, whichever each agent uses.
//
// The sender is already authenticated by the caller (its TLS connection, or its bound UDP
// address). Checks, cheapest first, each drop counted: the session exists, the datagram's
// token matches (UDP), the sender is one of its two agents, the other agent is online, the
// sender is within its packet and byte quotas. Delivery goes to the peer's bound UDP address
// unless the peer last sent relay data over TLS or has no binding; then over its TLS
// connection. Never to an address no agent has bound.
//
// In a cluster (signal/cluster_core.h) the other agent may be on another server: a session
// whose remote_server is set and whose peer is not here goes to that server over Redis
// (ClusterRelay), after the same checks and quotas; that server delivers it with
// deliver_from_cluster(), which checks the session and token again.
#pragma once

#include <array>
#include <cstdint>
#include <optional>

#include "signal/cluster_core.h"
#include "signal/registry.h"
#include "signal/relay_table.h"
#include "signal/server_action.h"

namespace burrow {

enum class RelayVia { kUdp, kTls };

// Relayed payloads by the way they came in (index: RelayVia); what was dropped is in
// DropCounters.
struct RelayStats {
    std::array<uint64_t, 2> packets{};
    std::array<uint64_t, 2> bytes{};  // payload bytes (the agents' session datagrams)
};

class RelayForwarder {
  public:
    RelayForwarder(AgentRegistry& registry, RelayTable& relays, DropCounters& drops)
        : registry_(registry), relays_(relays), drops_(drops) {}

    // The cluster to send remote peers' packets through; nullptr (the default): none.
    void set_cluster(ClusterCore* cluster) { cluster_ = cluster; }

    const RelayStats& stats() const { return stats_; }

    // token: the Relay datagram's token for UDP input, nullptr for TLS input (the connection
    // is the proof). nullopt when dropped.
    std::optional<ServerAction> forward(AgentRecord& sender, uint64_t session_id,
                                        const RelayToken* token, ByteView payload, RelayVia via,
                                        Time now);

    // A packet another server of the cluster relayed for one of our agents.
    std::optional<ServerAction> deliver_from_cluster(const ClusterRelay& packet, Time now);

  private:
    // The packet for peer, over UDP or its TLS connection.
    ServerAction deliver(const RelaySession& session, const AgentRecord& peer, ByteView payload);
    std::optional<ServerAction> drop(DropReason r) {
        drops_.count(r);
        return std::nullopt;
    }

    AgentRegistry& registry_;
    RelayTable& relays_;
    DropCounters& drops_;
    RelayStats stats_;
    ClusterCore* cluster_ = nullptr;
};

}  // namespace burrow
