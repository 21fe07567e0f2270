// A NAT for the simulator, with the RFC 4787 behaviours as settings. The agent-world simulator
// (agent_world.h) puts one in front of each agent that is not on the public internet.
//
//   mapping     endpoint-independent (one public port per private socket, whatever the
//               destination: a "cone"), or per destination address, or per destination
//               address and port (a "symmetric" NAT: RFC 4787 §4.1)
//   allocation  keep the private port when free, or a random port, or the next one (+delta),
//               or a random port inside a block of ports given to each subscriber (private
//               address) on its first packet, as carrier-grade NATs do (§4.2.1; RFC 6888
//               §5 and RFC 7422 describe port blocks; netfilter's MASQUERADE keeps the port,
//               --random-fully randomises, and netfilter has no sequential allocator at all)
//   filtering   which inbound packets a mapping lets in: from anyone (full cone), from an
//               address it sent to, or from an address and port it sent to (§5)
//   hairpinning a packet from the LAN to one of the NAT's own mappings is turned round to
//               the mapped private socket, its source translated as for the internet (§6)
//   timeout     a mapping unused this long is forgotten (§4.3: at least 2 minutes is
//               recommended; many home routers use 30 s)
//   udp         false: every UDP packet is dropped (a network that only lets TCP out)
//
// The NAT lab's programmable NAT (tests/natlab/labnat.cc) runs this same class on real
// packets, so a kind named here behaves in the lab as it does in virtual time.
//
// Like the lab's real NATs (docs/architecture.md §10), an inbound packet that no mapping lets in is dropped
// and creates no state.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>

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
enum class NatAllocation : uint8_t { kPreserve, kRandom, kSequential, kBlock };

struct NatConfig {
    NatMappingRule mapping = NatMappingRule::kEndpointIndependent;
    NatFiltering filtering = NatFiltering::kAddressPortDependent;
    NatAllocation allocation = NatAllocation::kPreserve;
    uint16_t sequential_delta = 1;
    // kBlock: ports per subscriber. RFC 7422 §2 gives 1024-port blocks as its example; 512
    // leaves room for 125 subscribers above port 1024 and is still wide to guess in.
    uint16_t block_size = 512;
    bool hairpinning = false;
    Duration timeout = std::chrono::seconds(30);
    bool udp = true;
};

// Settings by name, for the lab tool's command line: KEY=VALUE with KEY one of mapping
// (eim|adm|apdm), allocation (preserve|random|sequential|block), delta (1-32767), block
// (64-32768, a power of two), filtering (eif|adf|apdf), hairpin (on|off), timeout (seconds,
// 1-86400). An error names the setting and what it accepts; the config is then unchanged.
std::optional<std::string> apply_nat_setting(NatConfig& config, std::string_view setting);
// One line naming every setting, e.g. "mapping=apdm allocation=sequential delta=1 ...".
std::string describe(const NatConfig& config);

// The kinds the NAT lab has (tests/natlab/lab.py), as settings.
enum class NatKind : uint8_t {
    kNone,
    kFullCone,
    kRestricted,
    kPortRestricted,
    kSymmetric,
    kUdpBlocked,
    kSeqSym,    // per destination, sequential ports (delta 1), address-and-port filtering
    kBlockSym,  // per destination, a random port in the subscriber's block, same filtering
};
const char* to_string(NatKind kind);
// The kind named `name` (to_string's names); nullopt when there is none.
std::optional<NatKind> nat_kind_from_string(std::string_view name);
// nullopt for kNone (no NAT: the host has a public address).
std::optional<NatConfig> nat_config(NatKind kind);

struct NatStats {
    uint64_t mappings_created = 0;
    uint64_t inbound_dropped = 0;  // filtered, or no mapping
    uint64_t udp_blocked = 0;
    uint64_t ports_exhausted = 0;  // kBlock: the subscriber's block had no free port
    uint64_t hairpinned = 0;
};

// A packet through the NAT: its new source and destination.
struct NatTranslation {
    SocketAddress from;
    SocketAddress to;
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
    // A packet from `local` to the NAT's own public address `to` (one of its mappings, for a
    // neighbour on the LAN): with hairpinning, it goes out through the NAT (source mapped as
    // for the internet) and comes back in through `to`'s mapping and filter; without, or when
    // nothing lets it in, nullopt.
    std::optional<NatTranslation> hairpin(const SocketAddress& local, const SocketAddress& to,
                                          Time now);

    // A port mapping the gateway granted on request (UPnP IGD, NAT-PMP, PCP; signal/port_mapper.h):
    // public port `port` leads to `local` from anyone, and `local`'s packets leave from it, to
    // any destination (miniupnpd's SNAT keeps a mapped socket's port). Until unmap_port(port).
    void map_port(const SocketAddress& local, uint16_t port);
    void unmap_port(uint16_t port);

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
    std::optional<uint16_t> allocate(const SocketAddress& local);
    void expire(Time now);

    NatConfig config_;
    SocketAddress public_ip_;
    SeededRng rng_;
    std::map<Key, Mapping> mappings_;
    std::map<uint16_t, Key> by_port_;
    std::map<uint16_t, SocketAddress> mapped_ports_;  // map_port: public port -> local
    uint16_t next_port_ = 20000;
    std::map<SocketAddress, uint16_t> blocks_;  // kBlock: subscriber (port 0) -> first port
    uint16_t next_block_ = 0;
    NatStats stats_;
};

}  // namespace burrow::sim
