#include "tunnel/path_manager.h"

#include <catch2/catch.hpp>

#include <optional>
#include <set>

using namespace burrow;
using namespace std::chrono_literals;

namespace {

SocketAddress addr(uint8_t last, uint16_t port) {
    return SocketAddress::ipv4({198, 51, 100, last}, port);
}

Time at(Duration d) {
    return Time{} + d;
}

std::vector<ProbeToSend> drain(PathManager& pm) {
    std::vector<ProbeToSend> out;
    while (auto p = pm.poll_probe()) out.push_back(*p);
    return out;
}

// The peer's side of a probe: a response with the same data, from where it was sent.
Probe answer(const ProbeToSend& p) {
    return Probe{ProbeKind::kResponse, p.probe.data};
}

// a is the only candidate, and validated: the active path, its change already taken.
void start_on(PathManager& pm, const SocketAddress& a) {
    pm.add_candidates({a}, at(0ms));
    pm.on_timer(at(0ms));
    auto sent = drain(pm);
    REQUIRE(sent.size() == 1);
    pm.on_probe(a, answer(sent[0]), at(10ms));
    REQUIRE(pm.poll_change());
}

// The challenge among what pm sends now that goes to `to`, if any.
std::optional<ProbeToSend> challenge_to(PathManager& pm, const SocketAddress& to) {
    std::optional<ProbeToSend> found;
    for (auto& p : drain(pm)) {
        if (p.to == to && p.probe.kind == ProbeKind::kChallenge) found = p;
    }
    return found;
}

// The active path is now `to`, and the change was reported.
void check_moved_to(PathManager& pm, const SocketAddress& to) {
    CHECK(pm.active() == to);
    auto change = pm.poll_change();
    REQUIRE(change);
    CHECK(change->direct == to);
}

}  // namespace

TEST_CASE("path manager: probes every candidate and takes the first answered path") {
    SeededRng rng(1);
    PathManager pm(rng);
    pm.add_candidates({addr(1, 1000), addr(2, 2000)}, at(0ms));
    pm.on_timer(at(0ms));
    auto sent = drain(pm);
    REQUIRE(sent.size() == 2);
    CHECK(sent[0].probe.kind == ProbeKind::kChallenge);
    CHECK_FALSE(pm.active());

    pm.on_probe(sent[1].to, answer(sent[1]), at(20ms));
    REQUIRE(pm.active() == sent[1].to);
    auto change = pm.poll_change();
    REQUIRE(change);
    CHECK(change->direct == sent[1].to);
    CHECK(change->rtt == 20ms);
    CHECK(pm.stats().paths_validated == 1);
}

TEST_CASE("path manager: a response that does not match a challenge to that address is dropped") {
    SeededRng rng(2);
    PathManager pm(rng);
    pm.add_candidates({addr(1, 1000), addr(2, 2000)}, at(0ms));
    pm.on_timer(at(0ms));
    auto sent = drain(pm);
    // The right data from the wrong address, and wrong data from the right one.
    pm.on_probe(sent[1].to, answer(sent[0]), at(5ms));
    PathData wrong = sent[0].probe.data;
    wrong[0] ^= 1;
    pm.on_probe(sent[0].to, Probe{ProbeKind::kResponse, wrong}, at(5ms));
    pm.on_probe(addr(9, 9), answer(sent[0]), at(5ms));
    CHECK_FALSE(pm.active());
    CHECK_FALSE(pm.poll_change());
    CHECK(pm.stats().drop_unmatched_response == 3);
}

TEST_CASE("path manager: a challenge is answered on its own path and teaches a candidate") {
    SeededRng rng(3);
    PathManager pm(rng);
    pm.add_candidates({addr(1, 1000)}, at(0ms));
    const PathData data{1, 2, 3, 4, 5, 6, 7, 8};
    pm.on_probe(addr(7, 7777), Probe{ProbeKind::kChallenge, data}, at(1ms));
    auto out = drain(pm);
    REQUIRE(out.size() == 1);
    CHECK(out[0].to == addr(7, 7777));
    CHECK(out[0].probe == Probe{ProbeKind::kResponse, data});
    // The new address (peer-reflexive) is probed back on the next timer.
    pm.on_timer(at(2ms));
    auto probes = drain(pm);
    bool probed_new = false;
    for (auto& p : probes) probed_new |= p.to == addr(7, 7777);
    CHECK(probed_new);
}

