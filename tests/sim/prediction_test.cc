// Port prediction in virtual time (issue 16): whole agents behind the simulator's predictable
// per-destination NATs (tests/sim/net/nat.h: seqsym, sequential ports; blocksym, random ports
// in a per-subscriber block), each with a STUN server beside the burrow server so that three
// destinations show the allocation. Per NAT pair and seed: both register, a first connection
// goes through the relay, and both sides must be direct within the pair's bound, with the
// technique the pair calls for ("predicted"); a pair prediction cannot help stays on the relay.
//
// BURROW_PREDICTION_SEEDS=N sets the seeds per pair (default 500), BURROW_PREDICTION_SEED=N
// replays one, BURROW_PREDICTION_PAIR=NAME (as printed) runs one pair,
// BURROW_PREDICTION_TRACE=1 prints the log of each run.
#include <catch2/catch.hpp>

#include <cstdio>
#include <cstdlib>
#include <map>
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
    uint16_t delta;   // of the seqsym NATs
    bool direct;      // expected: direct by prediction, else the relay
    Duration within;  // from both registered to both direct
};

std::string name(const Pair& p) {
    std::string n = std::string(to_string(p.nas)) + "/" + to_string(p.laptop);
    if (p.delta != 1) n += " (delta " + std::to_string(p.delta) + ")";
    return n;
}

std::vector<Pair> pairs() {
    // Lockstep: the first round goes kSprayFirstDelay after the first connection's keys; a
    // round lost (2% loss) costs kSprayInterval. The window against an endpoint-independent
    // NAT likewise. Within 8 s is three rounds.
    std::vector<Pair> out = {
        {NatKind::kSeqSym, NatKind::kSeqSym, 1, true, 8s},
        {NatKind::kSeqSym, NatKind::kSeqSym, 2, true, 8s},
        {NatKind::kSeqSym, NatKind::kPortRestricted, 1, true, 8s},
        {NatKind::kPortRestricted, NatKind::kSeqSym, 1, true, 8s},
        {NatKind::kBlockSym, NatKind::kPortRestricted, 1, true, 8s},
        // Random ports on either side: nothing to predict (the birthday needs one easy side).
        {NatKind::kSymmetric, NatKind::kSymmetric, 1, false, 0s},
        // Random ports inside blocks on both sides: not predicted either (a meeting needs A's
        // probe to hit B's mapping and B's to hit A's: about 0.25 per block's worth of probes,
        // docs/architecture.md "Port prediction").
        {NatKind::kBlockSym, NatKind::kBlockSym, 1, false, 0s},
        {NatKind::kSeqSym, NatKind::kSymmetric, 1, false, 0s},
    };
    if (const char* only = std::getenv("BURROW_PREDICTION_PAIR")) {
        std::erase_if(out, [&](const Pair& p) { return name(p) != only; });
    }
    return out;
}

std::string technique_of(AgentWorld& w, WorldSide side) {
    const AgentStatus s = w.core(side).status(w.now());
    return s.peers.empty() ? "none" : s.peers.front().technique;
}

struct Outcome {
    std::string problem;
    Duration to_direct{0};
};

