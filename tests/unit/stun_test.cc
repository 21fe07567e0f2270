#include <catch2/catch.hpp>

#include "signal/stun.h"
#include "tunnel/packet.h"
#include "tunnel/rng.h"
#include "tunnel/wire.h"

using namespace burrow;

namespace {

// RFC 5769 §2: all three samples share this transaction id.
const StunTransactionId kRfc5769TxId = {0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34,
                                        0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae};

// clang-format off
// RFC 5769 §2.1 Sample Request (SOFTWARE, PRIORITY, ICE-CONTROLLED, USERNAME padded with
// spaces, MESSAGE-INTEGRITY, FINGERPRINT).
const Bytes kSampleRequest = {
    0x00, 0x01, 0x00, 0x58, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01,
    0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
    0x80, 0x22, 0x00, 0x10, 0x53, 0x54, 0x55, 0x4e, 0x20, 0x74, 0x65, 0x73,
    0x74, 0x20, 0x63, 0x6c, 0x69, 0x65, 0x6e, 0x74,
    0x00, 0x24, 0x00, 0x04, 0x6e, 0x00, 0x01, 0xff,
    0x80, 0x29, 0x00, 0x08, 0x93, 0x2f, 0xf9, 0xb1, 0x51, 0x26, 0x3b, 0x36,
    0x00, 0x06, 0x00, 0x09, 0x65, 0x76, 0x74, 0x6a, 0x3a, 0x68, 0x36, 0x76,
    0x59, 0x20, 0x20, 0x20,
    0x00, 0x08, 0x00, 0x14, 0x9a, 0xea, 0xa7, 0x0c, 0xbf, 0xd8, 0xcb, 0x56,
    0x78, 0x1e, 0xf2, 0xb5, 0xb2, 0xd3, 0xf2, 0x49, 0xc1, 0xb5, 0x71, 0xa2,
    0x80, 0x28, 0x00, 0x04, 0xe5, 0x7a, 0x3b, 0xcf,
};
// RFC 5769 §2.2 Sample IPv4 Response (SOFTWARE, XOR-MAPPED-ADDRESS, MESSAGE-INTEGRITY,
// FINGERPRINT).
const Bytes kSampleIpv4Response = {
    0x01, 0x01, 0x00, 0x3c, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01,
    0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
    0x80, 0x22, 0x00, 0x0b, 0x74, 0x65, 0x73, 0x74, 0x20, 0x76, 0x65, 0x63,
    0x74, 0x6f, 0x72, 0x20,
    0x00, 0x20, 0x00, 0x08, 0x00, 0x01, 0xa1, 0x47, 0xe1, 0x12, 0xa6, 0x43,
    0x00, 0x08, 0x00, 0x14, 0x2b, 0x91, 0xf5, 0x99, 0xfd, 0x9e, 0x90, 0xc3,
    0x8c, 0x74, 0x89, 0xf9, 0x2a, 0xf9, 0xba, 0x53, 0xf0, 0x6b, 0xe7, 0xd7,
    0x80, 0x28, 0x00, 0x04, 0xc0, 0x7d, 0x4c, 0x96,
};
// RFC 5769 §2.3 Sample IPv6 Response.
const Bytes kSampleIpv6Response = {
    0x01, 0x01, 0x00, 0x48, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01,
    0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
    0x80, 0x22, 0x00, 0x0b, 0x74, 0x65, 0x73, 0x74, 0x20, 0x76, 0x65, 0x63,
    0x74, 0x6f, 0x72, 0x20,
    0x00, 0x20, 0x00, 0x14, 0x00, 0x02, 0xa1, 0x47, 0x01, 0x13, 0xa9, 0xfa,
    0xa5, 0xd3, 0xf1, 0x79, 0xbc, 0x25, 0xf4, 0xb5, 0xbe, 0xd2, 0xb9, 0xd9,
    0x00, 0x08, 0x00, 0x14, 0xa3, 0x82, 0x95, 0x4e, 0x4b, 0xe6, 0x7b, 0xf1,
    0x17, 0x84, 0xc9, 0x7c, 0x82, 0x92, 0xc2, 0x75, 0xbf, 0xe3, 0xed, 0x41,
    0x80, 0x28, 0x00, 0x04, 0xc8, 0xfb, 0x0b, 0x4c,
};
// clang-format on

// The bytes of the first attribute of `type` (header, value and padding) in a message.
Bytes find_attribute(ByteView msg, uint16_t type) {
    size_t pos = kStunHeaderSize;
    while (pos + 4 <= msg.size()) {
        const uint16_t t = static_cast<uint16_t>(msg[pos] << 8 | msg[pos + 1]);
        const size_t len = static_cast<size_t>(msg[pos + 2] << 8 | msg[pos + 3]);
        const size_t total = 4 + (len + 3) / 4 * 4;
        if (t == type) return Bytes(msg.begin() + pos, msg.begin() + pos + total);
        pos += total;
    }
    return {};
}

// A message built by hand around raw attribute bytes, so tests can say what no encoder would.
Bytes message(uint16_t type, const StunTransactionId& txid, const Bytes& attributes) {
    Bytes out;
    ByteWriter w(out);
    w.u16(type);
    w.u16(static_cast<uint16_t>(attributes.size()));
    w.u32(kStunMagicCookie);
    w.bytes(txid);
    w.bytes(attributes);
    return out;
}

void set_length(Bytes& msg, size_t length) {
    msg[2] = static_cast<uint8_t>(length >> 8);
    msg[3] = static_cast<uint8_t>(length);
}

// Bit by bit, independent of the table-driven one under test.
uint32_t reference_crc32(ByteView data) {
    uint32_t crc = 0xffffffff;
    for (uint8_t b : data) {
        crc ^= b;
        for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xedb88320u & (0u - (crc & 1u)));
    }
    return ~crc;
}