TEST_CASE("path manager: the schedule is dense first, then every few seconds") {
    SeededRng rng(4);
    PathManager pm(rng);
    pm.add_candidates({addr(1, 1000)}, at(0ms));
    std::vector<Time> sends;
    for (Time t = at(0ms); t < at(20s); t = pm.next_deadline()) {
        pm.on_timer(t);
        for (auto& p : drain(pm)) {
            (void)p;
            sends.push_back(t);
        }
    }
    REQUIRE(sends.size() >= kPunchSchedule.size());
    for (size_t i = 0; i < kPunchSchedule.size(); ++i) CHECK(sends[i] == at(kPunchSchedule[i]));
    CHECK(sends[kPunchSchedule.size()] - sends[kPunchSchedule.size() - 1] == kRediscoverInterval);
}

TEST_CASE("path manager: a silent direct path falls back to the relay, then comes back") {
    SeededRng rng(5);
    PathManager pm(rng);
    const SocketAddress a = addr(1, 1000);
    pm.add_candidates({a}, at(0ms));
    pm.on_timer(at(0ms));
    auto sent = drain(pm);
    pm.on_probe(a, answer(sent[0]), at(10ms));
    REQUIRE(pm.active() == a);
    (void)pm.poll_change();

    // Data keeps it alive; silence brings a keepalive challenge, then the fallback.
    pm.on_authenticated(a, at(500ms));
    Time t = at(500ms);
    bool keepalive = false;
    while (pm.active() && t < at(10s)) {
        t = pm.next_deadline();
        pm.on_timer(t);
        for (auto& p : drain(pm)) keepalive |= p.to == a && p.probe.kind == ProbeKind::kChallenge;
    }
    CHECK(keepalive);
    CHECK_FALSE(pm.active());
    CHECK(t - at(500ms) >= kDirectSilence);
    CHECK(t - at(500ms) < kDirectSilence + 100ms);
    auto change = pm.poll_change();
    REQUIRE(change);
    CHECK_FALSE(change->direct);
    CHECK(pm.stats().fallbacks == 1);

    // Probing goes on; an answer brings the direct path back.
    t = pm.next_deadline();
    pm.on_timer(t);
    auto retry = drain(pm);
    REQUIRE_FALSE(retry.empty());
    pm.on_probe(a, answer(retry.back()), t + 5ms);
    CHECK(pm.active() == a);
}

TEST_CASE("path manager: a rebound peer address is probed and taken once the old one is quiet") {
    SeededRng rng(6);
    PathManager pm(rng);
    const SocketAddress a = addr(1, 1000);
    const SocketAddress b = addr(1, 1001);  // the peer's NAT mapped it anew
    start_on(pm, a);

    pm.on_authenticated(b, at(2s));
    CHECK(pm.active() == a);  // nothing is sent to b before it answers a probe
    pm.on_timer(at(2s));
    auto to_b = challenge_to(pm, b);
    REQUIRE(to_b);
    pm.on_probe(b, answer(*to_b), at(2010ms));
    check_moved_to(pm, b);
}

TEST_CASE("path manager: data from another validated path moves the active path there") {
    SeededRng rng(61);
    PathManager pm(rng);
    const SocketAddress a = addr(1, 1000);
    const SocketAddress b = addr(1, 1001);  // the peer's other socket (birthday technique)
    pm.add_candidates({a, b}, at(0ms));
    pm.on_timer(at(0ms));
    auto sent = drain(pm);
    REQUIRE(sent.size() == 2);
    pm.on_probe(sent[0].to, answer(sent[0]), at(10ms));
    pm.on_probe(sent[1].to, answer(sent[1]), at(11ms));
    const SocketAddress first = sent[0].to;
    const SocketAddress second = sent[1].to;
    REQUIRE(pm.active() == first);
    (void)pm.poll_change();

    pm.on_authenticated(first, at(20ms));  // data on the path in use changes nothing
    CHECK(pm.active() == first);
    CHECK_FALSE(pm.poll_change());
    // A packet from the other path while the one in use is busy (reordered or replayed from
    // an old path) does not move it.
    pm.on_authenticated(second, at(25ms));
    CHECK(pm.active() == first);

    // The peer kept the other socket: it sends from there only, so that mapping is the open one.
    pm.on_authenticated(second, at(20ms + kFollowQuiet));
    check_moved_to(pm, second);
}

