// Codec target: messages between the servers of a cluster (signal/cluster_message.h), read
// from Redis publish/subscribe: shared infrastructure, so parsed as strictly as any input.
//
// Invariants: every payload that decodes re-encodes to exactly the same bytes (the format has
// one encoding per message), and decoding that gives the same message back.
#include "signal/cluster_message.h"
#include "tests/fuzz/fuzz_support.h"

using namespace burrow;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const ByteView payload(data, size);
    auto m = decode_cluster(payload);
    if (!m) return 0;
    const Bytes encoded = encode_cluster(*m);
    auto again = decode_cluster(encoded);
    FUZZ_CHECK(again.has_value());
    FUZZ_CHECK(*again == *m);
    return 0;
}
