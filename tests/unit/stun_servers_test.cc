#include <catch2/catch.hpp>

#include "signal/nat_probe.h"
#include "signal/stun_servers.h"

using namespace burrow;
using std::chrono::milliseconds;

namespace {

const SocketAddress kServerA = *parse_socket_address("192.0.2.10:3478");
const SocketAddress kServerB = *parse_socket_address("198.51.100.5:19302");
const SocketAddress kMapped = *parse_socket_address("203.0.113.9:61000");
const SocketAddress kMappedOther = *parse_socket_address("203.0.113.9:61001");
const SocketAddress kHost = *parse_socket_address("10.0.0.2:41641");

HostPort literal(const SocketAddress& a) {
    return std::get<HostPort>(parse_host_port(to_string(a)));
}

std::vector<StunServerDatagram> drain(StunServerSet& s) {
    std::vector<StunServerDatagram> out;
    while (auto d = s.poll_transmit()) out.push_back(std::move(*d));
    return out;
}

std::vector<StunServerEvent> events(StunServerSet& s) {
    std::vector<StunServerEvent> out;
    while (auto e = s.poll_event()) out.push_back(*e);
    return out;
}

StunTransactionId txid_of(const StunServerDatagram& d) {
    auto m = decode_stun(d.bytes);
    REQUIRE(m);
    return m->transaction_id;
}

// Runs the set's timer at each deadline up to `until`; returns when each request left.
std::vector<Time> run(StunServerSet& s, Time until) {
    std::vector<Time> sent;
    for (Time t = s.next_deadline(); t <= until && t != kNever; t = s.next_deadline()) {
        s.on_timer(t);
        for (size_t i = 0, n = drain(s).size(); i < n; ++i) sent.push_back(t);
    }
    return sent;
}

}  // namespace

