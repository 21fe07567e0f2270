#include <catch2/catch.hpp>

#include "signal/nat_probe.h"
#include "signal_server_harness.h"

using namespace burrow;
using namespace burrow::test;
using std::chrono::milliseconds;

namespace {

const SocketAddress kMapped = *parse_socket_address("203.0.113.9:61000");
const SocketAddress kMapped6 = *parse_socket_address("[2001:db8::9]:61000");

StunTransactionId txid_of(const ServerDatagram& d) {
    auto m = decode_stun(d.bytes);
    REQUIRE(m);
    return m->transaction_id;
}

std::deque<ServerDatagram> start(NatProbe& p, Rng& rng, Time now) {
    std::deque<ServerDatagram> out;
    p.start(rng, now, out);
    return out;
}

}  // namespace

TEST_CASE("probe requests are large enough for the server to answer, for any software text") {
    Harness h;
    for (const std::string& software : {std::string(), std::string("b"), std::string(40, 'x')}) {
        INFO("software \"" << software << "\"");
        StunTransactionId txid{};
        h.rng.fill(txid);
        const Bytes req = encode_probe_request(txid, software);
        CHECK(req.size() >= kStunProbeRequestSize);
        auto m = decode_stun(req);
        REQUIRE(m);
        CHECK(m->type == kStunBindingRequest);
        CHECK(m->fingerprint);
        CHECK(m->software->starts_with(software));
        // From an IPv6 source the answer (the largest XOR-MAPPED-ADDRESS) still fits, with its
        // FINGERPRINT.
        auto answer = h.core->on_udp(UdpPort::kSecondary, kMapped6, req, h.now);
        REQUIRE(answer);
        auto reply = decode_stun(std::get<SendDatagram>(*answer).bytes);
        REQUIRE(reply);
        CHECK(reply->xor_mapped_address == kMapped6);
        CHECK(reply->fingerprint);
    }
    CHECK(h.core->drops().total() == 0);
}

TEST_CASE("mapping classification needs both answers") {
    const SocketAddress other_port = *parse_socket_address("203.0.113.9:61001");
    CHECK(classify_mapping(kMapped, kMapped) == NatMapping::kEndpointIndependent);
    CHECK(classify_mapping(kMapped, other_port) == NatMapping::kPerDestination);
    CHECK(classify_mapping(kMapped, std::nullopt) == NatMapping::kUnknown);
    CHECK(classify_mapping(std::nullopt, kMapped) == NatMapping::kUnknown);
}

TEST_CASE("retries on the doubling schedule, same transaction, then gives up") {
    SeededRng rng(1);
    NatProbe p("burrow");
    const Time t0 = time_from_us(5'000'000);
    auto out = start(p, rng, t0);
    REQUIRE(out.size() == 2);
    CHECK(out[0].to == UdpPort::kMain);
    CHECK(out[1].to == UdpPort::kSecondary);
    const StunTransactionId main_txid = txid_of(out[0]);
    CHECK(main_txid != txid_of(out[1]));

    // The main port answers at once; the secondary never does.
    const Bytes ok = encode_binding_success(main_txid, kMapped, "srv");
    CHECK(p.on_stun(UdpPort::kMain, ok) == StunAnswer::kAccepted);
    CHECK(p.on_stun(UdpPort::kMain, ok) == StunAnswer::kUnmatched);  // a duplicate

    std::vector<Time> sends = {t0};
    for (Time t = t0; t < t0 + milliseconds(4000); t += milliseconds(1)) {
        std::deque<ServerDatagram> more;
        p.on_timer(t, more);
        for (const ServerDatagram& d : more) {
            CHECK(d.to == UdpPort::kSecondary);
            CHECK(txid_of(d) == txid_of(out[1]));
            sends.push_back(t);
        }
        if (p.finished()) {
            CHECK(t == t0 + milliseconds(3100));
            break;
        }
    }
    const std::vector<Time> expected = {t0, t0 + milliseconds(100), t0 + milliseconds(300),
                                        t0 + milliseconds(700), t0 + milliseconds(1500)};
    CHECK(sends == expected);
    REQUIRE(p.finished());
    const NatProbeResult r = p.result();
    CHECK(r.mapped[0] == kMapped);
    CHECK_FALSE(r.mapped[1]);
    CHECK(r.mapping == NatMapping::kUnknown);
    CHECK(p.next_deadline() == kNever);
}

TEST_CASE("answers that are not ours change nothing") {
    SeededRng rng(2);
    NatProbe p("burrow");
    const Time t0 = time_from_us(0);
    auto out = start(p, rng, t0);
    const StunTransactionId main_txid = txid_of(out[0]);
    const StunTransactionId second_txid = txid_of(out[1]);
    StunTransactionId stray = main_txid;
    stray[0] ^= 0xff;

    CHECK(p.on_stun(UdpPort::kMain, encode_binding_success(stray, kMapped, "")) ==
          StunAnswer::kUnmatched);
    // The right transaction arriving from the other port.
    CHECK(p.on_stun(UdpPort::kSecondary, encode_binding_success(main_txid, kMapped, "")) ==
          StunAnswer::kUnmatched);
    CHECK(p.on_stun(UdpPort::kMain, encode_binding_error(main_txid, 400, "Bad Request")) ==
          StunAnswer::kMalformed);
    CHECK(p.on_stun(UdpPort::kMain, encode_binding_request(main_txid, true)) ==
          StunAnswer::kMalformed);
    {
        // RFC 8489 §6.3.3: an unknown comprehension-required attribute (PRIORITY, 0x0024)
        // makes a response unusable.
        StunMessage m;
        m.type = kStunBindingSuccess;
        m.transaction_id = main_txid;
        m.xor_mapped_address = kMapped;
        Bytes with_unknown = encode_stun(m);
        const Bytes attr = {0x00, 0x24, 0x00, 0x04, 0x6e, 0x00, 0x01, 0xff};
        with_unknown.insert(with_unknown.end(), attr.begin(), attr.end());
        with_unknown[3] = static_cast<uint8_t>(with_unknown.size() - kStunHeaderSize);
        CHECK(p.on_stun(UdpPort::kMain, with_unknown) == StunAnswer::kMalformed);
    }
    Bytes corrupt = encode_binding_success(main_txid, kMapped, "");
    corrupt.back() ^= 1;  // FINGERPRINT no longer matches
    CHECK(p.on_stun(UdpPort::kMain, corrupt) == StunAnswer::kMalformed);
    CHECK(p.result() == NatProbeResult{});
    CHECK_FALSE(p.finished());

    CHECK(p.on_stun(UdpPort::kMain, encode_binding_success(main_txid, kMapped, "")) ==
          StunAnswer::kAccepted);
    const SocketAddress moved = *parse_socket_address("203.0.113.9:62000");
    CHECK(p.on_stun(UdpPort::kSecondary, encode_binding_success(second_txid, moved, "")) ==
          StunAnswer::kAccepted);
    REQUIRE(p.finished());
    CHECK(p.result().mapping == NatMapping::kPerDestination);

    // A new start forgets the old transactions.
    auto again = start(p, rng, t0 + milliseconds(50));
    CHECK_FALSE(p.finished());
    CHECK(p.on_stun(UdpPort::kMain, encode_binding_success(main_txid, kMapped, "")) ==
          StunAnswer::kUnmatched);
    CHECK(txid_of(again[0]) != main_txid);
}
