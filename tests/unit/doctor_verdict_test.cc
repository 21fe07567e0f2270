#include <catch2/catch.hpp>

#include <algorithm>

#include "signal/doctor_verdict.h"

using namespace burrow;

namespace {

const SocketAddress kLaptopHost = SocketAddress::ipv4({10, 1, 0, 2}, 40001);
const SocketAddress kNasHost = SocketAddress::ipv4({10, 2, 0, 2}, 40002);
const SocketAddress kLaptopPublic = SocketAddress::ipv4({203, 0, 113, 5}, 40001);
const SocketAddress kNasPublic = SocketAddress::ipv4({198, 51, 100, 7}, 40002);

PunchReport report(const std::string& peer, NatMapping nat, ReportPath path,
                   const SocketAddress& host) {
    PunchReport r;
    r.peer = peer;
    r.nat = nat;
    r.udp_to_server = true;
    r.candidates = {{CandidateKind::kHost, host}};
    r.tried = {SocketAddress::ipv4({192, 0, 2, 1}, 1), SocketAddress::ipv4({192, 0, 2, 1}, 2)};
    r.path = path;
    return r;
}

// The laptop asks about the nas; each side's NAT as the server had it at the rendezvous.
DoctorReply record(NatMapping laptop_nat, NatMapping nas_nat) {
    DoctorReply r;
    r.request_id = 1;
    r.peer = "nas";
    r.rendezvous_age_ms = 12'000;
    r.self.nat = laptop_nat;
    r.self.online = r.peer_side.online = true;
    r.self.udp_heard = true;
    r.peer_side.udp_heard = true;
    r.self.candidates = {{CandidateKind::kHost, kLaptopHost}};
    r.peer_side.nat = nas_nat;
    r.peer_side.candidates = {{CandidateKind::kHost, kNasHost}};
    return r;
}

void both_report(DoctorReply& r, ReportPath path) {
    r.self.report = report("nas", r.self.nat, path, kLaptopHost);
    r.peer_side.report = report("laptop", r.peer_side.nat, path, kNasHost);
}

bool has(const std::vector<std::string>& lines, std::string_view part) {
    return std::any_of(lines.begin(), lines.end(),
                       [&](const std::string& l) { return l.find(part) != std::string::npos; });
}

bool starts_with(const std::string& s, std::string_view prefix) {
    return s.compare(0, prefix.size(), prefix) == 0;
}

}  // namespace

TEST_CASE("verdict: symmetric/symmetric on the relay names both NATs and suggests port mapping") {
    DoctorReply r = record(NatMapping::kPerDestination, NatMapping::kPerDestination);
    both_report(r, ReportPath::kRelayUdp);
    const DoctorVerdict v = diagnose(r, "laptop");
    CHECK(v.path == "relay-udp");
    CHECK(v.technique == "relay");
    CHECK(v.self.nat == "per-destination");
    CHECK(v.peer.nat == "per-destination");
    CHECK(v.udp_blocked.empty());
    CHECK(starts_with(v.text, "relayed (relay-udp): both NATs map per destination (symmetric"));
    CHECK(has(v.findings, "no port mapping on either router"));
    CHECK(has(v.advice, "relay is expected for symmetric/symmetric"));
    CHECK(has(v.advice, "UPnP IGD, PCP or NAT-PMP"));
    CHECK(has(v.advice, "forward UDP port 40001 on laptop's router to laptop"));
    CHECK(v.text.find("rendezvous 12 s ago") != std::string::npos);
    CHECK(v.text.find("laptop: NAT mapping per-destination, filtering not measured") !=
          std::string::npos);
    CHECK(v.text.find("nas: NAT mapping per-destination") != std::string::npos);
}