TEST_CASE("a silent STUN server gets RFC 8489's 7 requests, then is given up and reported once") {
    SeededRng rng(1);
    const Time t0 = time_from_us(1'000'000);
    StunServerSet set({literal(kServerA)}, "burrow/test");
    set.start(rng, t0);
    std::vector<StunServerDatagram> first = drain(set);
    REQUIRE(first.size() == 1);
    CHECK(first[0].to == kServerA);
    const StunTransactionId txid = txid_of(first[0]);
    std::vector<Time> sent = {t0};
    // Capture every retransmission and check it keeps the transaction id (RFC 8489 §6.2.1).
    for (Time t = set.next_deadline(); t != kNever; t = set.next_deadline()) {
        set.on_timer(t);
        for (const auto& d : drain(set)) {
            CHECK(txid_of(d) == txid);
            sent.push_back(t);
        }
        REQUIRE(t - t0 <= milliseconds(39'500));
    }
    // RFC 8489 §6.2.1: RTO 500 ms doubling; Rc = 7; the last one waits Rm x RTO = 8 s.
    const std::vector<int64_t> expect_ms = {0, 500, 1500, 3500, 7500, 15500, 31500};
    REQUIRE(sent.size() == expect_ms.size());
    for (size_t i = 0; i < sent.size(); ++i) CHECK(to_ms(sent[i] - t0) == expect_ms[i]);
    const auto ev = events(set);
    REQUIRE(ev.size() == 1);
    CHECK(std::holds_alternative<StunServerSilent>(ev[0]));
    auto st = set.status();
    REQUIRE(st.size() == 1);
    CHECK(st[0].state == StunServerState::kNoAnswer);
    CHECK(st[0].requests == kStunServerMaxRequests);
    CHECK(set.stats().gave_up == 1);
    CHECK(set.mapped().empty());
    CHECK(set.next_deadline() == kNever);

    SECTION("a second silent round is not reported again") {
        set.start(rng, t0 + std::chrono::seconds(60));
        run(set, t0 + std::chrono::seconds(200));
        CHECK(events(set).empty());
        CHECK(set.stats().gave_up == 2);
    }
    SECTION("after an answer, silence is reported again") {
        const Time t1 = t0 + std::chrono::seconds(60);
        set.start(rng, t1);
        auto d = drain(set);
        REQUIRE(d.size() == 1);
        const Bytes answer = encode_binding_success(txid_of(d[0]), kMapped, "coturn");
        CHECK(set.on_datagram(kServerA, answer, t1 + milliseconds(20)) ==
              StunServerVerdict::kAccepted);
        CHECK(events(set).size() == 1);
        set.start(rng, t1 + std::chrono::seconds(60));
        run(set, t1 + std::chrono::seconds(200));
        const auto again = events(set);
        REQUIRE(again.size() == 1);
        CHECK(std::holds_alternative<StunServerSilent>(again[0]));
    }
}

TEST_CASE("a STUN server's answer gives the mapped address and its RTT; others change nothing") {
    SeededRng rng(2);
    const Time t0 = time_from_us(0);
    StunServerSet set({literal(kServerA), literal(kServerB)}, "burrow/test");
    set.start(rng, t0);
    auto d = drain(set);
    REQUIRE(d.size() == 2);
    REQUIRE(d[0].to == kServerA);
    const StunTransactionId txid = txid_of(d[0]);
    // The first retry goes out at 500 ms; the answer comes 30 ms after it.
    run(set, t0 + milliseconds(500));
    const Time at = t0 + milliseconds(530);

    StunTransactionId wrong = txid;
    wrong[0] ^= 1;
    CHECK(set.expects(kServerA, encode_binding_success(txid, kMapped, "")));
    CHECK_FALSE(set.expects(kServerA, encode_binding_success(wrong, kMapped, "")));
    CHECK_FALSE(set.expects(kServerB, encode_binding_success(txid, kMapped, "")));

    CHECK(set.on_datagram(kServerA, encode_binding_success(wrong, kMapped, ""), at) ==
          StunServerVerdict::kUnmatched);
    // The right transaction from another server's address is not this server's answer.
    CHECK(set.on_datagram(kServerB, encode_binding_success(txid, kMapped, ""), at) ==
          StunServerVerdict::kUnmatched);
    CHECK(set.on_datagram(kHost, encode_binding_success(txid, kMapped, ""), at) ==
          StunServerVerdict::kNotOurs);
    CHECK(set.on_datagram(kServerA, encode_binding_request(txid, true), at) ==
          StunServerVerdict::kMalformed);
    CHECK(set.on_datagram(kServerA, encode_binding_error(txid, 400, "bad"), at) ==
          StunServerVerdict::kMalformed);
    Bytes truncated = encode_binding_success(txid, kMapped, "");
    truncated.resize(truncated.size() - 4);
    CHECK(set.on_datagram(kServerA, truncated, at) == StunServerVerdict::kMalformed);
    CHECK(set.stats().drop_unmatched == 2);
    CHECK(set.stats().drop_malformed == 3);
    CHECK(events(set).empty());
    CHECK(set.mapped().empty());
    CHECK(set.status()[0].state == StunServerState::kProbing);

    CHECK(set.on_datagram(kServerA, encode_binding_success(txid, kMapped, "coturn"), at) ==
          StunServerVerdict::kAccepted);
    const auto ev = events(set);
    REQUIRE(ev.size() == 1);
    const auto* answered = std::get_if<StunServerAnswered>(&ev[0]);
    REQUIRE(answered);
    CHECK(answered->index == 0);
    CHECK(answered->mapped == kMapped);
    CHECK(answered->changed);
    const auto st = set.status();
    CHECK(st[0].state == StunServerState::kAnswered);
    CHECK(st[0].mapped == kMapped);
    CHECK(st[0].rtt == milliseconds(30));
    CHECK(st[0].requests == 2);
    CHECK(st[1].state == StunServerState::kProbing);
    CHECK(set.mapped() == std::vector<SocketAddress>{kMapped});
    // A duplicate of the answer is a late one now.
    CHECK(set.on_datagram(kServerA, encode_binding_success(txid, kMapped, ""), at) ==
          StunServerVerdict::kUnmatched);
    CHECK_FALSE(set.expects(kServerA, encode_binding_success(txid, kMapped, "")));
    // Only server B is still asked.
    const auto later = run(set, t0 + milliseconds(1500));
    CHECK(later.size() == 1);
}

TEST_CASE("a STUN server named by DNS waits for its address; an unresolved one is never asked") {
    SeededRng rng(3);
    const Time t0 = time_from_us(0);
    StunServerSet set({HostPort{"stun.example.net", 3478, HostKind::kName},
                       HostPort{"nowhere.example", 3478, HostKind::kName}},
                      "burrow/test");
    CHECK(set.status()[0].state == StunServerState::kResolving);
    set.start(rng, t0);
    CHECK(drain(set).empty());
    CHECK(set.next_deadline() == kNever);
    set.set_address(0, kServerA, "");
    set.set_address(1, std::nullopt, "Name or service not known");
    CHECK(set.status()[0].state == StunServerState::kIdle);
    CHECK(set.status()[1].state == StunServerState::kUnresolved);
    CHECK(set.status()[1].error == "Name or service not known");
    set.probe(0, rng, t0 + milliseconds(10));
    auto d = drain(set);
    REQUIRE(d.size() == 1);
    CHECK(d[0].to == kServerA);
    set.probe(1, rng, t0 + milliseconds(10));
    CHECK(drain(set).empty());
}

TEST_CASE("requests are large enough for a burrow server's STUN port to answer") {
    SeededRng rng(4);
    StunServerSet set({literal(kServerA)}, "");
    set.start(rng, time_from_us(0));
    auto d = drain(set);
    REQUIRE(d.size() == 1);
    CHECK(d[0].bytes.size() >= kStunProbeRequestSize);
    auto m = decode_stun(d[0].bytes);
    REQUIRE(m);
    CHECK(m->type == kStunBindingRequest);
    CHECK(m->fingerprint);
}

TEST_CASE("STUN servers give a second opinion on the NAT's mapping") {
    const std::vector<SocketAddress> none;
    const std::vector<SocketAddress> host = {kHost};
    // Another server sees another port: per destination, whatever the server's ports said.
    CHECK(refine_mapping(NatMapping::kEndpointIndependent, kMapped,
                         std::vector<SocketAddress>{kMappedOther}, host) ==
          NatMapping::kPerDestination);
    CHECK(refine_mapping(NatMapping::kUnknown, std::nullopt,
                         std::vector<SocketAddress>{kMapped, kMappedOther}, host) ==
          NatMapping::kPerDestination);
    // Two that agree decide what the server's ports could not.
    CHECK(refine_mapping(NatMapping::kUnknown, kMapped, std::vector<SocketAddress>{kMapped},
                         host) == NatMapping::kEndpointIndependent);
    CHECK(refine_mapping(NatMapping::kUnknown, std::nullopt,
                         std::vector<SocketAddress>{kMapped, kMapped}, host) ==
          NatMapping::kEndpointIndependent);
    // One observation alone proves nothing.
    CHECK(refine_mapping(NatMapping::kUnknown, std::nullopt, std::vector<SocketAddress>{kMapped},
                         host) == NatMapping::kUnknown);
    // Agreement does not overrule the server's ports seeing two mappings.
    CHECK(refine_mapping(NatMapping::kPerDestination, kMapped, std::vector<SocketAddress>{kMapped},
                         host) == NatMapping::kPerDestination);
    // A server on our side of the NAT sees our host address: it says nothing about the NAT.
    CHECK(refine_mapping(NatMapping::kEndpointIndependent, kMapped,
                         std::vector<SocketAddress>{kHost}, host) ==
          NatMapping::kEndpointIndependent);
    CHECK(refine_mapping(NatMapping::kUnknown, std::nullopt, none, host) == NatMapping::kUnknown);
}
