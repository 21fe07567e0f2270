#include <catch2/catch.hpp>

#include <set>

#include "signal/stun.h"
#include "signal/udp_messages.h"
#include "signal_server_harness.h"
#include "tunnel/wire.h"

using namespace burrow;
using namespace burrow::test;

namespace {

const SocketAddress kLaptopAddr = *parse_socket_address("203.0.113.5:50001");
const SocketAddress kNasAddr = *parse_socket_address("[2001:db8::7]:41000");
const SocketAddress kPhoneAddr = *parse_socket_address("198.51.100.9:7000");
const SocketAddress kStranger = *parse_socket_address("192.0.2.66:6666");

std::optional<ServerAction> udp(Harness& h, const SocketAddress& from, ByteView d,
                                UdpPort port = UdpPort::kMain) {
    return h.core->on_udp(port, from, d, h.now);
}

// The datagram an input produced, if it produced one (a copy: inputs return temporaries).
std::optional<SendDatagram> as_datagram(const std::optional<ServerAction>& a) {
    if (!a) return std::nullopt;
    if (auto* d = std::get_if<SendDatagram>(&*a)) return *d;
    return std::nullopt;
}

uint64_t drops(const Harness& h, DropReason r) {
    return h.core->drops().get(r);
}

// A Binding request padded with SOFTWARE so that the full answer fits in it.
Bytes padded_request(const StunTransactionId& txid, size_t software_len, bool fingerprint) {
    StunMessage m;
    m.type = kStunBindingRequest;
    m.transaction_id = txid;
    if (software_len) m.software = std::string(software_len, 'p');
    m.fingerprint = fingerprint;
    return encode_stun(m);
}

// Inserts a comprehension-required attribute this codec does not know (PRIORITY, RFC 8445
// §16.1) after the header and fixes the length. The request must have no FINGERPRINT (its CRC
// would no longer match).
Bytes with_unknown_attribute(Bytes request) {
    const Bytes attr = {0x00, 0x24, 0x00, 0x04, 0x6e, 0x00, 0x01, 0xff};
    request.insert(request.begin() + kStunHeaderSize, attr.begin(), attr.end());
    const size_t len = request.size() - kStunHeaderSize;
    request[2] = static_cast<uint8_t>(len >> 8);
    request[3] = static_cast<uint8_t>(len);
    return request;
}

// laptop and nas online, both bound, with a laptop -> nas/web session.
struct RelaySetup {
    explicit RelaySetup(ServerLimits limits = {}) : h(1, limits) {
        laptop_token = h.login(1, "laptop").udp_token;
        nas_token = h.login(2, "nas").udp_token;
        REQUIRE(as_datagram(udp(h, kLaptopAddr, encode_bind(laptop_token))));
        REQUIRE(as_datagram(udp(h, kNasAddr, encode_bind(nas_token))));
        Actions a = h.send(1, ConnectRequest{"nas", "web"});
        auto p = messages_to<PeerInfo>(a, 1);
        REQUIRE(p.size() == 1);
        session = p[0].session_id;
        token = p[0].relay_token;
    }
    Harness h;
    UdpToken laptop_token{};
    UdpToken nas_token{};
    uint64_t session = 0;
    RelayToken token{};
};

}  // namespace

TEST_CASE("STUN Binding answered with XOR-MAPPED-ADDRESS on either port") {
    Harness h;
    SeededRng rng(3);
    for (const SocketAddress& from : {kLaptopAddr, kNasAddr}) {
        for (UdpPort port : {UdpPort::kMain, UdpPort::kSecondary}) {
            for (bool fp : {false, true}) {
                StunTransactionId txid{};
                rng.fill(txid);
                const Bytes req = padded_request(txid, 48, fp);
                auto a = udp(h, from, req, port);
                auto d = as_datagram(a);
                REQUIRE(d);
                CHECK(d->from == port);
                CHECK(d->to == from);
                CHECK(d->bytes.size() <= req.size());
                auto resp = decode_stun(d->bytes);
                REQUIRE(resp);
                CHECK(resp->type == kStunBindingSuccess);
                CHECK(resp->transaction_id == txid);
                CHECK(resp->xor_mapped_address == from);
                CHECK(resp->software == "burrow-test");
                CHECK(resp->fingerprint == fp);
            }
        }
    }
    CHECK(h.core->drops().total() == 0);
}