// Appends a FINGERPRINT whose CRC is right for a Message Length that also counts `extra`
// value bytes after the CRC and `trailing` bytes of attributes after it.
void append_fingerprint(Bytes& msg, const Bytes& extra = {}, size_t trailing = 0) {
    const size_t attr_len = 4 + extra.size();
    set_length(msg, msg.size() - kStunHeaderSize + 4 + attr_len + trailing);
    const uint32_t crc = reference_crc32(msg) ^ 0x5354554e;
    ByteWriter w(msg);
    w.u16(kStunAttrFingerprint);
    w.u16(static_cast<uint16_t>(attr_len));
    w.u32(crc);
    w.bytes(extra);
}

StunTransactionId random_txid(Rng& rng) {
    StunTransactionId id;
    rng.fill(id);
    return id;
}

SocketAddress random_address(Rng& rng) {
    SocketAddress a;
    a.v6 = rng.chance(0.5);
    rng.fill(std::span(a.ip).first(a.v6 ? kIpv6Size : kIpv4Size));
    a.port = static_cast<uint16_t>(rng.next_u64());
    return a;
}

std::string random_text(Rng& rng, size_t max_len) {
    std::string s(rng.uniform(max_len + 1), '\0');
    for (char& c : s) c = static_cast<char>(rng.uniform(256));
    return s;
}

StunMessage random_message(Rng& rng) {
    StunMessage m;
    m.type = static_cast<uint16_t>(rng.uniform(0x4000));  // 14 bits
    m.transaction_id = random_txid(rng);
    if (rng.chance(0.6)) m.xor_mapped_address = random_address(rng);
    if (rng.chance(0.5)) m.software = random_text(rng, rng.chance(0.1) ? kStunMaxTextEncode : 20);
    if (rng.chance(0.3)) {
        m.error_code = StunErrorCode{static_cast<uint16_t>(300 + rng.uniform(400)),
                                     random_text(rng, rng.chance(0.1) ? kStunMaxTextEncode : 20)};
    }
    if (rng.chance(0.2)) {
        const size_t n = 1 + rng.uniform(6);
        for (size_t i = 0; i < n; ++i) {
            m.unknown_attributes.push_back(static_cast<uint16_t>(rng.next_u64()));
        }
    }
    m.fingerprint = rng.chance(0.5);
    return m;
}

}  // namespace

