// `burrow doctor` in virtual time: the real AgentCores and ServerCore (tests/sim/net/
// agent_world.h) send their PunchReports when punching settles, the server joins them, and the
// laptop's verdict must match the pair:
//
//   before any connection      "no rendezvous with nas recorded yet ..."
//   a cone pair                direct, a technique, the time to direct, both ends' addresses
//   symmetric/symmetric        relay-udp, both NATs per-destination, port mapping suggested
//   UDP blocked at the nas     relay-tcp, the nas named as UDP-blocked (no TCP between them)
//   UDP blocked, TCP open      direct-tcp, a TCP source, the UDP-blocked sides named (issue 15)
//   a stranger                 refused without detail
//
// BURROW_DOCTOR_SEEDS=N sets the seeds per pair (default 3); BURROW_DOCTOR_SEED=N replays one.
#include <catch2/catch.hpp>

#include <algorithm>
#include <string>

#include "tests/sim/net/agent_world.h"
#include "tests/sim/seed_range.h"

using namespace burrow;
using namespace burrow::sim;
using namespace std::chrono_literals;

namespace {

bool contains(const std::string& s, std::string_view part) {
    return s.find(part) != std::string::npos;
}

// Asks the laptop's core and runs the world until it answers (the server is one round trip
// away; the core gives up after kDoctorAnswerWait).
DoctorResult ask(AgentWorld& w, const std::string& peer) {
    const size_t before = w.doctor_results(WorldSide::kLaptop).size();
    const uint32_t id = w.doctor(WorldSide::kLaptop, peer);
    w.run_until([&] { return w.doctor_results(WorldSide::kLaptop).size() > before; },
                w.now() + kDoctorAnswerWait + 1s);
    const auto& results = w.doctor_results(WorldSide::kLaptop);
    REQUIRE(results.size() == before + 1);
    CHECK(results.back().request_id == id);
    return results.back();
}

}  // namespace

TEST_CASE("doctor in the simulator: the verdict matches the pair") {
    struct Row {
        NatKind nas, laptop;
        std::string path;
        bool direct_tcp = false;  // WorldConfig::direct_tcp: TCP between the agents gets through
    };
    const Row rows[] = {
        {NatKind::kPortRestricted, NatKind::kPortRestricted, "direct"},
        {NatKind::kSymmetric, NatKind::kSymmetric, "relay-udp"},
        {NatKind::kUdpBlocked, NatKind::kPortRestricted, "relay-tcp"},
        {NatKind::kNone, NatKind::kUdpBlocked, "direct-tcp", true},
        {NatKind::kUdpBlocked, NatKind::kPortRestricted, "direct-tcp", true},
        {NatKind::kUdpBlocked, NatKind::kUdpBlocked, "direct-tcp", true},
    };
    const SeedRange seeds = seed_range("DOCTOR", 3);
    for (const Row& row : rows) {
        for (uint64_t seed = seeds.first; seed <= seeds.last; ++seed) {
            CAPTURE(seed, to_string(row.nas), to_string(row.laptop));
            WorldConfig c;
            c.seed = seed;
            c.nas_nat = row.nas;
            c.laptop_nat = row.laptop;
            c.direct_tcp = row.direct_tcp;
            c.loss = 0.005;
            AgentWorld w(c);
            REQUIRE(w.run_until_registered(w.now() + 20s));

            const DoctorResult none = ask(w, "nas");
            CHECK_FALSE(none.verdict);
            CHECK(contains(none.error, "no rendezvous with nas recorded yet"));
            const DoctorResult stranger = ask(w, "stranger");
            CHECK_FALSE(stranger.verdict);
            CHECK(contains(stranger.error, "no peer \"stranger\""));

            WorldClient& web = w.open("web", 64 * 1024);
            REQUIRE(w.run_until([&] { return web.finished || web.failed; }, w.now() + 30s));
            REQUIRE_FALSE(web.failed);
            if (row.path == "direct" || row.path == "direct-tcp") {
                // Both sides report at their first direct path.
                REQUIRE(w.run_until(
                    [&] {
                        const DoctorRecord* r = w.server().doctor_book().find("nas", "laptop");
                        return r && r->reports[0] && r->reports[1];
                    },
                    w.now() + 20s));
            } else {
                // Relayed: the reports come with the verdict, kPunchVerdictAfter after punching
                // started.
                w.run_until([] { return false; }, w.now() + kPunchVerdictAfter + 2s);
            }
            const DoctorResult r = ask(w, "nas");
            REQUIRE(r.verdict);
            const DoctorVerdict& v = *r.verdict;
            INFO(v.text);
            CHECK(v.path == row.path);
            CHECK(v.self.reported);
            CHECK(v.peer.reported);
            if (row.path == "direct") {
                CHECK((v.technique == "host" || v.technique == "srflx" ||
                       v.technique == "prflx"));
                REQUIRE(v.time_to_direct_s);
                CHECK(*v.time_to_direct_s > 0);
                CHECK(*v.time_to_direct_s < 20);
                CHECK(v.self_address);
                CHECK(v.peer_address);
                CHECK(v.peer_address == w.link(WorldSide::kLaptop)->direct());
                CHECK(v.udp_blocked.empty());
            } else if (row.path == "direct-tcp") {
                // The path came from the peer's TCP candidates, never a UDP-style "prflx".
                CHECK((v.technique == "tcp-host" || v.technique == "tcp-srflx"));
                CHECK(contains(v.text, "direct-tcp (" + v.technique + ", "));
                CHECK(contains(v.text, "a TCP connection between the agents carries the session"));
                REQUIRE(v.time_to_direct_s);
                CHECK(*v.time_to_direct_s < 20);
                CHECK(v.self_address);
                CHECK(v.peer_address == w.link(WorldSide::kLaptop)->direct());
                std::vector<std::string> blocked;
                if (row.laptop == NatKind::kUdpBlocked) blocked.push_back("laptop");
                if (row.nas == NatKind::kUdpBlocked) blocked.push_back("nas");
                CHECK(v.udp_blocked == blocked);
                CHECK_FALSE(contains(v.text, "inside TLS"));
            } else if (row.nas == NatKind::kSymmetric) {
                CHECK(v.self.nat == "per-destination");
                CHECK(v.peer.nat == "per-destination");
                CHECK(contains(v.text, "both NATs map per destination"));
                CHECK(contains(v.text, "UPnP IGD, PCP or NAT-PMP"));
                CHECK(v.udp_blocked.empty());
            } else {
                CHECK(v.udp_blocked == std::vector<std::string>{"nas"});
                CHECK(contains(v.text, "UDP is blocked on nas"));
            }
        }
    }
}
