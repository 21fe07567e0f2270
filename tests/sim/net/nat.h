// A NAT for the simulator, with the RFC 4787 behaviours as settings. The agent-world simulator
// (agent_world.h) puts one in front of each agent that is not on the public internet.
//
//   mapping     endpoint-independent (one public port per private socket, whatever the
//               destination: a "cone"), or per destination address, or per destination
//               address and port (a "symmetric" NAT: RFC 4787 §4.1)
//   allocation  keep the private port when free, or a random port, or the next one (+delta)
//               (§4.2.1; netfilter's MASQUERADE keeps it, --random-fully randomises)
//   filtering   which inbound packets a mapping lets in: from anyone (full cone), from an
//               address it sent to, or from an address and port it sent to (§5)
//   timeout     a mapping unused this long is forgotten (§4.3: at least 2 minutes is
//               recommended; many home routers use 30 s)
//   udp         false: every UDP packet is dropped (a network that only lets TCP out)
//
// Like the lab's real NATs (docs/architecture.md §10), an inbound packet that no mapping lets in is dropped
// and creates no state.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>

#include "tunnel/rng.h"
#include "tunnel/socket_address.h"
#include "tunnel/time.h"

namespace burrow::sim {

enum class NatMappingRule : uint8_t {
    kEndpointIndependent,
    kAddressDependent,
    kAddressPortDependent
};
enum class NatFiltering : uint8_t {
    kEndpointIndependent,
    kAddressDependent,
    kAddressPortDependent
};
enum class NatAllocation : uint8_t { kPreserve, kRandom, kSequential };

struct NatConfig {
    NatMappingRule mapping = NatMappingRule::kEndpointIndependent;
    NatFiltering filtering = NatFiltering::kAddressPortDependent;
    NatAllocation allocation = NatAllocation::kPreserve;
    uint16_t sequential_delta = 1;
    Duration timeout = std::chrono::seconds(30);
    bool udp = true;
};

// The kinds the NAT lab has (tests/natlab/lab.py), as settings.
enum class NatKind : uint8_t {
    kNone,
    kFullCone,
    kRestricted,
    kPortRestricted,
    kSymmetric,
    kUdpBlocked
};
const char* to_string(NatKind kind);
// nullopt for kNone (no NAT: the host has a public address).
std::optional<NatConfig> nat_config(NatKind kind);

struct NatStats {
    uint64_t mappings_created = 0;
    uint64_t inbound_dropped = 0;  // filtered, or no mapping
    uint64_t udp_blocked = 0;
};

class SimNat {
  public:
    SimNat(NatConfig config, SocketAddress public_ip, uint64_t seed);

    // The public source of a packet from `local` (a private ip:port) to `to`; nullopt when the
    // NAT drops it.
    std::optional<SocketAddress> outbound(const SocketAddress& local, const SocketAddress& to,
                                          Time now);
    // The private destination of a packet that arrived at public port `at` from `from`;
    // nullopt when no mapping lets it in.
    std::optional<SocketAddress> inbound(const SocketAddress& at, const SocketAddress& from,
                                         Time now);

    const SocketAddress& public_ip() const { return public_ip_; }
    const NatStats& stats() const { return stats_; }

  private:
    struct Mapping {
        SocketAddress local;
        SocketAddress public_address;
        std::set<SocketAddress> sent_to;  // destinations, for filtering
        Time last_used{};
    };
    // What decides whether two packets share a mapping: the private socket, plus the
    // destination as far as the mapping rule looks at it.
    struct Key {
        SocketAddress local;
        SocketAddress dest;  // zeroed parts the rule ignores
        auto operator<=>(const Key&) const = default;
    };
    Key key_for(const SocketAddress& local, const SocketAddress& to) const;
    uint16_t allocate(uint16_t wanted);
    void expire(Time now);

    NatConfig config_;
    SocketAddress public_ip_;
    SeededRng rng_;
    std::map<Key, Mapping> mappings_;
    std::map<uint16_t, Key> by_port_;
    uint16_t next_port_ = 20000;
    NatStats stats_;
};

}  // namespace burrow::sim