TEST_CASE("RFC 5769 sample request: header, attributes and fingerprint") {
    REQUIRE(is_stun(kSampleRequest));
    const auto m = decode_stun(kSampleRequest);
    REQUIRE(m.has_value());
    CHECK(m->type == kStunBindingRequest);
    CHECK(m->transaction_id == kRfc5769TxId);
    CHECK(m->software == "STUN test client");
    CHECK(m->fingerprint);
    CHECK_FALSE(m->xor_mapped_address.has_value());
    // PRIORITY and USERNAME are ICE's, MESSAGE-INTEGRITY is not implemented: all three are
    // comprehension-required, so they are reported. ICE-CONTROLLED (0x8029) is optional.
    CHECK(m->unknown_required == std::vector<uint16_t>{0x0024, 0x0006, kStunAttrMessageIntegrity});
}

TEST_CASE("RFC 5769 sample IPv4 response: XOR-MAPPED-ADDRESS and fingerprint") {
    REQUIRE(is_stun(kSampleIpv4Response));
    const auto m = decode_stun(kSampleIpv4Response);
    REQUIRE(m.has_value());
    CHECK(m->type == kStunBindingSuccess);
    CHECK(m->transaction_id == kRfc5769TxId);
    CHECK(m->software == "test vector");
    CHECK(m->fingerprint);
    REQUIRE(m->xor_mapped_address.has_value());
    CHECK(to_string(*m->xor_mapped_address) == "192.0.2.1:32853");
    CHECK(m->unknown_required == std::vector<uint16_t>{kStunAttrMessageIntegrity});
}

TEST_CASE("RFC 5769 sample IPv6 response: XOR-MAPPED-ADDRESS and fingerprint") {
    REQUIRE(is_stun(kSampleIpv6Response));
    const auto m = decode_stun(kSampleIpv6Response);
    REQUIRE(m.has_value());
    CHECK(m->type == kStunBindingSuccess);
    CHECK(m->software == "test vector");
    CHECK(m->fingerprint);
    REQUIRE(m->xor_mapped_address.has_value());
    CHECK(to_string(*m->xor_mapped_address) == "[2001:db8:1234:5678:11:2233:4455:6677]:32853");
}

TEST_CASE("our XOR-MAPPED-ADDRESS encoding matches the RFC 5769 bytes") {
    const auto v4 = parse_socket_address("192.0.2.1:32853");
    const auto v6 = parse_socket_address("[2001:db8:1234:5678:11:2233:4455:6677]:32853");
    REQUIRE(v4);
    REQUIRE(v6);
    CHECK(
        find_attribute(encode_binding_success(kRfc5769TxId, *v4, ""), kStunAttrXorMappedAddress) ==
        find_attribute(kSampleIpv4Response, kStunAttrXorMappedAddress));
    CHECK(
        find_attribute(encode_binding_success(kRfc5769TxId, *v6, ""), kStunAttrXorMappedAddress) ==
        find_attribute(kSampleIpv6Response, kStunAttrXorMappedAddress));
    CHECK_FALSE(find_attribute(kSampleIpv6Response, kStunAttrXorMappedAddress).empty());
}

TEST_CASE("no single bit flip gets past the fingerprint") {
    // A flip in a length or type field can make the FINGERPRINT vanish (swallowed by another
    // attribute, or renamed to an unknown one); a message without one is legal, so the decoder
    // may accept it, but never as fingerprinted. A flip anywhere else is always rejected.
    for (const Bytes* vector : {&kSampleRequest, &kSampleIpv4Response, &kSampleIpv6Response}) {
        std::vector<bool> in_header(vector->size(), false);
        in_header[2] = in_header[3] = true;  // Message Length
        for (size_t pos = kStunHeaderSize; pos < vector->size();) {
            for (size_t k = 0; k < 4; ++k) in_header[pos + k] = true;
            const size_t len = static_cast<size_t>((*vector)[pos + 2] << 8 | (*vector)[pos + 3]);
            pos += 4 + (len + 3) / 4 * 4;
        }
        for (size_t i = 0; i < vector->size(); ++i) {
            for (int bit = 0; bit < 8; ++bit) {
                INFO("byte " << i << " bit " << bit);
                Bytes flipped = *vector;
                flipped[i] ^= static_cast<uint8_t>(1 << bit);
                const auto m = decode_stun(flipped);
                if (in_header[i]) {
                    CHECK((!m || !m->fingerprint));
                } else {
                    CHECK_FALSE(m.has_value());
                }
            }
        }
    }
}

