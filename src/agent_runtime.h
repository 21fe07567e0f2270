// The running agent: the executor of signal/agent_core.h on the libuv loop. It owns the sockets
// (the main UDP socket, the links' extra ones, the forwards' listeners, the forwarded TCP
// connections), the TLS connection to the server, the timer and the status endpoint, feeds
// every event to the AgentCore and carries out the actions it returns. It decides nothing:
// the NAT strategy, the ACL and approvals, paths, timers and reload all live in the core.
// src/agent.cc turns the config file into what this takes.
#pragma once

#include <memory>
#include <string>

#include "config/agent_config.h"
#include "src/tls.h"
#include "tunnel/noise.h"

namespace burrow {

struct AgentRuntimeOptions {
    AgentConfig config;
    std::string config_path;  // reloaded on SIGHUP
    PrivateKey key;
    std::shared_ptr<TlsContext> tls;  // the client context for the server
    int verbosity = 0;                // -v count; overrides the config's log_level when > 0
};

// Runs until SIGINT or SIGTERM (exit 0), or until the server refuses our identity (exit 1).
// Returns 1, having printed one line, when a socket cannot be opened (a port in use).
int run_agent_loop(AgentRuntimeOptions options);

}  // namespace burrow
