#include "signal/doctor_verdict.h"

#include <cstdio>

namespace burrow {
namespace {

// What the sides' routers gave (a gateway-mapped candidate, signal/port_mapper.h). A side
// without one either got no answer from its router or runs with port_mapping = false: the
// candidates cannot tell which, so the finding names both.
std::string port_mapping_finding(const DoctorSideView& a, const DoctorSideView& b) {
    std::string out;
    for (const DoctorSideView* s : {&a, &b}) {
        if (!s->mapped) continue;
        if (!out.empty()) out += "; ";
        out += s->name + "'s router mapped " + to_string(*s->mapped) +
               " (UPnP IGD, PCP or NAT-PMP), yet no direct path came through it";
    }
    if (!out.empty()) return out;
    return "no port mapping on either router (UPnP IGD, PCP and NAT-PMP did not answer, or "
           "port_mapping = false)";
}

std::string seconds_text(double s) {
    char buf[32];
    std::snprintf(buf, sizeof buf, s < 10 ? "%.1f s" : "%.0f s", s);
    return buf;
}

DoctorSideView view(const DoctorSide& side, std::string name) {
    DoctorSideView v;
    v.name = std::move(name);
    v.online = side.online;
    NatMapping nat = side.nat;
    const std::vector<Candidate>* candidates = &side.candidates;
    if (side.report) {
        v.reported = true;
        v.udp_blocked = !side.report->udp_to_server;
        if (side.report->nat != NatMapping::kUnknown) nat = side.report->nat;
        if (!side.report->candidates.empty()) candidates = &side.report->candidates;
        v.tried = side.report->tried.size();
        v.report_age_s = side.report_age_ms / 1000.0;
    }
    v.nat = to_string(nat);
    v.candidates = candidates->size();
    for (const Candidate& c : *candidates) {
        if (c.kind == CandidateKind::kHost && !v.udp_port) v.udp_port = c.address.port;
        if (c.kind == CandidateKind::kMapped && !v.mapped) v.mapped = c.address;
    }
    return v;
}

std::string forward_advice(const DoctorSideView& side) {
    return "forward UDP port " + (side.udp_port ? std::to_string(*side.udp_port) : "N") +
           " on " + side.name + "'s router to " + side.name;
}

std::string side_line(const DoctorSideView& s) {
    std::string line = "  " + s.name + ": NAT mapping " + s.nat + ", filtering " + s.filtering +
                       ", " + std::to_string(s.candidates) +
                       (s.candidates == 1 ? " candidate" : " candidates");
    if (!s.online) line += ", offline now";
    if (!s.reported) return line + ", no report yet";
    line += s.udp_blocked ? ", UDP to the server blocked" : ", UDP to the server ok";
    line += ", probed " + std::to_string(s.tried) + " of the peer's addresses";
    return line;
}

}  // namespace

const char* to_string(ReportPath p) {
    switch (p) {
        case ReportPath::kDirect: return "direct";
        case ReportPath::kRelayUdp: return "relay-udp";
        case ReportPath::kRelayTcp: return "relay-tcp";
        case ReportPath::kDirectTcp: return "direct-tcp";
    }
    return "unknown";
}

const char* to_string(ReportSource s) {
    switch (s) {
        case ReportSource::kNone: return "relay";
        case ReportSource::kHost: return "host";
        case ReportSource::kServerReflexive: return "srflx";
        case ReportSource::kPeerReflexive: return "prflx";
        case ReportSource::kBirthday: return "birthday";
        case ReportSource::kMapped: return "mapped";
        case ReportSource::kPredicted: return "predicted";
        case ReportSource::kTcpHost: return "tcp-host";
        case ReportSource::kTcpServerReflexive: return "tcp-srflx";
        case ReportSource::kTcpPeerReflexive: return "tcp-prflx";
    }
    return "unknown";
}

const char* to_string(ReportStrategy s) {
    switch (s) {
        case ReportStrategy::kPlain: return "plain";
        case ReportStrategy::kSpray: return "spray";
        case ReportStrategy::kBirthday: return "birthday";
        case ReportStrategy::kMapped: return "mapped";
        case ReportStrategy::kPredicted: return "predicted";
    }
    return "";
}

std::string doctor_refusal_text(const DoctorReply& reply) {
    switch (reply.status) {
        case DoctorStatus::kNotAllowed:
            return "the server has no peer \"" + reply.peer +
                   "\" that this agent may reach (check the name and the server's [[allow]] "
                   "rules)";
        case DoctorStatus::kNoRendezvous:
            return "no rendezvous with " + reply.peer +
                   " recorded yet; run a connection through a forward first";
        case DoctorStatus::kOk:
            break;
    }
    return "";
}

DoctorVerdict diagnose(const DoctorReply& reply, std::string_view self_name,
                       const std::optional<LivePath>& live) {
    DoctorVerdict v;
    v.self = view(reply.self, std::string(self_name));
    v.peer = view(reply.peer_side, reply.peer);
    v.rendezvous_age_s = reply.rendezvous_age_ms / 1000.0;
    const std::optional<PunchReport>& ours = reply.self.report;
    const std::optional<PunchReport>& theirs = reply.peer_side.report;
    for (DoctorSideView* s : {&v.self, &v.peer}) {
        const DoctorSide& side = s == &v.self ? reply.self : reply.peer_side;
        // Without a report, only a connected side's missing UDP binding means UDP is blocked.
        if (!side.report) s->udp_blocked = side.online && !side.udp_heard;
        if (s->udp_blocked) v.udp_blocked.push_back(s->name);
    }
    if (ours) v.strategy = to_string(ours->strategy);
    else if (theirs) v.strategy = to_string(theirs->strategy);

    // Where the direct path came from: either side's report (the other may not have reported).
    // A report of the live path's kind first: a link that moved up from direct TCP to direct
    // UDP reports again, and the other side's newer report may not have come yet.
    const auto first = [&](auto wanted) -> const PunchReport* {
        if (ours && wanted(*ours)) return &*ours;
        if (theirs && wanted(*theirs)) return &*theirs;
        return nullptr;
    };
    const auto is_direct = [](const PunchReport& r) {
        return r.path == ReportPath::kDirect || r.path == ReportPath::kDirectTcp;
    };
    const PunchReport* direct = nullptr;
    if (live) direct = first([&](const PunchReport& r) { return r.path == live->kind; });
    if (!direct || !is_direct(*direct)) direct = first(is_direct);

    // The path: this side's live link first (reports describe how punching settled, which may
    // have changed since), else the reports.
    if (live) {
        v.path = to_string(live->kind);
        if (live->rtt_ms > 0) v.rtt_ms = live->rtt_ms;
    } else if (direct) {
        v.path = to_string(direct->path);
    } else if (ours || theirs) {
        const bool tcp = (ours && ours->path == ReportPath::kRelayTcp) ||
                         (theirs && theirs->path == ReportPath::kRelayTcp);
        v.path = tcp ? "relay-tcp" : "relay-udp";
    } else {
        v.path = "unknown";
    }
    // A side whose UDP is blocked has its relay leg inside TLS: the slower leg names the pair.
    if (v.path == "relay-udp" && !v.udp_blocked.empty()) v.path = "relay-tcp";
    const bool settled = ours || theirs;
    const bool direct_tcp = v.path == "direct-tcp";
    const bool on_direct = v.path == "direct" || direct_tcp;

    if (!v.peer.online) {
        v.findings.push_back(v.peer.name + " is not connected to the server now (what follows is "
                                           "from the last rendezvous)");
    }
    for (const std::string& name : v.udp_blocked) {
        v.findings.push_back("UDP is blocked on " + name + " (no answer from the server over UDP)");
        v.advice.push_back(
            "allow outbound UDP from " + name + " (at least to the server's ports); until then " +
            (direct_tcp ? "the session runs over TCP, where one lost packet holds up every stream"
                        : "its traffic goes through the server inside TLS"));
    }

    if (on_direct) {
        v.technique = direct ? to_string(direct->source) : "unknown";
        if (direct) v.time_to_direct_s = direct->time_to_direct_ms / 1000.0;
        // The ends as each report saw them, from reports of the same kind of path only (one
        // side may have moved up from TCP to UDP and reported again before the other).
        const auto same_kind = [&](const std::optional<PunchReport>& r) {
            return r && r->answered && (!direct || r->path == direct->path);
        };
        if (same_kind(ours)) v.peer_address = ours->answered;
        else if (live && live->address) v.peer_address = live->address;
        if (same_kind(theirs)) v.self_address = theirs->answered;
        std::string line = "path " + (v.self_address ? to_string(*v.self_address) : v.self.name) +
                           " <-> " + (v.peer_address ? to_string(*v.peer_address) : v.peer.name);
        if (v.rtt_ms) {
            char rtt[32];
            std::snprintf(rtt, sizeof rtt, ", rtt %.1f ms", *v.rtt_ms);
            line += rtt;
        }
        v.findings.push_back(line);
        if (direct && direct->source == ReportSource::kBirthday) {
            v.findings.push_back("found by the birthday technique (one NAT maps per destination)");
        }
        if (direct && direct->source == ReportSource::kPredicted) {
            v.findings.push_back(
                "found by port prediction (a NAT that maps per destination gives out ports in "
                "sequence or from a block)");
        }
        if (direct_tcp) {
            v.findings.push_back(
                std::string(v.udp_blocked.empty()
                                ? "no direct UDP path answered (a firewall may drop UDP between "
                                  "the peers)"
                                : "no direct UDP path (UDP blocked)") +
                ": a TCP connection between the agents carries the session, punched by "
                "simultaneous open (the crossing SYNs) or accepted by a reachable side's "
                "listener; UDP is still probed and takes over if it answers");
        }
    } else if (v.path == "unknown") {
        v.technique = "unknown";
    } else {
        v.technique = "relay";
        const bool self_sym = v.self.nat == to_string(NatMapping::kPerDestination);
        const bool peer_sym = v.peer.nat == to_string(NatMapping::kPerDestination);
        const bool self_ei = v.self.nat == to_string(NatMapping::kEndpointIndependent);
        const bool peer_ei = v.peer.nat == to_string(NatMapping::kEndpointIndependent);
        if (v.udp_blocked.empty()) {
            if (self_sym && peer_sym) {
                v.findings.push_back("both NATs map per destination (symmetric, random ports)");
                v.findings.push_back(port_mapping_finding(v.self, v.peer));
                v.advice.push_back("a relay is expected for symmetric/symmetric; enable UPnP IGD, "
                                   "PCP or NAT-PMP on one router (burrow asks for a mapping unless "
                                   "port_mapping = false) or " +
                                   forward_advice(v.self));
            } else if (self_sym != peer_sym && (self_ei || peer_ei)) {
                const DoctorSideView& sym = self_sym ? v.self : v.peer;
                v.findings.push_back(sym.name + "'s NAT maps per destination (symmetric)" +
                                     (settled ? "; the birthday technique found no shared mapping"
                                              : ""));
                v.findings.push_back(port_mapping_finding(v.self, v.peer));
                v.advice.push_back(forward_advice(sym));
            } else if (self_ei && peer_ei) {
                if (settled) {
                    v.findings.push_back(
                        "both NATs map endpoint-independently, yet none of the candidate "
                        "addresses probed answered: a firewall may drop unsolicited UDP");
                    v.findings.push_back(port_mapping_finding(v.self, v.peer));
                    v.advice.push_back(forward_advice(v.self) +
                                       ", or allow inbound UDP from the peer on either side");
                } else {
                    v.findings.push_back("both NATs map endpoint-independently: a direct path "
                                         "is expected");
                }
            } else {
                for (const DoctorSideView* s : {&v.self, &v.peer}) {
                    if (s->nat == to_string(NatMapping::kUnknown)) {
                        v.findings.push_back(s->name +
                                             "'s NAT mapping is unknown (the server's second "
                                             "STUN port did not answer)");
                    }
                }
                v.findings.push_back(port_mapping_finding(v.self, v.peer));
                v.advice.push_back("run `burrow netcheck -c agent.toml` on each side");
            }
        }
    }
    if (!settled && !on_direct) {
        v.findings.push_back(
            "punching has not settled yet (it does at the first direct path, or 20 s after the "
            "rendezvous)");
    }
    if (settled) {
        for (const DoctorSideView* s : {&v.self, &v.peer}) {
            if (!s->reported) v.findings.push_back("no report from " + s->name + " yet");
        }
    }
    if (v.path == "unknown") v.advice.push_back("run burrow doctor again in a few seconds");

    std::string head = on_direct ? v.path : v.path == "unknown" ? "unknown" : "relayed";
    std::string detail = on_direct ? v.technique : v.path;
    if (v.time_to_direct_s) detail += ", " + seconds_text(*v.time_to_direct_s) + " to direct";
    std::string text = head + " (" + detail + ")";
    for (size_t i = 0; i < v.findings.size(); ++i) text += (i == 0 ? ": " : "; ") + v.findings[i];
    for (const std::string& a : v.advice) text += "; " + a;
    text += "\n";
    text += "  rendezvous " + seconds_text(v.rendezvous_age_s) + " ago" +
            (v.strategy.empty() ? "" : ", punching strategy " + v.strategy) + "\n";
    text += side_line(v.self) + "\n";
    text += side_line(v.peer) + "\n";
    v.text = std::move(text);
    return v;
}

}  // namespace burrow
