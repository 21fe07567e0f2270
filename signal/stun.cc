#include "signal/stun.h"

#include <algorithm>
#include <bitset>
#include <cassert>

#include "tunnel/wire.h"

namespace burrow {
namespace {

constexpr uint8_t kStunTopBitsMask = 0xc0;  // RFC 8489 §5: the two most significant bits are 0
constexpr size_t kStunAlignment = 4;        // RFC 8489 §14: values padded to 32 bits
constexpr size_t kStunAttrHeaderSize = 4;   // type(16) + length(16)
constexpr size_t kStunLengthOffset = 2;     // Message Length follows the 16-bit type
constexpr size_t kStunMaxMessageLength = 0xffff;
constexpr uint16_t kComprehensionOptional = 0x8000;  // RFC 8489 §14: types >= 0x8000
constexpr uint32_t kFingerprintXor = 0x5354554e;     // RFC 8489 §14.7: "STUN" in ASCII
constexpr size_t kFingerprintSize = 4;

constexpr uint8_t kFamilyIpv4 = 0x01;  // RFC 8489 §14.1
constexpr uint8_t kFamilyIpv6 = 0x02;

// ERROR-CODE: the hundreds digit (class) in 3 bits, the rest (number) in 8 (§14.8).
constexpr uint32_t kErrorClassShift = 8;
constexpr uint32_t kErrorClassMask = 0x7;
constexpr uint32_t kErrorNumberMask = 0xff;
constexpr uint16_t kErrorClassMin = 3;
constexpr uint16_t kErrorClassMax = 6;
constexpr uint16_t kErrorNumberLimit = 100;

// The CRC-32 of ITU-T V.42 that §14.7 names: the one Ethernet and zlib use.
constexpr uint32_t kCrc32Polynomial = 0xedb88320;  // reflected 0x04C11DB7
constexpr uint32_t kCrc32Init = 0xffffffff;

constexpr std::array<uint32_t, 256> make_crc32_table() {
    std::array<uint32_t, 256> table{};
    for (uint32_t i = 0; i < table.size(); ++i) {
        uint32_t c = i;
        for (int bit = 0; bit < 8; ++bit) c = (c & 1) ? kCrc32Polynomial ^ (c >> 1) : c >> 1;
        table[i] = c;
    }
    return table;
}
constexpr auto kCrc32Table = make_crc32_table();

uint32_t crc32(ByteView data) {
    uint32_t c = kCrc32Init;
    for (uint8_t b : data) c = kCrc32Table[(c ^ b) & 0xff] ^ (c >> 8);
    return c ^ kCrc32Init;
}

size_t padding_for(size_t length) {
    return (kStunAlignment - length % kStunAlignment) % kStunAlignment;
}

uint16_t read_u16(const uint8_t* p) {
    return static_cast<uint16_t>(p[0] << 8 | p[1]);
}

// Bytes an address is XORed with (§14.2): the cookie, then the transaction id.
std::array<uint8_t, kIpv6Size> xor_mask(const StunTransactionId& txid) {
    std::array<uint8_t, kIpv6Size> mask{};
    for (size_t i = 0; i < sizeof(kStunMagicCookie); ++i) {
        mask[i] = static_cast<uint8_t>(kStunMagicCookie >> (8 * (3 - i)));
    }
    std::copy(txid.begin(), txid.end(), mask.begin() + sizeof(kStunMagicCookie));
    return mask;
}

// --- decoding --------------------------------------------------------------------------------

std::optional<SocketAddress> read_address(ByteView value, const StunTransactionId& txid,
                                          bool xored) {
    ByteReader r(value);
    r.u8();  // reserved: "MUST be ignored by receivers" (§14.1)
    const uint8_t family = r.u8();
    uint16_t port = r.u16();
    const size_t size = family == kFamilyIpv4 ? kIpv4Size : family == kFamilyIpv6 ? kIpv6Size : 0;
    if (size == 0 || r.remaining() != size) return std::nullopt;
    SocketAddress a;
    a.v6 = family == kFamilyIpv6;
    ByteView ip = r.bytes(size);
    std::copy(ip.begin(), ip.end(), a.ip.begin());
    if (xored) {
        port ^= static_cast<uint16_t>(kStunMagicCookie >> 16);
        const auto mask = xor_mask(txid);
        for (size_t i = 0; i < size; ++i) a.ip[i] ^= mask[i];
    }
    a.port = port;
    return a;
}

std::optional<StunErrorCode> read_error_code(ByteView value) {
    ByteReader r(value);
    const uint32_t head = r.u32();  // the 21 reserved bits are not checked: "for future use"
    if (!r.ok()) return std::nullopt;
    const auto cls = static_cast<uint16_t>((head >> kErrorClassShift) & kErrorClassMask);
    const auto number = static_cast<uint16_t>(head & kErrorNumberMask);
    ByteView reason = r.rest();
    if (cls < kErrorClassMin || cls > kErrorClassMax || number >= kErrorNumberLimit ||
        reason.size() > kStunMaxTextDecode) {
        return std::nullopt;
    }
    return StunErrorCode{static_cast<uint16_t>(cls * kErrorNumberLimit + number),
                         std::string(as_chars(reason))};
}

std::optional<std::vector<uint16_t>> read_unknown_attributes(ByteView value) {
    if (value.size() % sizeof(uint16_t) != 0) return std::nullopt;
    std::vector<uint16_t> types;
    for (size_t i = 0; i < value.size(); i += sizeof(uint16_t)) {
        types.push_back(read_u16(&value[i]));
    }
    return types;
}

// What decoding remembers beyond the message itself.
struct DecodeState {
    bool have_unknown_attributes = false;
    // Comprehension-required types already reported: a bitmap keeps a datagram stuffed with
    // thousands of distinct unknown types linear to decode.
    std::bitset<kComprehensionOptional> reported;
};

// Applies one attribute to m; false if it is malformed. Repeated attributes: the first counts,
// but every copy must still be well-formed.
bool apply_attribute(uint16_t type, ByteView value, StunMessage& m, DecodeState& state) {
    switch (type) {
        case kStunAttrXorMappedAddress:
        case kStunAttrMappedAddress: {
            const bool xored = type == kStunAttrXorMappedAddress;
            auto a = read_address(value, m.transaction_id, xored);
            if (!a) return false;
            auto& slot = xored ? m.xor_mapped_address : m.mapped_address;
            if (!slot) slot = a;
            return true;
        }
        case kStunAttrSoftware:
            if (value.size() > kStunMaxTextDecode) return false;
            if (!m.software) m.software = std::string(as_chars(value));
            return true;
        case kStunAttrErrorCode: {
            auto e = read_error_code(value);
            if (!e) return false;
            if (!m.error_code) m.error_code = std::move(e);
            return true;
        }
        case kStunAttrUnknownAttributes: {
            auto types = read_unknown_attributes(value);
            if (!types) return false;
            if (!state.have_unknown_attributes) m.unknown_attributes = std::move(*types);
            state.have_unknown_attributes = true;
            return true;
        }
        default:
            if (type < kComprehensionOptional && !state.reported.test(type)) {
                state.reported.set(type);
                m.unknown_required.push_back(type);
            }
            return true;  // comprehension-optional: skipped (§14)
    }
}

// --- encoding --------------------------------------------------------------------------------

void put_attribute(ByteWriter& w, uint16_t type, ByteView value) {
    assert(value.size() <= kStunMaxMessageLength);
    w.u16(type);
    w.u16(static_cast<uint16_t>(value.size()));
    w.bytes(value);
    for (size_t i = 0; i < padding_for(value.size()); ++i) w.u8(0);
}

Bytes xor_address_value(const SocketAddress& a, const StunTransactionId& txid) {
    Bytes v;
    ByteWriter w(v);
    w.u8(0);
    w.u8(a.v6 ? kFamilyIpv6 : kFamilyIpv4);
    w.u16(static_cast<uint16_t>(a.port ^ (kStunMagicCookie >> 16)));
    const auto mask = xor_mask(txid);
    const ByteView ip = a.ip_bytes();
    for (size_t i = 0; i < ip.size(); ++i) w.u8(static_cast<uint8_t>(ip[i] ^ mask[i]));
    return v;
}

Bytes error_code_value(const StunErrorCode& e) {
    assert(e.code >= kErrorClassMin * kErrorNumberLimit &&
           e.code < (kErrorClassMax + 1) * kErrorNumberLimit);
    assert(e.reason.size() <= kStunMaxTextEncode);
    Bytes v;
    ByteWriter w(v);
    const uint32_t cls = e.code / kErrorNumberLimit;
    const uint32_t number = e.code % kErrorNumberLimit;
    w.u32(cls << kErrorClassShift | number);
    w.bytes(as_bytes(e.reason));
    return v;
}

void set_message_length(Bytes& out, size_t length) {
    assert(length <= kStunMaxMessageLength);
    out[kStunLengthOffset] = static_cast<uint8_t>(length >> 8);
    out[kStunLengthOffset + 1] = static_cast<uint8_t>(length);
}

}  // namespace

bool is_stun(ByteView d) {
    if (d.size() < kStunHeaderSize || (d[0] & kStunTopBitsMask) != 0) return false;
    ByteReader r(d.subspan(kStunLengthOffset));
    const uint16_t length = r.u16();
    const uint32_t cookie = r.u32();
    return cookie == kStunMagicCookie && length % kStunAlignment == 0 &&
           length == d.size() - kStunHeaderSize;
}

std::optional<StunMessage> decode_stun(ByteView d) {
    if (!is_stun(d)) return std::nullopt;
    StunMessage m;
    ByteReader r(d);
    m.type = r.u16();
    r.u16();  // length and cookie: checked by is_stun
    r.u32();
    ByteView txid = r.bytes(kStunTransactionIdSize);
    std::copy(txid.begin(), txid.end(), m.transaction_id.begin());

    DecodeState state;
    bool after_integrity = false;
    while (r.ok() && !r.empty()) {
        const size_t attr_start = r.position();
        const uint16_t type = r.u16();
        const uint16_t length = r.u16();
        const ByteView value = r.bytes(length);
        r.bytes(padding_for(length));                       // padding content is ignored (§14)
        if (!r.ok() || m.fingerprint) return std::nullopt;  // overrun, or after FINGERPRINT
        if (type == kStunAttrFingerprint) {
            if (value.size() != kFingerprintSize) return std::nullopt;
            ByteReader fr(value);
            if (fr.u32() != (crc32(d.first(attr_start)) ^ kFingerprintXor)) return std::nullopt;
            m.fingerprint = true;
            continue;
        }
        // An integrity check covers only what precedes it, so what follows is not trusted.
        if (after_integrity && type != kStunAttrMessageIntegritySha256) continue;
        if (type == kStunAttrMessageIntegrity || type == kStunAttrMessageIntegritySha256) {
            after_integrity = true;
        }
        if (!apply_attribute(type, value, m, state)) return std::nullopt;
    }
    if (!r.ok()) return std::nullopt;
    return m;
}

Bytes encode_stun(const StunMessage& m) {
    assert((m.type >> 8 & kStunTopBitsMask) == 0);
    assert(!m.mapped_address);
    assert(m.unknown_required.empty());
    Bytes out;
    ByteWriter w(out);
    w.u16(m.type);
    w.u16(0);  // Message Length, set below
    w.u32(kStunMagicCookie);
    w.bytes(m.transaction_id);
    if (m.xor_mapped_address) {
        put_attribute(w, kStunAttrXorMappedAddress,
                      xor_address_value(*m.xor_mapped_address, m.transaction_id));
    }
    if (m.error_code) put_attribute(w, kStunAttrErrorCode, error_code_value(*m.error_code));
    if (!m.unknown_attributes.empty()) {
        Bytes v;
        ByteWriter vw(v);
        for (uint16_t t : m.unknown_attributes) vw.u16(t);
        put_attribute(w, kStunAttrUnknownAttributes, v);
    }
    if (m.software) {
        assert(m.software->size() <= kStunMaxTextEncode);
        put_attribute(w, kStunAttrSoftware, as_bytes(*m.software));
    }
    if (!m.fingerprint) {
        set_message_length(out, out.size() - kStunHeaderSize);
        return out;
    }
    // The CRC covers the header with a length that already counts the FINGERPRINT (§14.7).
    set_message_length(out, out.size() - kStunHeaderSize + kStunAttrHeaderSize + kFingerprintSize);
    const uint32_t crc = crc32(out) ^ kFingerprintXor;
    w.u16(kStunAttrFingerprint);
    w.u16(kFingerprintSize);
    w.u32(crc);
    return out;
}

Bytes encode_binding_request(const StunTransactionId& txid, bool fingerprint) {
    StunMessage m;
    m.type = kStunBindingRequest;
    m.transaction_id = txid;
    m.fingerprint = fingerprint;
    return encode_stun(m);
}

Bytes encode_binding_success(const StunTransactionId& txid, const SocketAddress& mapped,
                             std::string_view software) {
    StunMessage m;
    m.type = kStunBindingSuccess;
    m.transaction_id = txid;
    m.xor_mapped_address = mapped;
    if (!software.empty()) m.software = std::string(software);
    m.fingerprint = true;
    return encode_stun(m);
}

Bytes encode_binding_error(const StunTransactionId& txid, uint16_t code, std::string_view reason,
                           std::span<const uint16_t> unknown_attributes) {
    StunMessage m;
    m.type = kStunBindingError;
    m.transaction_id = txid;
    m.error_code = StunErrorCode{code, std::string(reason)};
    m.unknown_attributes.assign(unknown_attributes.begin(), unknown_attributes.end());
    m.fingerprint = true;
    return encode_stun(m);
}

}  // namespace burrow
