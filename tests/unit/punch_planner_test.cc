#include <catch2/catch.hpp>

#include "tunnel/punch_planner.h"

using namespace burrow;

namespace {
constexpr NatMapping kEi = NatMapping::kEndpointIndependent;
constexpr NatMapping kSym = NatMapping::kPerDestination;
}  // namespace

TEST_CASE("two symmetric NATs: plain without a mapping, mapped when the peer offers one") {
    CHECK(choose_technique(kSym, kSym, true) == PunchTechnique::kPlain);
    CHECK(choose_technique(kSym, kSym, true, false) == PunchTechnique::kPlain);
    CHECK(choose_technique(kSym, kSym, true, true) == PunchTechnique::kMapped);
    CHECK(choose_technique(NatMapping::kUnknown, kSym, false, true) == PunchTechnique::kMapped);
    CHECK(std::string(to_string(PunchTechnique::kMapped)) == "mapped");
}

TEST_CASE("a mapping does not replace the birthday techniques where they apply") {
    // The gateway's external address may sit behind another NAT: keep what needs no mapping.
    CHECK(choose_technique(kEi, kSym, true, true) == PunchTechnique::kSpray);
    CHECK(choose_technique(kSym, kEi, true, true) == PunchTechnique::kBirthday);
    CHECK(choose_technique(kEi, kEi, true, true) == PunchTechnique::kMapped);
    CHECK(choose_technique(kEi, kEi, true, false) == PunchTechnique::kPlain);
}

TEST_CASE("port prediction where a per-destination NAT's allocation is predictable (issue 16)") {
    const PortAllocation seq{PortAllocationKind::kSequential, 1, 1, 0, 0, 40002};
    const PortAllocation block{PortAllocationKind::kBlock, 0, 0, 2048, 512, 2300};
    const PortAllocation random{PortAllocationKind::kRandom, 0, 0, 0, 0, 51234};
    const PortAllocation same{PortAllocationKind::kSame, 0, 0, 0, 0, 41000};
    // Against an endpoint-independent NAT: the predicted window instead of the random spray,
    // and no birthday sockets on the predictable side.
    CHECK(choose_technique(kEi, kSym, true, false, same, seq) == PunchTechnique::kPredicted);
    CHECK(choose_technique(kSym, kEi, true, false, seq, same) == PunchTechnique::kPredicted);
    CHECK(choose_technique(kEi, kSym, true, false, same, block) == PunchTechnique::kPredicted);
    CHECK(choose_technique(kSym, kEi, true, false, block, same) == PunchTechnique::kPredicted);
    // Random ports keep the birthday technique.
    CHECK(choose_technique(kEi, kSym, true, false, same, random) == PunchTechnique::kSpray);
    CHECK(choose_technique(kSym, kEi, true, false, random, same) == PunchTechnique::kBirthday);
    // Two sequential per-destination NATs: lockstep; anything random among two per-destination
    // ones stays plain (or mapped).
    CHECK(choose_technique(kSym, kSym, true, false, seq, seq) == PunchTechnique::kPredicted);
    CHECK(choose_technique(kSym, kSym, true, false, seq, random) == PunchTechnique::kPlain);
    CHECK(choose_technique(kSym, kSym, true, true, random, seq) == PunchTechnique::kMapped);
    // Nothing to aim at without the peer's reflexive address.
    CHECK(choose_technique(kSym, kSym, false, false, seq, seq) == PunchTechnique::kPlain);
    CHECK(std::string(to_string(PunchTechnique::kPredicted)) == "predicted");
}
