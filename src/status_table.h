// `burrow status` for people: the agent's status JSON (GET /status, src/admin_server.h) as a few
// lines and tables.
//
//   agent   laptop  version 0.1.0  up 12s  key base64...
//   server  127.0.0.1:7000  state online  registered yes  udp bound  nat endpoint-independent ...
//   udp     send gso  receive gro  buffers 16.0 MiB in, 16.0 MiB out
//
//   PEER  PATH       RTT      LOSS   SENT     RECEIVED  STREAMS  STATE
//   nas   relay-udp  1.25 ms  0.10%  1.2 KiB  5.5 KiB   2        established (initiator)
//
//   LISTEN          PEER  SERVICE  CONNECTIONS  ACTIVE  REFUSED
//   ...
//   drops: udp_malformed 2, nas malformed 1
//
// The agent and this binary may be different versions, so nothing is assumed about the JSON: a
// missing or mistyped field prints "-", and JSON that is not an object at all renders as the
// one line "malformed status from agent". Strings are printed with control characters
// replaced, so a peer name cannot drive the terminal.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace burrow {

// Never throws; the result ends with a newline.
std::string render_status(const nlohmann::json& status);

// Human units: "512 B", "1.2 KiB", "3.4 MiB", "5.0 GiB".
std::string format_bytes(uint64_t bytes);
// "12s", "5m 03s", "2h 05m", "3d 04h".
std::string format_uptime(double seconds);

}  // namespace burrow