TEST_CASE("path manager: data from a new address is probed, then followed though the old is fresh") {
    SeededRng rng(62);
    PathManager pm(rng);
    const SocketAddress a = addr(1, 1000);
    const SocketAddress b = addr(1, 1001);
    start_on(pm, a);

    pm.on_authenticated(a, at(100ms));
    pm.on_authenticated(b, at(210ms));
    CHECK(pm.active() == a);  // never to an address before it answers a probe
    pm.on_timer(at(210ms));
    auto to_b = challenge_to(pm, b);
    REQUIRE(to_b);
    pm.on_probe(b, answer(*to_b), at(220ms));  // a quiet 120 ms, far below kDirectKeepalive
    CHECK(pm.active() == b);
}

TEST_CASE("path manager: a validated path the peer does not send from does not take over") {
    SeededRng rng(63);
    PathManager pm(rng);
    const SocketAddress a = addr(1, 1000);
    const SocketAddress b = addr(2, 2000);
    pm.add_candidates({a, b}, at(0ms));
    pm.on_timer(at(0ms));
    auto sent = drain(pm);
    REQUIRE(sent.size() == 2);
    pm.on_probe(sent[0].to, answer(sent[0]), at(10ms));
    pm.on_authenticated(sent[0].to, at(15ms));
    pm.on_probe(sent[1].to, answer(sent[1]), at(20ms));
    CHECK(pm.active() == sent[0].to);
}

TEST_CASE("path manager: candidates are capped; learned ones that never answer make room") {
    SeededRng rng(7);
    PathManager pm(rng);
    const SocketAddress given = addr(200, 7000);
    pm.add_candidates({given}, at(0ms));
    for (int i = 0; i < 40; ++i) {
        pm.on_probe(addr(static_cast<uint8_t>(i), 5000), Probe{ProbeKind::kChallenge, {}},
                    at(std::chrono::milliseconds(i)));
    }
    pm.on_timer(at(50ms));
    size_t challenges = 0;
    bool given_probed = false;
    for (auto& p : drain(pm)) {
        challenges += p.probe.kind == ProbeKind::kChallenge;
        given_probed |= p.to == given;
    }
    CHECK(challenges == kMaxPathCandidates);
    CHECK(given_probed);  // the server's candidate is never the one evicted
    CHECK(pm.stats().candidates_evicted == 40 - (kMaxPathCandidates - 1));
    CHECK(pm.stats().drop_candidate_limit == 0);

    // Learned candidates that let the whole schedule go unanswered leave; the given one stays.
    for (Time t = pm.next_deadline(); t < at(30s); t = pm.next_deadline()) {
        pm.on_timer(t);
        (void)drain(pm);
    }
    CHECK(pm.knows(given));
    CHECK_FALSE(pm.knows(addr(39, 5000)));
}

TEST_CASE("path manager: a full table of answered candidates gives way once they fall silent") {
    // The birthday side's many sockets each answered once, filling the table; the peer kept one
    // and closed the rest. The socket it kept must still be learnable when it calls.
    SeededRng rng(8);
    PathManager pm(rng);
    for (int i = 0; i < static_cast<int>(kMaxPathCandidates); ++i) {
        pm.on_probe(addr(1, static_cast<uint16_t>(6000 + i)), Probe{ProbeKind::kChallenge, {}},
                    at(0ms));
    }
    pm.on_timer(at(0ms));
    for (auto& p : drain(pm)) {
        if (p.probe.kind == ProbeKind::kChallenge) pm.on_probe(p.to, answer(p), at(10ms));
    }
    CHECK(pm.stats().paths_validated == kMaxPathCandidates);
    const SocketAddress kept = addr(1, 7777);
    pm.on_probe(kept, Probe{ProbeKind::kChallenge, {}}, at(20ms));
    CHECK_FALSE(pm.knows(kept));  // every one of them works: none may go
    CHECK(pm.stats().drop_candidate_limit == 1);
    // The active one (the first validated) stays; another, silent past kDirectSilence, goes.
    const Time later = at(10ms) + kDirectSilence;
    pm.on_probe(kept, Probe{ProbeKind::kChallenge, {}}, later);
    CHECK(pm.knows(kept));
    CHECK(pm.stats().candidates_evicted == 1);
    REQUIRE(pm.active());
    CHECK(pm.knows(*pm.active()));
}

