#include "tunnel/nat_mapping.h"

namespace burrow {

const char* to_string(NatMapping m) {
    switch (m) {
        case NatMapping::kEndpointIndependent:
            return "endpoint-independent";
        case NatMapping::kPerDestination:
            return "per-destination";
        case NatMapping::kUnknown:
            break;
    }
    return "unknown";
}

}  // namespace burrow