TEST_CASE("verdict: a router's port mapping is named when it did not lead to a direct path") {
    DoctorReply r = record(NatMapping::kPerDestination, NatMapping::kPerDestination);
    const SocketAddress mapped = SocketAddress::ipv4({100, 128, 0, 11}, 44001);
    r.peer_side.candidates.push_back({CandidateKind::kMapped, mapped});
    const DoctorVerdict v = diagnose(r, "laptop", LivePath{ReportPath::kRelayUdp, {}, 0});
    CHECK(v.peer.mapped == mapped);
    CHECK_FALSE(v.self.mapped);
    CHECK(has(v.findings, "nas's router mapped 100.128.0.11:44001 (UPnP IGD, PCP or NAT-PMP), yet no "
                          "direct path came through it"));
    CHECK_FALSE(has(v.findings, "no port mapping on either router"));
}

TEST_CASE("verdict: a direct pair reports the path, the technique and the time to direct") {
    DoctorReply r = record(NatMapping::kEndpointIndependent, NatMapping::kEndpointIndependent);
    both_report(r, ReportPath::kDirect);
    r.self.report->source = ReportSource::kServerReflexive;
    r.self.report->answered = kNasPublic;
    r.self.report->time_to_direct_ms = 400;
    r.peer_side.report->source = ReportSource::kPeerReflexive;
    r.peer_side.report->answered = kLaptopPublic;
    r.peer_side.report->time_to_direct_ms = 450;
    const DoctorVerdict v = diagnose(r, "laptop");
    CHECK(v.path == "direct");
    CHECK(v.technique == "srflx");  // the asking side's view first
    REQUIRE(v.time_to_direct_s);
    CHECK(*v.time_to_direct_s == Approx(0.4));
    CHECK(v.self_address == kLaptopPublic);
    CHECK(v.peer_address == kNasPublic);
    CHECK(starts_with(v.text, "direct (srflx, 0.4 s to direct): path 203.0.113.5:40001 <-> "
                              "198.51.100.7:40002"));
    CHECK(v.advice.empty());
}

TEST_CASE("verdict: direct from one side's report while the other has not reported") {
    DoctorReply r = record(NatMapping::kEndpointIndependent, NatMapping::kPerDestination);
    r.peer_side.report = report("laptop", NatMapping::kPerDestination, ReportPath::kDirect, kNasHost);
    r.peer_side.report->source = ReportSource::kBirthday;
    r.peer_side.report->strategy = ReportStrategy::kBirthday;
    r.peer_side.report->answered = kLaptopPublic;
    r.peer_side.report->time_to_direct_ms = 6'300;
    const DoctorVerdict v = diagnose(r, "laptop");
    CHECK(v.path == "direct");
    CHECK(v.technique == "birthday");
    CHECK(v.strategy == "birthday");
    CHECK(v.self_address == kLaptopPublic);
    CHECK_FALSE(v.peer_address);
    CHECK(starts_with(v.text, "direct (birthday, 6.3 s to direct): path 203.0.113.5:40001 <-> nas"));
    CHECK(has(v.findings, "birthday technique"));
    CHECK(has(v.findings, "no report from laptop yet"));
}

TEST_CASE("verdict: UDP blocked on one side is named, and the path is relay-tcp") {
    for (bool peer_blocked : {true, false}) {
        DoctorReply r = record(NatMapping::kEndpointIndependent, NatMapping::kUnknown);
        both_report(r, ReportPath::kRelayUdp);
        DoctorSide& blocked = peer_blocked ? r.peer_side : r.self;
        blocked.report->udp_to_server = false;
        blocked.report->path = ReportPath::kRelayTcp;
        const std::string name = peer_blocked ? "nas" : "laptop";
        const DoctorVerdict v = diagnose(r, "laptop");
        CAPTURE(name);
        CHECK(v.path == "relay-tcp");
        CHECK(v.udp_blocked == std::vector<std::string>{name});
        CHECK(starts_with(v.text, "relayed (relay-tcp): UDP is blocked on " + name));
        CHECK(has(v.advice, "allow outbound UDP from " + name));
        CHECK((peer_blocked ? v.peer : v.self).udp_blocked);
        CHECK_FALSE((peer_blocked ? v.self : v.peer).udp_blocked);
    }
}