TEST_CASE("path manager: the birthday spray probes many random ports and takes the one that answers") {
    SeededRng rng(8);
    PathManager pm(rng);
    const SocketAddress peer = addr(50, 40000);  // the symmetric side's reflexive address
    pm.start_spray(peer, at(0ms));
    pm.on_timer(at(0ms));
    CHECK(drain(pm).empty());  // the peer's sockets need a moment to open their mappings
    CHECK(pm.next_deadline() == at(kSprayFirstDelay));
    pm.on_timer(at(kSprayFirstDelay));
    auto spray = drain(pm);
    REQUIRE(spray.size() == kSprayPorts);
    std::set<uint16_t> ports;
    for (auto& p : spray) {
        CHECK(p.to.ip == peer.ip);
        CHECK(p.to.port >= kSprayLowestPort);
        CHECK(p.probe.kind == ProbeKind::kChallenge);
        ports.insert(p.to.port);
    }
    CHECK(ports.size() == kSprayPorts);  // no port probed twice in a round

    // The right data from another port of that address is not a match.
    const ProbeToSend& hit = spray[417];
    SocketAddress other = hit.to;
    other.port = kSprayLowestPort;
    while (ports.contains(other.port)) ++other.port;  // a port this round did not probe
    pm.on_probe(other, answer(hit), at(kSprayFirstDelay + 30ms));
    CHECK_FALSE(pm.active());
    pm.on_probe(hit.to, answer(hit), at(kSprayFirstDelay + 30ms));
    REQUIRE(pm.active() == hit.to);
    auto change = pm.poll_change();
    REQUIRE(change);
    CHECK(change->direct == hit.to);
    CHECK(pm.stats().spray_rounds == 1);
    // No further rounds once a path is found.
    pm.on_timer(at(kSprayFirstDelay + kSprayInterval));
    for (auto& p : drain(pm)) CHECK(p.to == hit.to);
}

TEST_CASE("path manager: spray rounds repeat with fresh ports, then stop") {
    SeededRng rng(9);
    PathManager pm(rng);
    pm.start_spray(addr(50, 40000), at(0ms));
    int rounds = 0;
    for (Time t = pm.next_deadline(); t != kNever && t < at(60s); t = pm.next_deadline()) {
        pm.on_timer(t);
        if (drain(pm).size() == kSprayPorts) ++rounds;
    }
    CHECK(rounds == kSprayRounds);
    CHECK(pm.stats().spray_probes == kSprayPorts * kSprayRounds);
}

// ---- preference among working paths (issue 17) ---------------------------------------------

namespace {

SocketAddress addr6(uint8_t last, uint16_t port) {
    std::array<uint8_t, kIpv6Size> ip = {0x20, 0x01, 0x0d, 0xb8};
    ip[15] = last;
    return SocketAddress::ipv6(ip, port);
}

// Starts on `first` (validated at 0 + first_rtt), then has `second` answer its next challenge
// after second_rtt. Returns whether the active path moved to `second`.
bool second_takes_over(const SocketAddress& first, Duration first_rtt,
                       const SocketAddress& second, Duration second_rtt) {
    SeededRng rng(64);
    PathManager pm(rng);
    pm.add_candidates({first, second}, at(0ms));
    pm.on_timer(at(0ms));
    auto sent = drain(pm);
    REQUIRE(sent.size() == 2);
    const auto& to_first = sent[0].to == first ? sent[0] : sent[1];
    const auto& to_second = sent[0].to == first ? sent[1] : sent[0];
    pm.on_probe(first, answer(to_first), at(first_rtt));
    REQUIRE(pm.active() == first);
    REQUIRE(pm.poll_change());
    // The first challenge to `second` went unanswered (its firewall had not opened yet); the
    // next one, on the schedule, is answered.
    (void)to_second;
    pm.on_timer(at(50ms));
    auto again = challenge_to(pm, second);
    REQUIRE(again);
    pm.on_probe(second, answer(*again), at(50ms) + second_rtt);
    auto change = pm.poll_change();
    if (change) CHECK(change->direct == pm.active());
    return pm.active() == second;
}

}  // namespace

