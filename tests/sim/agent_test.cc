// The whole agent in virtual time: two AgentCores and a ServerCore, each agent behind one of
// the NATs the simulator models (tests/sim/net/nat.h), over a lossy, reordering network
// (tests/sim/net/agent_world.h). Per NAT pair and seed:
//
//   1. both agents register (STUN, Bind, Register through the real ServerCore);
//   2. a connection through the laptop's forward to nas/web is answered byte-exact (the session
//      starts on the relay: no waiting for punching);
//   3. the session reaches the path the pair allows: direct for every pair but symmetric on
//      both sides (the relay), the relay inside TLS where UDP is blocked;
//   4. a second service (nas/echo) opens on the same session: no handshake, the same link;
//      its bytes come back byte-exact.
//
// BURROW_AGENT_SEEDS=N sets the seeds per pair (default 500); BURROW_AGENT_SEED=N replays one;
// BURROW_AGENT_PAIR=nas/laptop (e.g. symmetric/fullcone) runs one pair. A failure prints its
// seed, pair and the cores' last log lines.
#include <catch2/catch.hpp>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "tests/sim/net/agent_world.h"
#include "tests/sim/seed_range.h"

using namespace burrow;
using namespace burrow::sim;
using namespace std::chrono_literals;

namespace {

enum class Expect { kDirect, kRelayUdp, kRelayTcp };

struct Pair {
    NatKind nas;
    NatKind laptop;
    Expect expect;
    // From both agents registered to both direct: the punch schedule's dense part for cones,
    // the whole birthday spray (kSprayRounds x kSprayInterval) when one side is symmetric.
    Duration direct_within;
};

std::string name(const Pair& p) {
    return std::string(to_string(p.nas)) + "/" + to_string(p.laptop);
}

std::vector<Pair> pairs() {
    const NatKind cones[] = {NatKind::kNone, NatKind::kFullCone, NatKind::kRestricted,
                             NatKind::kPortRestricted};
    std::vector<Pair> out;
    for (NatKind a : cones) {
        for (NatKind b : cones) out.push_back({a, b, Expect::kDirect, 2500ms});
    }
    for (NatKind cone : cones) {
        out.push_back({NatKind::kSymmetric, cone, Expect::kDirect, 17s});
        out.push_back({cone, NatKind::kSymmetric, Expect::kDirect, 17s});
    }
    out.push_back({NatKind::kSymmetric, NatKind::kSymmetric, Expect::kRelayUdp, 0s});
    out.push_back({NatKind::kUdpBlocked, NatKind::kPortRestricted, Expect::kRelayTcp, 0s});
    out.push_back({NatKind::kPortRestricted, NatKind::kUdpBlocked, Expect::kRelayTcp, 0s});
    if (const char* only = std::getenv("BURROW_AGENT_PAIR")) {
        std::erase_if(out, [&](const Pair& p) { return name(p) != only; });
    }
    return out;
}

SeedRange seeds() {
    return seed_range("AGENT", 500);
}

struct Outcome {
    std::string problem;
    Duration first_byte{0};  // from the connection's open
    Duration to_direct{0};   // from both registered
};

Outcome run_one(const Pair& pair, uint64_t seed) {
    SeededRng r(seed ^ 0x61676e74);
    WorldConfig c;
    c.seed = seed;
    c.nas_nat = pair.nas;
    c.laptop_nat = pair.laptop;
    c.loss = r.unit() * 0.02;
    c.reorder = r.unit() * 0.05;
    c.jitter = std::chrono::microseconds(r.uniform(3000));
    c.trace = std::getenv("BURROW_AGENT_TRACE") != nullptr;
    AgentWorld w(c);
    Outcome o;
    auto fail = [&](const std::string& why) {
        if (c.trace) std::printf("%s", w.log_tail(100000000).c_str());
        o.problem = why + "\n" + w.log_tail();
        return o;
    };

    // 1. Registration: at most a few retried STUN/Bind rounds (3.1 s when UDP is blocked).
    if (!w.run_until_registered(w.now() + 20s)) {
        return fail("not registered after 20 s");
    }
    const Time registered = w.now();

    // 2. A forwarded connection, answered byte-exact, first through the relay.
    WorldClient& web = w.open("web", 16 * 1024 + r.uniform(240 * 1024));
    if (!w.run_until([&] { return web.finished || web.failed; }, w.now() + 60s)) {
        return fail("web: no answer within 60 s (" + std::to_string(web.received) + " bytes)");
    }
    if (web.failed) return fail("web: " + web.failure);
    o.first_byte = web.first_byte - web.opened;

    // 3. The path the pair allows.
    const PeerLink* nas_link = w.link(WorldSide::kNas);
    const PeerLink* laptop_link = w.link(WorldSide::kLaptop);
    if (!nas_link || !laptop_link) return fail("no link after the first connection");
    if (pair.expect == Expect::kDirect) {
        const bool direct = w.run_until([&] { return nas_link->direct() && laptop_link->direct(); },
                                        registered + pair.direct_within);
        if (!direct) {
            return fail("not direct " + std::to_string(to_ms(pair.direct_within)) +
                        " ms after registration: nas " + w.path_of(WorldSide::kNas) + ", laptop " +
                        w.path_of(WorldSide::kLaptop));
        }
        o.to_direct = w.now() - registered;
    }

    // 4. A second service on the same session: no handshake.
    const uint64_t nas_handshakes = nas_link->session().stats().handshakes_completed;
    const uint64_t laptop_handshakes = laptop_link->session().stats().handshakes_completed;
    WorldClient& echo = w.open("echo", 4 * 1024 + r.uniform(60 * 1024));
    if (!w.run_until([&] { return echo.finished || echo.failed; }, w.now() + 60s)) {
        return fail("echo: no answer within 60 s");
    }
    if (echo.failed) return fail("echo: " + echo.failure);
    if (w.link(WorldSide::kNas) != nas_link || w.link(WorldSide::kLaptop) != laptop_link) {
        return fail("the second service made a new link");
    }
    if (nas_link->session().stats().handshakes_completed != nas_handshakes ||
        laptop_link->session().stats().handshakes_completed != laptop_handshakes) {
        return fail("the second service cost a handshake");
    }

    if (std::getenv("BURROW_AGENT_TRACE")) {
        std::printf("%s", w.log_tail(100000000).c_str());
        for (int i = 0; i < static_cast<int>(DropReason::kCount); ++i) {
            const auto reason = static_cast<DropReason>(i);
            if (w.server().drops().get(reason)) {
                std::printf("server drop %s: %llu\n", to_string(reason),
                            static_cast<unsigned long long>(w.server().drops().get(reason)));
            }
        }
        for (WorldSide side : {WorldSide::kNas, WorldSide::kLaptop}) {
            const AgentStatus st = w.core(side).status(w.now());
            const SessionStats ss = w.link(side)->session().stats();
            std::printf(
                "hs sent %llu done %llu noise %llu mal %llu mac1 %llu unexp %llu dec %llu "
                "replay %llu idx %llu\n",
                (unsigned long long)ss.handshakes_sent, (unsigned long long)ss.handshakes_completed,
                (unsigned long long)ss.handshake_noise_reads, (unsigned long long)ss.drop_malformed,
                (unsigned long long)ss.drop_bad_mac1, (unsigned long long)ss.drop_unexpected,
                (unsigned long long)ss.drop_decrypt_failed,
                (unsigned long long)ss.drop_replayed_initiation,
                (unsigned long long)ss.drop_unknown_index);
            std::printf("%d: relay_unknown=%llu client_unknown=%llu udp_unknown=%llu\n",
                        static_cast<int>(side),
                        static_cast<unsigned long long>(st.drops.relay_unknown_session),
                        static_cast<unsigned long long>(st.client.drop_relay_unknown_session),
                        static_cast<unsigned long long>(st.drops.udp_from_unknown));
        }
    }
    // The path at the end, on both sides.
    for (WorldSide side : {WorldSide::kNas, WorldSide::kLaptop}) {
        const std::string path = w.path_of(side);
        const bool udp_blocked =
            (side == WorldSide::kNas ? pair.nas : pair.laptop) == NatKind::kUdpBlocked;
        const char* who = side == WorldSide::kNas ? "nas" : "laptop";
        bool ok = false;
        switch (pair.expect) {
            case Expect::kDirect:
                ok = path.starts_with("direct ");
                break;
            case Expect::kRelayUdp:
                ok = path == "relay-udp";
                break;
            case Expect::kRelayTcp:
                ok = path == (udp_blocked ? "relay-tcp" : "relay-udp");
                break;
        }
        if (!ok) return fail(std::string(who) + " ends on " + path);
    }
    return o;
}

}  // namespace