Outcome run_one(const Pair& pair, uint64_t seed, bool trace) {
    SeededRng r(seed ^ 0x70726564);
    WorldConfig c;
    c.seed = seed;
    c.nas_nat = pair.nas;
    c.laptop_nat = pair.laptop;
    c.sequential_delta = pair.delta;
    c.stun_server = true;
    c.loss = r.unit() * 0.02;
    c.jitter = std::chrono::microseconds(r.uniform(3000));
    c.server_one_way = std::chrono::milliseconds(5 + r.uniform(100));
    c.direct_one_way = std::chrono::milliseconds(2 + r.uniform(40));
    c.trace = trace;
    AgentWorld w(c);
    Outcome o;
    auto fail = [&](const std::string& why) {
        if (trace) std::printf("%s", w.log_tail(100000000).c_str());
        o.problem = why + "\n" + w.log_tail();
        return o;
    };
    if (!w.run_until_registered(w.now() + 20s)) return fail("not registered after 20 s");
    const Time registered = w.now();
    // The STUN server's answer (the third destination) comes after registration: the
    // rendezvous must find both allocations at the server, or neither side predicts.
    const auto measured = [&] {
        for (WorldSide side : {WorldSide::kNas, WorldSide::kLaptop}) {
            if (w.core(side).status(w.now()).allocation.kind == PortAllocationKind::kUnknown) {
                return false;
            }
        }
        return true;
    };
    if (!w.run_until(measured, w.now() + 5s)) {
        return fail("allocation unknown 5 s after registration");
    }
    WorldClient& web = w.open("web", 4096 + r.uniform(60 * 1024));
    if (!w.run_until([&] { return web.finished || web.failed; }, w.now() + 60s)) {
        return fail("web: no answer within 60 s");
    }
    if (web.failed) return fail("web: " + web.failure);
    const PeerLink* nas = w.link(WorldSide::kNas);
    const PeerLink* laptop = w.link(WorldSide::kLaptop);
    if (!nas || !laptop) return fail("no link after the first connection");
    if (pair.direct) {
        if (!w.run_until([&] { return nas->direct() && laptop->direct(); },
                         registered + pair.within)) {
            return fail("not direct " + std::to_string(to_ms(pair.within)) +
                        " ms after registration: nas " + w.path_of(WorldSide::kNas) + " (" +
                        technique_of(w, WorldSide::kNas) + "), laptop " +
                        w.path_of(WorldSide::kLaptop) + " (" +
                        technique_of(w, WorldSide::kLaptop) + ")");
        }
        o.to_direct = w.now() - registered;
        for (WorldSide side : {WorldSide::kNas, WorldSide::kLaptop}) {
            if (technique_of(w, side) != "predicted") {
                return fail(std::string(side == WorldSide::kNas ? "nas" : "laptop") +
                            " punched by " + technique_of(w, side) + ", not predicted");
            }
        }
    } else {
        // Past the whole punching verdict: still the relay on both sides.
        w.run_until([] { return false; }, registered + kPunchVerdictAfter + 2s);
        for (WorldSide side : {WorldSide::kNas, WorldSide::kLaptop}) {
            if (w.path_of(side) != "relay-udp") {
                return fail(std::string(side == WorldSide::kNas ? "nas" : "laptop") +
                            " ends on " + w.path_of(side));
            }
        }
    }
    if (trace) std::printf("%s", w.log_tail(100000000).c_str());
    return o;
}

}  // namespace

TEST_CASE("port prediction: predictable per-destination NATs go direct, random ones stay relayed") {
    const SeedRange s = seed_range("PREDICTION", 500);
    const bool trace = std::getenv("BURROW_PREDICTION_TRACE") != nullptr;
    for (const Pair& pair : pairs()) {
        uint64_t runs = 0, failures = 0;
        double worst_ms = 0, sum_ms = 0;
        std::string first;
        for (uint64_t seed = s.first; seed <= s.last; ++seed) {
            ++runs;
            const Outcome o = run_one(pair, seed, trace);
            if (!o.problem.empty()) {
                if (failures++ == 0) {
                    first = "seed " + std::to_string(seed) + " (BURROW_PREDICTION_SEED=" +
                            std::to_string(seed) + "): " + o.problem;
                }
                continue;
            }
            worst_ms = std::max(worst_ms, to_ms(o.to_direct));
            sum_ms += to_ms(o.to_direct);
        }
        std::printf("%-36s %llu seeds, %llu failed; to direct mean %.0f ms, worst %.0f ms\n",
                    name(pair).c_str(), static_cast<unsigned long long>(runs),
                    static_cast<unsigned long long>(failures),
                    runs > failures ? sum_ms / static_cast<double>(runs - failures) : 0.0,
                    worst_ms);
        INFO(name(pair) << ": " << first);
        CHECK(failures == 0);
    }
}
