// Dual stack in the whole-agent simulation (issue 17): the NAS has a public IPv6 address beside
// its IPv4 NAT, and its control connection runs over IPv6 (the server's name gives both
// addresses, Happy Eyeballs picks IPv6); the laptop is IPv4 only behind a cone NAT. Per NAT
// pair and seed:
//
//   1. the NAS registers a server-reflexive IPv4 candidate, its NAT's public address, learned
//      by probing the server's IPv4 address (the family the control connection does not use);
//   2. the NAS's registered NAT mapping is its IPv4 NAT's (per destination for a symmetric NAT,
//      where the IPv6 probe alone says endpoint-independent);
//   3. a forwarded connection is answered byte-exact, and with both NATs cones the session goes
//      direct over IPv4: only that candidate makes it possible (the laptop cannot reach IPv6,
//      the NAS's LAN address does not route, and the laptop's port-restricted NAT drops the
//      NAS's probes until the laptop has sent to the NAS's public address).
//
// BURROW_DUAL_SEEDS=N sets the seeds per pair (default 100); BURROW_DUAL_SEED=N replays one.
#include <catch2/catch.hpp>

#include <cstdio>
#include <string>
#include <vector>

#include "tests/sim/net/agent_world.h"
#include "tests/sim/seed_range.h"

using namespace burrow;
using namespace burrow::sim;
using namespace std::chrono_literals;

namespace {

struct Pair {
    NatKind nas;
    NatKind laptop;
    bool direct;  // both cones: the NAS's IPv4 reflexive candidate makes a direct path
};

std::string name(const Pair& p) {
    return std::string(to_string(p.nas)) + "+dual/" + to_string(p.laptop) + "+v4";
}

std::vector<Pair> pairs() {
    return {
        {NatKind::kPortRestricted, NatKind::kPortRestricted, true},
        {NatKind::kRestricted, NatKind::kPortRestricted, true},
        {NatKind::kFullCone, NatKind::kPortRestricted, true},
        {NatKind::kPortRestricted, NatKind::kFullCone, true},
        // A symmetric IPv4 NAT under a dual-stack NAS: its per-destination mapping is what the
        // NAS registers (the IPv6 probe alone would say endpoint-independent).
        {NatKind::kSymmetric, NatKind::kPortRestricted, false},
    };
}

std::string run_one(const Pair& pair, uint64_t seed) {
    SeededRng r(seed ^ 0x6475616c);
    WorldConfig c;
    c.seed = seed;
    c.nas_nat = pair.nas;
    c.laptop_nat = pair.laptop;
    c.nas_ipv6 = true;
    c.loss = r.unit() * 0.02;
    c.reorder = r.unit() * 0.05;
    c.jitter = std::chrono::microseconds(r.uniform(3000));
    AgentWorld w(c);
    auto fail = [&](const std::string& why) { return why + "\n" + w.log_tail(); };

    if (!w.run_until_registered(w.now() + 20s)) return fail("not registered after 20 s");
    const Time registered = w.now();
    w.run_until([] { return false; }, w.now() + 4 * c.server_one_way);
    const AgentStatus st = w.core(WorldSide::kNas).status(w.now());
    if (!st.server_address || !st.server_address->v6) {
        return fail("the NAS's control connection is not over IPv6");
    }
    const AgentRecord* rec = w.server().registry().find("nas");
    if (!rec) return fail("nas: not in the registry");
    const std::array<uint8_t, 4> nas_public = {203, 0, 113, 10};
    bool v4_reflexive = false;
    for (const Candidate& cand : rec->candidates) {
        v4_reflexive |= cand.kind == CandidateKind::kServerReflexive && !cand.address.v6 &&
                        cand.address == SocketAddress::ipv4(nas_public, cand.address.port);
    }
    if (!v4_reflexive) return fail("nas: no IPv4 server-reflexive candidate registered");
    const NatMapping want = pair.nas == NatKind::kSymmetric ? NatMapping::kPerDestination
                                                            : NatMapping::kEndpointIndependent;
    if (rec->nat != want) {
        return fail(std::string("nas: registered nat ") + to_string(rec->nat) + ", want " +
                    to_string(want));
    }

    WorldClient& web = w.open("web", 16 * 1024 + r.uniform(200 * 1024));
    if (!w.run_until([&] { return web.finished || web.failed; }, w.now() + 60s)) {
        return fail("web: no answer within 60 s");
    }
    if (web.failed) return fail("web: " + web.failure);
    if (pair.direct) {
        const PeerLink* nas = w.link(WorldSide::kNas);
        const PeerLink* laptop = w.link(WorldSide::kLaptop);
        if (!nas || !laptop) return fail("no link");
        if (!w.run_until([&] { return nas->direct() && laptop->direct(); }, registered + 5s)) {
            return fail("not direct 5 s after registration: nas " + w.path_of(WorldSide::kNas) +
                        ", laptop " + w.path_of(WorldSide::kLaptop));
        }
        const AgentStatus ns = w.core(WorldSide::kNas).status(w.now());
        if (ns.peers.empty() || !ns.peers.front().path_address ||
            ns.peers.front().path_address->v6) {
            return fail("nas: direct, but not over IPv4: " + w.path_of(WorldSide::kNas));
        }
    }
    return "";
}

}  // namespace

TEST_CASE("a dual-stack agent whose control runs over IPv6 goes direct over IPv4 with a v4 peer") {
    const SeedRange s = seed_range("DUAL", 100);
    uint64_t runs = 0, failures = 0;
    std::string first;
    for (const Pair& pair : pairs()) {
        uint64_t pair_failures = 0;
        for (uint64_t seed = s.first; seed <= s.last; ++seed) {
            ++runs;
            const std::string problem = run_one(pair, seed);
            if (problem.empty()) continue;
            if (failures++ == 0) {
                first = "seed " + std::to_string(seed) + " pair " + name(pair) + ": " + problem;
            }
            ++pair_failures;
        }
        std::printf("sim-dual: %-40s seeds=%llu failures=%llu %s\n", name(pair).c_str(),
                    static_cast<unsigned long long>(s.count()),
                    static_cast<unsigned long long>(pair_failures),
                    pair.direct ? "v4 reflexive, direct" : "v4 reflexive, per-destination");
    }
    std::printf("sim-dual: runs=%llu failures=%llu\n", static_cast<unsigned long long>(runs),
                static_cast<unsigned long long>(failures));
    INFO(first);
    CHECK(failures == 0);
}
