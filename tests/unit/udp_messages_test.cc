#include <catch2/catch.hpp>

#include "signal/stun.h"
#include "signal/udp_messages.h"
#include "tunnel/packet.h"
#include "tunnel/rng.h"

using namespace burrow;

TEST_CASE("Bind and BindOk: exact layout and round trip") {
    SeededRng rng(1);
    UdpToken t{};
    rng.fill(t);
    const Bytes bind = encode_bind(t);
    REQUIRE(bind.size() == kBindSize);
    CHECK(bind[0] == kUdpTypeBind);
    CHECK(std::equal(t.begin(), t.end(), bind.begin() + 1));
    CHECK(decode_bind(bind) == t);
    CHECK_FALSE(decode_bind_ok(bind));

    const Bytes ok = encode_bind_ok(t);
    CHECK(ok.size() == bind.size());  // never larger than what it answers
    CHECK(decode_bind_ok(ok) == t);
    CHECK_FALSE(decode_bind(ok));

    // Exact size only.
    Bytes longer = bind;
    longer.push_back(0);
    CHECK_FALSE(decode_bind(longer));
    CHECK_FALSE(decode_bind(ByteView(bind).first(kBindSize - 1)));
    CHECK_FALSE(decode_bind({}));
}

TEST_CASE("Relay datagrams round-trip, the header is checked") {
    for (int seed = 0; seed < 100; ++seed) {
        INFO("seed " << seed);
        SeededRng rng(seed);
        RelayToken token{};
        rng.fill(token);
        const uint64_t id = rng.next_u64();
        Bytes payload(rng.uniform(kMaxRelayPayload + 1));
        rng.fill(payload);
        const Bytes d = encode_relay_datagram(id, token, payload);
        CHECK(d.size() == kRelayHeaderSize + payload.size());
        CHECK(d.size() <= kMaxUdpDatagram);
        auto r = decode_relay_datagram(d);
        REQUIRE(r);
        CHECK(r->session_id == id);
        CHECK(r->token == token);
        CHECK(Bytes(r->payload.begin(), r->payload.end()) == payload);
        for (size_t cut = 0; cut < kRelayHeaderSize; ++cut) {
            CHECK_FALSE(decode_relay_datagram(ByteView(d).first(cut)));
        }
    }
    Bytes wrong_type = encode_relay_datagram(1, RelayToken{}, {});
    wrong_type[0] = kUdpTypeBind;
    CHECK_FALSE(decode_relay_datagram(wrong_type));
}

TEST_CASE("RelayFrom and BindMoved: layout, round trip, checked headers") {
    for (int seed = 0; seed < 100; ++seed) {
        INFO("seed " << seed);
        SeededRng rng(seed);
        RelayToken token{};
        rng.fill(token);
        UdpToken sender{};
        rng.fill(sender);
        const uint64_t id = rng.next_u64();
        Bytes payload(rng.uniform(kMaxRelayPayload + 1));
        rng.fill(payload);
        const Bytes d = encode_relay_from_datagram(id, token, sender, payload);
        CHECK(d[0] == kUdpTypeRelayFrom);
        CHECK(d.size() == kRelayFromHeaderSize + payload.size());
        CHECK(d.size() <= kMaxUdpDatagram);
        auto r = decode_relay_from_datagram(d);
        REQUIRE(r);
        CHECK(r->relay.session_id == id);
        CHECK(r->relay.token == token);
        CHECK(r->sender == sender);
        CHECK(Bytes(r->relay.payload.begin(), r->relay.payload.end()) == payload);
        for (size_t cut = 0; cut < kRelayFromHeaderSize; ++cut) {
            CHECK_FALSE(decode_relay_from_datagram(ByteView(d).first(cut)));
        }
        CHECK_FALSE(decode_relay_datagram(d));  // one type, one decoder
        CHECK_FALSE(decode_relay_from_datagram(encode_relay_datagram(id, token, payload)));
    }
    SeededRng rng(3);
    UdpToken t{};
    rng.fill(t);
    const Bytes moved = encode_bind_ok(t, true);
    CHECK(moved.size() == kBindSize);  // no larger than the Bind it answers
    CHECK(moved[0] == kUdpTypeBindMoved);
    CHECK(decode_bind_answer(moved)->moved);
    CHECK(decode_bind_answer(moved)->token == t);
    CHECK_FALSE(decode_bind_answer(encode_bind_ok(t))->moved);
    CHECK(encode_bind_ok(t, false) == encode_bind_ok(t));
    CHECK_FALSE(decode_bind_answer(encode_bind(t)));
    CHECK_FALSE(decode_bind_ok(moved));
}

TEST_CASE("burrow's datagrams are told apart from STUN and session packets") {
    SeededRng rng(5);
    UdpToken t{};
    rng.fill(t);
    const Bytes relay = encode_relay_datagram(rng.next_u64(), RelayToken{}, Bytes(40, 0));
    const Bytes relay_from =
        encode_relay_from_datagram(rng.next_u64(), RelayToken{}, t, Bytes(40, 0));
    for (const Bytes& d : {encode_bind(t), encode_bind_ok(t), encode_bind_ok(t, true), relay,
                           relay_from}) {
        CHECK_FALSE(is_stun(d));
        CHECK(d[0] > kPacketTypeData);  // session packets use 0x01-0x04
        CHECK((d[0] & 0xc0) == 0);      // and these are not STUN either: no cookie
    }
    const Bytes stun = encode_binding_request(StunTransactionId{}, true);
    CHECK_FALSE(decode_bind(stun));
    CHECK_FALSE(decode_relay_datagram(stun));
}