TEST_CASE("verdict: UDP blocked on both sides names both") {
    DoctorReply r = record(NatMapping::kUnknown, NatMapping::kUnknown);
    both_report(r, ReportPath::kRelayTcp);
    r.self.report->udp_to_server = false;
    r.peer_side.report->udp_to_server = false;
    const DoctorVerdict v = diagnose(r, "laptop");
    CHECK(v.udp_blocked == std::vector<std::string>{"laptop", "nas"});
    CHECK(has(v.findings, "UDP is blocked on laptop"));
    CHECK(has(v.findings, "UDP is blocked on nas"));
}

TEST_CASE("verdict: one symmetric side on the relay: forward a port on that side") {
    DoctorReply r = record(NatMapping::kEndpointIndependent, NatMapping::kPerDestination);
    both_report(r, ReportPath::kRelayUdp);
    const DoctorVerdict v = diagnose(r, "laptop");
    CHECK(v.path == "relay-udp");
    CHECK(starts_with(v.text, "relayed (relay-udp): nas's NAT maps per destination (symmetric)"));
    CHECK(has(v.advice, "forward UDP port 40002 on nas's router to nas"));
    CHECK_FALSE(has(v.advice, "symmetric/symmetric"));
}

TEST_CASE("verdict: two endpoint-independent NATs and still relayed: suspect a firewall") {
    DoctorReply r = record(NatMapping::kEndpointIndependent, NatMapping::kEndpointIndependent);
    both_report(r, ReportPath::kRelayUdp);
    const DoctorVerdict v = diagnose(r, "laptop");
    CHECK(has(v.findings, "firewall may drop unsolicited UDP"));
    CHECK(v.self.tried == 2);
}

TEST_CASE("verdict: a mapping nobody could measure is called unknown") {
    DoctorReply r = record(NatMapping::kUnknown, NatMapping::kEndpointIndependent);
    both_report(r, ReportPath::kRelayUdp);
    const DoctorVerdict v = diagnose(r, "laptop");
    CHECK(has(v.findings, "laptop's NAT mapping is unknown"));
    CHECK(has(v.advice, "burrow netcheck"));
}

TEST_CASE("verdict: a side's own measurement wins over what the rendezvous said") {
    DoctorReply r = record(NatMapping::kUnknown, NatMapping::kUnknown);
    both_report(r, ReportPath::kRelayUdp);
    r.self.report->nat = NatMapping::kPerDestination;
    r.peer_side.report->nat = NatMapping::kPerDestination;
    const DoctorVerdict v = diagnose(r, "laptop");
    CHECK(v.self.nat == "per-destination");
    CHECK(has(v.findings, "both NATs map per destination"));
}

TEST_CASE("verdict: no reports and no live link: the path is unknown and says why") {
    const DoctorVerdict v = diagnose(record(NatMapping::kPerDestination, NatMapping::kUnknown),
                                     "laptop");
    CHECK(v.path == "unknown");
    CHECK(starts_with(v.text, "unknown (unknown): punching has not settled yet"));
    CHECK_FALSE(v.self.reported);
    CHECK(v.self.udp_port == 40001);
    CHECK(v.text.find("no report yet") != std::string::npos);
    CHECK(has(v.advice, "again in a few seconds"));
}

TEST_CASE("verdict: before punching settles, the live relay and the NATs already explain it") {
    DoctorReply r = record(NatMapping::kPerDestination, NatMapping::kPerDestination);
    const DoctorVerdict v = diagnose(r, "laptop", LivePath{ReportPath::kRelayUdp, {}, 3.0});
    CHECK(v.path == "relay-udp");
    CHECK(starts_with(v.text, "relayed (relay-udp): both NATs map per destination"));
    CHECK(has(v.advice, "symmetric/symmetric"));
    CHECK(has(v.findings, "punching has not settled yet"));
    // Two cone NATs on the relay before the verdict: not yet a reason to blame a firewall.
    const DoctorVerdict cones =
        diagnose(record(NatMapping::kEndpointIndependent, NatMapping::kEndpointIndependent),
                 "laptop", LivePath{ReportPath::kRelayUdp, {}, 0});
    CHECK(has(cones.findings, "a direct path is expected"));
    CHECK_FALSE(has(cones.findings, "firewall"));
}