TEST_CASE("path preference: better_path is lowest RTT, IPv6 within the margin") {
    const SocketAddress v4 = addr(1, 1000), v6 = addr6(1, 1000);
    CHECK(better_path(v6, 30ms, v4, 30ms));
    CHECK_FALSE(better_path(v4, 30ms, v6, 30ms));
    CHECK(better_path(v6, 30ms + kPathRttMargin, v4, 30ms));   // a tie, within the margin
    CHECK_FALSE(better_path(v6, 31ms + kPathRttMargin, v4, 30ms));  // clearly slower
    CHECK(better_path(v4, 10ms, v6, 11ms + kPathRttMargin));  // clearly faster wins over IPv6
    CHECK_FALSE(better_path(v4, 10ms, addr(2, 1000), 15ms));  // same family, within the margin
    CHECK(better_path(v4, 10ms, addr(2, 1000), 21ms));
}

TEST_CASE("path preference: IPv6 answering later with about the same RTT takes over from IPv4") {
    CHECK(second_takes_over(addr(1, 1000), 20ms, addr6(1, 1000), 25ms));
}

TEST_CASE("path preference: IPv4 with about the same RTT does not take over from IPv6") {
    CHECK_FALSE(second_takes_over(addr6(1, 1000), 20ms, addr(1, 1000), 15ms));
}

TEST_CASE("path preference: a clearly faster path takes over, either family") {
    CHECK(second_takes_over(addr6(1, 1000), 80ms, addr(1, 1000), 20ms));
    CHECK(second_takes_over(addr(1, 1000), 80ms, addr(2, 2000), 20ms));
    CHECK_FALSE(second_takes_over(addr(1, 1000), 80ms, addr6(2, 2000), 200ms));
}

TEST_CASE("path preference: IPv4 data from the peer does not pull us off a fresh IPv6 path") {
    SeededRng rng(65);
    PathManager pm(rng);
    const SocketAddress v4 = addr(1, 1000), v6 = addr6(1, 1000);
    pm.add_candidates({v4, v6}, at(0ms));
    pm.on_timer(at(0ms));
    for (const auto& p : drain(pm)) pm.on_probe(p.to, answer(p), at(p.to.v6 ? 12ms : 10ms));
    REQUIRE(pm.active() == v6);  // validated second, within the margin: IPv6 first
    // The peer has not moved yet: its data still comes over IPv4, our IPv6 path answers.
    pm.on_authenticated(v4, at(300ms));
    CHECK(pm.active() == v6);
    // Once our IPv6 path stops answering for longer than a keepalive, the peer's choice wins.
    pm.on_authenticated(v4, at(12ms) + kDirectKeepalive + 1ms);
    CHECK(pm.active() == v4);
}

// --- direct TCP paths (issue 15) ---------------------------------------------------------------

namespace {

// The challenge pm sends now on the TCP path to `to`, if any.
std::optional<ProbeToSend> tcp_challenge_to(PathManager& pm, const SocketAddress& to) {
    std::optional<ProbeToSend> found;
    for (auto& p : drain(pm)) {
        if (p.to == to && p.kind == DirectKind::kTcp && p.probe.kind == ProbeKind::kChallenge) {
            found = p;
        }
    }
    return found;
}

// A TCP connection to `peer` is added, probed and answered at `t`: the TCP path is validated.
void validate_tcp(PathManager& pm, const SocketAddress& peer, Time t) {
    pm.add_tcp_path(peer, t);
    pm.on_timer(t);
    auto ch = tcp_challenge_to(pm, peer);
    REQUIRE(ch);
    pm.on_probe(peer, answer(*ch), t + 30ms, DirectKind::kTcp);
}

}  // namespace