TEST_CASE("binding request layout") {
    const StunTransactionId txid = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    const Bytes plain = encode_binding_request(txid, false);
    CHECK(plain == Bytes{0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42, 1,  2,
                         3,    4,    5,    6,    7,    8,    9,    10,   11, 12});
    const auto m = decode_stun(plain);
    REQUIRE(m.has_value());
    CHECK(m->type == kStunBindingRequest);
    CHECK(m->transaction_id == txid);
    CHECK_FALSE(m->fingerprint);

    const Bytes with_fp = encode_binding_request(txid, true);
    REQUIRE(with_fp.size() == kStunHeaderSize + 8);
    CHECK(with_fp[3] == 8);  // the length counts the FINGERPRINT
    CHECK(Bytes(with_fp.begin() + 20, with_fp.begin() + 24) == Bytes{0x80, 0x28, 0x00, 0x04});
    const auto f = decode_stun(with_fp);
    REQUIRE(f.has_value());
    CHECK(f->fingerprint);
}

TEST_CASE("binding success responses decode to what was sent") {
    for (uint64_t seed = 1; seed <= 500; ++seed) {
        INFO("seed " << seed);
        SeededRng rng(seed);
        const auto txid = random_txid(rng);
        const auto mapped = random_address(rng);
        const std::string software = rng.chance(0.3) ? "" : "burrow 0.1";
        const Bytes wire = encode_binding_success(txid, mapped, software);
        CHECK(wire.size() % 4 == 0);
        CHECK(is_stun(wire));
        const auto m = decode_stun(wire);
        REQUIRE(m.has_value());
        CHECK(m->type == kStunBindingSuccess);
        CHECK(m->transaction_id == txid);
        CHECK(m->xor_mapped_address == mapped);
        CHECK(m->fingerprint);
        CHECK(m->software == (software.empty() ? std::nullopt : std::optional(software)));
        CHECK(m->unknown_required.empty());
    }
}

TEST_CASE("a 420 error response carries the unknown attributes") {
    const StunTransactionId txid{};
    const auto request = decode_stun(kSampleRequest);
    REQUIRE(request);
    const Bytes wire = encode_binding_error(txid, kStunErrorUnknownAttribute, "Unknown Attribute",
                                            request->unknown_required);
    const auto m = decode_stun(wire);
    REQUIRE(m.has_value());
    CHECK(m->type == kStunBindingError);
    REQUIRE(m->error_code.has_value());
    CHECK(m->error_code->code == 420);
    CHECK(m->error_code->reason == "Unknown Attribute");
    CHECK(m->unknown_attributes == request->unknown_required);
    // Class 4, number 20 (RFC 8489 §14.8).
    const Bytes attr = find_attribute(wire, kStunAttrErrorCode);
    REQUIRE(attr.size() >= 8);
    CHECK(Bytes(attr.begin() + 4, attr.begin() + 8) == Bytes{0, 0, 4, 20});
}

TEST_CASE("random messages round-trip through the general encoder") {
    for (uint64_t seed = 1; seed <= 2000; ++seed) {
        INFO("seed " << seed);
        SeededRng rng(seed);
        const StunMessage m = random_message(rng);
        const Bytes wire = encode_stun(m);
        REQUIRE(is_stun(wire));
        const auto back = decode_stun(wire);
        REQUIRE(back.has_value());
        CHECK(*back == m);
    }
}

TEST_CASE("every strict prefix is rejected") {
    for (const Bytes* vector : {&kSampleRequest, &kSampleIpv4Response, &kSampleIpv6Response}) {
        for (size_t n = 0; n < vector->size(); ++n) {
            INFO("length " << n);
            const ByteView prefix = ByteView(*vector).first(n);
            CHECK_FALSE(is_stun(prefix));
            CHECK_FALSE(decode_stun(prefix).has_value());
        }
    }
}