TEST_CASE("verdict: a side the server never heard over UDP is named before any report") {
    DoctorReply r = record(NatMapping::kEndpointIndependent, NatMapping::kUnknown);
    r.peer_side.udp_heard = false;
    const DoctorVerdict v = diagnose(r, "laptop", LivePath{ReportPath::kRelayUdp, {}, 0});
    CHECK(v.path == "relay-tcp");  // the peer's leg runs inside TLS
    CHECK(v.udp_blocked == std::vector<std::string>{"nas"});
    CHECK(starts_with(v.text, "relayed (relay-tcp): UDP is blocked on nas"));
    // A report, when there is one, is the side's own word.
    r.peer_side.report = report("laptop", NatMapping::kUnknown, ReportPath::kRelayUdp, kNasHost);
    CHECK(diagnose(r, "laptop").udp_blocked.empty());
}

TEST_CASE("verdict: a peer that is offline now is not called UDP-blocked") {
    // The server holds no UDP address for a side that is not connected: that says nothing about
    // its network.
    DoctorReply r = record(NatMapping::kEndpointIndependent, NatMapping::kEndpointIndependent);
    r.peer_side.online = false;
    r.peer_side.udp_heard = false;
    const DoctorVerdict v = diagnose(r, "laptop", LivePath{ReportPath::kRelayUdp, {}, 0});
    CHECK(v.udp_blocked.empty());
    CHECK(v.path == "relay-udp");
    CHECK(has(v.findings, "nas is not connected to the server now"));
    CHECK(v.text.find("nas: NAT mapping") != std::string::npos);
    CHECK(v.text.find("offline now") != std::string::npos);
    // Connected again without a UDP binding: now it is blocked.
    r.peer_side.online = true;
    CHECK(diagnose(r, "laptop").udp_blocked == std::vector<std::string>{"nas"});
}

TEST_CASE("verdict: the live link wins over an older report, and gives the rtt") {
    DoctorReply r = record(NatMapping::kEndpointIndependent, NatMapping::kEndpointIndependent);
    both_report(r, ReportPath::kRelayUdp);  // fell back once...
    const DoctorVerdict v =
        diagnose(r, "laptop", LivePath{ReportPath::kDirect, kNasPublic, 1.24});  // ...direct now
    CHECK(v.path == "direct");
    CHECK(v.technique == "unknown");  // no report describes how the direct path was found
    CHECK(v.peer_address == kNasPublic);
    CHECK(v.text.find("path laptop <-> 198.51.100.7:40002, rtt 1.2 ms") != std::string::npos);
}

TEST_CASE("verdict: refusals are one clear line each") {
    DoctorReply r;
    r.peer = "nas";
    r.status = DoctorStatus::kNoRendezvous;
    CHECK(doctor_refusal_text(r) ==
          "no rendezvous with nas recorded yet; run a connection through a forward first");
    r.status = DoctorStatus::kNotAllowed;
    CHECK(doctor_refusal_text(r).find("no peer \"nas\" that this agent may reach") !=
          std::string::npos);
    CHECK(doctor_refusal_text(r).find('\n') == std::string::npos);
}

