// Codec target: STUN (signal/stun.h), the first thing the server parses from any source.
//
// Invariants: a datagram that decodes passes is_stun(); every message that decodes and that
// encode_stun can express (no MAPPED-ADDRESS, no unknown comprehension-required attributes,
// texts within the encoder's cap) re-encodes, and decoding that gives the same message back.
#include "signal/stun.h"
#include "tests/fuzz/fuzz_support.h"

using namespace burrow;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const ByteView datagram(data, size);
    const bool looks_like_stun = is_stun(datagram);
    auto m = decode_stun(datagram);
    if (!m) return 0;
    FUZZ_CHECK(looks_like_stun);
    if (m->mapped_address || !m->unknown_required.empty()) return 0;
    if (m->software && m->software->size() > kStunMaxTextEncode) return 0;
    if (m->error_code) {
        if (m->error_code->reason.size() > kStunMaxTextEncode) return 0;
        FUZZ_CHECK(m->error_code->code >= 300 && m->error_code->code <= 699);
    }
    const Bytes encoded = encode_stun(*m);
    FUZZ_CHECK(is_stun(encoded));
    auto again = decode_stun(encoded);
    FUZZ_CHECK(again.has_value());
    FUZZ_CHECK(*again == *m);
    return 0;
}
