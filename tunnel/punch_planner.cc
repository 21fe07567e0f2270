#include "tunnel/punch_planner.h"

namespace burrow {

const char* to_string(PunchTechnique t) {
    switch (t) {
        case PunchTechnique::kPlain:
            return "plain";
        case PunchTechnique::kSpray:
            return "spray";
        case PunchTechnique::kBirthday:
            return "birthday";
    }
    return "unknown";
}

PunchTechnique choose_technique(NatMapping ours, NatMapping theirs, bool peer_reflexive_known) {
    if (!peer_reflexive_known) return PunchTechnique::kPlain;
    if (ours == NatMapping::kEndpointIndependent && theirs == NatMapping::kPerDestination) {
        return PunchTechnique::kSpray;
    }
    if (ours == NatMapping::kPerDestination && theirs == NatMapping::kEndpointIndependent) {
        return PunchTechnique::kBirthday;
    }
    return PunchTechnique::kPlain;
}

}  // namespace burrow
