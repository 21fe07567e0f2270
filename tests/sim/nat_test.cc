// The simulator's NAT (tests/sim/net/nat.h) on its own: the settings issue 16 added (sequential
// and per-subscriber block allocation, hairpinning) and the settings' text form that the NAT
// lab's burrow-labnat takes on its command line.
#include <catch2/catch.hpp>

#include <algorithm>
#include <set>

#include "tests/sim/net/nat.h"
#include "tunnel/port_prediction.h"

using namespace burrow;
using namespace burrow::sim;
using namespace std::chrono_literals;

namespace {

const SocketAddress kPublic = SocketAddress::ipv4({198, 51, 100, 11}, 0);
const SocketAddress kLan = SocketAddress::ipv4({10, 0, 1, 2}, 4000);
const SocketAddress kServer = SocketAddress::ipv4({198, 51, 100, 1}, 3478);

SocketAddress server_port(uint16_t port) {
    SocketAddress a = kServer;
    a.port = port;
    return a;
}

NatConfig kind(NatKind k) {
    auto c = nat_config(k);
    REQUIRE(c);
    return *c;
}

}  // namespace

TEST_CASE("seqsym maps per destination, each new mapping the last port plus one") {
    SimNat nat(kind(NatKind::kSeqSym), kPublic, 1);
    std::vector<uint16_t> ports;
    for (uint16_t i = 0; i < 5; ++i) {
        auto m = nat.outbound(kLan, server_port(static_cast<uint16_t>(3478 + i)), Time{});
        REQUIRE(m);
        ports.push_back(m->port);
    }
    for (size_t i = 1; i < ports.size(); ++i) CHECK(ports[i] == ports[i - 1] + 1);
    // The same destination again keeps its mapping and takes no port.
    CHECK(nat.outbound(kLan, server_port(3478), Time{})->port == ports[0]);
    CHECK(nat.outbound(kLan, server_port(4000), Time{})->port == ports.back() + 1);
}

TEST_CASE("a sequential allocator wraps past 65535 on to the lowest port it maps") {
    NatConfig c = kind(NatKind::kSeqSym);
    c.sequential_delta = 30000;
    SimNat nat(c, kPublic, 1);
    std::vector<uint16_t> ports;
    for (uint16_t i = 0; i < 4; ++i) {
        const auto to = server_port(static_cast<uint16_t>(10 + i));
        ports.push_back(nat.outbound(kLan, to, Time{})->port);
    }
    // 20000, 50000, then 1024 + (80000 - 65536) = 15488, then 45488: the ring of ports
    // from 1024 to 65535 that a NAT maps.
    CHECK(ports == std::vector<uint16_t>{20000, 50000, 15488, 45488});
}

TEST_CASE("seqsym filters by address and port, and does not hairpin") {
    SimNat nat(kind(NatKind::kSeqSym), kPublic, 1);
    const auto m = nat.outbound(kLan, kServer, Time{});
    REQUIRE(m);
    CHECK(nat.inbound(*m, kServer, Time{}) == kLan);
    CHECK_FALSE(nat.inbound(*m, server_port(3479), Time{}));
    CHECK_FALSE(nat.inbound(*m, SocketAddress::ipv4({198, 51, 100, 12}, 3478), Time{}));
    const SocketAddress neighbour = SocketAddress::ipv4({10, 0, 1, 3}, 5000);
    CHECK_FALSE(nat.hairpin(neighbour, *m, Time{}));
}

TEST_CASE("blocksym gives each subscriber its own block, a random port inside it") {
    NatConfig c = kind(NatKind::kBlockSym);
    REQUIRE(c.block_size == 512);
    SimNat nat(c, kPublic, 7);
    const SocketAddress other = SocketAddress::ipv4({10, 0, 1, 3}, 4000);
    std::set<uint16_t> mine, theirs;
    int steps_of_one = 0;
    uint16_t last = 0;
    for (uint16_t i = 0; i < 100; ++i) {
        const auto to = server_port(static_cast<uint16_t>(2000 + i));
        const uint16_t p = nat.outbound(kLan, to, Time{})->port;
        steps_of_one += p == last + 1;
        last = p;
        mine.insert(p);
        theirs.insert(nat.outbound(other, to, Time{})->port);
    }
    CHECK(mine.size() == 100);
    CHECK(*mine.begin() >= 1024);
    CHECK(*mine.rbegin() < 1024 + 512);
    CHECK(*theirs.begin() >= 1024 + 512);
    CHECK(*theirs.rbegin() < 1024 + 1024);
    CHECK(steps_of_one < 10);  // random, not sequential
}

TEST_CASE("a full block refuses new mappings rather than spill into another subscriber's") {
    SimNat nat(kind(NatKind::kBlockSym), kPublic, 3);
    for (uint32_t i = 0; i < 512; ++i) {
        REQUIRE(nat.outbound(kLan, server_port(static_cast<uint16_t>(2000 + i)), Time{}));
    }
    CHECK_FALSE(nat.outbound(kLan, server_port(5000), Time{}));
    CHECK(nat.stats().ports_exhausted == 1);
    // A mapping that times out frees its port for the next.
    CHECK(nat.outbound(kLan, server_port(5000), Time{} + 31s));
}