TEST_CASE("whole agents over the simulator's NATs: forwarded streams, paths, one session") {
    const SeedRange s = seeds();
    uint64_t runs = 0, failures = 0, worst_seed = 0;
    Duration worst{0};
    std::string first;
    for (const Pair& pair : pairs()) {
        uint64_t pair_failures = 0;
        Duration pair_worst{0}, pair_worst_byte{0};
        for (uint64_t seed = s.first; seed <= s.last; ++seed) {
            ++runs;
            const Outcome o = run_one(pair, seed);
            if (!o.problem.empty()) {
                if (failures++ == 0) {
                    first =
                        "seed " + std::to_string(seed) + " pair " + name(pair) + ": " + o.problem;
                }
                ++pair_failures;
                continue;
            }
            pair_worst = std::max(pair_worst, o.to_direct);
            pair_worst_byte = std::max(pair_worst_byte, o.first_byte);
            if (o.to_direct > worst) {
                worst = o.to_direct;
                worst_seed = seed;
            }
        }
        // A pair expected to stay relayed has no time to direct: say which path it ends on.
        const std::string path =
            pair.expect == Expect::kDirect
                ? "direct within " + std::to_string(static_cast<long long>(to_ms(pair_worst))) +
                      " ms"
                : std::string("stays relayed");
        std::printf("sim-agent: %-30s seeds=%llu failures=%llu %s, first byte within %.0f ms\n",
                    name(pair).c_str(), static_cast<unsigned long long>(s.count()),
                    static_cast<unsigned long long>(pair_failures), path.c_str(),
                    to_ms(pair_worst_byte));
    }
    std::printf("sim-agent: seeds=%llu failures=%llu worst_seed=%llu (direct after %.0f ms)\n",
                static_cast<unsigned long long>(runs), static_cast<unsigned long long>(failures),
                static_cast<unsigned long long>(worst_seed), to_ms(worst));
    INFO(first);
    CHECK(failures == 0);
}