TEST_CASE("STUN answers are trimmed to the request's size, or not sent") {
    Harness h;
    const StunTransactionId txid{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    SECTION("a 32-byte request from IPv4 gets the bare 32-byte answer") {
        const Bytes req = padded_request(txid, 8, false);
        REQUIRE(req.size() == 32);
        auto d = as_datagram(udp(h, kLaptopAddr, req));
        REQUIRE(d);
        CHECK(d->bytes.size() == 32);
        auto resp = decode_stun(d->bytes);
        REQUIRE(resp);
        CHECK(resp->xor_mapped_address == kLaptopAddr);
        CHECK_FALSE(resp->software);
    }
    SECTION("the same request from IPv6 (a 44-byte answer) gets nothing") {
        const Bytes req = padded_request(txid, 8, false);
        CHECK_FALSE(udp(h, kNasAddr, req));
        CHECK(drops(h, DropReason::kStunAmplification) == 1);
    }
    SECTION("a plain 20-byte request gets nothing") {
        const Bytes req = encode_binding_request(txid, false);
        REQUIRE(req.size() == kStunHeaderSize);
        CHECK_FALSE(udp(h, kLaptopAddr, req));
        CHECK(drops(h, DropReason::kStunAmplification) == 1);
    }
    SECTION("FINGERPRINT is dropped before the answer is") {
        const Bytes req = padded_request(txid, 4, true);  // 20 + 8 + 8 = 36 bytes
        auto d = as_datagram(udp(h, kLaptopAddr, req));
        REQUIRE(d);
        auto resp = decode_stun(d->bytes);
        REQUIRE(resp);
        CHECK_FALSE(resp->fingerprint);
        CHECK(resp->xor_mapped_address == kLaptopAddr);
    }
    SECTION("kStunMinAnsweredRequest is enough for any source") {
        const Bytes req =
            padded_request(txid, kStunMinAnsweredRequest - kStunHeaderSize - 4, false);
        REQUIRE(req.size() == kStunMinAnsweredRequest);
        CHECK(as_datagram(udp(h, kNasAddr, req)));
        CHECK(as_datagram(udp(h, kLaptopAddr, req)));
    }
}

TEST_CASE("STUN: unknown required attributes get 420, other messages are dropped") {
    Harness h;
    const StunTransactionId txid{9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9};
    const Bytes req = with_unknown_attribute(padded_request(txid, 60, false));
    auto d = as_datagram(udp(h, kLaptopAddr, req));
    REQUIRE(d);
    CHECK(d->bytes.size() <= req.size());
    auto resp = decode_stun(d->bytes);
    REQUIRE(resp);
    CHECK(resp->type == kStunBindingError);
    REQUIRE(resp->error_code);
    CHECK(resp->error_code->code == kStunErrorUnknownAttribute);
    CHECK(resp->unknown_attributes == std::vector<uint16_t>{0x0024});
    CHECK_FALSE(resp->xor_mapped_address);

    StunMessage response;
    response.type = kStunBindingSuccess;
    response.xor_mapped_address = kLaptopAddr;
    CHECK_FALSE(udp(h, kNasAddr, encode_stun(response)));
    StunMessage indication;
    indication.type = kStunBindingIndication;
    CHECK_FALSE(udp(h, kNasAddr, encode_stun(indication)));
    CHECK(drops(h, DropReason::kStunNotRequest) == 2);
}

TEST_CASE("Bind: the token from AuthOk binds the sender's address") {
    Harness h;
    const UdpToken token = h.login(1, "laptop").udp_token;
    SECTION("on the main port") {
        auto a = udp(h, kLaptopAddr, encode_bind(token));
        auto d = as_datagram(a);
        REQUIRE(d);
        CHECK(d->to == kLaptopAddr);
        CHECK(d->from == UdpPort::kMain);
        CHECK(decode_bind_ok(d->bytes) == token);
        CHECK(h.core->registry().find("laptop")->udp_address == kLaptopAddr);
        // NAT rebinding: the same token from a new address moves the binding.
        REQUIRE(as_datagram(udp(h, kPhoneAddr, encode_bind(token))));
        CHECK(h.core->registry().find("laptop")->udp_address == kPhoneAddr);
    }
    SECTION("not on the secondary port") {
        CHECK_FALSE(udp(h, kLaptopAddr, encode_bind(token), UdpPort::kSecondary));
        CHECK(drops(h, DropReason::kWrongPort) == 1);
        CHECK_FALSE(h.core->registry().find("laptop")->udp_address);
    }
    SECTION("a wrong token binds nothing and gets no answer") {
        UdpToken wrong = token;
        wrong[15] ^= 0x80;
        CHECK_FALSE(udp(h, kStranger, encode_bind(wrong)));
        CHECK(drops(h, DropReason::kBindUnknownToken) == 1);
        CHECK_FALSE(h.core->registry().find("laptop")->udp_address);
        Bytes longer = encode_bind(token);
        longer.push_back(0);
        CHECK_FALSE(udp(h, kStranger, longer));
        CHECK(drops(h, DropReason::kBindMalformed) == 1);
    }
    SECTION("a token dies with its connection") {
        h.core->on_connection_closed(1, h.now);
        CHECK_FALSE(udp(h, kLaptopAddr, encode_bind(token)));
        CHECK(drops(h, DropReason::kBindUnknownToken) == 1);
    }
    SECTION("a new connection gets a new token; the old one is void") {
        const UdpToken second = h.login(2, "laptop").udp_token;
        CHECK(second != token);
        CHECK_FALSE(udp(h, kLaptopAddr, encode_bind(token)));
        CHECK(as_datagram(udp(h, kLaptopAddr, encode_bind(second))));
    }
    SECTION("an address bound by another agent moves to the newer binding") {
        const UdpToken nas = h.login(2, "nas").udp_token;
        REQUIRE(as_datagram(udp(h, kLaptopAddr, encode_bind(token))));
        REQUIRE(as_datagram(udp(h, kLaptopAddr, encode_bind(nas))));
        CHECK_FALSE(h.core->registry().find("laptop")->udp_address);
        CHECK(h.core->registry().find("nas")->udp_address == kLaptopAddr);
    }
}

TEST_CASE("relay: forwarded between the two bound agents of a session") {
    RelaySetup s;
    Harness& h = s.h;
    const Bytes payload = {0x04, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13};
    const Bytes d = encode_relay_datagram(s.session, s.token, payload);
    auto out = as_datagram(udp(h, kLaptopAddr, d));
    REQUIRE(out);
    CHECK(out->to == kNasAddr);
    CHECK(out->from == UdpPort::kMain);
    CHECK(out->bytes == d);
    out = as_datagram(udp(h, kNasAddr, d));
    REQUIRE(out);
    CHECK(out->to == kLaptopAddr);
    CHECK(h.core->drops().total() == 0);
}

TEST_CASE("relay: refusals, each counted") {
    RelaySetup s;
    Harness& h = s.h;
    const Bytes payload(100, 0xab);
    SECTION("from an address no agent has bound") {
        CHECK_FALSE(udp(h, kStranger, encode_relay_datagram(s.session, s.token, payload)));
        CHECK(drops(h, DropReason::kRelayUnboundSender) == 1);
    }
    SECTION("with a wrong token") {
        RelayToken wrong = s.token;
        wrong[0] ^= 1;
        CHECK_FALSE(udp(h, kLaptopAddr, encode_relay_datagram(s.session, wrong, payload)));
        CHECK(drops(h, DropReason::kRelayBadToken) == 1);
    }
    SECTION("for an unknown session") {
        CHECK_FALSE(udp(h, kLaptopAddr, encode_relay_datagram(s.session ^ 1, s.token, payload)));
        CHECK(drops(h, DropReason::kRelayUnknownSession) == 1);
    }
    SECTION("from a bound agent outside the session, even with the right token") {
        const UdpToken phone = h.login(3, "phone").udp_token;
        REQUIRE(as_datagram(udp(h, kPhoneAddr, encode_bind(phone))));
        CHECK_FALSE(udp(h, kPhoneAddr, encode_relay_datagram(s.session, s.token, payload)));
        CHECK(drops(h, DropReason::kRelayNotMember) == 1);
    }
    SECTION("a pair the ACL does not allow never gets a session to relay on") {
        const UdpToken phone = h.login(3, "phone").udp_token;
        REQUIRE(as_datagram(udp(h, kPhoneAddr, encode_bind(phone))));
        Actions a = h.send(3, ConnectRequest{"nas", "web"});
        CHECK(messages_to<PeerInfo>(a, 3).empty());
        CHECK(h.core->relays().size() == 1);
    }
    SECTION("on the secondary port") {
        CHECK_FALSE(udp(h, kLaptopAddr, encode_relay_datagram(s.session, s.token, payload),
                        UdpPort::kSecondary));
        CHECK(drops(h, DropReason::kWrongPort) == 1);
    }
    SECTION("truncated header") {
        Bytes d = encode_relay_datagram(s.session, s.token, {});
        d.pop_back();
        CHECK_FALSE(udp(h, kLaptopAddr, d));
        CHECK(drops(h, DropReason::kRelayMalformed) == 1);
    }
    SECTION("after the peer went offline the session is gone") {
        h.core->on_connection_closed(2, h.now);
        CHECK_FALSE(udp(h, kLaptopAddr, encode_relay_datagram(s.session, s.token, payload)));
        CHECK(drops(h, DropReason::kRelayUnknownSession) == 1);
        // nas's old address is no longer bound: nothing is ever sent there.
        CHECK_FALSE(h.core->registry().find("nas")->udp_address);
    }
    SECTION("too large") {
        Bytes big(kMaxUdpDatagram + 1, kUdpTypeRelay);
        CHECK_FALSE(udp(h, kLaptopAddr, big));
        CHECK(drops(h, DropReason::kTooLarge) == 1);
    }
    SECTION("session packets sent to the server itself") {
        for (uint8_t t = 0x01; t <= 0x04; ++t) {
            Bytes p(60, 0);
            p[0] = t;
            CHECK_FALSE(udp(h, kLaptopAddr, p));
        }
        CHECK(drops(h, DropReason::kUnknownType) == 4);
    }
}

TEST_CASE("RelayFrom: a NAT that moved the agent is followed; a forged token moves nothing") {
    RelaySetup s;
    Harness& h = s.h;
    const Bytes payload(200, 0x5a);
    // The laptop's NAT forgot its mapping and gave it a new port.
    const SocketAddress moved = *parse_socket_address("203.0.113.5:50999");
    const Bytes plain_to_nas = encode_relay_datagram(s.session, s.token, payload);

    SECTION("a plain Relay from the new address is what used to stall") {
        CHECK_FALSE(udp(h, moved, plain_to_nas));
        CHECK(drops(h, DropReason::kRelayUnboundSender) == 1);
        CHECK(h.core->registry().find("laptop")->udp_address == kLaptopAddr);
    }
    SECTION("a RelayFrom with the laptop's udp_token rebinds it and is relayed at once") {
        auto out = as_datagram(udp(
            h, moved, encode_relay_from_datagram(s.session, s.token, s.laptop_token, payload)));
        REQUIRE(out);
        CHECK(out->to == kNasAddr);
        // The nas gets a plain Relay: the laptop's udp_token never leaves the server.
        CHECK(out->bytes == plain_to_nas);
        const AgentRecord* laptop = h.core->registry().find("laptop");
        CHECK(laptop->udp_address == moved);
        CHECK(laptop->udp_rebinds == 1);
        // The nas's answer goes to the new address.
        out = as_datagram(udp(h, kNasAddr, plain_to_nas));
        REQUIRE(out);
        CHECK(out->to == moved);
        // The next Bind hears that the binding moved (the keepalive was too slow), once.
        auto answer = as_datagram(udp(h, moved, encode_bind(s.laptop_token)));
        REQUIRE(answer);
        CHECK(answer->bytes[0] == kUdpTypeBindMoved);
        CHECK(decode_bind_answer(answer->bytes)->moved);
        answer = as_datagram(udp(h, moved, encode_bind(s.laptop_token)));
        REQUIRE(answer);
        CHECK(answer->bytes == encode_bind_ok(s.laptop_token));
        CHECK(h.core->drops().total() == 0);
    }
    SECTION("a forged sender token (the session token alone) moves no binding") {
        // The nas knows the session's token but not the laptop's udp_token; a spoofer knows
        // neither. Either way the laptop's binding stays and nothing is relayed.
        UdpToken forged = s.laptop_token;
        forged[7] ^= 0x01;
        for (const SocketAddress& from : {kStranger, moved, kNasAddr}) {
            CHECK_FALSE(udp(h, from,
                            encode_relay_from_datagram(s.session, s.token, forged, payload)));
        }
        CHECK(drops(h, DropReason::kRelayUnknownSender) == 3);
        CHECK(h.core->registry().find("laptop")->udp_address == kLaptopAddr);
        CHECK(h.core->registry().find("nas")->udp_address == kNasAddr);
        CHECK(h.core->registry().find("laptop")->udp_rebinds == 0);
        // The next Bind from the real laptop is an ordinary BindOk.
        auto answer = as_datagram(udp(h, kLaptopAddr, encode_bind(s.laptop_token)));
        REQUIRE(answer);
        CHECK(answer->bytes == encode_bind_ok(s.laptop_token));
    }
    SECTION("the nas's own udp_token moves only the nas") {
        const Bytes d = encode_relay_from_datagram(s.session, s.token, s.nas_token, payload);
        auto out = as_datagram(udp(h, kStranger, d));
        REQUIRE(out);
        CHECK(out->to == kLaptopAddr);
        CHECK(h.core->registry().find("nas")->udp_address == kStranger);
        CHECK(h.core->registry().find("laptop")->udp_address == kLaptopAddr);
    }
    SECTION("a token of an agent gone offline is no proof") {
        h.core->on_connection_closed(1, h.now);
        CHECK_FALSE(
            udp(h, moved, encode_relay_from_datagram(s.session, s.token, s.laptop_token, payload)));
        CHECK(drops(h, DropReason::kRelayUnknownSender) == 1);
    }
    SECTION("truncated, and on the secondary port") {
        Bytes d = encode_relay_from_datagram(s.session, s.token, s.laptop_token, {});
        d.pop_back();
        CHECK_FALSE(udp(h, moved, d));
        CHECK(drops(h, DropReason::kRelayMalformed) == 1);
        CHECK_FALSE(udp(h, moved,
                        encode_relay_from_datagram(s.session, s.token, s.laptop_token, payload),
                        UdpPort::kSecondary));
        CHECK(drops(h, DropReason::kWrongPort) == 1);
        CHECK(h.core->registry().find("laptop")->udp_address == kLaptopAddr);
    }
}

TEST_CASE("relay: an agent without UDP, or on TLS, gets its traffic over TLS") {
    Harness h;
    const UdpToken laptop = h.login(1, "laptop").udp_token;
    h.login(2, "nas");  // never binds: its UDP is blocked
    REQUIRE(as_datagram(udp(h, kLaptopAddr, encode_bind(laptop))));
    Actions a = h.send(1, ConnectRequest{"nas", "web"});
    const PeerInfo p = messages_to<PeerInfo>(a, 1).at(0);
    const Bytes payload = {7, 7, 7};

    // laptop -> nas: UDP in, TLS out.
    auto out = udp(h, kLaptopAddr, encode_relay_datagram(p.session_id, p.relay_token, payload));
    REQUIRE(out);
    auto* sc = std::get_if<SendControl>(&*out);
    REQUIRE(sc);
    CHECK(sc->conn == 2);
    CHECK(std::get<RelayData>(sc->message) == RelayData{p.session_id, payload});

    // nas -> laptop: TLS in, UDP out to laptop's bound address.
    a = h.send(2, RelayData{p.session_id, payload});
    REQUIRE(a.size() == 1);
    auto* d = std::get_if<SendDatagram>(&a[0]);
    REQUIRE(d);
    CHECK(d->to == kLaptopAddr);
    CHECK(d->bytes == encode_relay_datagram(p.session_id, p.relay_token, payload));

    // Once laptop itself sends over TLS, its traffic comes back over TLS although it is bound.
    h.send(1, RelayData{p.session_id, payload});
    a = h.send(2, RelayData{p.session_id, payload});
    REQUIRE(messages_to<RelayData>(a, 1).size() == 1);
    // ...and back to UDP when it sends over UDP again.
    udp(h, kLaptopAddr, encode_relay_datagram(p.session_id, p.relay_token, payload));
    a = h.send(2, RelayData{p.session_id, payload});
    REQUIRE(a.size() == 1);
    CHECK(std::holds_alternative<SendDatagram>(a[0]));
}

TEST_CASE("relay: per-agent packet and byte rate limits") {
    SECTION("packets per second") {
        ServerLimits limits;
        limits.relay = RelayLimits{10, 1e9, 1};
        RelaySetup s(limits);
        Harness& h = s.h;
        const Bytes d = encode_relay_datagram(s.session, s.token, Bytes(50, 1));
        for (int i = 0; i < 10; ++i) CHECK(as_datagram(udp(h, kLaptopAddr, d)));
        CHECK_FALSE(udp(h, kLaptopAddr, d));
        CHECK(drops(h, DropReason::kRateLimitPackets) == 1);
        // The quota is per agent: nas still has its own.
        CHECK(as_datagram(udp(h, kNasAddr, d)));
        // TLS relay counts against the same quota.
        CHECK(h.send(1, RelayData{s.session, {1}}).empty());
        CHECK(drops(h, DropReason::kRateLimitPackets) == 2);
        h.advance(std::chrono::milliseconds(100));  // one packet's worth
        CHECK(as_datagram(udp(h, kLaptopAddr, d)));
        CHECK_FALSE(udp(h, kLaptopAddr, d));
    }
    SECTION("bytes per second") {
        const size_t size = kRelayHeaderSize + 100;
        ServerLimits limits;
        limits.relay = RelayLimits{1e9, 10.0 * size, 1};
        RelaySetup s(limits);
        Harness& h = s.h;
        const Bytes d = encode_relay_datagram(s.session, s.token, Bytes(100, 1));
        REQUIRE(d.size() == size);
        for (int i = 0; i < 10; ++i) CHECK(as_datagram(udp(h, kLaptopAddr, d)));
        CHECK_FALSE(udp(h, kLaptopAddr, d));
        CHECK(drops(h, DropReason::kRateLimitBytes) == 1);
        // A smaller packet that still fits the remaining bytes? None remain.
        CHECK_FALSE(udp(h, kLaptopAddr, encode_relay_datagram(s.session, s.token, {})));
        h.advance(std::chrono::seconds(1));
        CHECK(as_datagram(udp(h, kLaptopAddr, d)));
    }
}

TEST_CASE("amplification: no unauthenticated input gets more bytes back than it sent") {
    // One agent online and bound, a live session, so every code path has something to find.
    RelaySetup s;
    Harness& h = s.h;
    SeededRng rng(11);
    uint64_t inputs = 0;
    uint64_t replies = 0;
    for (size_t size = 0; size <= 1500; ++size) {
        for (int first = 0; first < 256; ++first) {
            Bytes d(size);
            rng.fill(d);
            if (size > 0) d[0] = static_cast<uint8_t>(first);
            // Give STUN-shaped inputs a valid header half the time, so the STUN path sees them.
            if (size >= kStunHeaderSize && size % 4 == 0 && (first & 0xc0) == 0 &&
                rng.chance(0.5)) {
                Bytes header;
                ByteWriter hw(header);
                hw.u16(static_cast<uint16_t>(first << 8 | 0x01));
                hw.u16(static_cast<uint16_t>(size - kStunHeaderSize));
                hw.u32(kStunMagicCookie);
                std::copy(header.begin(), header.end(), d.begin());
            }
            // Relay-shaped inputs sometimes carry the real session id (not the token).
            if (first == kUdpTypeRelay && size >= 9 && rng.chance(0.5)) {
                for (int i = 0; i < 8; ++i)
                    d[1 + i] = static_cast<uint8_t>(s.session >> (56 - 8 * i));
            }
            const UdpPort port = rng.chance(0.5) ? UdpPort::kMain : UdpPort::kSecondary;
            auto a = udp(h, kStranger, d, port);
            ++inputs;
            if (!a) continue;
            ++replies;
            auto out = as_datagram(a);
            INFO("size " << size << " first byte " << first);
            REQUIRE(out);                 // never a relay to a TLS connection
            CHECK(out->to == kStranger);  // never to anyone but the sender
            CHECK(out->bytes.size() <= d.size());
        }
    }
    // Well-formed padded Binding requests, the one input that is answered, from both families.
    for (int i = 0; i < 500; ++i) {
        StunTransactionId txid{};
        rng.fill(txid);
        const size_t pad = rng.uniform(80);
        const SocketAddress from = rng.chance(0.5) ? kStranger : kNasAddr;
        for (const Bytes& req : {padded_request(txid, pad, rng.chance(0.5)),
                                 with_unknown_attribute(padded_request(txid, pad, false))}) {
            auto a = udp(h, from, req);
            ++inputs;
            if (auto out = as_datagram(a)) {
                ++replies;
                CHECK(out->bytes.size() <= req.size());
            }
        }
    }
    CHECK(inputs > 380'000);
    CHECK(replies > 0);  // the sweep did reach the answering paths
    CHECK(h.core->registry().find("laptop")->udp_address == kLaptopAddr);
    CHECK(h.core->registry().find("nas")->udp_address == kNasAddr);
}

TEST_CASE("every drop reason has its own name for status output") {
    std::set<std::string> names;
    for (size_t i = 0; i < static_cast<size_t>(DropReason::kCount); ++i) {
        const std::string name = to_string(static_cast<DropReason>(i));
        CHECK(name != "?");
        names.insert(name);
    }
    CHECK(names.size() == static_cast<size_t>(DropReason::kCount));
}

namespace {

// A server core with stun_standard_clients set, and nobody online.
struct StandardStunServer {
    StandardStunServer() : rng(3) {
        ServerCoreConfig config;
        config.static_key = PrivateKey::generate(rng);
        config.stun_ports = {kStunPort, kStunPort2};
        config.relay_udp_port = kStunPort;
        config.software = "burrow-test";
        config.stun_standard_clients = true;
        std::string error;
        auto acl = Acl::create(AclConfig{}, &error);
        REQUIRE(acl);
        core = std::make_unique<ServerCore>(std::move(config), std::move(*acl), rng);
    }
    std::optional<ServerAction> udp(const SocketAddress& from, ByteView d) {
        return core->on_udp(UdpPort::kMain, from, d, Time{});
    }
    SeededRng rng;
    std::unique_ptr<ServerCore> core;
};

// The minimal answer: header + XOR-MAPPED-ADDRESS (RFC 8489 §14.2: 4 + 8 for IPv4, 4 + 20 for
// IPv6).
constexpr size_t kMinimalAnswerV4 = kStunHeaderSize + 12;
constexpr size_t kMinimalAnswerV6 = kStunHeaderSize + 24;

}  // namespace

TEST_CASE("stun_standard_clients: a 20-byte Binding request gets the minimal answer") {
    StandardStunServer s;
    const StunTransactionId txid{4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4};
    const Bytes req = encode_binding_request(txid, false);
    REQUIRE(req.size() == kStunHeaderSize);
    for (const auto& [from, size] : {std::pair{kLaptopAddr, kMinimalAnswerV4},
                                     std::pair{kNasAddr, kMinimalAnswerV6}}) {
        auto d = as_datagram(s.udp(from, req));
        REQUIRE(d);
        CHECK(d->to == from);
        CHECK(d->bytes.size() == size);
        auto resp = decode_stun(d->bytes);
        REQUIRE(resp);
        CHECK(resp->type == kStunBindingSuccess);
        CHECK(resp->transaction_id == txid);
        CHECK(resp->xor_mapped_address == from);
        CHECK_FALSE(resp->software);
        CHECK_FALSE(resp->fingerprint);
    }
    // A request with room for more still gets the richest answer that fits.
    const Bytes padded = padded_request(txid, 60, false);
    auto d = as_datagram(s.udp(kLaptopAddr, padded));
    REQUIRE(d);
    CHECK(decode_stun(d->bytes)->software);
}

TEST_CASE("stun_standard_clients: replies stay <= 44 bytes or the request's size, and only to "
          "well-formed Binding requests") {
    StandardStunServer s;
    for (uint64_t seed = 1; seed <= 20; ++seed) {
        INFO("seed " << seed);
        SeededRng rng(seed);
        for (int i = 0; i < 2000; ++i) {
            const size_t size = rng.uniform(120);
            Bytes d(size);
            rng.fill(d);
            // Most inputs get a STUN header (any class and method, right length, cookie), so
            // the STUN path sees them; some of those are real Binding requests.
            if (size >= kStunHeaderSize && size % 4 == 0 && rng.chance(0.8)) {
                Bytes header;
                ByteWriter hw(header);
                const bool binding = rng.chance(0.5);
                hw.u16(binding ? kStunBindingRequest : static_cast<uint16_t>(rng.uniform(0x4000)));
                hw.u16(static_cast<uint16_t>(size - kStunHeaderSize));
                hw.u32(kStunMagicCookie);
                std::copy(header.begin(), header.end(), d.begin());
                if (binding && rng.chance(0.5)) d.resize(kStunHeaderSize), d[3] = 0;
            }
            const SocketAddress from = rng.chance(0.5) ? kStranger : kNasAddr;
            auto a = s.udp(from, d);
            if (!a) continue;
            auto out = as_datagram(a);
            REQUIRE(out);
            CHECK(out->to == from);
            CHECK(out->bytes.size() <= std::max(d.size(), kMinimalAnswerV6));
            auto request = decode_stun(d);
            REQUIRE(request);
            CHECK(request->type == kStunBindingRequest);
        }
    }
    CHECK(s.core->drops().get(DropReason::kStunMalformed) > 0);
    CHECK(s.core->drops().get(DropReason::kStunNotRequest) > 0);
}
