#include "signal/stun_answer.h"

#include <string>

namespace burrow {
namespace {

constexpr std::string_view kUnknownAttributeReason = "Unknown Attribute";  // RFC 8489 §14.8

}  // namespace

std::optional<Bytes> stun_binding_answer(const StunMessage& request, const SocketAddress& from,
                                         std::string_view software, size_t limit) {
    StunMessage answer;
    answer.transaction_id = request.transaction_id;
    if (!request.unknown_required.empty()) {
        // RFC 8489 §6.3.1.1: 420 listing what we did not understand.
        answer.type = kStunBindingError;
        answer.error_code =
            StunErrorCode{kStunErrorUnknownAttribute, std::string(kUnknownAttributeReason)};
        answer.unknown_attributes = request.unknown_required;
    } else {
        answer.type = kStunBindingSuccess;
        answer.xor_mapped_address = from;
        if (!software.empty()) answer.software = std::string(software);
    }
    answer.fingerprint = request.fingerprint;

    for (int attempt = 0; attempt < 3; ++attempt) {
        Bytes encoded = encode_stun(answer);
        if (encoded.size() <= limit) return encoded;
        if (answer.software) {
            answer.software.reset();
        } else if (answer.fingerprint) {
            answer.fingerprint = false;
        } else {
            break;
        }
    }
    return std::nullopt;
}

Bytes stun_minimal_binding_answer(const StunMessage& request, const SocketAddress& from) {
    StunMessage answer;
    answer.type = kStunBindingSuccess;
    answer.transaction_id = request.transaction_id;
    answer.xor_mapped_address = from;
    return encode_stun(answer);
}

}  // namespace burrow