TEST_CASE("path manager: a TCP path carries nothing before its challenge is answered on it") {
    SeededRng rng(20);
    PathManager pm(rng);
    const SocketAddress peer = addr(7, 7000);
    pm.add_tcp_path(peer, at(0ms));
    pm.on_timer(at(0ms));
    auto ch = tcp_challenge_to(pm, peer);
    REQUIRE(ch);
    CHECK_FALSE(pm.active());
    // The same data answered by UDP from that address validates nothing: it is another path.
    pm.on_probe(peer, answer(*ch), at(20ms), DirectKind::kUdp);
    CHECK_FALSE(pm.active());
    // Data over the connection does not validate it either.
    pm.on_authenticated(peer, at(25ms), DirectKind::kTcp);
    CHECK_FALSE(pm.active());
    pm.on_probe(peer, answer(*ch), at(30ms), DirectKind::kTcp);
    REQUIRE(pm.active() == peer);
    CHECK(pm.active_kind() == DirectKind::kTcp);
    auto change = pm.poll_change();
    REQUIRE(change);
    CHECK(change->kind == DirectKind::kTcp);
    CHECK(change->direct == peer);
    CHECK(pm.stats().tcp_paths_added == 1);
}

TEST_CASE("path manager: a challenge on a TCP path is answered on it") {
    SeededRng rng(21);
    PathManager pm(rng);
    const SocketAddress peer = addr(7, 7000);
    pm.add_tcp_path(peer, at(0ms));
    (void)drain(pm);
    pm.on_probe(peer, Probe{ProbeKind::kChallenge, {9, 9, 9, 9, 9, 9, 9, 9}}, at(5ms),
                DirectKind::kTcp);
    auto out = drain(pm);
    REQUIRE(out.size() == 1);
    CHECK(out[0].probe.kind == ProbeKind::kResponse);
    CHECK(out[0].kind == DirectKind::kTcp);
    CHECK(out[0].to == peer);
}

TEST_CASE("path manager: direct UDP is preferred to direct TCP, and TCP to the relay") {
    SeededRng rng(22);
    PathManager pm(rng);
    const SocketAddress udp = addr(1, 1000);
    const SocketAddress tcp = addr(1, 7000);
    pm.add_candidates({udp}, at(0ms));
    pm.on_timer(at(0ms));
    auto udp_challenge = challenge_to(pm, udp);  // goes unanswered: UDP blocked for now
    REQUIRE(udp_challenge);

    validate_tcp(pm, tcp, at(10ms));
    REQUIRE(pm.active() == tcp);
    CHECK(pm.active_kind() == DirectKind::kTcp);
    REQUIRE(pm.poll_change());

    // On TCP the UDP candidate is still probed on its schedule; the first answer moves up,
    // even when the UDP probe's RTT is worse than TCP's.
    Time t = at(10ms);
    std::optional<ProbeToSend> again;
    while (!again && t < at(10s)) {
        t = std::max(t + 1ms, pm.next_deadline());
        pm.on_timer(t);
        // Keep the TCP path alive meanwhile.
        pm.on_authenticated(tcp, t, DirectKind::kTcp);
        for (auto& p : drain(pm)) {
            if (p.to == udp && p.kind == DirectKind::kUdp && p.probe.kind == ProbeKind::kChallenge)
                again = p;
            if (p.kind == DirectKind::kTcp && p.probe.kind == ProbeKind::kChallenge)
                pm.on_probe(tcp, answer(p), t, DirectKind::kTcp);
        }
    }
    REQUIRE(again);
    pm.on_probe(udp, answer(*again), t + 200ms, DirectKind::kUdp);
    CHECK(pm.active() == udp);
    CHECK(pm.active_kind() == DirectKind::kUdp);
    auto up = pm.poll_change();
    REQUIRE(up);
    CHECK(up->kind == DirectKind::kUdp);

    // A TCP answer now does not pull the traffic back down.
    pm.on_timer(t + 300ms);
    for (auto& p : drain(pm)) {
        if (p.kind == DirectKind::kTcp && p.probe.kind == ProbeKind::kChallenge)
            pm.on_probe(tcp, answer(p), t + 310ms, DirectKind::kTcp);
    }
    CHECK(pm.active_kind() == DirectKind::kUdp);
}

