#include <catch2/catch.hpp>

#include "signal/pcp.h"
#include "tests/support/hex.h"

using namespace burrow;
using burrow::test::from_hex;
using burrow::test::to_hex;

namespace {

PcpMapRequest request() {
    PcpMapRequest r;
    for (size_t i = 0; i < r.nonce.size(); ++i) r.nonce[i] = static_cast<uint8_t>(0xa0 + i);
    r.client = SocketAddress::ipv4({10, 0, 1, 2}, 0);
    r.internal_port = 41641;
    r.suggested_external_port = 41641;
    r.lifetime_s = 7200;
    return r;
}

}  // namespace

TEST_CASE("pcp: a MAP request is laid out as RFC 6887 §7.1 and §11.1 say") {
    const Bytes b = encode_pcp_map(request());
    REQUIRE(b.size() == kPcpMapSize);
    CHECK(to_hex(b) ==
          // version 2, opcode MAP, reserved, lifetime 7200
          "02010000" "00001c20"
          // client 10.0.1.2 as ::ffff:10.0.1.2
          "00000000000000000000ffff0a000102"
          // nonce
          "a0a1a2a3a4a5a6a7a8a9aaab"
          // UDP, reserved, internal 41641, suggested external 41641
          "11000000" "a2a9" "a2a9"
          // no suggested address: ::ffff:0.0.0.0
          "00000000000000000000ffff00000000");
}

TEST_CASE("pcp: a success response gives the external address, the lifetime and the epoch") {
    const PcpMapRequest sent = request();
    PcpMapResponse answer;
    answer.lifetime_s = 3600;
    answer.epoch_s = 42;
    answer.external = SocketAddress::ipv4({100, 128, 0, 11}, 40001);
    const Bytes reply = encode_pcp_map_response(answer, sent);
    CHECK(to_hex(ByteView(reply).first(24)) ==
          "02810000" "00000e10" "0000002a" "000000000000000000000000");
    auto decoded = decode_pcp_map_response(reply, sent);
    REQUIRE(std::holds_alternative<PcpMapResponse>(decoded));
    const auto& r = std::get<PcpMapResponse>(decoded);
    CHECK(r.result == 0);
    CHECK(r.lifetime_s == 3600);
    CHECK(r.epoch_s == 42);
    CHECK(to_string(r.external) == "100.128.0.11:40001");
}

TEST_CASE("pcp: an error result is decoded and named") {
    const PcpMapRequest sent = request();
    PcpMapResponse refused;
    refused.result = 2;
    refused.lifetime_s = 30;
    auto decoded = decode_pcp_map_response(encode_pcp_map_response(refused, sent), sent);
    REQUIRE(std::holds_alternative<PcpMapResponse>(decoded));
    CHECK(std::get<PcpMapResponse>(decoded).result == 2);
    CHECK(pcp_result_text(2) == "NOT_AUTHORIZED: the gateway refuses mappings for this client (2)");
    CHECK(pcp_result_text(12).rfind("ADDRESS_MISMATCH", 0) == 0);
    CHECK(pcp_result_text(200) == "result (200)");
}

TEST_CASE("pcp: a NAT-PMP gateway's version 0 answer says so") {
    // RFC 6886 §3.5: version 0, opcode 128 + the one asked, result 1 (unsupported version).
    const Bytes natpmp = from_hex("00810001" "00000000");
    auto decoded = decode_pcp_map_response(natpmp, request());
    REQUIRE(std::holds_alternative<PcpDecodeError>(decoded));
    CHECK(std::get<PcpDecodeError>(decoded) == PcpDecodeError::kNatPmpOnly);
    CHECK(std::get<PcpDecodeError>(decode_pcp_announce_response(natpmp)) ==
          PcpDecodeError::kNatPmpOnly);
}