TEST_CASE("hairpinning turns a LAN packet to the NAT's own mapping back in") {
    NatConfig c = kind(NatKind::kPortRestricted);
    c.hairpinning = true;
    SimNat nat(c, kPublic, 1);
    const SocketAddress neighbour = SocketAddress::ipv4({10, 0, 1, 3}, 5000);
    const auto m = nat.outbound(kLan, kServer, Time{});
    REQUIRE(m);
    // The mapping filters by address and port: nobody on the LAN has been sent to yet.
    CHECK_FALSE(nat.hairpin(neighbour, *m, Time{}));
    const auto neighbour_public = nat.outbound(neighbour, kServer, Time{});
    REQUIRE(neighbour_public);
    nat.outbound(kLan, *neighbour_public, Time{});
    const auto t = nat.hairpin(neighbour, *m, Time{});
    REQUIRE(t);
    CHECK(t->from == *neighbour_public);
    CHECK(t->to == kLan);
    CHECK(nat.stats().hairpinned == 1);
    c.hairpinning = false;
    SimNat off(c, kPublic, 1);
    const auto m2 = off.outbound(kLan, kServer, Time{});
    const auto n2 = off.outbound(neighbour, kServer, Time{});
    off.outbound(kLan, *n2, Time{});
    CHECK_FALSE(off.hairpin(neighbour, *m2, Time{}));
}

TEST_CASE("every kind is found by its name") {
    for (auto k : {NatKind::kNone, NatKind::kFullCone, NatKind::kRestricted,
                   NatKind::kPortRestricted, NatKind::kSymmetric, NatKind::kUdpBlocked,
                   NatKind::kSeqSym, NatKind::kBlockSym}) {
        CHECK(nat_kind_from_string(to_string(k)) == k);
    }
    CHECK_FALSE(nat_kind_from_string("cone"));
    CHECK(describe(kind(NatKind::kSeqSym)) ==
          "mapping=apdm allocation=sequential delta=1 filtering=apdf hairpin=off timeout=30");
    CHECK(describe(kind(NatKind::kBlockSym)) ==
          "mapping=apdm allocation=block block=512 filtering=apdf hairpin=off timeout=30");
}

TEST_CASE("settings by name apply, and a bad one names itself and changes nothing") {
    NatConfig c = kind(NatKind::kPortRestricted);
    for (const char* s : {"mapping=adm", "allocation=sequential", "delta=7", "filtering=eif",
                          "hairpin=on", "timeout=120", "block=1024"}) {
        CHECK_FALSE(apply_nat_setting(c, s));
    }
    CHECK(c.mapping == NatMappingRule::kAddressDependent);
    CHECK(c.allocation == NatAllocation::kSequential);
    CHECK(c.sequential_delta == 7);
    CHECK(c.filtering == NatFiltering::kEndpointIndependent);
    CHECK(c.hairpinning);
    CHECK(c.timeout == 120s);
    CHECK(c.block_size == 1024);
    const std::string before = describe(c);
    for (const char* s : {"mapping=cone", "delta=0", "delta=70000", "delta=1x", "block=100",
                          "hairpin=yes", "timeout=", "colour=blue", "mapping"}) {
        const auto error = apply_nat_setting(c, s);
        REQUIRE(error);
        CHECK(error->find(s) != std::string::npos);
        CHECK(describe(c) == before);
    }
}

TEST_CASE("port prediction reads each NAT kind's allocation and foresees its next ports") {
    struct Case {
        NatKind kind;
        PortAllocationKind expected;
    };
    for (const Case c : {Case{NatKind::kSeqSym, PortAllocationKind::kSequential},
                         Case{NatKind::kBlockSym, PortAllocationKind::kBlock},
                         Case{NatKind::kSymmetric, PortAllocationKind::kRandom},
                         Case{NatKind::kPortRestricted, PortAllocationKind::kSame}}) {
        for (uint64_t seed = 1; seed <= 50; ++seed) {
            INFO(to_string(c.kind) << " seed " << seed);
            SimNat nat(kind(c.kind), kPublic, seed);
            // The agent's probes: one socket, successive new destinations.
            std::vector<uint16_t> seen;
            for (uint16_t i = 0; i < 4; ++i) {
                const auto to = server_port(static_cast<uint16_t>(3478 + i));
                seen.push_back(nat.outbound(kLan, to, Time{})->port);
            }
            const PortAllocation a = measure_allocation(seen);
            CHECK(a.kind == c.expected);
            // The next mappings (towards the peer's ports) fall in the predicted window.
            const auto window = predict_ports(a, 8);
            for (uint16_t i = 0; i < 8; ++i) {
                const auto to = SocketAddress::ipv4({198, 51, 100, 12}, uint16_t(40000 + i));
                const uint16_t next = nat.outbound(kLan, to, Time{})->port;
                const bool foreseen = std::find(window.begin(), window.end(), next) != window.end();
                CHECK(foreseen == (c.expected == PortAllocationKind::kSequential ||
                                   c.expected == PortAllocationKind::kBlock));
            }
        }
    }
}
