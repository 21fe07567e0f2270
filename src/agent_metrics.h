// The agent's status (signal/agent_status.h) as Prometheus metrics, for GET /metrics on the
// admin endpoint: a second rendering of the snapshot `burrow status --json` shows, so both
// always agree. docs/metrics.md lists every metric.
#pragma once

#include <string>

#include "signal/agent_status.h"
#include "src/udp_socket.h"

namespace burrow {

std::string agent_metrics_text(const AgentStatus& status, const UdpStats& udp);

}  // namespace burrow