TEST_CASE("path manager: a silent UDP path falls back to a working TCP path, not the relay") {
    SeededRng rng(23);
    PathManager pm(rng);
    const SocketAddress udp = addr(1, 1000);
    const SocketAddress tcp = addr(1, 7000);
    start_on(pm, udp);
    validate_tcp(pm, tcp, at(20ms));
    CHECK(pm.active() == udp);  // TCP validated, UDP kept
    CHECK_FALSE(pm.poll_change());

    // UDP goes silent; TCP keeps answering its checks.
    Time t = at(50ms);
    while (pm.active_kind() == DirectKind::kUdp && t < at(10s)) {
        t = std::max(t + 1ms, pm.next_deadline());
        pm.on_timer(t);
        for (auto& p : drain(pm)) {
            if (p.kind == DirectKind::kTcp && p.probe.kind == ProbeKind::kChallenge)
                pm.on_probe(tcp, answer(p), t + 5ms, DirectKind::kTcp);
        }
    }
    REQUIRE(pm.active() == tcp);
    CHECK(pm.active_kind() == DirectKind::kTcp);
    CHECK(t - at(10ms) >= kDirectSilence);
    auto change = pm.poll_change();
    REQUIRE(change);
    CHECK(change->kind == DirectKind::kTcp);
    CHECK(change->reason.find("direct path silent") != std::string::npos);

    // The connection closes: the relay at once.
    pm.remove_tcp_path(tcp, t + 10ms);
    CHECK_FALSE(pm.active());
    auto down = pm.poll_change();
    REQUIRE(down);
    CHECK_FALSE(down->direct);
    CHECK(pm.stats().tcp_paths_closed == 1);
}

TEST_CASE("path manager: a silent TCP path falls back to the relay") {
    SeededRng rng(24);
    PathManager pm(rng);
    const SocketAddress tcp = addr(1, 7000);
    validate_tcp(pm, tcp, at(0ms));
    REQUIRE(pm.active_kind() == DirectKind::kTcp);
    (void)pm.poll_change();
    Time t = at(30ms);
    while (pm.active() && t < at(10s)) {
        t = std::max(t + 1ms, pm.next_deadline());
        pm.on_timer(t);
        (void)drain(pm);  // checks go unanswered
    }
    CHECK_FALSE(pm.active());
    CHECK(t - at(30ms) >= kDirectSilence);
    CHECK(t - at(30ms) < kDirectSilence + 100ms);
    auto change = pm.poll_change();
    REQUIRE(change);
    CHECK_FALSE(change->direct);
    CHECK(change->reason.find("direct-tcp path silent") != std::string::npos);
}

TEST_CASE("path manager: data over an unknown TCP connection adds no path") {
    SeededRng rng(25);
    PathManager pm(rng);
    pm.add_candidates({addr(1, 1000)}, at(0ms));
    pm.on_authenticated(addr(9, 9000), at(1ms), DirectKind::kTcp);
    pm.on_probe(addr(9, 9000), Probe{ProbeKind::kChallenge, {1, 1, 1, 1, 1, 1, 1, 1}}, at(2ms),
                DirectKind::kTcp);
    pm.on_timer(at(3ms));
    for (auto& p : drain(pm)) {
        // Only the answer to its challenge goes there, no challenge of ours.
        if (p.to == addr(9, 9000)) CHECK(p.probe.kind == ProbeKind::kResponse);
    }
    CHECK_FALSE(pm.active());
}

TEST_CASE("path manager: a predicted spray probes the window in order, random ports between") {
    SeededRng rng(10);
    PathManager pm(rng);
    const SocketAddress peer = addr(50, 40000);
    const PortAllocation seq{PortAllocationKind::kSequential, 1, 1, 0, 0, 40002};
    auto window = predict_ports(seq, kSprayPorts);
    pm.start_predicted_spray(peer, window, at(0ms));
    pm.on_timer(at(kSprayFirstDelay));
    auto first = drain(pm);
    REQUIRE(first.size() == window.size());
    for (size_t i = 0; i < first.size(); ++i) CHECK(first[i].to.port == window[i]);
    REQUIRE(pm.prediction());
    CHECK(pm.prediction()->mode == "window");
    CHECK(pm.prediction()->first == 40003);
    CHECK(pm.prediction()->round == 1);
    CHECK(pm.stats().predicted_rounds == 1);
    CHECK(pm.stats().spray_rounds == 0);
    // The second round sprays random ports (the window may have missed), the third the window.
    pm.on_timer(at(kSprayFirstDelay + kSprayInterval));
    CHECK(drain(pm).size() == kSprayPorts);
    CHECK(pm.stats().spray_rounds == 1);
    const Time third_at = at(kSprayFirstDelay + 2 * kSprayInterval);
    pm.on_timer(third_at);
    auto second = drain(pm);
    REQUIRE(second.size() == window.size());
    CHECK(second.front().to.port == 40003);
    CHECK(pm.prediction()->round == 3);
    // An answer from a predicted port is the path.
    pm.on_probe(second[5].to, answer(second[5]), third_at + 20ms);
    REQUIRE(pm.active() == second[5].to);
    auto change = pm.poll_change();
    REQUIRE(change);
    CHECK(change->reason == "predicted port 40008 answered");
}

