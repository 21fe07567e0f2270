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
        case PunchTechnique::kMapped:
            return "mapped";
    }
    return "unknown";
}

PunchTechnique choose_technique(NatMapping ours, NatMapping theirs, bool peer_reflexive_known,
                                bool peer_mapped_known) {
    const PunchTechnique plain =
        peer_mapped_known ? PunchTechnique::kMapped : PunchTechnique::kPlain;
    if (!peer_reflexive_known) return plain;
    if (ours == NatMapping::kEndpointIndependent && theirs == NatMapping::kPerDestination) {
        return PunchTechnique::kSpray;
    }
    if (ours == NatMapping::kPerDestination && theirs == NatMapping::kEndpointIndependent) {
        return PunchTechnique::kBirthday;
    }
    return plain;
}

}  // namespace burrow
