// The running signalling server: ServerCore (signal/) wired to the sockets, the timer and the
// signals (see src/server.h for the command). src/server.cc turns the config file into the
// plain values this file takes, so the loop can be started from tests without a file.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tunnel/socket_address.h"
#include "src/tls.h"
#include "tunnel/noise.h"

namespace burrow {

struct ServerRuntimeConfig {
    struct Agent {
        std::string name;
        PublicKey key{};
    };
    struct Rule {
        std::string from;
        std::string to;
        std::vector<std::string> services;
    };

    // One socket per address. An IPv6 address that shares its port with an IPv4 address of the
    // same list is bound IPv6-only; otherwise IPv6 sockets are dual-stack (config/server_config.h).
    std::vector<SocketAddress> listen;               // TLS control connections
    std::array<std::vector<SocketAddress>, 2> stun;  // the first port also carries Bind and relay
    PrivateKey identity;                // the X25519 key agents authenticate against
    uint32_t max_agents = 0;
    double relay_bytes_per_second = 0;    // per agent
    double relay_packets_per_second = 0;  // per agent
    bool stun_standard_clients = false;
    std::optional<SocketAddress> metrics;  // GET /metrics (Prometheus); nullopt: none
    std::vector<Agent> agents;
    std::vector<Rule> allow;
    struct Cluster {
        SocketAddress redis;
        std::string name;
    };
    std::optional<Cluster> cluster;  // [cluster]: nullopt means one server, no Redis
};

// Serves until SIGINT or SIGTERM, then closes everything; returns the exit status (0, 1 when a
// socket cannot be opened, 2 for an access list Acl::create refuses), having printed one line
// for a failure.
int run_server_loop(const ServerRuntimeConfig& config, std::shared_ptr<TlsContext> tls);

}  // namespace burrow
