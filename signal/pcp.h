// PCP (RFC 6887), the MAP opcode only: asking the gateway for a UDP port mapping of the agent's
// session socket, as UPnP IGD and NAT-PMP do (signal/port_mapper.h). Sans-IO, pure functions;
// src/port_mapping.cc sends and receives. No library for PCP is packaged in Debian, so the codec
// is ours (tests/fuzz/pcp_fuzz.cc fuzzes the decoder).
//
// Request, 60 bytes (all integers big-endian):
//
//    0                   1                   2                   3
//    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//   |  Version = 2  |R|  Opcode 1   |         Reserved (0)          |  §7.1; R = 0: request
//   |                 Requested Lifetime (seconds)                  |
//   |        PCP Client's IP Address (128 bits; IPv4 as ::ffff:a.b.c.d)        ...
//   |               Mapping Nonce (96 bits)                       ...  §11.1: MAP
//   |   Protocol    |          Reserved (24 bits)                   |  17 = UDP
//   |        Internal Port          |    Suggested External Port    |
//   |        Suggested External IP Address (128 bits)                 ...
//
// Response, 60 bytes: Version 2, R = 1 with the opcode, a reserved byte, the Result Code (§7.4),
// the Lifetime granted, the server's Epoch Time, 96 reserved bits, then the same MAP layout with
// the Assigned External Port and Address. A server that speaks only NAT-PMP answers a version 2
// request with a version 0 packet (RFC 6887 §9, RFC 6886 §3.5): we then ask with NAT-PMP.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <variant>

#include "tunnel/bytes.h"
#include "tunnel/socket_address.h"

namespace burrow {

inline constexpr uint16_t kPcpServerPort = 5351;  // RFC 6887 §19.1
inline constexpr size_t kPcpMapSize = 60;          // common header (24) + MAP (36)
inline constexpr size_t kPcpMaxPacket = 1100;      // RFC 6887 §7: PCP messages fit in 1100
inline constexpr size_t kPcpNonceSize = 12;
inline constexpr uint8_t kPcpVersion = 2;
inline constexpr uint8_t kPcpOpcodeMap = 1;
inline constexpr uint8_t kPcpProtocolUdp = 17;

using PcpNonce = std::array<uint8_t, kPcpNonceSize>;

struct PcpMapRequest {
    PcpNonce nonce{};           // random, kept for the mapping's renewals and its delete (§11.2)
    SocketAddress client;       // our address towards the gateway (its port is not used)
    uint16_t internal_port = 0;
    uint16_t suggested_external_port = 0;  // 0: no suggestion
    uint32_t lifetime_s = 0;               // 0 deletes the mapping (§15)
};

Bytes encode_pcp_map(const PcpMapRequest& request);

// A MAP response that answers the request (same nonce, protocol and internal port).
struct PcpMapResponse {
    uint8_t result = 0;  // 0 = SUCCESS; otherwise pcp_result_text()
    uint32_t lifetime_s = 0;
    uint32_t epoch_s = 0;
    SocketAddress external;  // assigned address and port (meaningful on SUCCESS)
};

// Why a datagram is no answer to our request.
enum class PcpDecodeError : uint8_t {
    kMalformed,    // too short, not a response, not MAP, or a reserved address form
    kNatPmpOnly,   // version 0: the gateway speaks NAT-PMP, not PCP
    kOtherVersion, // a version that is neither 0 nor 2
    kNotOurs,      // a MAP response for another nonce, protocol or port: keep waiting
};
const char* to_string(PcpDecodeError e);

std::variant<PcpMapResponse, PcpDecodeError> decode_pcp_map_response(ByteView datagram,
                                                                     const PcpMapRequest& sent);
// The gateway's side, for tests and the fuzzer's round trip: the response to `answering`.
Bytes encode_pcp_map_response(const PcpMapResponse& response, const PcpMapRequest& answering);

bool operator==(const PcpMapResponse& a, const PcpMapResponse& b);

// ANNOUNCE (opcode 0, §14.1): a bare header that asks for nothing; a PCP server answers it with
// its result and epoch. `burrow netcheck` uses it to see whether the gateway speaks PCP.
inline constexpr uint8_t kPcpOpcodeAnnounce = 0;
inline constexpr size_t kPcpHeaderSize = 24;
Bytes encode_pcp_announce(const SocketAddress& client);
// The result code of an ANNOUNCE response, or why the datagram is not one.
std::variant<uint8_t, PcpDecodeError> decode_pcp_announce_response(ByteView datagram);

// "NOT_AUTHORIZED (2): the gateway refuses mappings for this client", and so on (§7.4).
std::string pcp_result_text(uint8_t result);

}  // namespace burrow
