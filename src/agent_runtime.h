// The running agent: AgentClient (signal/) and one Session (tunnel/) per peer, wired to the
// libuv loop. src/agent.cc turns the config file into what this takes.
//
//   TLS control connection   <-> AgentClient (dial, auth, register, rendezvous, TLS relay)
//   one UDP socket           <-> AgentClient (STUN, Bind, UDP relay) and, later, direct paths
//   [[forward]] listeners    -> a stream on the session to the peer (made on first use)
//   incoming streams         -> checked against [[expose]] and the server's approval, then a
//                               TCP connect to the target
//
// Sessions run over the server's relay (relay-udp while the server confirmed our UDP address,
// relay-tcp inside the TLS connection otherwise). A relayed session cannot outlive the control
// connection: when it drops, the server forgets the relay, so the sessions end and their
// forwarded connections are reset; new connections make new sessions once the agent is
// registered again.
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