TEST_CASE("a length that cuts an attribute is rejected, one at its end is not") {
    // Without the FINGERPRINT a message may legitimately end after any attribute.
    SeededRng rng(7);
    StunMessage m;
    m.type = kStunBindingSuccess;
    m.transaction_id = random_txid(rng);
    m.xor_mapped_address = SocketAddress::ipv4({10, 0, 0, 1}, 4242);
    m.software = "abcde";
    const Bytes wire = encode_stun(m);
    const size_t first_end = kStunHeaderSize + 12;  // XOR-MAPPED-ADDRESS, IPv4
    for (size_t cut = kStunHeaderSize; cut < wire.size(); cut += 4) {
        INFO("cut " << cut);
        Bytes shorter(wire.begin(), wire.begin() + static_cast<std::ptrdiff_t>(cut));
        set_length(shorter, cut - kStunHeaderSize);
        REQUIRE(is_stun(shorter));
        const auto decoded = decode_stun(shorter);
        if (cut == kStunHeaderSize || cut == first_end) {
            REQUIRE(decoded.has_value());
            CHECK(decoded->xor_mapped_address.has_value() == (cut == first_end));
            CHECK_FALSE(decoded->software.has_value());
        } else {
            CHECK_FALSE(decoded.has_value());
        }
    }
}

TEST_CASE("the demultiplexing check") {
    const Bytes good = encode_binding_request({}, false);
    CHECK(is_stun(good));

    SECTION("bad magic cookie") {
        Bytes b = good;
        b[7] ^= 0x01;
        CHECK_FALSE(is_stun(b));
        CHECK_FALSE(decode_stun(b).has_value());
    }
    SECTION("top two bits set") {
        for (uint8_t top : {0x40, 0x80, 0xc0}) {
            Bytes b = good;
            b[0] |= top;
            CHECK_FALSE(is_stun(b));
            CHECK_FALSE(decode_stun(b).has_value());
        }
    }
    SECTION("length not a multiple of 4") {
        Bytes b = good;
        b.push_back(0);
        b.push_back(0);
        set_length(b, 2);
        CHECK_FALSE(is_stun(b));
    }
    SECTION("length does not match the datagram") {
        Bytes b = good;
        b.insert(b.end(), 4, 0);
        CHECK_FALSE(is_stun(b));  // length field still says 0
        set_length(b, 8);
        CHECK_FALSE(is_stun(b));  // says 8, datagram has 4 more
    }
    SECTION("session packets are never taken for STUN") {
        for (uint64_t seed = 1; seed <= 2000; ++seed) {
            INFO("seed " << seed);
            SeededRng rng(seed);
            NullProtection p(static_cast<uint32_t>(rng.next_u64()));
            Bytes payload(rng.uniform(64));
            rng.fill(payload);
            Bytes datagram;
            REQUIRE(p.seal(rng.next_u64(), payload, datagram));
            CHECK_FALSE(is_stun(datagram));
        }
    }
}

TEST_CASE("the fingerprint is CRC-32 of what precedes it, xor 0x5354554E") {
    CHECK(reference_crc32(as_bytes("123456789")) == 0xcbf43926);  // the standard check value
    for (uint64_t seed = 1; seed <= 200; ++seed) {
        INFO("seed " << seed);
        SeededRng rng(seed);
        StunMessage m = random_message(rng);
        m.fingerprint = true;
        const Bytes wire = encode_stun(m);
        const ByteView covered = ByteView(wire).first(wire.size() - 8);
        const uint32_t expected = reference_crc32(covered) ^ 0x5354554e;
        CHECK(Bytes(wire.end() - 4, wire.end()) ==
              Bytes{static_cast<uint8_t>(expected >> 24), static_cast<uint8_t>(expected >> 16),
                    static_cast<uint8_t>(expected >> 8), static_cast<uint8_t>(expected)});
    }
}

