// What `burrow netcheck` found, and its two renderings (text and --json), per address family
// (issue 17). Pure: src/netcheck.cc gathers the findings, this file only formats them.
//
//   ipv4 udp       reachable: both STUN ports answered
//   ipv4 reflexive 198.51.100.20:40312 (port 3478), 198.51.100.20:40312 (port 3479)
//   ipv4 mapping   endpoint-independent: direct paths can be punched
//   ipv6 udp       reachable: both STUN ports answered
//   ipv6 reflexive [2001:db8:2::2]:40312 (port 3478), [2001:db8:2::2]:40312 (port 3479)
//   ipv6 mapping   endpoint-independent: direct paths can be punched
//   stun server    stun.example.net:3478 answered: 198.51.100.20:40312 (rtt 21.3 ms)
//   tcp reflexive  198.51.100.20:40500 (port 3478), 198.51.100.20:40500 (port 3479)
//   tcp mapping    endpoint-independent (port kept across destinations): direct TCP punching
//                  can work
//   allocation     one port for every destination
//   upnp igd       192.168.1.1 (external 203.0.113.5)
//   pcp            192.168.1.1 answers
//   nat-pmp        no answer from 192.168.1.1
//
//   {"families": [{"family": "ipv4", "asked": true, "reachable": true,
//                  "server": {"ports": [3478, 3479], "answered": 2,
//                             "reflexive": ["198.51.100.20:40312", "198.51.100.20:40312"]},
//                  "reflexive": ["198.51.100.20:40312"], "mapping": "endpoint-independent",
//                  "stun_servers_answered": ["stun.example.net:3478"], "not_asked": null}, ...],
//    "stun_servers": [{"server": "stun.example.net:3478", "address": "192.0.2.9:3478",
//                      "family": "ipv4", "answered": true, "mapped": "198.51.100.20:40312",
//                      "rtt_ms": 21.3, "requests": 1, "error": null}],
//    "tcp": {"asked": true, "server_ports": [3478, 3479], "local_port": 40500,
//            "reflexive": ["198.51.100.20:40500", "198.51.100.20:40500"],
//            "mapping": "endpoint-independent", "error": null},
//    "allocation": {"kind": "sequential", "text": "sequential delta 1"},
//    "port_mapping": {"upnp": "...", "pcp": "...", "natpmp": "..."}}     (null when not asked)
#pragma once

#include <array>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "signal/nat_probe.h"
#include "signal/stun_servers.h"
#include "tunnel/port_prediction.h"
#include "tunnel/socket_address.h"

namespace burrow {

struct NetcheckFamily {
    bool v6 = false;
    // The burrow server's two STUN ports of this family, when they were asked.
    std::optional<std::array<SocketAddress, 2>> server;
    NatProbeResult probe;  // what they answered
    // Why nothing of this family was asked (no IPv6 on this machine, the server has no
    // address of it, ...); empty when something was.
    std::string not_asked;
};

// The TCP mapping test (issue 15): one local port, a Binding request over TCP to each of the
// server's STUN ports in turn (src/netcheck_tcp.h).
struct NetcheckTcp {
    bool asked = false;
    std::string not_asked;  // why not (no IPv4 server address, ...)
    std::array<uint16_t, 2> server_ports{};
    uint16_t local_port = 0;
    std::array<std::optional<SocketAddress>, 2> mapped;
    // The first failure (connect refused or timed out, no answer, a bad answer); empty when
    // both ports answered.
    std::string error;
};

struct NetcheckReport {
    std::vector<NetcheckFamily> families;  // IPv4, then IPv6
    std::vector<StunServerStatus> stun_servers;
    // Our own addresses (an answer equal to one is no NAT's doing: refine_mapping).
    std::vector<SocketAddress> host_addresses;
    // What the gateway said (src/port_mapping.h); nullopt when not asked.
    std::optional<std::string> upnp;
    std::optional<std::string> pcp;
    std::optional<std::string> natpmp;
    // How the IPv4 NAT allocates ports (issue 16), from the socket's IPv4 mappings in the
    // order they were made (src/netcheck.cc: mapped_in_order).
    PortAllocation allocation;
    NetcheckTcp tcp;
};

// The family's mapping: its server probe's verdict refined by its STUN servers' answers.
NatMapping netcheck_mapping(const NetcheckReport& report, const NetcheckFamily& family);
// The TCP test's verdict: both ports answered with one port, or two.
NatMapping netcheck_tcp_mapping(const NetcheckTcp& tcp);
std::string netcheck_text(const NetcheckReport& report);
nlohmann::json netcheck_json(const NetcheckReport& report);

}  // namespace burrow
