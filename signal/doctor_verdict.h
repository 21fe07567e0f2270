// `burrow doctor PEER`: the server's joined record of a pair's last rendezvous (DoctorReply,
// signal/doctor_book.h) turned into a verdict a user can act on. Pure: src/ prints verdict.text
// or turns the struct into JSON (src/doctor_json.h).
//
//   relayed (relay-udp): both NATs map per destination (symmetric, random ports); ...
//   direct (srflx, 0.4 s to direct): path 203.0.113.5:40001 <-> 198.51.100.7:40002
//   direct-tcp (tcp-srflx, 0.3 s to direct): path ...; no direct UDP path (UDP blocked): a TCP
//     connection between the agents carries the session, punched by simultaneous open ...
//
// Each side's NAT mapping comes from its own report (measured when punching settled), else from
// what the server sent at the rendezvous. Filtering behaviour is not measured by burrow (the
// server has no third address to test it from), and a side without a gateway-mapped candidate
// may have had no answer from its router or port mapping turned off: the verdict says so
// instead of guessing.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "signal/control.h"

namespace burrow {

// The asking agent's own link with the peer now (its status), when it has one: what path the
// packets take at this moment, which reports (made when punching settled) may predate.
struct LivePath {
    ReportPath kind = ReportPath::kRelayUdp;
    std::optional<SocketAddress> address;  // the peer's address, on a direct path
    double rtt_ms = 0;
};

struct DoctorSideView {
    std::string name;
    std::string nat;  // to_string(NatMapping)
    std::string filtering = "not measured";
    bool reported = false;     // a PunchReport from this side is on record
    bool online = false;       // connected to the server now
    // Its report says the server never answered its UDP; without a report, the server has
    // heard no UDP from it.
    bool udp_blocked = false;
    std::optional<uint16_t> udp_port;  // its host candidates' port: the one to forward
    std::optional<SocketAddress> mapped;  // the address its gateway mapped (UPnP IGD, PCP, NAT-PMP)
    size_t candidates = 0;             // it had registered
    size_t tried = 0;                  // of the other side's addresses, it probed
    double report_age_s = 0;
};

struct DoctorVerdict {
    std::string path;       // "direct", "direct-tcp", "relay-udp", "relay-tcp", "unknown"
    // "host", "srflx", "prflx", "birthday", "mapped", "predicted", "tcp-host", "tcp-srflx",
    // "tcp-prflx", "relay", "unknown"
    std::string technique;
    std::string strategy;   // how it punched: "plain", "spray", "birthday" ("" unknown)
    std::optional<double> time_to_direct_s;
    std::optional<double> rtt_ms;  // of the asking agent's live link
    std::optional<SocketAddress> self_address;  // the direct path's ends, as the peers saw them
    std::optional<SocketAddress> peer_address;
    double rendezvous_age_s = 0;
    DoctorSideView self;
    DoctorSideView peer;
    std::vector<std::string> udp_blocked;  // names of the sides where UDP is blocked
    std::vector<std::string> findings;     // why the path is what it is
    std::vector<std::string> advice;       // what would help
    std::string text;                      // the lines `burrow doctor` prints
};

// reply.status must be kOk. self_name: the asking agent's name; live: its link now, if any.
DoctorVerdict diagnose(const DoctorReply& reply, std::string_view self_name,
                       const std::optional<LivePath>& live = std::nullopt);

// One line for a reply that carries no record (kNotAllowed, kNoRendezvous).
std::string doctor_refusal_text(const DoctorReply& reply);

const char* to_string(ReportPath p);
const char* to_string(ReportSource s);
const char* to_string(ReportStrategy s);

}  // namespace burrow
