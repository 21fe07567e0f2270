// `burrow agent`: one side of the tunnel (docs/architecture.md §4-6).
//
//   $ burrow agent -c laptop.toml
//   ... info agent laptop (base64 key), udp port 40123
//   ... info forward 127.0.0.1:8080 -> nas/web listening
//   ... info registered with the server as laptop (nat endpoint-independent, udp relay)
//   ... info session with nas up (relay-udp, we connected)
//
// Exit status: 0 after SIGINT/SIGTERM; 2 for a bad config or key file (one line naming
// file:line:col and the key, before any socket opens); 1 when the OS refuses (a port in use)
// or the server refuses this agent's identity.
#pragma once

#include <string>

namespace burrow {

struct AgentRunOptions {
    std::string config_path;
    int verbosity = 0;  // the number of -v given; 0 leaves the config's log_level
};

int run_agent(const AgentRunOptions& options);

}  // namespace burrow
