// `burrow netcheck`: what this machine's NAT does to UDP, in a few lines (issue 6).
//
//   $ burrow netcheck -c laptop.toml          # the server named in the agent's config
//   $ burrow netcheck --stun 203.0.113.7:3478 --stun 203.0.113.7:3479
//   ipv4 udp       reachable: both STUN ports answered
//   ipv4 reflexive 198.51.100.20:40312 (port 3478), 198.51.100.20:40312 (port 3479)
//   ipv4 mapping   endpoint-independent: direct paths can be punched
//   ipv6 udp       not asked: the server has no IPv6 address
//   tcp reflexive  198.51.100.20:40500 (port 3478), 198.51.100.20:40500 (port 3479)
//   tcp mapping    endpoint-independent (port kept across destinations): direct TCP punching
//                  can work
//   allocation     one port for every destination
//   upnp igd       192.168.1.1 (external 203.0.113.5)
//   pcp            192.168.1.1 answers
//   nat-pmp        no answer from 192.168.1.1
//
// It sends the agent's own STUN probe (signal/nat_probe.h) from one UDP socket (dual-stack
// where the machine has IPv6, as the agent's) to two ports of the server, once per address
// family the server's name has (issue 17); it does not log in, so it can run beside a running
// agent. With -c, the ports are the server's defaults (3478 and 3479) on the host of [agent]
// server unless --stun is given. --json prints the same report as JSON
// (src/netcheck_report.h).
// The TCP lines (issue 15, src/netcheck_tcp.h) come from two TCP connections from one local port
// to the server's two STUN ports, which answer STUN over TCP too; an older server that does not
// says so on the tcp mapping line.
// Standard STUN servers (--stun-server, repeatable, or the config's [agent] stun_servers) are
// asked from the same socket on RFC 8489's schedule (signal/stun_servers.h; a silent one takes
// 39.5 s to give up): one line each, and their answers refine the mapping verdict.
//
//   stun server    stun.example.net:3478 answered: 198.51.100.20:40312 (rtt 21.3 ms)
//
// The allocation line (issue 16, tunnel/port_prediction.h) reads the mapped ports of the
// socket's successive new mappings, one per STUN destination (the STUN servers in order, then
// the server's two ports): "sequential delta 1", "block 1024-1535", "random", "one port for
// every destination", or unknown with fewer than three destinations answered.
#pragma once

#include <string>
#include <vector>

namespace burrow {

struct NetcheckOptions {
    std::string config_path;        // an agent config whose server host to use
    std::vector<std::string> stun;  // HOST:PORT, at most two
    // Standard STUN servers (HOST:PORT, at most kMaxStunServers); with -c and none given, the
    // config's [agent] stun_servers.
    std::vector<std::string> stun_servers;
    // Do not ask the gateway whether UPnP IGD, PCP or NAT-PMP answer (also when -c's config says
    // port_mapping = false).
    bool no_port_mapping = false;
    bool json = false;  // the report as JSON (src/netcheck_report.h)
};

// 0 after printing a report (also when UDP is blocked: that is a finding), 2 for bad
// arguments, 1 when no socket can be opened.
int run_netcheck(const NetcheckOptions& options);

}  // namespace burrow
