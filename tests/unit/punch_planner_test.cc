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
