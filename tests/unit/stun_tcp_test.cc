#include <catch2/catch.hpp>

#include "signal/stun.h"
#include "signal/stun_tcp.h"

using namespace burrow;

namespace {

const SocketAddress kClient = *parse_socket_address("203.0.113.5:50001");
const SocketAddress kClient6 = *parse_socket_address("[2001:db8::7]:41000");
const StunTransactionId kTxid = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
const StunTransactionId kTxid2 = {12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1};
const Time kT0{};

Bytes request(const StunTransactionId& txid = kTxid, bool fingerprint = false) {
    return encode_binding_request(txid, fingerprint);
}

Bytes concat(std::initializer_list<Bytes> parts) {
    Bytes out;
    for (const Bytes& p : parts) out.insert(out.end(), p.begin(), p.end());
    return out;
}

// Every answer in a reply stream, cut by the client's own framer.
std::vector<StunMessage> answers(const Bytes& reply) {
    std::vector<StunMessage> out;
    StunStreamFramer f;
    ByteView in(reply);
    while (auto m = f.next(in)) {
        auto decoded = decode_stun(*m);
        REQUIRE(decoded);
        out.push_back(*decoded);
    }
    REQUIRE_FALSE(f.error());
    REQUIRE(f.buffered() == 0);
    return out;
}

StunTcpServer server(StunTcpLimits limits = {}) {
    return StunTcpServer("burrow/test", limits);
}

}  // namespace

TEST_CASE("stun framer: a whole message in one read comes out whole") {
    StunStreamFramer f;
    const Bytes r = request();
    ByteView in(r);
    auto m = f.next(in);
    REQUIRE(m);
    CHECK(Bytes(m->begin(), m->end()) == r);
    CHECK(in.empty());
    CHECK_FALSE(f.next(in));
    CHECK_FALSE(f.finish());
}

TEST_CASE("stun framer: a message split at every byte comes out once, at its last byte") {
    const Bytes r = request(kTxid, true);
    StunStreamFramer f;
    for (size_t i = 0; i < r.size(); ++i) {
        ByteView in(&r[i], 1);
        auto m = f.next(in);
        if (i + 1 < r.size()) {
            REQUIRE_FALSE(m);
            REQUIRE_FALSE(f.error());
        } else {
            REQUIRE(m);
            CHECK(Bytes(m->begin(), m->end()) == r);
        }
    }
}

TEST_CASE("stun framer: two messages in one read come out one after the other") {
    const Bytes a = request(kTxid);
    const Bytes b = request(kTxid2, true);
    const Bytes both = concat({a, b});
    StunStreamFramer f;
    ByteView in(both);
    auto first = f.next(in);
    REQUIRE(first);
    CHECK(Bytes(first->begin(), first->end()) == a);
    CHECK(in.size() == b.size());
    auto second = f.next(in);
    REQUIRE(second);
    CHECK(Bytes(second->begin(), second->end()) == b);
    CHECK(in.empty());
}

TEST_CASE("stun framer: refuses a stream that is not STUN at the first byte that shows it") {
    SECTION("a first byte above 3 (an HTTP request)") {
        StunStreamFramer f;
        const Bytes http = {'G', 'E', 'T', ' ', '/', ' ', 'H', 'T', 'T', 'P'};
        ByteView in(http);
        CHECK_FALSE(f.next(in));
        CHECK(f.error() == StunStreamError::kNotStun);
        CHECK(in.empty());
        CHECK(f.buffered() == 0);
    }
    SECTION("a TLS ClientHello (0x16) is refused on its first byte alone") {
        StunStreamFramer f;
        const Bytes one = {0x16};
        ByteView in(one);
        CHECK_FALSE(f.next(in));
        CHECK(f.error() == StunStreamError::kNotStun);
    }
    SECTION("no magic cookie") {
        Bytes r = request();
        r[5] ^= 0xff;
        StunStreamFramer f;
        ByteView in(r);
        CHECK_FALSE(f.next(in));
        CHECK(f.error() == StunStreamError::kNotStun);
    }
    SECTION("a length not a multiple of 4") {
        Bytes r = request();
        r[3] = 3;
        StunStreamFramer f;
        ByteView in(r);
        CHECK_FALSE(f.next(in));
        CHECK(f.error() == StunStreamError::kNotStun);
    }
    SECTION("after an error nothing more comes out, even a good message") {
        StunStreamFramer f;
        const Bytes bad = {0xff};
        ByteView in(bad);
        CHECK_FALSE(f.next(in));
        const Bytes good = request();
        ByteView again(good);
        CHECK_FALSE(f.next(again));
        CHECK(f.error() == StunStreamError::kNotStun);
    }
}

