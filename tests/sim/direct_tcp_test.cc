// Direct TCP paths between two whole agents in virtual time (issue 15; tests/sim/net/
// agent_world.h, WorldConfig::direct_tcp): where UDP is blocked but TCP leaves, the agents
// connect to each other's TCP candidates at the rendezvous' start time; the crossing SYNs make
// one connection (or the listener of a side without NAT accepts it), which the session
// validates and then uses. Path preference: direct UDP, direct TCP, the relay.
//
// BURROW_TCP_SEEDS=N sets the seeds per case (default 20), BURROW_TCP_SEED=N replays one. A
// failure prints its seed and the cores' last log lines.
#include <catch2/catch.hpp>

#include <string>

#include "tests/sim/net/agent_world.h"
#include "tests/sim/seed_range.h"

using namespace burrow;
using namespace burrow::sim;
using namespace std::chrono_literals;

namespace {

// body(seed, context) for every seed of the case, the seed named in each failure.
template <class Body>
void for_each_seed(Body body) {
    const SeedRange s = seed_range("TCP", 20);
    for (uint64_t seed = s.first; seed <= s.last; ++seed) {
        const std::string context = "seed " + std::to_string(seed);
        INFO(context);
        body(seed, context);
    }
}

WorldConfig tcp_world(uint64_t seed, NatKind nas, NatKind laptop) {
    WorldConfig c;
    c.seed = seed;
    c.nas_nat = nas;
    c.laptop_nat = laptop;
    c.direct_tcp = true;
    return c;
}

bool on_tcp(const AgentWorld& w, WorldSide side) {
    const PeerLink* l = w.link(side);
    return l && l->direct() && l->direct_kind() == DirectKind::kTcp;
}

bool on_both_tcp(const AgentWorld& w) {
    return on_tcp(w, WorldSide::kLaptop) && on_tcp(w, WorldSide::kNas);
}

// A web fetch through the laptop's forward, byte-exact.
void fetch(AgentWorld& w, uint64_t bytes, const std::string& context) {
    WorldClient& web = w.open("web", bytes);
    INFO(context << "\n" << w.log_tail());
    REQUIRE(w.run_until([&] { return web.finished || web.failed; }, w.now() + 30s));
    REQUIRE_FALSE(web.failed);
    REQUIRE(web.received == bytes);
}

// Most cases start so: both agents registered, and a first fetch (on the relay: no waiting for
// the punch).
void register_and_fetch(AgentWorld& w, const std::string& context) {
    REQUIRE(w.run_until_registered(Time{} + 10s));
    fetch(w, 100'000, context);
}

}  // namespace

TEST_CASE("UDP blocked on both sides: the crossing SYNs give a direct TCP path within 3 s") {
    for_each_seed([](uint64_t seed, const std::string& context) {
        AgentWorld w(tcp_world(seed, NatKind::kUdpBlocked, NatKind::kUdpBlocked));
        REQUIRE(w.run_until_registered(Time{} + 10s));
        const Time asked = w.now();
        fetch(w, 100'000, context);  // on the relay first: no waiting for the punch
        INFO(w.log_tail());
        REQUIRE(w.run_until([&] { return on_both_tcp(w); }, asked + 3s));
        CHECK(w.peer_tcp_connections() == 1);
        // Each side reports its direct TCP path to the server (`burrow doctor`), and where it
        // led: the peer's tcp-srflx, not a UDP-style "prflx".
        REQUIRE(w.run_until(
            [&] {
                const DoctorRecord* r = w.server().doctor_book().find("nas", "laptop");
                return r && r->reports[0] && r->reports[1];
            },
            w.now() + 2s));
        for (const auto& report : w.server().doctor_book().find("nas", "laptop")->reports) {
            CHECK(report->path == ReportPath::kDirectTcp);
            CHECK(report->source == ReportSource::kTcpServerReflexive);
        }
        fetch(w, 2'000'000, context);
        const AgentStatus s = w.core(WorldSide::kLaptop).status(w.now());
        REQUIRE(s.peers.size() == 1);
        CHECK(s.peers[0].traffic.direct.bytes_received > 2'000'000);
        CHECK(s.drops.tcp_unclaimed_closed == 0);
        CHECK(s.drops.tcp_bad_framing == 0);
    });
}

TEST_CASE("a side without NAT accepts the other's connect: direct TCP, claimed by its session") {
    for_each_seed([](uint64_t seed, const std::string& context) {
        // The nas has a public address and no NAT but UDP does not reach it from the laptop,
        // whose router drops UDP.
        WorldConfig c = tcp_world(seed, NatKind::kNone, NatKind::kUdpBlocked);
        c.nas_tcp_out_refused = true;  // no crossing: only the laptop's connect gets through
        AgentWorld w(c);
        register_and_fetch(w, context);
        INFO(w.log_tail());
        REQUIRE(w.run_until([&] { return on_both_tcp(w); }, w.now() + 5s));
        CHECK(w.peer_tcp_connections() == 1);
        fetch(w, 1'000'000, context);
        const AgentStatus nas = w.core(WorldSide::kNas).status(w.now());
        CHECK(nas.drops.tcp_unclaimed_closed == 0);
        CHECK(nas.drops.tcp_unclaimed_frames == 0);
    });
}

TEST_CASE("routers that let TCP reach only the server: the pair stays on the relay") {
    WorldConfig c = tcp_world(7, NatKind::kUdpBlocked, NatKind::kUdpBlocked);
    c.tcp_peer_blocked = true;
    AgentWorld w(c);
    REQUIRE(w.run_until_registered(Time{} + 10s));
    fetch(w, 200'000, "seed 7");
    w.run_until([] { return false; }, w.now() + 15s);
    INFO(w.log_tail());
    CHECK_FALSE(w.link(WorldSide::kLaptop)->direct().has_value());
    CHECK(w.peer_tcp_connections() == 0);
    fetch(w, 200'000, "seed 7, later");
}

TEST_CASE("direct UDP is preferred: two cone NATs with TCP also open stay on UDP") {
    for_each_seed([](uint64_t seed, const std::string& context) {
        AgentWorld w(tcp_world(seed, NatKind::kPortRestricted, NatKind::kPortRestricted));
        register_and_fetch(w, context);
        w.run_until([] { return false; }, w.now() + 5s);
        INFO(w.log_tail());
        const PeerLink* l = w.link(WorldSide::kLaptop);
        REQUIRE(l->direct().has_value());
        CHECK(l->direct_kind() == DirectKind::kUdp);
        fetch(w, 500'000, context);
        CHECK(w.link(WorldSide::kLaptop)->direct_kind() == DirectKind::kUdp);
        // What the server keeps for `burrow doctor` is each side's latest report: direct UDP,
        // also where a direct TCP path came first (the link reports again when it moves up).
        const DoctorRecord* r = w.server().doctor_book().find("nas", "laptop");
        REQUIRE(r);
        for (const auto& report : r->reports) {
            REQUIRE(report);
            CHECK(report->path == ReportPath::kDirect);
            CHECK(report->source != ReportSource::kTcpServerReflexive);
        }
    });
}

TEST_CASE("a direct TCP connection that dies: the relay at once, then a new TCP path") {
    for_each_seed([](uint64_t seed, const std::string& context) {
        AgentWorld w(tcp_world(seed, NatKind::kUdpBlocked, NatKind::kPortRestricted));
        register_and_fetch(w, context);
        INFO(w.log_tail());
        REQUIRE(w.run_until([&] { return on_both_tcp(w); }, w.now() + 5s));
        // A transfer is under way when the connection goes.
        WorldClient& web = w.open("web", 3'000'000);
        REQUIRE(w.run_until([&] { return web.received > 500'000; }, w.now() + 10s));
        w.reset_peer_tcps();
        CHECK_FALSE(on_tcp(w, WorldSide::kLaptop));
        REQUIRE(w.run_until([&] { return web.finished || web.failed; }, w.now() + 30s));
        CHECK_FALSE(web.failed);  // no stream dropped
        CHECK(web.received == 3'000'000);
        // Punched again on the slow schedule (kRediscoverInterval).
        REQUIRE(w.run_until([&] { return on_both_tcp(w); }, w.now() + 10s));
        fetch(w, 500'000, context);
    });
}

TEST_CASE("strangers on the peer listener: counted, bounded, closed; the session goes on") {
    AgentWorld w(tcp_world(3, NatKind::kUdpBlocked, NatKind::kUdpBlocked));
    REQUIRE(w.run_until_registered(Time{} + 10s));
    fetch(w, 100'000, "seed 3");
    AgentCore& nas = w.core(WorldSide::kNas);
    const SocketAddress stranger = SocketAddress::ipv4({192, 0, 2, 77}, 50000);
    // A length past kMaxTcpPathFrame: refused before its body is buffered, and closed.
    const auto oversized = nas.on_peer_tcp_accepted(stranger, w.now());
    REQUIRE(oversized);
    nas.on_peer_tcp_data(*oversized, Bytes{0x20, 0x00, 1, 2, 3}, w.now());
    CHECK(nas.status(w.now()).drops.tcp_bad_framing == 1);
    // Well framed, but no session knows it: dropped and counted, closed after kTcpClaimWait.
    const auto unknown =
        nas.on_peer_tcp_accepted(SocketAddress::ipv4({192, 0, 2, 77}, 50001), w.now());
    REQUIRE(unknown);
    Bytes junk(100, 0x04);
    junk.insert(junk.begin(), {0x00, 100});
    nas.on_peer_tcp_data(*unknown, junk, w.now());
    CHECK(nas.status(w.now()).drops.tcp_unclaimed_frames == 1);
    CHECK(nas.status(w.now()).drops.tcp_unclaimed_closed == 0);
    // At most kMaxUnclaimedTcp wait to be claimed at once (the oversized one is closing).
    size_t taken = 1;
    const auto port = [&] { return static_cast<uint16_t>(51000 + taken); };
    while (nas.on_peer_tcp_accepted(SocketAddress::ipv4({192, 0, 2, 77}, port()), w.now())) {
        ++taken;
        REQUIRE(taken <= kMaxUnclaimedTcp + 1);
    }
    CHECK(taken >= kMaxUnclaimedTcp - 1);
    CHECK(taken <= kMaxUnclaimedTcp);
    w.run_until([] { return false; }, w.now() + kTcpClaimWait + 1s);
    CHECK(nas.status(w.now()).drops.tcp_unclaimed_closed >= taken);
    // The direct path between the agents was not disturbed.
    CHECK(on_tcp(w, WorldSide::kLaptop));
    fetch(w, 500'000, "seed 3, after the strangers");
}

TEST_CASE("an accept and a connect both succeed: both sides keep the one the lower key made") {
    for_each_seed([](uint64_t seed, const std::string& context) {
        WorldConfig c = tcp_world(seed, NatKind::kNone, NatKind::kNone);
        c.tcp_no_crossing = true;
        AgentWorld w(c);
        register_and_fetch(w, context);
        w.run_until([] { return false; }, w.now() + 3s);
        INFO(w.log_tail());
        // Two connections were made; one is closed by the rule, the other kept by both.
        CHECK(w.peer_tcp_connections() == 1);
        const uint64_t closed =
            w.core(WorldSide::kNas).status(w.now()).drops.tcp_duplicates_closed +
            w.core(WorldSide::kLaptop).status(w.now()).drops.tcp_duplicates_closed;
        CHECK(closed >= 1);
        fetch(w, 200'000, context);
    });
}

TEST_CASE("a peer that registers after the session opened: its TCP candidates still come") {
    for_each_seed([](uint64_t seed, const std::string& context) {
        // The nas registers only once its UDP probe gives up (its router drops UDP), well after
        // the laptop: the laptop's connect finds it online but without candidates, so the
        // server must hand the laptop the nas's candidates when they come.
        AgentWorld w(tcp_world(seed, NatKind::kUdpBlocked, NatKind::kPortRestricted));
        REQUIRE(w.run_until([&] { return w.registered(WorldSide::kLaptop); }, Time{} + 10s));
        REQUIRE_FALSE(w.registered(WorldSide::kNas));
        fetch(w, 100'000, context);
        INFO(w.log_tail());
        REQUIRE(w.run_until([&] { return on_both_tcp(w); }, w.now() + 10s));
        fetch(w, 500'000, context);
    });
}
