// STUN (RFC 8489; for Binding the same as RFC 5389): the codec the signalling server answers
// with and the agents use to learn their server-reflexive address. Sans-IO, pure functions.
//
// Message (all integers big-endian):
//
//    0                   1                   2                   3
//    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//   |0 0|     STUN Message Type     |         Message Length        |
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//   |                   Magic Cookie = 0x2112A442                   |
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//   |                                                               |
//   |                     Transaction ID (96 bits)                  |
//   |                                                               |
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//   |         Attribute Type        |    Attribute Value Length     |  repeated; Message Length
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+  counts every attribute
//   |          Value, padded with 0-3 bytes to a multiple of 4    ...  with its padding
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
//   Message Type: method and class interleaved, M11..M7 C1 M6..M4 C0 M3..M0 (§5).
//   Binding request 0x0001, success response 0x0101, error response 0x0111.
//
// Attributes this codec knows (types 0x0000-0x7FFF are comprehension-required, 0x8000-0xFFFF
// comprehension-optional, §14):
//
//   MAPPED-ADDRESS 0x0001       0x00 | family (1 = IPv4, 2 = IPv6) | port(16) | address(32/128)
//   XOR-MAPPED-ADDRESS 0x0020   same layout; port ^ (cookie >> 16), IPv4 address ^ cookie,
//                               IPv6 address ^ (cookie || transaction id)          (§14.2)
//   ERROR-CODE 0x0009           reserved(21) | class(3) | number(8) | UTF-8 reason  (§14.8)
//   UNKNOWN-ATTRIBUTES 0x000A   the 16-bit types a request carried but we do not know (§14.9)
//   SOFTWARE 0x8022             UTF-8 text                                        (§14.14)
//   FINGERPRINT 0x8028          CRC-32 of the message before it, xor 0x5354554E; always the
//                               last attribute; Message Length already counts it  (§14.7)
//
// MESSAGE-INTEGRITY is not implemented: like any comprehension-required attribute we do not
// know, it is reported in unknown_required, and the caller answers 420 (a request) or drops
// the message (a response), as §6.3 says.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tunnel/socket_address.h"
#include "tunnel/bytes.h"

namespace burrow {

inline constexpr uint32_t kStunMagicCookie = 0x2112A442;  // RFC 8489 §5
inline constexpr size_t kStunHeaderSize = 20;             // RFC 8489 §5
inline constexpr size_t kStunTransactionIdSize = 12;      // RFC 8489 §5: 96 bits

inline constexpr uint16_t kStunBindingRequest = 0x0001;  // RFC 8489 §18.2
inline constexpr uint16_t kStunBindingSuccess = 0x0101;
inline constexpr uint16_t kStunBindingError = 0x0111;
inline constexpr uint16_t kStunBindingIndication = 0x0011;

inline constexpr uint16_t kStunAttrMappedAddress = 0x0001;  // RFC 8489 §18.3
inline constexpr uint16_t kStunAttrMessageIntegrity = 0x0008;
inline constexpr uint16_t kStunAttrErrorCode = 0x0009;
inline constexpr uint16_t kStunAttrUnknownAttributes = 0x000A;
inline constexpr uint16_t kStunAttrMessageIntegritySha256 = 0x001C;
inline constexpr uint16_t kStunAttrXorMappedAddress = 0x0020;
inline constexpr uint16_t kStunAttrSoftware = 0x8022;
inline constexpr uint16_t kStunAttrFingerprint = 0x8028;

inline constexpr uint16_t kStunErrorUnknownAttribute = 420;  // RFC 8489 §14.8
inline constexpr uint16_t kStunErrorBadRequest = 400;

// SOFTWARE and the ERROR-CODE reason are under 128 characters: at most 509 bytes when we
// encode, and we accept up to 763 from others (RFC 8489 §14.8, §14.14).
inline constexpr size_t kStunMaxTextEncode = 509;
inline constexpr size_t kStunMaxTextDecode = 763;

using StunTransactionId = std::array<uint8_t, kStunTransactionIdSize>;

struct StunErrorCode {
    uint16_t code = 0;  // 300-699
    std::string reason;
    bool operator==(const StunErrorCode&) const = default;
};

struct StunMessage {
    uint16_t type = kStunBindingRequest;
    StunTransactionId transaction_id{};

    std::optional<SocketAddress> xor_mapped_address;
    std::optional<SocketAddress> mapped_address;  // decoded from old servers; never encoded
    std::optional<std::string> software;
    std::optional<StunErrorCode> error_code;
    std::vector<uint16_t> unknown_attributes;  // the UNKNOWN-ATTRIBUTES attribute itself
    // Encode: append a FINGERPRINT. Decoded: one was present, and it matched.
    bool fingerprint = false;

    // Decoded only: comprehension-required attribute types this codec does not understand, in
    // order of appearance, each once. A server answers a request that has any with 420 and
    // these in UNKNOWN-ATTRIBUTES; a client drops such a response.
    std::vector<uint16_t> unknown_required;

    bool operator==(const StunMessage&) const = default;
};

// The cheap test that tells STUN from burrow's session packets on one UDP port: first two bits
// zero, the magic cookie, and a Message Length that is a multiple of 4 and matches the datagram
// exactly. Session packet types (0x01-0x04) also start with two zero bits, so the cookie and the
// length do the separating: bytes 4-7 of a session packet are index and counter bytes.
bool is_stun(ByteView datagram);

// Parses and validates a whole datagram: header, every attribute's bounds and padding, known
// attributes' contents, FINGERPRINT position and value. nullopt on any error. Of repeated
// attributes the first counts (§14); attributes after MESSAGE-INTEGRITY other than
// FINGERPRINT are ignored (§14.5).
std::optional<StunMessage> decode_stun(ByteView datagram);

// Encodes XOR-MAPPED-ADDRESS, ERROR-CODE, UNKNOWN-ATTRIBUTES, SOFTWARE, then FINGERPRINT if
// asked, in that order. Preconditions (asserted): no mapped_address, no unknown_required, text
// within kStunMaxTextEncode, error code 300-699.
Bytes encode_stun(const StunMessage& m);

Bytes encode_binding_request(const StunTransactionId& txid, bool fingerprint);
// The server's answer: XOR-MAPPED-ADDRESS, SOFTWARE (left out when empty) and FINGERPRINT.
Bytes encode_binding_success(const StunTransactionId& txid, const SocketAddress& mapped,
                             std::string_view software);
// An error response with FINGERPRINT; for 420 pass the request's unknown_required.
Bytes encode_binding_error(const StunTransactionId& txid, uint16_t code, std::string_view reason,
                           std::span<const uint16_t> unknown_attributes = {});

}  // namespace burrow