TEST_CASE("stun framer: a declared length past the cap is refused before its body") {
    Bytes header = request();
    const size_t length = kStunTcpMaxMessage - kStunHeaderSize + 4;  // one word too many
    header[2] = static_cast<uint8_t>(length >> 8);
    header[3] = static_cast<uint8_t>(length);
    StunStreamFramer f;
    ByteView in(ByteView(header).first(4));
    CHECK_FALSE(f.next(in));
    CHECK(f.error() == StunStreamError::kTooLong);

    // Exactly at the cap is still a message.
    Bytes at_cap(kStunTcpMaxMessage, 0);
    std::copy(header.begin(), header.begin() + kStunHeaderSize, at_cap.begin());
    at_cap[2] = static_cast<uint8_t>((kStunTcpMaxMessage - kStunHeaderSize) >> 8);
    at_cap[3] = static_cast<uint8_t>(kStunTcpMaxMessage - kStunHeaderSize);
    StunStreamFramer g;
    ByteView whole(at_cap);
    auto m = g.next(whole);
    REQUIRE(m);
    CHECK(m->size() == kStunTcpMaxMessage);
}

TEST_CASE("stun framer: a stream that ends inside a message is truncated") {
    const Bytes r = request();
    StunStreamFramer f;
    ByteView in(ByteView(r).first(r.size() - 1));
    CHECK_FALSE(f.next(in));
    CHECK_FALSE(f.error());
    CHECK(f.finish() == StunStreamError::kTruncated);
    CHECK(f.buffered() == 0);

    StunStreamFramer clean;
    ByteView all(r);
    REQUIRE(clean.next(all));
    CHECK_FALSE(clean.finish());
}

TEST_CASE("stun tcp server: answers a Binding request with the connection's peer address") {
    StunTcpServer s = server();
    REQUIRE(s.on_open(1, kClient, kT0));
    REQUIRE(s.on_open(2, kClient6, kT0));
    const StunTcpOutput out = s.on_bytes(1, request(kTxid, true));
    CHECK_FALSE(out.close);
    const auto a = answers(out.reply);
    REQUIRE(a.size() == 1);
    CHECK(a[0].type == kStunBindingSuccess);
    CHECK(a[0].transaction_id == kTxid);
    CHECK(a[0].xor_mapped_address == kClient);
    CHECK(a[0].software == "burrow/test");
    CHECK(a[0].fingerprint);

    // A bare 20-byte request gets the full answer: no amplification limit on TCP.
    const auto b = answers(s.on_bytes(2, request(kTxid2)).reply);
    REQUIRE(b.size() == 1);
    CHECK(b[0].xor_mapped_address == kClient6);
    CHECK(b[0].software == "burrow/test");
    CHECK(s.stats().answered == 2);
}

TEST_CASE("stun tcp server: split and coalesced reads give the same answers") {
    const Bytes stream = concat({request(kTxid), request(kTxid2, true)});
    for (size_t cut = 1; cut < stream.size(); ++cut) {
        StunTcpServer s = server();
        REQUIRE(s.on_open(7, kClient, kT0));
        Bytes reply;
        for (size_t at = 0; at < stream.size(); at += cut) {
            const size_t n = std::min(cut, stream.size() - at);
            const StunTcpOutput out = s.on_bytes(7, ByteView(stream).subspan(at, n));
            REQUIRE_FALSE(out.close);
            reply.insert(reply.end(), out.reply.begin(), out.reply.end());
        }
        const auto a = answers(reply);
        REQUIRE(a.size() == 2);
        CHECK(a[0].transaction_id == kTxid);
        CHECK(a[1].transaction_id == kTxid2);
        CHECK(a[1].fingerprint);
    }
}