// Issue 15: a direct TCP path is named as such, with the TCP candidate it led to, and the
// verdict says why it is TCP (no direct UDP path) instead of a UDP-style explanation.
TEST_CASE("verdict: a direct TCP path reads direct-tcp, its TCP source and why it is TCP") {
    const SocketAddress laptop_tcp = SocketAddress::ipv4({203, 0, 113, 5}, 7001);
    const SocketAddress nas_tcp = SocketAddress::ipv4({198, 51, 100, 7}, 7002);
    DoctorReply r = record(NatMapping::kUnknown, NatMapping::kEndpointIndependent);
    both_report(r, ReportPath::kDirectTcp);
    r.self.report->udp_to_server = false;
    r.self.report->source = ReportSource::kTcpServerReflexive;
    r.self.report->answered = nas_tcp;
    r.self.report->time_to_direct_ms = 300;
    r.peer_side.report->source = ReportSource::kTcpServerReflexive;
    r.peer_side.report->answered = laptop_tcp;
    r.peer_side.report->time_to_direct_ms = 350;
    for (bool with_live : {false, true}) {
        CAPTURE(with_live);
        const DoctorVerdict v =
            with_live ? diagnose(r, "laptop", LivePath{ReportPath::kDirectTcp, nas_tcp, 21.5})
                      : diagnose(r, "laptop");
        INFO(v.text);
        CHECK(v.path == "direct-tcp");
        CHECK(v.technique == "tcp-srflx");
        REQUIRE(v.time_to_direct_s);
        CHECK(*v.time_to_direct_s == Approx(0.3));
        CHECK(v.self_address == laptop_tcp);
        CHECK(v.peer_address == nas_tcp);
        CHECK(v.udp_blocked == std::vector<std::string>{"laptop"});
        CHECK(starts_with(v.text, "direct-tcp (tcp-srflx, 0.3 s to direct): UDP is blocked on "
                                  "laptop"));
        CHECK(has(v.findings, "path 203.0.113.5:7001 <-> 198.51.100.7:7002"));
        CHECK(has(v.findings, "no direct UDP path (UDP blocked): a TCP connection between the "
                              "agents carries the session, punched by simultaneous open"));
        CHECK(has(v.advice, "allow outbound UDP from laptop"));
        CHECK(has(v.advice, "the session runs over TCP"));
        CHECK_FALSE(has(v.advice, "inside TLS"));  // it is not relayed
    }
    // UDP reaches the server on both sides, yet no direct UDP path answered.
    r.self.report->udp_to_server = true;
    r.self.report->source = ReportSource::kTcpHost;
    const DoctorVerdict v = diagnose(r, "laptop");
    CHECK(v.udp_blocked.empty());
    CHECK(starts_with(v.text, "direct-tcp (tcp-host, 0.3 s to direct): path "));
    CHECK(has(v.findings, "no direct UDP path answered"));
    CHECK(v.advice.empty());
    r.self.report->source = ReportSource::kTcpPeerReflexive;
    CHECK(diagnose(r, "laptop").technique == "tcp-prflx");
}

TEST_CASE("verdict: a link that moved up from direct TCP to direct UDP reads direct") {
    const SocketAddress nas_tcp = SocketAddress::ipv4({198, 51, 100, 7}, 7002);
    DoctorReply r = record(NatMapping::kEndpointIndependent, NatMapping::kEndpointIndependent);
    both_report(r, ReportPath::kDirectTcp);
    r.self.report->source = r.peer_side.report->source = ReportSource::kTcpServerReflexive;
    // Our newer report (the first direct UDP path replaced the first report); the nas's
    // second report has not come yet.
    r.self.report->path = ReportPath::kDirect;
    r.self.report->source = ReportSource::kServerReflexive;
    r.self.report->answered = kNasPublic;
    r.self.report->time_to_direct_ms = 4'200;
    r.peer_side.report->answered = SocketAddress::ipv4({203, 0, 113, 5}, 7001);
    r.peer_side.report->time_to_direct_ms = 300;
    const DoctorVerdict v = diagnose(r, "laptop", LivePath{ReportPath::kDirect, kNasPublic, 20});
    INFO(v.text);
    CHECK(v.path == "direct");
    CHECK(v.technique == "srflx");
    CHECK(starts_with(v.text, "direct (srflx, 4.2 s to direct)"));
    CHECK_FALSE(has(v.findings, "TCP connection"));
    // Asked while the live link is still on TCP (the nas's view): its TCP report is the one.
    const DoctorVerdict t =
        diagnose(r, "laptop", LivePath{ReportPath::kDirectTcp, nas_tcp, 20});
    CHECK(t.path == "direct-tcp");
    CHECK(t.technique == "tcp-srflx");
    CHECK(starts_with(t.text, "direct-tcp (tcp-srflx, 0.3 s to direct)"));
    CHECK(t.peer_address == nas_tcp);  // the live TCP path's, not our UDP report's
    CHECK(t.self_address == SocketAddress::ipv4({203, 0, 113, 5}, 7001));
    CHECK(v.peer_address == kNasPublic);
    CHECK_FALSE(v.self_address);  // the nas reported a TCP path only
}
