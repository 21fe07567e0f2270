// `burrow server`: the signalling server's OS side (docs/architecture.md §6).
//
// ServerCore (signal/server_core.h) decides everything; this file only moves bytes between it
// and the world: one TLS listener for the agents' control connections, two UDP sockets for
// STUN, Bind and relay, one CoreTimer for the core's deadline, and SIGINT/SIGTERM to stop.
//
//   $ burrow server -c server.toml
//   ... info created certificate /etc/burrow/server.crt; fingerprint sha256:...
//   ... info certificate fingerprint sha256:...
//   ... info listening on 0.0.0.0:7000 (TLS), stun 0.0.0.0:3478 and 0.0.0.0:3479 (UDP)
//
// Exit status: 0 after a signal or --print-fingerprint, 2 for a bad config (one line naming
// file:line:col, before any socket opens), 1 when the OS refuses (a port in use, an unreadable
// key), with one line such as "burrow: listen 0.0.0.0:7000: address already in use".
#pragma once

#include <string>

namespace burrow {

struct ServerRunOptions {
    std::string config_path;
    // Print the certificate's fingerprint (creating the certificate if needed) and exit.
    bool print_fingerprint = false;
    int verbosity = 0;  // the number of -v given; 0 leaves the config's log_level
};

// Runs the server until SIGINT or SIGTERM; returns the process exit status.
int run_server(const ServerRunOptions& options);

}  // namespace burrow