TEST_CASE("pcp: answers to another request, and broken packets, are not taken") {
    const PcpMapRequest sent = request();
    PcpMapResponse answer;
    answer.external = SocketAddress::ipv4({100, 128, 0, 11}, 40001);
    const Bytes good = encode_pcp_map_response(answer, sent);
    auto error_of = [&](Bytes b) {
        auto d = decode_pcp_map_response(b, sent);
        REQUIRE(std::holds_alternative<PcpDecodeError>(d));
        return std::get<PcpDecodeError>(d);
    };
    Bytes other_nonce = good;
    other_nonce[24] ^= 1;
    CHECK(error_of(other_nonce) == PcpDecodeError::kNotOurs);
    Bytes other_port = good;
    other_port[41] ^= 1;  // internal port's low byte
    CHECK(error_of(other_port) == PcpDecodeError::kNotOurs);
    Bytes tcp = good;
    tcp[36] = 6;
    CHECK(error_of(tcp) == PcpDecodeError::kNotOurs);
    CHECK(error_of(Bytes(good.begin(), good.end() - 4)) == PcpDecodeError::kMalformed);
    Bytes request_echo = good;
    request_echo[1] = kPcpOpcodeMap;  // R bit clear: a request, not an answer
    CHECK(error_of(request_echo) == PcpDecodeError::kMalformed);
    Bytes v3 = good;
    v3[0] = 3;
    CHECK(error_of(v3) == PcpDecodeError::kOtherVersion);
    CHECK(error_of(Bytes{}) == PcpDecodeError::kMalformed);
    Bytes odd = good;
    odd.push_back(0);
    CHECK(error_of(odd) == PcpDecodeError::kMalformed);
}

TEST_CASE("pcp: an IPv6 external address stays IPv6") {
    const PcpMapRequest sent = request();
    PcpMapResponse answer;
    std::array<uint8_t, 16> ip{0x20, 0x01, 0x0d, 0xb8};
    ip[15] = 7;
    answer.external = SocketAddress::ipv6(ip, 5000);
    auto decoded = decode_pcp_map_response(encode_pcp_map_response(answer, sent), sent);
    REQUIRE(std::holds_alternative<PcpMapResponse>(decoded));
    CHECK(to_string(std::get<PcpMapResponse>(decoded).external) == "[2001:db8::7]:5000");
}

TEST_CASE("pcp: ANNOUNCE is a bare header, and its answer's result is read") {
    const Bytes a = encode_pcp_announce(SocketAddress::ipv4({10, 0, 1, 2}, 0));
    CHECK(to_hex(a) == "02000000" "00000000" "00000000000000000000ffff0a000102");
    Bytes answer = a;
    answer[1] = 0x80;
    auto decoded = decode_pcp_announce_response(answer);
    REQUIRE(std::holds_alternative<uint8_t>(decoded));
    CHECK(std::get<uint8_t>(decoded) == 0);
    answer[1] = 0x81;  // a MAP answer is not the ANNOUNCE answer
    CHECK(std::get<PcpDecodeError>(decode_pcp_announce_response(answer)) ==
          PcpDecodeError::kNotOurs);
}

// Recorded from miniupnpd 2.3.1 (Debian's miniupnpd-iptables) in the NAT lab's pcp-symmetric
// router (tests/natlab), answering request() from 10.0.1.2: the WAN address is 100.128.0.11.
TEST_CASE("pcp: miniupnpd's recorded answers decode") {
    const PcpMapRequest sent = request();
    const Bytes map = from_hex(
        "0281000000001c200000142d000000000000000000000000a0a1a2a3a4a5a6a7a8a9aaab11000000a2a9a2a9"
        "00000000000000000000ffff6480000b");
    auto decoded = decode_pcp_map_response(map, sent);
    REQUIRE(std::holds_alternative<PcpMapResponse>(decoded));
    const auto& r = std::get<PcpMapResponse>(decoded);
    CHECK(r.result == 0);
    CHECK(r.lifetime_s == 7200);
    CHECK(r.epoch_s == 5165);
    CHECK(to_string(r.external) == "100.128.0.11:41641");
    // The delete (lifetime 0) is answered with lifetime 0.
    PcpMapRequest del = sent;
    del.lifetime_s = 0;
    auto deleted = decode_pcp_map_response(
        from_hex("02810000000000000000142d000000000000000000000000a0a1a2a3a4a5a6a7a8a9aaab11000000"
                 "a2a9a2a900000000000000000000ffff6480000b"),
        del);
    REQUIRE(std::holds_alternative<PcpMapResponse>(deleted));
    CHECK(std::get<PcpMapResponse>(deleted).lifetime_s == 0);
    auto announce =
        decode_pcp_announce_response(from_hex("02800000000000000000142d000000000000000000000000"));
    REQUIRE(std::holds_alternative<uint8_t>(announce));
    CHECK(std::get<uint8_t>(announce) == 0);
}
