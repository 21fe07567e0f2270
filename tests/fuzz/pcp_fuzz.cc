// Codec target: PCP MAP responses (signal/pcp.h), what the agent reads from its gateway's port
// 5351 when it asks for a port mapping.
//
// Input: 12 bytes of nonce and 2 of internal port (the request the agent sent), then the
// datagram. Invariants: a response that decodes carries the request's nonce and port, and
// re-encodes to a datagram that decodes to the same response; a version 0 packet is only ever
// "NAT-PMP only" or malformed.
#include "signal/pcp.h"
#include "tests/fuzz/fuzz_support.h"

#include <algorithm>

using namespace burrow;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    constexpr size_t kRequestBytes = kPcpNonceSize + 2;
    if (size < kRequestBytes) return 0;
    PcpMapRequest sent;
    std::copy(data, data + kPcpNonceSize, sent.nonce.begin());
    sent.internal_port = static_cast<uint16_t>(data[kPcpNonceSize] << 8 | data[kPcpNonceSize + 1]);
    sent.client = SocketAddress::ipv4({10, 0, 1, 2}, 0);
    const ByteView datagram(data + kRequestBytes, size - kRequestBytes);
    auto decoded = decode_pcp_map_response(datagram, sent);
    if (auto* e = std::get_if<PcpDecodeError>(&decoded)) {
        if (!datagram.empty() && datagram[0] == 0) {
            FUZZ_CHECK(*e == PcpDecodeError::kNatPmpOnly || *e == PcpDecodeError::kMalformed);
        }
        FUZZ_CHECK(to_string(*e)[0] != '?');
        return 0;
    }
    const PcpMapResponse& r = std::get<PcpMapResponse>(decoded);
    FUZZ_CHECK(datagram.size() >= kPcpMapSize && datagram[0] == kPcpVersion);
    FUZZ_CHECK(!pcp_result_text(r.result).empty());
    const Bytes again = encode_pcp_map_response(r, sent);
    auto redecoded = decode_pcp_map_response(again, sent);
    FUZZ_CHECK(std::holds_alternative<PcpMapResponse>(redecoded));
    FUZZ_CHECK(std::get<PcpMapResponse>(redecoded) == r);
    return 0;
}
