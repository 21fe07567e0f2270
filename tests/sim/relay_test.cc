// The server's relay under two faults, whole agents in virtual time (tests/sim/net/agent_world.h):
//
//   short NAT timeouts   both NATs symmetric (the pair stays on the relay) and forgetting an
//                        idle mapping after 5 s: after a transfer and 60 s idle, a request is
//                        answered within 1 s. The agents learn the keepalive the NATs need
//                        (signal/udp_binding.h), or use a configured one; relay packets carry the
//                        Bind's proof, so the server follows a NAT that moved an agent.
//   server restart       the server restarts (a new ServerCore with the same identity key)
//                        in the middle of a relayed transfer: the agents reconnect, re-attach
//                        their relay session, and the transfer ends byte-exact on the same link,
//                        no stream reset. A direct pair gets its relay fallback back the same way.
//
// BURROW_RELAY_SEEDS=N sets the seeds per case (default 200); BURROW_RELAY_SEED=N replays one.
// A failure prints its seed and the cores' last log lines.
#include <catch2/catch.hpp>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "tests/sim/net/agent_world.h"
#include "tests/sim/seed_sweep.h"

using namespace burrow;
using namespace burrow::sim;
using namespace std::chrono_literals;

namespace {

SeedRange seeds() {
    return seed_range("RELAY", 200);
}

WorldConfig lossy(uint64_t seed, NatKind nas, NatKind laptop) {
    SeededRng r(seed ^ 0x72656c6179);
    WorldConfig c;
    c.seed = seed;
    c.nas_nat = nas;
    c.laptop_nat = laptop;
    c.loss = r.unit() * 0.01;
    c.reorder = r.unit() * 0.03;
    c.jitter = std::chrono::microseconds(r.uniform(2000));
    return c;
}

uint64_t session_id_of(AgentWorld& w, WorldSide side) {
    const AgentStatus s = w.core(side).status(w.now());
    return s.peers.empty() ? 0 : s.peers.front().session_id;
}

using Outcome = SeedOutcome;

Outcome fail(AgentWorld& w, const std::string& why) {
    return Outcome{why + "\n" + w.log_tail(), {}};
}

// Transfer, 60 s idle, then a request: measured is its first byte's delay.
Outcome short_nat_timeout(uint64_t seed, std::optional<Duration> keepalive) {
    WorldConfig c = lossy(seed, NatKind::kSymmetric, NatKind::kSymmetric);
    c.nat_timeout = 5s;
    c.keepalive = keepalive;
    AgentWorld w(c);
    if (!w.run_until_registered(w.now() + 20s)) return fail(w, "not registered after 20 s");
    WorldClient& bulk = w.open("web", 256 * 1024);
    if (!w.run_until([&] { return bulk.finished || bulk.failed; }, w.now() + 60s)) {
        return fail(w, "transfer: no end within 60 s");
    }
    if (bulk.failed) return fail(w, "transfer: " + bulk.failure);
    if (w.path_of(WorldSide::kLaptop) != "relay-udp") {
        return fail(w, "laptop not on the udp relay: " + w.path_of(WorldSide::kLaptop));
    }
    const PeerLink* link = w.link(WorldSide::kLaptop);

    w.run_until([] { return false; }, w.now() + 60s);

    WorldClient& request = w.open("web", 1024);
    if (!w.run_until([&] { return request.finished || request.failed; }, w.now() + 30s)) {
        return fail(w, "request after idle: no answer within 30 s");
    }
    if (request.failed) return fail(w, "request after idle: " + request.failure);
    if (w.link(WorldSide::kLaptop) != link) return fail(w, "the idle time cost the link");
    Outcome o;
    o.measured = request.first_byte - request.opened;
    if (o.measured > 1s) {
        return fail(w, "request after idle answered after " +
                           std::to_string(static_cast<long long>(to_ms(o.measured))) + " ms");
    }
    return o;
}

// A relayed transfer across a server restart; measured: the transfer's duration.
Outcome relayed_restart(uint64_t seed) {
    WorldConfig c = lossy(seed, NatKind::kSymmetric, NatKind::kSymmetric);
    AgentWorld w(c);
    if (!w.run_until_registered(w.now() + 20s)) return fail(w, "not registered after 20 s");
    WorldClient& bulk = w.open("web", 1024 * 1024);
    if (!w.run_until([&] { return bulk.received >= 256 * 1024 || bulk.failed; }, w.now() + 60s)) {
        return fail(w, "transfer did not get going");
    }
    if (bulk.failed) return fail(w, "before the restart: " + bulk.failure);
    const PeerLink* nas_link = w.link(WorldSide::kNas);
    const PeerLink* laptop_link = w.link(WorldSide::kLaptop);
    const uint64_t id = session_id_of(w, WorldSide::kLaptop);

    w.restart_server(2s);
    if (w.server().relays().size() != 0) return fail(w, "the new server knows a relay session");
    // measured: from the restart until bytes flow again (64 KiB more than at the restart).
    const Time restarted = w.now();
    const uint64_t at_restart = bulk.received;
    w.run_until([&] { return bulk.received >= at_restart + 64 * 1024 || bulk.failed; },
                w.now() + 60s);
    const Duration stall = w.now() - restarted;
    if (std::getenv("BURROW_RELAY_TRACE")) std::printf("%s", w.log_tail(60).c_str());
    if (!w.run_until([&] { return bulk.finished || bulk.failed; }, w.now() + 60s)) {
        return fail(w, "transfer: no end within 60 s of the restart (" +
                           std::to_string(bulk.received) + " bytes)");
    }
    if (bulk.failed) return fail(w, "across the restart: " + bulk.failure);
    if (bulk.received != bulk.expect) return fail(w, "short transfer");
    if (w.link(WorldSide::kNas) != nas_link || w.link(WorldSide::kLaptop) != laptop_link) {
        return fail(w, "the restart cost the link");
    }
    if (!w.server().relays().size() || session_id_of(w, WorldSide::kNas) != id) {
        return fail(w, "the session was not re-attached under its id");
    }
    if (!w.server().relays().find(id)) {
        return fail(w, "the server has no session " + std::to_string(id));
    }
    return Outcome{{}, stall};
}

// A direct pair: the restart takes its relay fallback, the re-attach gives it back.
Outcome direct_restart(uint64_t seed) {
    WorldConfig c = lossy(seed, NatKind::kPortRestricted, NatKind::kPortRestricted);
    AgentWorld w(c);
    if (!w.run_until_registered(w.now() + 20s)) return fail(w, "not registered after 20 s");
    WorldClient& first = w.open("web", 16 * 1024);
    const PeerLink* nas_link = nullptr;
    const PeerLink* laptop_link = nullptr;
    if (!w.run_until(
            [&] {
                nas_link = w.link(WorldSide::kNas);
                laptop_link = w.link(WorldSide::kLaptop);
                return first.finished && nas_link && laptop_link && nas_link->direct() &&
                       laptop_link->direct();
            },
            w.now() + 30s)) {
        return fail(w, "not direct within 30 s");
    }
    const uint64_t id = session_id_of(w, WorldSide::kLaptop);
    const Time restart = w.now();
    w.restart_server(1s);
    if (!w.run_until(
            [&] { return w.server().relays().find(id) != nullptr; },
            w.now() + 20s)) {
        return fail(w, "relay session " + std::to_string(id) + " not re-attached within 20 s");
    }
    const Duration reattached = w.now() - restart;
    if (w.link(WorldSide::kNas) != nas_link || w.link(WorldSide::kLaptop) != laptop_link) {
        return fail(w, "the restart cost the link");
    }
    // A new service needs the server's approval: once both are back, it opens on the link.
    if (!w.run_until_registered(w.now() + 20s)) return fail(w, "not registered again after the restart");
    WorldClient& second = w.open("echo", 8 * 1024);
    if (!w.run_until([&] { return second.finished || second.failed; }, w.now() + 30s)) {
        return fail(w, "echo after the restart: no answer");
    }
    if (second.failed) return fail(w, "echo after the restart: " + second.failure);
    return Outcome{{}, reattached};
}

template <class Fn>
void run_case(const char* label, Fn fn) {
    check_every_seed("sim-relay", label, seeds(), fn);
}

}  // namespace

TEST_CASE("symmetric NATs with a 5 s UDP timeout: a request after 60 s idle within 1 s") {
    run_case("5 s NAT timeout, learned keepalive",
             [](uint64_t seed) { return short_nat_timeout(seed, std::nullopt); });
    run_case("5 s NAT timeout, keepalive = 4s",
             [](uint64_t seed) { return short_nat_timeout(seed, 4s); });
}

TEST_CASE("a relayed transfer across a server restart ends byte-exact on the same link") {
    run_case("relayed 1 MiB across a 2 s restart (stall)", relayed_restart);
}

TEST_CASE("a direct pair regains its relay fallback after a server restart") {
    run_case("direct pair, relay re-attached after a 1 s restart", direct_restart);
}
