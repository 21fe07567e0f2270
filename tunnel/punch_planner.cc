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
        case PunchTechnique::kPredicted:
            return "predicted";
    }
    return "unknown";
}

PunchTechnique choose_technique(NatMapping ours, NatMapping theirs, bool peer_reflexive_known,
                                bool peer_mapped_known, const PortAllocation& our_allocation,
                                const PortAllocation& their_allocation) {
    const PunchTechnique plain =
        peer_mapped_known ? PunchTechnique::kMapped : PunchTechnique::kPlain;
    if (!peer_reflexive_known) return plain;
    if (ours == NatMapping::kEndpointIndependent && theirs == NatMapping::kPerDestination) {
        return predictable(their_allocation) ? PunchTechnique::kPredicted : PunchTechnique::kSpray;
    }
    if (ours == NatMapping::kPerDestination && theirs == NatMapping::kEndpointIndependent) {
        return predictable(our_allocation) ? PunchTechnique::kPredicted
                                           : PunchTechnique::kBirthday;
    }
    if (ours == NatMapping::kPerDestination && theirs == NatMapping::kPerDestination &&
        our_allocation.kind == PortAllocationKind::kSequential &&
        their_allocation.kind == PortAllocationKind::kSequential) {
        return PunchTechnique::kPredicted;
    }
    return plain;
}

}  // namespace burrow
