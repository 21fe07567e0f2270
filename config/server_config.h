// The signalling server's TOML file, loaded into plain, validated data.
//
//   [server]
//   listen = "0.0.0.0:7000"                   # TLS control (TCP); or a list, see below
//   stun = ["0.0.0.0:3478", "0.0.0.0:3479"]   # two UDP ports; the first also carries the relay
//                                             # (both also answer STUN over TCP, issue 15)
//   cert_file = "server.crt"                  # these three are created on first start if
//   key_file = "server.key"                   #   absent, relative to the config's folder
//   identity_key = "server-identity.key"
//   # max_agents = 10000
//   # relay_rate_mbit = 50                    # per agent
//   # relay_packets_per_sec = 20000           # per agent
//   # log_level = "info"
//   # stun_standard_clients = false           # answer 20-byte STUN requests too
//   # metrics = "127.0.0.1:9464"              # Prometheus GET /metrics (off unless set)
//
//   [cluster]                                 # optional: several servers, one network
//   redis = "redis://127.0.0.1:6379"          # an IP literal (hiredis resolves names blocking)
//   name = "s1"                               # this server's name, unique in the cluster
//
//   [[agents]]
//   name = "nas"
//   public_key = "base64..."                  # as printed by burrow keygen
//
//   [[allow]]                                 # deny by default
//   from = "laptop"
//   to = "nas"
//   services = ["web"]                        # or ["*"]
//
// IPv6 (issue 17). "[::]:7000" alone is one dual-stack socket (IPV6_V6ONLY=0) that takes IPv4
// too, as IPv4-mapped addresses. Lists name several sockets, for a server that binds chosen
// addresses rather than wildcards, or one address per family:
//
//   listen = ["0.0.0.0:7000", "[::]:7000"]
//   stun = ["0.0.0.0:3478", "0.0.0.0:3479", "[::]:3478", "[::]:3479"]
//
// An IPv6 address that shares its port with an IPv4 address of the same list is bound
// IPv6-only, so the two do not fight over the port; otherwise it is dual-stack. The STUN list
// uses exactly two port numbers: the first entry's port is the main one (Bind and the UDP
// relay, AuthOk's relay_udp_port), the other is the second STUN port; both ports must serve the
// same address families, or an agent of one family could not test its NAT's mapping.
//
// Loading either yields a config in which every check has passed, or one ConfigError line.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "config/config_error.h"
#include "signal/host_port.h"
#include "config/values.h"
#include "signal/acl.h"
#include "tunnel/noise.h"

namespace burrow {

// kAnyService ("*", every service of the target agent) is the ACL's (signal/acl.h).

inline constexpr uint16_t kDefaultRedisPort = 6379;

// [cluster] (signal/cluster_core.h): every server of a cluster loads the same file apart from
// this section's name (and its listen addresses), so the ACL, the agents and the identity key
// that relay tokens derive from are the same everywhere.
struct ClusterSection {
    HostPort redis;    // an IP literal
    std::string name;  // the agent-name rules: letters, digits, '-', '_'
    bool operator==(const ClusterSection&) const = default;
};

inline constexpr uint32_t kDefaultMaxAgents = 10000;
inline constexpr uint32_t kDefaultRelayRateMbit = 50;
inline constexpr uint32_t kDefaultRelayPacketsPerSec = 20000;

struct AgentEntry {
    std::string name;
    PublicKey public_key{};

    bool operator==(const AgentEntry&) const = default;
};

struct AllowRule {
    std::string from;  // both are names listed in agents
    std::string to;
    // Service names, or exactly {"*"} (kAnyService).
    std::vector<std::string> services;

    bool operator==(const AllowRule&) const = default;
};

// How many sockets one address list may name: both families on a few chosen addresses.
inline constexpr size_t kMaxListenAddresses = 8;

struct ServerConfig {
    std::vector<HostPort> listen;  // IP literals, 1 to kMaxListenAddresses, none overlapping
    // stun[0]: the main UDP port (STUN, Bind, relay); stun[1]: the second STUN port. Each is
    // one or more IP literals on one port; the two ports differ.
    std::array<std::vector<HostPort>, 2> stun;
    std::string cert_file;         // the three paths are resolved and pairwise different
    std::string key_file;
    std::string identity_key;
    uint32_t max_agents = kDefaultMaxAgents;
    uint32_t relay_rate_mbit = kDefaultRelayRateMbit;             // per agent
    uint32_t relay_packets_per_sec = kDefaultRelayPacketsPerSec;  // per agent
    LogLevel log_level = LogLevel::kInfo;
    // Answer minimal STUN Binding requests (standard clients) with the minimal response, at
    // the cost of answering some datagrams with more bytes than they had (signal/udp_server.h).
    bool stun_standard_clients = false;
    // Where GET /metrics answers (TCP, HTTP); nullopt: no metrics listener. An IP literal that
    // does not overlap `listen`.
    std::optional<HostPort> metrics;
    std::optional<ClusterSection> cluster;  // nullopt: one server, no Redis
    std::vector<AgentEntry> agents;  // names and keys unique
    std::vector<AllowRule> allow;

    bool operator==(const ServerConfig&) const = default;
};

// Validates a file's text (src/config_file.h reads the file). source_name is what messages call the file;
// base_dir is the folder relative paths resolve against ("" for the current one).
std::variant<ServerConfig, ConfigError> parse_server_config(std::string_view text,
                                                            std::string_view source_name,
                                                            std::string_view base_dir);

}  // namespace burrow
