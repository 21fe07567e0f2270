// An agent's TOML file (docs/architecture.md §7), loaded into plain, validated data.
//
//   [agent]
//   name = "nas"                        # [a-z0-9-]{1,32}
//   key_file = "nas.key"                # relative to the config file's folder; must exist
//   server = "signal.example.net:7000"  # host:port of the server's TLS control port, or a
//                                       # list of the servers of one cluster (issue 21):
//                                       # ["a.example.net:7000", "b.example.net:7000"]
//   # server_order = "random"           # several servers: start at a random one ("random", the
//                                       # agents spread out) or the first ("listed": a home
//                                       # server, the others fallbacks); then the next listed
//   server_fingerprint = "sha256:..."   # exactly one of server_fingerprint and server_ca
//   # server_ca = "ca.pem"
//   # udp_port = 0                      # 0: any
//   # admin = "127.0.0.1:7070"          # loopback only, unless admin_remote
//   # admin_remote = false              # true: admin may be any IP address (a container's, to
//                                       # publish the status page); anyone who reaches it can
//                                       # read the agent's status. Needs admin.
//   # log_level = "info"                # trace|debug|info|warn|error
//   # max_streams = 16384               # forwarded connections a peer may have open at once
//                                       # through this agent (100-1048576)
//   # keepalive = "5s"                  # how often the UDP binding at the server is refreshed
//                                       # (1s-60s); below the NAT's UDP timeout. Unset: learned
//                                       # (25 s, halved each time the NAT forgets our mapping)
//   # stun_servers = ["stun.example.net:3478"]  # standard STUN servers (RFC 8489) asked for
//                                       # more reflexive candidates and a second opinion on
//                                       # the NAT's mapping; host:port, IPv4 or a name, at
//                                       # most 8, no repeats
//   # udp_idle_timeout = "60s"          # a UDP flow with no datagram for this long ends (1s-1h)
//   # port_mapping = true               # ask the gateway (UPnP IGD, PCP, NAT-PMP) to map the UDP
//                                       # port; the public address becomes a candidate any
//                                       # peer can reach, even behind a symmetric NAT
//
//   [[expose]]                          # a local service that allowed peers may open
//   service = "web"                     # [a-z0-9-_.]{1,64}
//   target = "127.0.0.1:80"             # an IP literal for protocol "udp"
//   allow = ["laptop"]                  # required, non-empty: deny by default
//   # protocol = "tcp"                  # "tcp" or "udp" (datagrams, never retransmitted)
//
//   [[forward]]                         # a local port that reaches a peer's service
//   listen = "127.0.0.1:8080"
//   peer = "nas"
//   service = "web"
//   # protocol = "tcp"                  # "tcp" or "udp"; a UDP and a TCP forward may share a
//                                       # port number, two of one protocol may not
//
// Parsing either yields a config in which every check below has passed, or one ConfigError
// line (config/config_error.h). Nothing is half-applied: there is nothing to apply.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "config/config_error.h"
#include "config/file_probe.h"
#include "signal/agent_settings.h"
#include "signal/host_port.h"
#include "config/values.h"
#include "tunnel/connection.h"
#include "tunnel/flow_control.h"

namespace burrow {

// The session's own default (tunnel/connection.h explains it).
inline constexpr uint64_t kDefaultMaxStreams = ConnectionConfig{}.max_incoming_streams;
// The floor is the credit a peer assumes before our first MAX_STREAMS (kInitialMaxStreams): a
// lower limit could not be enforced. The ceiling keeps a mistyped value from letting one peer
// hold millions of streams' worth of state.
inline constexpr int64_t kMinMaxStreams = static_cast<int64_t>(kInitialMaxStreams);
inline constexpr int64_t kMaxMaxStreams = 1 << 20;
// keepalive: a NAT that forgets a mapping within a second is beyond a keepalive's help (and
// learning stops there too, signal/udp_binding.h kMinLearnedKeepalive); a minute is twice the
// 30 s UDP timeout common NATs use, so a longer value could only be a mistake.
inline constexpr Duration kMinKeepalive = std::chrono::seconds(1);
inline constexpr Duration kMaxKeepalive = std::chrono::seconds(60);
// udp_idle_timeout: below a second a flow would end between a client's retries; beyond an
// hour idle flows would hold their sockets for no client that is still there.
inline constexpr Duration kMinUdpIdleTimeout = std::chrono::seconds(1);
inline constexpr Duration kMaxUdpIdleTimeout = std::chrono::hours(1);

// `server` lists at most this many servers: the servers of one cluster an agent may use.
inline constexpr size_t kMaxServers = 8;

struct AgentConfig {
    std::string name;
    std::string key_file;  // resolved against the config's folder; existed at load time
    HostPort server;                // servers[0]
    std::vector<HostPort> servers;  // every server given, in order (one for a plain string)
    ServerOrder server_order = ServerOrder::kRandom;
    // Exactly one of the two is set.
    std::optional<CertFingerprint> server_fingerprint;
    std::optional<std::string> server_ca;  // resolved like key_file; existed at load time
    uint16_t udp_port = 0;                 // 0: let the OS choose
    std::optional<HostPort> admin;         // a loopback literal, any IP literal if admin_remote
    bool admin_remote = false;
    LogLevel log_level = LogLevel::kInfo;
    // Streams (forwarded connections) a peer may have open at once on its session with us.
    uint64_t max_streams = kDefaultMaxStreams;
    // How often the agent refreshes its UDP binding at the server; nullopt: learned.
    std::optional<Duration> keepalive;
    // Standard STUN servers (signal/stun_servers.h); at most kMaxStunServers, no repeats.
    std::vector<HostPort> stun_servers;
    // A UDP flow (signal/udp_flows.h) with no datagram for this long ends.
    Duration udp_idle_timeout = std::chrono::seconds(60);
    // Ask the gateway for a mapping of udp_port (signal/port_mapper.h). On by default, as in
    // Tailscale: it is what makes a symmetric NAT reachable, it only talks to the LAN's
    // gateway, and the mapping is renewed while the agent runs and deleted when it stops.
    bool port_mapping = true;
    std::vector<ExposeConfig> expose;
    std::vector<ForwardConfig> forward;

    bool operator==(const AgentConfig&) const = default;
};

// Whether next differs from running in [agent] beyond log_level: what a reload cannot apply
// (the identity, the server, the sockets).
bool needs_restart(const AgentConfig& running, const AgentConfig& next);

// Validates a file's text (src/config_file.h reads the file). source_name is what messages
// call the file; base_dir is the folder relative paths resolve against ("" for the current
// one); files answers whether key_file and server_ca exist.
std::variant<AgentConfig, ConfigError> parse_agent_config(std::string_view text,
                                                          std::string_view source_name,
                                                          std::string_view base_dir,
                                                          const FileProbe& files);

}  // namespace burrow