TEST_CASE("stun tcp server: two requests in one read get two answers in one reply") {
    StunTcpServer s = server();
    REQUIRE(s.on_open(1, kClient, kT0));
    const StunTcpOutput out = s.on_bytes(1, concat({request(kTxid), request(kTxid2)}));
    CHECK_FALSE(out.close);
    const auto a = answers(out.reply);
    REQUIRE(a.size() == 2);
    CHECK(a[0].transaction_id == kTxid);
    CHECK(a[1].transaction_id == kTxid2);
}

TEST_CASE("stun tcp server: the last allowed request is answered, then the connection ends") {
    StunTcpServer s = server({.max_requests = 2});
    REQUIRE(s.on_open(1, kClient, kT0));
    const StunTcpOutput out =
        s.on_bytes(1, concat({request(kTxid), request(kTxid2), request(kTxid)}));
    CHECK(answers(out.reply).size() == 2);
    CHECK(out.close == StunTcpClose::kDone);
    CHECK(s.stats().closed_by(StunTcpClose::kDone) == 1);
    // Nothing more is read from a closing connection.
    CHECK(s.on_bytes(1, request()).reply.empty());
    s.on_closed(1);
    CHECK(s.open_count() == 0);
    CHECK(s.stats().closed_by(StunTcpClose::kDone) == 1);
}

TEST_CASE("stun tcp server: garbage, a long length, a response or a bad message close it") {
    struct Case {
        const char* name;
        Bytes bytes;
        StunTcpClose why;
    };
    Bytes too_long = request();
    too_long[2] = 0x02;  // 20 + 0x0214 = 552 > 548
    too_long[3] = 0x14;
    StunMessage response;
    response.type = kStunBindingSuccess;
    response.transaction_id = kTxid;
    response.xor_mapped_address = kClient;
    Bytes bad_attr = request();  // an attribute whose length runs past the message
    const Bytes attr = {0x80, 0x22, 0x00, 0x08, 'a', 'b', 'c', 'd'};
    bad_attr.insert(bad_attr.end(), attr.begin(), attr.end());
    bad_attr[3] = static_cast<uint8_t>(attr.size());
    const Case cases[] = {
        {"http", {'G', 'E', 'T', ' ', '/', '\r', '\n', '\r', '\n'}, StunTcpClose::kNotStun},
        {"too long", too_long, StunTcpClose::kTooLong},
        {"a response", encode_stun(response), StunTcpClose::kNotRequest},
        {"malformed", bad_attr, StunTcpClose::kMalformed},
    };
    for (const Case& c : cases) {
        INFO(c.name);
        StunTcpServer s = server();
        REQUIRE(s.on_open(1, kClient, kT0));
        // A good request first: its answer still goes out before the close.
        const StunTcpOutput out = s.on_bytes(1, concat({request(), c.bytes}));
        CHECK(answers(out.reply).size() == 1);
        CHECK(out.close == c.why);
        CHECK(s.stats().closed_by(c.why) == 1);
        s.on_closed(1);
        CHECK(s.open_count() == 0);
    }
}

TEST_CASE("stun tcp server: a client that ends mid-message is counted truncated, no answer") {
    const Bytes r = request();
    SECTION("FIN") {
        StunTcpServer s = server();
        REQUIRE(s.on_open(1, kClient, kT0));
        CHECK(s.on_bytes(1, ByteView(r).first(10)).reply.empty());
        const StunTcpOutput out = s.on_eof(1);
        CHECK(out.close == StunTcpClose::kTruncated);
        CHECK(out.reply.empty());
        s.on_closed(1);
        CHECK(s.stats().closed_by(StunTcpClose::kTruncated) == 1);
    }
    SECTION("reset") {
        StunTcpServer s = server();
        REQUIRE(s.on_open(1, kClient, kT0));
        s.on_bytes(1, ByteView(r).first(r.size() - 1));
        s.on_closed(1);
        CHECK(s.stats().closed_by(StunTcpClose::kTruncated) == 1);
        CHECK(s.open_count() == 0);
    }
    SECTION("a FIN between messages is a clean end") {
        StunTcpServer s = server();
        REQUIRE(s.on_open(1, kClient, kT0));
        s.on_bytes(1, r);
        CHECK(s.on_eof(1).close == StunTcpClose::kDone);
        CHECK(s.stats().closed_by(StunTcpClose::kTruncated) == 0);
    }
}

