// The JSON body of GET /doctor/PEER on the agent's admin endpoint (src/admin_server.h), which
// `burrow doctor` prints (--json) or reads its verdict text from:
//
//   {"peer": "nas", "ok": true, "verdict": "direct (srflx, 0.4 s to direct): ...",
//    "path": "direct", "technique": "srflx", "strategy": "plain", "time_to_direct_s": 0.4,
//    "addresses": {"self": "203.0.113.5:40001", "peer": "198.51.100.7:40002"},
//    "rendezvous_age_s": 12.5, "udp_blocked": [],
//    "self": {"name": ..., "nat": {"mapping": ..., "filtering": "not measured"},
//             "reported": true, "udp_blocked": false, "udp_port": 40001, "candidates": 3,
//             "tried": 2, "report_age_s": 11.9},
//    "peer": {...}, "findings": [...], "advice": [...]}
//
// or {"peer": "nas", "ok": false, "error": "no rendezvous with nas recorded yet; ..."}.
#pragma once

#include <nlohmann/json.hpp>
#include <string_view>

#include "signal/agent_action.h"

namespace burrow {

nlohmann::json doctor_json(std::string_view peer, const DoctorResult& result);

}  // namespace burrow
