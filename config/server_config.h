// The signalling server's TOML file, loaded into plain, validated data.
//
//   [server]
//   listen = "0.0.0.0:7000"                   # TLS control (TCP)
//   stun = ["0.0.0.0:3478", "0.0.0.0:3479"]   # two UDP ports; the first also carries the relay
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
//   [[agents]]
//   name = "nas"
//   public_key = "base64..."                  # as printed by burrow keygen
//
//   [[allow]]                                 # deny by default
//   from = "laptop"
//   to = "nas"
//   services = ["web"]                        # or ["*"]
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

struct ServerConfig {
    HostPort listen;               // IP literal
    std::array<HostPort, 2> stun;  // IP literals on different ports or addresses
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
