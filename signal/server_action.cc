#include "signal/server_action.h"

#include <numeric>

namespace burrow {

const char* to_string(DropReason r) {
    switch (r) {
        case DropReason::kTooLarge:
            return "datagram too large";
        case DropReason::kUnknownType:
            return "unknown datagram type";
        case DropReason::kWrongPort:
            return "bind or relay on the secondary port";
        case DropReason::kStunMalformed:
            return "malformed STUN";
        case DropReason::kStunNotRequest:
            return "STUN message that is not a Binding request";
        case DropReason::kStunAmplification:
            return "STUN request smaller than its answer";
        case DropReason::kBindMalformed:
            return "malformed bind";
        case DropReason::kBindUnknownToken:
            return "bind with an unknown token";
        case DropReason::kRelayMalformed:
            return "malformed relay packet";
        case DropReason::kRelayUnboundSender:
            return "relay from an unbound address";
        case DropReason::kRelayUnknownSender:
            return "relay with an unknown sender token";
        case DropReason::kRelayUnknownSession:
            return "relay for an unknown session";
        case DropReason::kRelayBadToken:
            return "relay with a wrong session token";
        case DropReason::kRelayNotMember:
            return "relay from an agent outside the session";
        case DropReason::kRelayPeerOffline:
            return "relay to an offline peer";
        case DropReason::kRateLimitPackets:
            return "over the packet rate limit";
        case DropReason::kRateLimitBytes:
            return "over the byte rate limit";
        case DropReason::kCount:
            break;
    }
    return "?";
}

uint64_t DropCounters::total() const {
    return std::accumulate(counts_.begin(), counts_.end(), uint64_t{0});
}

}  // namespace burrow
