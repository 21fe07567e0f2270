// The server's table of agents: every agent server.toml lists, whether it is online, on which
// connection, when it was last seen, what it registered, and its UDP binding.
//
// An agent's UDP address is bound only when a datagram carrying its udp_token (sent to it in
// AuthOk, over the authenticated TLS connection) arrives from that address. Relay traffic is
// accepted from and sent to bound addresses only.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "signal/acl.h"
#include "signal/control.h"
#include "signal/server_action.h"
#include "tunnel/socket_address.h"
#include "tunnel/token_bucket.h"
#include "tunnel/time.h"

namespace burrow {

// Per-agent relay quotas (both transports together). A relay is the fallback path: these allow
// interactive use and modest transfers while no single agent can take the server's uplink.
struct RelayLimits {
    double packets_per_second = 2000;
    double bytes_per_second = 2 * 1024 * 1024;
    double burst_seconds = 1;  // bucket depth, in seconds of the rate
};

struct AgentRecord {
    AgentRecord(const AclAgent& a, const RelayLimits& limits);

    std::string name;
    PublicKey key{};
    std::optional<ConnId> conn;     // set while online
    std::optional<Time> last_seen;  // last control message or relay packet; never if nullopt
    UdpToken udp_token{};           // valid while online
    std::optional<SocketAddress> udp_address;
    // Where its control connection comes from, as the server sees it (the tcp-srflx candidate).
    std::optional<SocketAddress> tcp_address;
    std::vector<Candidate> candidates;  // from Register
    NatMapping nat = NatMapping::kUnknown;
    PortAllocation allocation;  // from Register: how its NAT gives out ports
    TokenBucket packet_quota;
    TokenBucket byte_quota;
    // The transport this agent last sent relay data on: traffic for it goes back the same way,
    // so an agent whose UDP stopped working gets its relay traffic over TLS.
    bool relay_via_tls = false;
    // The binding moved to another address since the last Bind was answered (a RelayFrom from
    // a new address, or the Bind itself): the next BindOk says so (BindMoved), which tells the
    // agent its NAT forgot the mapping and its keepalive is too slow.
    bool udp_moved = false;
    // Times the binding moved to a new address (for status and tests).
    uint64_t udp_rebinds = 0;

    bool online() const { return conn.has_value(); }
};

class AgentRegistry {
  public:
    AgentRegistry(const Acl& acl, RelayLimits limits);
    // Holds pointers into its own table.
    AgentRegistry(const AgentRegistry&) = delete;
    AgentRegistry& operator=(const AgentRegistry&) = delete;

    AgentRecord* find(std::string_view name);
    const AgentRecord* find(std::string_view name) const;
    // The online agent holding this token, or nullptr. Found through a SipHash of the token
    // under lookup_key (set_lookup_key), then compared in constant time: the lookup's timing
    // depends on a keyed hash an attacker cannot compute, not on the token's bytes, and a Bind
    // costs the same with ten agents online or ten thousand.
    AgentRecord* find_by_udp_token(const UdpToken& token);
    // A secret for the token index; the server sets a random one at start.
    void set_lookup_key(const std::array<uint8_t, 16>& key);
    AgentRecord* find_by_udp_address(const SocketAddress& address);
    size_t online_count() const { return online_; }
    // Every agent, by name.
    const std::map<std::string, AgentRecord, std::less<>>& agents() const { return agents_; }

    // Online on `conn` with a fresh token. The UDP binding, registration and quotas start over:
    // a new connection proves everything again.
    void set_online(AgentRecord& a, ConnId conn, const UdpToken& token, Time now);
    void set_offline(AgentRecord& a, Time now);
    // Binds a's UDP address; an agent bound to the same address before loses it (its NAT
    // mapping was evidently reused). A binding that changes from one address to another is a
    // move: a.udp_moved is set and a.udp_rebinds counts it.
    void bind_udp(AgentRecord& a, const SocketAddress& address);

  private:
    struct AddressLess {
        bool operator()(const SocketAddress& x, const SocketAddress& y) const;
    };
    void unbind_udp(AgentRecord& a);
    uint64_t token_hash(const UdpToken& token) const;
    void unindex_token(AgentRecord& a);

    RelayLimits limits_;
    std::map<std::string, AgentRecord, std::less<>> agents_;
    std::map<SocketAddress, AgentRecord*, AddressLess> by_udp_address_;
    std::array<uint8_t, 16> lookup_key_{};
    std::unordered_multimap<uint64_t, AgentRecord*> by_token_hash_;
    size_t online_ = 0;
};

}  // namespace burrow