TEST_CASE("path manager: lockstep probes every stride-th predicted port, the same each round") {
    SeededRng rng(11);
    PathManager pm(rng);
    const PortAllocation seq{PortAllocationKind::kSequential, 2, 2, 0, 0, 50000};
    pm.start_lockstep(addr(50, 1), seq, 2, at(0ms));
    pm.on_timer(at(kSprayFirstDelay));
    auto r1 = drain(pm);
    REQUIRE(r1.size() == kLockstepProbes);
    CHECK(r1[0].to.port == 50002);
    CHECK(r1[1].to.port == 50006);
    pm.on_timer(at(kSprayFirstDelay + kSprayInterval));
    auto r2 = drain(pm);
    REQUIRE(r2.size() == kLockstepProbes);
    // Again through the mappings the first round made: no new one to upset the count.
    for (size_t i = 0; i < r2.size(); ++i) CHECK(r2[i].to.port == r1[i].to.port);
    REQUIRE(pm.prediction());
    CHECK(pm.prediction()->mode == "lockstep");
    CHECK(pm.prediction()->round == 2);
    // A random allocation has no lockstep: nothing starts.
    PathManager none(rng);
    none.start_lockstep(addr(50, 1), PortAllocation{PortAllocationKind::kRandom}, 1, at(0ms));
    none.on_timer(at(kSprayFirstDelay));
    CHECK(drain(none).empty());
    CHECK_FALSE(none.prediction());
}

TEST_CASE("path manager: a direct TCP path does not end the UDP spray; its answer moves up") {
    // A TCP path found first (simultaneous open is quick) must not cancel the spray or the
    // predicted rounds: direct UDP is preferred, and only the spray can find it between NATs
    // that map per destination. A found UDP path does end it.
    SeededRng rng(12);
    PathManager pm(rng);
    const SocketAddress tcp = addr(50, 7000);
    const PortAllocation seq{PortAllocationKind::kSequential, 1, 1, 0, 0, 40002};
    pm.start_lockstep(addr(50, 1), seq, 1, at(0ms));
    validate_tcp(pm, tcp, at(1ms));
    REQUIRE(pm.active() == tcp);
    REQUIRE(pm.poll_change());
    std::vector<ProbeToSend> round;
    for (Time t = at(2ms); round.empty() && t < at(kSprayFirstDelay + 1s); t += 10ms) {
        pm.on_timer(t);
        for (auto& p : drain(pm)) {
            if (p.kind == DirectKind::kUdp && p.probe.kind == ProbeKind::kChallenge) {
                round.push_back(p);
            }
        }
    }
    REQUIRE(round.size() == kLockstepProbes);
    CHECK(pm.stats().predicted_rounds == 1);
    const Time answered = at(kSprayFirstDelay + 1s);
    pm.on_probe(round[3].to, answer(round[3]), answered);
    CHECK(pm.active() == round[3].to);
    CHECK(pm.active_kind() == DirectKind::kUdp);
    auto up = pm.poll_change();
    REQUIRE(up);
    CHECK(up->kind == DirectKind::kUdp);
    // No further rounds once the UDP path is found.
    pm.on_timer(answered + kSprayInterval);
    for (auto& p : drain(pm)) CHECK(p.to != round[4].to);
    CHECK(pm.stats().predicted_rounds == 1);
}