TEST_CASE("fingerprint problems are rejected") {
    const StunTransactionId txid = {9, 9, 9};
    const Bytes good = encode_binding_request(txid, true);
    REQUIRE(decode_stun(good).has_value());
    Bytes rebuilt = message(kStunBindingRequest, txid, {});
    append_fingerprint(rebuilt);
    REQUIRE(rebuilt == good);

    SECTION("wrong value") {
        Bytes b = good;
        b.back() ^= 0xff;
        CHECK(is_stun(b));  // the cheap check does not look at it
        CHECK_FALSE(decode_stun(b).has_value());
    }
    SECTION("not the last attribute, even with a correct CRC") {
        const Bytes optional_attr = {0x80, 0x99, 0x00, 0x00};
        Bytes b = message(kStunBindingRequest, txid, {});
        append_fingerprint(b, {}, optional_attr.size());
        b.insert(b.end(), optional_attr.begin(), optional_attr.end());
        REQUIRE(is_stun(b));
        CHECK_FALSE(decode_stun(b).has_value());
    }
    SECTION("a value longer than 4 bytes, even with a correct CRC in front") {
        Bytes b = message(kStunBindingRequest, txid, {});
        append_fingerprint(b, {0, 0, 0, 0});
        REQUIRE(is_stun(b));
        CHECK_FALSE(decode_stun(b).has_value());
    }
    SECTION("computed with a length that does not count it") {
        Bytes b = message(kStunBindingRequest, txid, {});
        const uint32_t crc = reference_crc32(b) ^ 0x5354554e;
        ByteWriter w(b);
        w.u16(kStunAttrFingerprint);
        w.u16(4);
        w.u32(crc);
        set_length(b, 8);
        CHECK_FALSE(decode_stun(b).has_value());
    }
}

TEST_CASE("attributes we do not know") {
    const StunTransactionId txid = {1};
    SECTION("comprehension-optional ones are skipped") {
        const Bytes attrs = {0x80, 0x99, 0x00, 0x03, 'a', 'b', 'c', 0, 0xff, 0xff, 0x00, 0x00};
        const auto m = decode_stun(message(kStunBindingRequest, txid, attrs));
        REQUIRE(m.has_value());
        CHECK(m->unknown_required.empty());
    }
    SECTION("comprehension-required ones are reported once each, in order") {
        const Bytes attrs = {0x7f, 0xff, 0x00, 0x00, 0x00, 0x25, 0x00, 0x01, 'x',  0,
                             0,    0,    0x7f, 0xff, 0x00, 0x00, 0x80, 0x99, 0x00, 0x00};
        const auto m = decode_stun(message(kStunBindingRequest, txid, attrs));
        REQUIRE(m.has_value());
        CHECK(m->unknown_required == std::vector<uint16_t>{0x7fff, 0x0025});
    }
    SECTION("what follows MESSAGE-INTEGRITY is ignored, except FINGERPRINT") {
        Bytes attrs = {0x00, 0x08, 0x00, 0x14};
        attrs.insert(attrs.end(), 20, 0xaa);
        const Bytes late_software = {0x80, 0x22, 0x00, 0x02, 'h', 'i', 0, 0};
        const Bytes late_unknown = {0x00, 0x77, 0x00, 0x00};
        attrs.insert(attrs.end(), late_software.begin(), late_software.end());
        attrs.insert(attrs.end(), late_unknown.begin(), late_unknown.end());
        const auto m = decode_stun(message(kStunBindingRequest, txid, attrs));
        REQUIRE(m.has_value());
        CHECK_FALSE(m->software.has_value());
        CHECK(m->unknown_required == std::vector<uint16_t>{kStunAttrMessageIntegrity});
    }
    SECTION("thousands of distinct unknown types decode") {
        Bytes attrs;
        for (uint16_t t = 0x4000; t < 0x4000 + 4000; ++t) {
            attrs.push_back(static_cast<uint8_t>(t >> 8));
            attrs.push_back(static_cast<uint8_t>(t));
            attrs.push_back(0);
            attrs.push_back(0);
        }
        const auto m = decode_stun(message(kStunBindingRequest, txid, attrs));
        REQUIRE(m.has_value());
        CHECK(m->unknown_required.size() == 4000);
    }
}

