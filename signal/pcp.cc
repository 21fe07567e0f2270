#include "signal/pcp.h"

#include <algorithm>

#include "tunnel/wire.h"

namespace burrow {

namespace {

constexpr size_t kHeaderSize = kPcpHeaderSize;
constexpr uint8_t kResponseBit = 0x80;
constexpr size_t kLifetimeAt = 4;
constexpr size_t kClientIpAt = 8;
constexpr size_t kResultAt = 3;
constexpr size_t kEpochAt = 8;
// Offsets inside the MAP opcode data (§11.1), after the common header.
constexpr size_t kNonceAt = kHeaderSize;
constexpr size_t kProtocolAt = kNonceAt + kPcpNonceSize;
constexpr size_t kInternalPortAt = kProtocolAt + 4;
constexpr size_t kExternalPortAt = kInternalPortAt + 2;
constexpr size_t kExternalIpAt = kExternalPortAt + 2;
constexpr std::array<uint8_t, 12> kMappedPrefix = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

// Fixed-offset fields (the layout is the RFC's): the wire codec's big-endian writers and
// readers on the field's place. The caller has checked the size.
void put16(Bytes& b, size_t at, uint16_t v) {
    ByteWriter(MutableByteView(b).subspan(at)).u16(v);
}
void put32(Bytes& b, size_t at, uint32_t v) {
    ByteWriter(MutableByteView(b).subspan(at)).u32(v);
}
uint16_t get16(ByteView b, size_t at) {
    return ByteReader(b.subspan(at)).u16();
}
uint32_t get32(ByteView b, size_t at) {
    return ByteReader(b.subspan(at)).u32();
}

// §5: IPv4 addresses travel as IPv4-mapped IPv6 addresses.
void put_address(Bytes& b, size_t at, const SocketAddress& a) {
    if (a.v6) {
        std::copy(a.ip.begin(), a.ip.end(), b.begin() + static_cast<ptrdiff_t>(at));
        return;
    }
    std::copy(kMappedPrefix.begin(), kMappedPrefix.end(), b.begin() + static_cast<ptrdiff_t>(at));
    std::copy(a.ip.begin(), a.ip.begin() + kIpv4Size,
              b.begin() + static_cast<ptrdiff_t>(at + kMappedPrefix.size()));
}

SocketAddress get_address(ByteView b, size_t at, uint16_t port) {
    std::array<uint8_t, kIpv6Size> ip{};
    std::copy(b.begin() + static_cast<ptrdiff_t>(at),
              b.begin() + static_cast<ptrdiff_t>(at + kIpv6Size), ip.begin());
    if (std::equal(kMappedPrefix.begin(), kMappedPrefix.end(), ip.begin())) {
        return SocketAddress::ipv4({ip[12], ip[13], ip[14], ip[15]}, port);
    }
    return SocketAddress::ipv6(ip, port);
}

}  // namespace

Bytes encode_pcp_map(const PcpMapRequest& r) {
    Bytes b(kPcpMapSize, 0);
    b[0] = kPcpVersion;
    b[1] = kPcpOpcodeMap;
    put32(b, kLifetimeAt, r.lifetime_s);
    put_address(b, kClientIpAt, r.client);
    std::copy(r.nonce.begin(), r.nonce.end(), b.begin() + static_cast<ptrdiff_t>(kNonceAt));
    b[kProtocolAt] = kPcpProtocolUdp;
    put16(b, kInternalPortAt, r.internal_port);
    put16(b, kExternalPortAt, r.suggested_external_port);
    // No address suggestion: the all-zeros address of our family (§11.1).
    SocketAddress none;
    none.v6 = r.client.v6;
    put_address(b, kExternalIpAt, none);
    return b;
}

const char* to_string(PcpDecodeError e) {
    switch (e) {
        case PcpDecodeError::kMalformed:
            return "malformed PCP response";
        case PcpDecodeError::kNatPmpOnly:
            return "the gateway speaks NAT-PMP, not PCP";
        case PcpDecodeError::kOtherVersion:
            return "unknown PCP version";
        case PcpDecodeError::kNotOurs:
            return "a PCP response to another request";
    }
    return "?";
}

std::variant<PcpMapResponse, PcpDecodeError> decode_pcp_map_response(ByteView d,
                                                                     const PcpMapRequest& sent) {
    if (d.size() < 2) return PcpDecodeError::kMalformed;
    if (d[0] == 0) {
        // NAT-PMP's answer to a version it does not know: version 0, opcode 128 + ours.
        return (d[1] & kResponseBit) != 0 ? PcpDecodeError::kNatPmpOnly
                                          : PcpDecodeError::kMalformed;
    }
    if (d[0] != kPcpVersion) return PcpDecodeError::kOtherVersion;
    // §7: at least the header, a multiple of 4, at most 1100 bytes; ours is MAP.
    if (d.size() < kPcpMapSize || d.size() > kPcpMaxPacket || d.size() % 4 != 0) {
        return PcpDecodeError::kMalformed;
    }
    if (d[1] != (kResponseBit | kPcpOpcodeMap)) return PcpDecodeError::kMalformed;
    if (!std::equal(sent.nonce.begin(), sent.nonce.end(),
                    d.begin() + static_cast<ptrdiff_t>(kNonceAt)) ||
        d[kProtocolAt] != kPcpProtocolUdp || get16(d, kInternalPortAt) != sent.internal_port) {
        return PcpDecodeError::kNotOurs;
    }
    PcpMapResponse r;
    r.result = d[kResultAt];
    r.lifetime_s = get32(d, kLifetimeAt);
    r.epoch_s = get32(d, kEpochAt);
    r.external = get_address(d, kExternalIpAt, get16(d, kExternalPortAt));
    return r;
}

Bytes encode_pcp_announce(const SocketAddress& client) {
    Bytes b(kPcpHeaderSize, 0);
    b[0] = kPcpVersion;
    b[1] = kPcpOpcodeAnnounce;
    put_address(b, kClientIpAt, client);
    return b;
}

std::variant<uint8_t, PcpDecodeError> decode_pcp_announce_response(ByteView d) {
    if (d.size() < 2) return PcpDecodeError::kMalformed;
    if (d[0] == 0) {
        return (d[1] & kResponseBit) != 0 ? PcpDecodeError::kNatPmpOnly
                                          : PcpDecodeError::kMalformed;
    }
    if (d[0] != kPcpVersion) return PcpDecodeError::kOtherVersion;
    if (d.size() < kPcpHeaderSize || d.size() > kPcpMaxPacket || d.size() % 4 != 0) {
        return PcpDecodeError::kMalformed;
    }
    if (d[1] != (kResponseBit | kPcpOpcodeAnnounce)) return PcpDecodeError::kNotOurs;
    return d[kResultAt];
}

Bytes encode_pcp_map_response(const PcpMapResponse& response, const PcpMapRequest& answering) {
    Bytes b = encode_pcp_map(answering);
    b[1] = kResponseBit | kPcpOpcodeMap;
    b[kResultAt] = response.result;
    put32(b, kLifetimeAt, response.lifetime_s);
    put32(b, kEpochAt, response.epoch_s);
    std::fill(b.begin() + static_cast<ptrdiff_t>(kEpochAt + 4),
              b.begin() + static_cast<ptrdiff_t>(kHeaderSize), 0);
    put16(b, kExternalPortAt, response.external.port);
    put_address(b, kExternalIpAt, response.external);
    return b;
}

bool operator==(const PcpMapResponse& a, const PcpMapResponse& b) {
    return a.result == b.result && a.lifetime_s == b.lifetime_s && a.epoch_s == b.epoch_s &&
           a.external == b.external;
}

std::string pcp_result_text(uint8_t result) {
    static constexpr const char* kNames[] = {
        "SUCCESS",
        "UNSUPP_VERSION",
        "NOT_AUTHORIZED: the gateway refuses mappings for this client",
        "MALFORMED_REQUEST",
        "UNSUPP_OPCODE",
        "UNSUPP_OPTION",
        "MALFORMED_OPTION",
        "NETWORK_FAILURE: the gateway cannot map now",
        "NO_RESOURCES: the gateway has no mappings left",
        "UNSUPP_PROTOCOL",
        "USER_EX_QUOTA: this client holds too many mappings",
        "CANNOT_PROVIDE_EXTERNAL",
        "ADDRESS_MISMATCH: the gateway sees us at another address (a NAT between us and it)",
        "EXCESSIVE_REMOTE_PEERS",
    };
    const std::string code = " (" + std::to_string(result) + ")";
    if (result < std::size(kNames)) return kNames[result] + code;
    return "result" + code;
}

}  // namespace burrow
