// Port mappings (UPnP IGD, NAT-PMP, PCP; signal/port_mapper.h) in the whole-agent simulation:
// both agents behind symmetric NATs, which no punch gets through, and the NAS's gateway grants
// it a mapping of its UDP port (WorldConfig::nas_port_mapping_delay, SimNat::map_port) that
// anyone may reach. Per seed:
//
//   granted before the first connection: the laptop's rendezvous already carries the mapped
//   candidate, and the session goes direct to it while punching;
//
//   granted after the session started (UPnP discovery takes seconds, and the first connection
//   comes at once): the NAS registers the new candidate, the server tells both agents of the live
//   session again (ServerCore::refresh_sessions_of), and the same session moves from the relay to
//   the mapped address; the connection open across the move stays byte-exact.
//
// BURROW_MAPPING_SEEDS=N sets the seeds (default 100); BURROW_MAPPING_SEED=N replays one.
#include <catch2/catch.hpp>

#include <string>

#include "tests/sim/net/agent_world.h"
#include "tests/sim/seed_sweep.h"

using namespace burrow;
using namespace burrow::sim;
using namespace std::chrono_literals;

namespace {

// From the mapping's grant to the direct path: a Register to the server, a PeerInfo back, and a
// probe round trip, with the simulator's loss and jitter; far below the 5 s rediscovery period,
// which a peer that never heard of the candidate could not beat.
constexpr Duration kDirectAfterGrant = 2s;

// measured: the time to direct from the grant, or from the first connection if that came later.
using Outcome = SeedOutcome;

// The NAS's mapped address once its gateway granted it (its port mapper's status).
std::optional<SocketAddress> mapped_of(AgentWorld& w) {
    const AgentStatus s = w.core(WorldSide::kNas).status(w.now());
    if (!s.port_mapping.mapping) return std::nullopt;
    return s.port_mapping.mapping->external;
}

Outcome run_one(uint64_t seed, Duration grant_delay, bool connect_first) {
    SeededRng r(seed ^ 0x6d6170);
    WorldConfig c;
    c.seed = seed;
    c.nas_nat = NatKind::kSymmetric;
    c.laptop_nat = NatKind::kSymmetric;
    c.loss = r.unit() * 0.02;
    c.jitter = std::chrono::microseconds(r.uniform(3000));
    c.nas_port_mapping_delay = grant_delay;
    AgentWorld w(c);
    auto fail = [&](const std::string& why) {
        return Outcome{why + " (laptop " + w.path_of(WorldSide::kLaptop) + ")\n" + w.log_tail()};
    };
    if (!w.run_until_registered(w.now() + 20s)) return fail("not registered after 20 s");
    if (!connect_first && !w.run_until([&] { return mapped_of(w).has_value(); }, w.now() + 10s)) {
        return fail("no mapping granted");
    }
    // An echo stream open across the move (the relay, then the direct path).
    WorldClient& echo = w.open("echo", 256 * 1024);
    if (!w.run_until([&] { return mapped_of(w).has_value(); }, w.now() + 10s)) {
        return fail("no mapping granted");
    }
    const SocketAddress mapped = *mapped_of(w);
    const Time granted = w.now();  // or the first connection, if that came later
    const PeerLink* laptop = nullptr;
    if (!w.run_until(
            [&] {
                laptop = w.link(WorldSide::kLaptop);
                return laptop && laptop->direct();
            },
            granted + kDirectAfterGrant)) {
        return fail("not direct " + std::to_string(to_ms(kDirectAfterGrant)) +
                    " ms after the mapping was granted");
    }
    const Duration to_direct = w.now() - granted;
    const AgentStatus st = w.core(WorldSide::kLaptop).status(w.now());
    if (st.peers.empty() || !st.peers.front().path_address ||
        !(*st.peers.front().path_address == mapped)) {
        return fail("direct, but not to the mapped address " + to_string(mapped));
    }
    if (!w.run_until([&] { return echo.finished || echo.failed; }, w.now() + 60s)) {
        return fail("the echo stream did not finish");
    }
    if (echo.failed) return fail("the echo stream failed: " + echo.failure);
    return Outcome{"", to_direct};
}

void run_case(const char* label, Duration grant_delay, bool connect_first) {
    check_every_seed("sim-mapping", label, seed_range("MAPPING", 100), [&](uint64_t seed) {
        return run_one(seed, grant_delay, connect_first);
    });
}

}  // namespace

TEST_CASE("symmetric/symmetric with a mapping granted before the first connection: direct") {
    run_case("granted before the first connection", 300ms, false);
}

TEST_CASE("a mapping granted after the session started takes the same session direct") {
    run_case("granted 3 s after the session started", 3s, true);
}