TEST_CASE("known attributes are checked") {
    const StunTransactionId txid = {};
    const auto decodes = [&](const Bytes& attrs) {
        return decode_stun(message(kStunBindingSuccess, txid, attrs)).has_value();
    };
    SECTION("MAPPED-ADDRESS is decoded, IPv4 and IPv6") {
        const Bytes v4 = {0x00, 0x01, 0x00, 0x08, 0x00, 0x01, 0x12, 0x34, 10, 1, 2, 3};
        auto m = decode_stun(message(kStunBindingSuccess, txid, v4));
        REQUIRE(m.has_value());
        CHECK(m->mapped_address == SocketAddress::ipv4({10, 1, 2, 3}, 0x1234));
        Bytes v6 = {0x00, 0x01, 0x00, 0x14, 0x00, 0x02, 0x00, 0x50};
        for (uint8_t i = 0; i < 16; ++i) v6.push_back(i);
        m = decode_stun(message(kStunBindingSuccess, txid, v6));
        REQUIRE(m.has_value());
        REQUIRE(m->mapped_address.has_value());
        CHECK(to_string(*m->mapped_address) == "[1:203:405:607:809:a0b:c0d:e0f]:80");
    }
    SECTION("the first copy of a repeated attribute counts") {
        const Bytes attrs = {0x80, 0x22, 0x00, 0x01, 'a',  0,    0,    0,  // SOFTWARE
                             0x80, 0x22, 0x00, 0x01, 'b',  0,    0,    0,  //
                             0x00, 0x20, 0x00, 0x08, 0,    0x01, 0x21, 0x13, 0x21, 0x12, 0xa4,
                             0x43, 0x00, 0x20, 0x00, 0x08, 0,    0x01, 0x21, 0x12, 0x21, 0x12,
                             0xa4, 0x44, 0x00, 0x09, 0x00, 0x04, 0,    0,    4,    0,  // ERROR-CODE
                             0x00, 0x09, 0x00, 0x04, 0,    0,    5,    0,              //
                             0x00, 0x0a, 0x00, 0x02, 0,    1,    0,    0,  // UNKNOWN-ATTRIBUTES
                             0x00, 0x0a, 0x00, 0x02, 0,    2,    0,    0};
        const auto m = decode_stun(message(kStunBindingSuccess, txid, attrs));
        REQUIRE(m.has_value());
        CHECK(m->software == "a");
        CHECK(m->xor_mapped_address == SocketAddress::ipv4({0, 0, 0, 1}, 1));
        REQUIRE(m->error_code.has_value());
        CHECK(m->error_code->code == 400);
        CHECK(m->unknown_attributes == std::vector<uint16_t>{1});
    }
    SECTION("the reserved byte of an address is ignored") {
        const Bytes attrs = {0x00, 0x01, 0x00, 0x08, 0xff, 0x01, 0x00, 0x05, 1, 2, 3, 4};
        const auto m = decode_stun(message(kStunBindingSuccess, txid, attrs));
        REQUIRE(m.has_value());
        CHECK(m->mapped_address == SocketAddress::ipv4({1, 2, 3, 4}, 5));
    }
    SECTION("address family and length must agree") {
        CHECK(decodes({0x00, 0x20, 0x00, 0x08, 0x00, 0x01, 0, 0, 1, 2, 3, 4}));
        CHECK_FALSE(decodes({0x00, 0x20, 0x00, 0x08, 0x00, 0x03, 0, 0, 1, 2, 3, 4}));
        CHECK_FALSE(decodes({0x00, 0x20, 0x00, 0x08, 0x00, 0x02, 0, 0, 1, 2, 3, 4}));
        CHECK_FALSE(decodes({0x00, 0x20, 0x00, 0x04, 0x00, 0x01, 0, 0}));
        CHECK_FALSE(decodes({0x00, 0x01, 0x00, 0x0c, 0x00, 0x01, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8}));
    }
    SECTION("a bad copy is rejected even after a good one") {
        CHECK_FALSE(decodes({0x00, 0x20, 0x00, 0x08, 0x00, 0x01, 0, 0, 1, 2, 3, 4,  //
                             0x00, 0x20, 0x00, 0x08, 0x00, 0x07, 0, 0, 1, 2, 3, 4}));
    }
    SECTION("ERROR-CODE class and number") {
        CHECK(decodes({0x00, 0x09, 0x00, 0x04, 0, 0, 3, 0}));
        CHECK(decodes({0x00, 0x09, 0x00, 0x04, 0, 0, 6, 99}));
        CHECK_FALSE(decodes({0x00, 0x09, 0x00, 0x04, 0, 0, 2, 0}));
        CHECK_FALSE(decodes({0x00, 0x09, 0x00, 0x04, 0, 0, 7, 0}));
        CHECK_FALSE(decodes({0x00, 0x09, 0x00, 0x04, 0, 0, 4, 100}));
        CHECK_FALSE(decodes({0x00, 0x09, 0x00, 0x03, 0, 0, 4, 0}));
    }
    SECTION("UNKNOWN-ATTRIBUTES holds whole 16-bit types") {
        CHECK(decodes({0x00, 0x0a, 0x00, 0x02, 0x12, 0x34, 0, 0}));
        CHECK_FALSE(decodes({0x00, 0x0a, 0x00, 0x03, 0x12, 0x34, 0x56, 0}));
    }
    SECTION("SOFTWARE and reason length limits") {
        const auto software = [](size_t n) {
            Bytes a = {0x80, 0x22, static_cast<uint8_t>(n >> 8), static_cast<uint8_t>(n)};
            a.resize(a.size() + (n + 3) / 4 * 4, 'x');
            return a;
        };
        CHECK(decodes(software(kStunMaxTextDecode)));
        CHECK_FALSE(decodes(software(kStunMaxTextDecode + 1)));
        const auto error = [](size_t n) {
            const size_t len = 4 + n;
            Bytes a = {0x00, 0x09, static_cast<uint8_t>(len >> 8), static_cast<uint8_t>(len), 0, 0,
                       4,    0};
            a.resize(4 + (len + 3) / 4 * 4, 'x');
            return a;
        };
        CHECK(decodes(error(kStunMaxTextDecode)));
        CHECK_FALSE(decodes(error(kStunMaxTextDecode + 1)));
    }
    SECTION("an attribute or its padding past the end") {
        CHECK_FALSE(decodes({0x80, 0x22, 0x00, 0x05, 'a', 'b', 'c', 'd'}));
        CHECK_FALSE(decodes({0x80, 0x22, 0x00, 0x01}));
        CHECK_FALSE(decodes({0x80, 0x22, 0xff, 0xff, 'a', 'b', 'c', 'd'}));
        CHECK_FALSE(decodes({0x80, 0x22, 0x00, 0x00, 0x80}));
    }
}

