// `burrow doctor PEER [-c agent.toml] [--admin HOST:PORT] [--json]`: why is the connection to
// PEER direct or relayed? Asks the running agent's admin endpoint (GET /doctor/PEER), which asks
// the signalling server for the pair's last rendezvous joined with both agents' reports, and
// prints the verdict (signal/doctor_verdict.h):
//
//   $ burrow doctor nas -c laptop.toml
//   relayed (relay-udp): both NATs map per destination (symmetric, random ports); ...
//     rendezvous 12.0 s ago, punching strategy plain
//     laptop: NAT mapping per-destination, filtering not measured, 3 candidates, ...
//     nas: NAT mapping per-destination, ...
//
// Exit status: 0 a verdict was printed; 1 no verdict (no rendezvous with PEER recorded yet, a
// peer the server does not let us reach, the server did not answer, the agent is not running),
// with one line on stderr; 2 bad input. --json prints the agent's JSON (src/doctor_json.h) as
// is, with the same exit status.
#pragma once

#include <string>

namespace burrow {

struct DoctorOptions {
    std::string peer;
    std::string config_path;
    std::string admin;
    bool json = false;
};

int run_doctor(const DoctorOptions& options);

}  // namespace burrow
