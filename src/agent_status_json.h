// The agent's status (signal/agent_status.h) as the JSON that `burrow status` reads from the
// admin endpoint (src/status_table.cc prints it as a table).
#pragma once

#include <nlohmann/json.hpp>

#include "signal/agent_status.h"
#include "src/udp_socket.h"

namespace burrow {

// udp: the main socket's modes, buffers and counters (truncated datagrams, a full send queue
// are dropped there).
nlohmann::json agent_status_json(const AgentStatus& status, const UdpStats& udp);

}  // namespace burrow