TEST_CASE("random datagrams never crash the decoder") {
    size_t decoded = 0;
    for (uint64_t seed = 1; seed <= 10000; ++seed) {
        INFO("seed " << seed);
        SeededRng rng(seed);
        Bytes b(rng.uniform(120));
        rng.fill(b);
        // Half of them get a plausible header, or nearly all would stop at the cookie.
        if (b.size() >= kStunHeaderSize && rng.chance(0.5)) {
            b.resize(kStunHeaderSize + (b.size() - kStunHeaderSize) / 4 * 4);
            b[0] &= 0x3f;
            set_length(b, b.size() - kStunHeaderSize);
            b[4] = 0x21, b[5] = 0x12, b[6] = 0xa4, b[7] = 0x42;
        }
        const auto m = decode_stun(b);
        if (!m) continue;
        ++decoded;
        CHECK(is_stun(b));
    }
    CHECK(decoded > 0);
}

TEST_CASE("mutated valid messages never crash and what decodes re-encodes") {
    size_t decoded = 0;
    for (uint64_t seed = 1; seed <= 5000; ++seed) {
        INFO("seed " << seed);
        SeededRng rng(seed);
        StunMessage original = random_message(rng);
        original.fingerprint = false;  // else nearly every mutation is caught by the CRC
        Bytes b = encode_stun(original);
        const size_t mutations = 1 + rng.uniform(3);
        for (size_t i = 0; i < mutations; ++i) {
            const size_t at = kStunHeaderSize + rng.uniform(b.size() - kStunHeaderSize + 1);
            if (at < b.size()) b[at] = static_cast<uint8_t>(rng.next_u64());
        }
        auto m = decode_stun(b);
        if (!m) continue;
        ++decoded;
        // Beyond what the encoder may produce: decoded from others, never sent by us.
        const bool long_text = (m->software && m->software->size() > kStunMaxTextEncode) ||
                               (m->error_code && m->error_code->reason.size() > kStunMaxTextEncode);
        if (!m->unknown_required.empty() || m->mapped_address || long_text) continue;
        const auto again = decode_stun(encode_stun(*m));
        REQUIRE(again.has_value());
        CHECK(*again == *m);
    }
    CHECK(decoded > 0);
}