TEST_CASE("stun tcp server: a connection past its lifetime is closed once, counted") {
    StunTcpServer s = server({.lifetime = std::chrono::seconds(5)});
    REQUIRE(s.on_open(1, kClient, kT0));
    REQUIRE(s.on_open(2, kClient, kT0 + std::chrono::seconds(2)));
    CHECK(s.next_deadline() == kT0 + std::chrono::seconds(5));
    CHECK(s.on_timer(kT0 + std::chrono::milliseconds(4999)).empty());
    CHECK(s.on_timer(kT0 + std::chrono::seconds(5)) == std::vector<ConnId>{1});
    CHECK(s.next_deadline() == kT0 + std::chrono::seconds(7));
    CHECK(s.on_timer(kT0 + std::chrono::seconds(6)).empty());
    s.on_closed(1);
    CHECK(s.stats().closed_by(StunTcpClose::kTimeout) == 1);
    CHECK(s.on_timer(kT0 + std::chrono::seconds(8)) == std::vector<ConnId>{2});
    CHECK(s.next_deadline() == kNever);
}

TEST_CASE("stun tcp server: beyond the connection limit one is refused, counted") {
    StunTcpServer s = server({.max_connections = 2});
    CHECK(s.on_open(1, kClient, kT0));
    CHECK(s.on_open(2, kClient, kT0));
    CHECK_FALSE(s.on_open(3, kClient, kT0));
    CHECK(s.stats().closed_by(StunTcpClose::kFull) == 1);
    CHECK(s.stats().accepted == 2);
    s.on_closed(1);
    CHECK(s.on_open(4, kClient, kT0));
    // Input for a connection it refused or never knew changes nothing.
    CHECK(s.on_bytes(3, request()).reply.empty());
    CHECK_FALSE(s.on_eof(3).close);
}

TEST_CASE("stun tcp query: reads its answer however it is cut, ignores others") {
    StunTcpServer s = server();
    REQUIRE(s.on_open(1, kClient, kT0));
    StunTcpQuery q(kTxid);
    const Bytes other = s.on_bytes(1, request(kTxid2)).reply;
    const Bytes mine = s.on_bytes(1, q.request()).reply;
    const Bytes stream = concat({other, mine});
    for (size_t i = 0; i + 1 < stream.size(); ++i) {
        CHECK_FALSE(q.on_bytes(ByteView(&stream[i], 1)));
    }
    CHECK(q.on_bytes(ByteView(&stream.back(), 1)));
    REQUIRE(q.mapped());
    CHECK(*q.mapped() == kClient);
    CHECK(q.error().empty());
}

TEST_CASE("stun tcp query: garbage or a close without an answer is an error, not a crash") {
    SECTION("garbage") {
        StunTcpQuery q(kTxid);
        const Bytes http = {'H', 'T', 'T', 'P', '/', '1', '.', '1'};
        CHECK(q.on_bytes(http));
        CHECK_FALSE(q.mapped());
        CHECK(q.error() == "the server's answer is not STUN");
    }
    SECTION("closed mid-answer") {
        StunTcpServer s = server();
        REQUIRE(s.on_open(1, kClient, kT0));
        StunTcpQuery q(kTxid);
        const Bytes answer = s.on_bytes(1, q.request()).reply;
        CHECK_FALSE(q.on_bytes(ByteView(answer).first(answer.size() / 2)));
        q.on_closed();
        CHECK_FALSE(q.mapped());
        CHECK(q.error() == "the server closed the connection without an answer");
    }
}
