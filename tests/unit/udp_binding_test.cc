#include <catch2/catch.hpp>

#include "signal/udp_binding.h"
#include "signal/udp_messages.h"

using namespace burrow;
using std::chrono::milliseconds;

namespace {

const UdpToken kToken = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};

// Fires the binding's deadlines up to `until`; returns the Binds it sent.
size_t run(UdpBinding& b, Time& now, Time until) {
    size_t sent = 0;
    while (b.next_deadline() <= until) {
        now = std::max(now, b.next_deadline());
        std::deque<ServerDatagram> out;
        b.on_timer(now, out);
        for (const ServerDatagram& d : out) {
            CHECK(d.to == UdpPort::kMain);
            CHECK(decode_bind(d.bytes) == kToken);
        }
        sent += out.size();
    }
    now = until;
    return sent;
}

}  // namespace

TEST_CASE("Bind: unanswered rounds block, an answer binds, refreshes follow every 25 s") {
    UdpBinding b;
    Time now = time_from_us(1'000'000);
    std::deque<ServerDatagram> out;
    b.start(kToken, now, out);
    CHECK(out.size() == 1);
    CHECK(b.status() == UdpBindingStatus::kUnknown);

    const Time t0 = now;
    CHECK(run(b, now, t0 + milliseconds(3099)) == kUdpRequestMaxTries - 1);
    CHECK(b.status() == UdpBindingStatus::kUnknown);
    run(b, now, t0 + milliseconds(3100));
    CHECK(b.status() == UdpBindingStatus::kBlocked);
    CHECK(b.next_deadline() == t0 + milliseconds(3100) + kBindRefreshInterval);

    // A wrong token, a Bind instead of BindOk, or garbage change nothing.
    UdpToken wrong = kToken;
    wrong[15] ^= 1;
    CHECK(b.on_bind_ok(encode_bind_ok(wrong), now) == BindAnswerKind::kNotOurs);
    CHECK(b.on_bind_ok(encode_bind(kToken), now) == BindAnswerKind::kNotOurs);
    CHECK(b.on_bind_ok(Bytes{kUdpTypeBindOk}, now) == BindAnswerKind::kNotOurs);
    CHECK(b.status() == UdpBindingStatus::kBlocked);

    // A late answer still counts: the path works.
    CHECK(b.on_bind_ok(encode_bind_ok(kToken), now) == BindAnswerKind::kOk);
    CHECK(b.bound());
    const Time refresh = b.next_deadline();
    CHECK(refresh == t0 + milliseconds(3100) + kBindRefreshInterval);

    // The refresh round sends a Bind; its answer (and a duplicate) schedule the next one.
    CHECK(run(b, now, refresh) == 1);
    CHECK(b.bound());  // still bound while the refresh is in flight
    CHECK(b.on_bind_ok(encode_bind_ok(kToken), now + milliseconds(40)) == BindAnswerKind::kOk);
    CHECK(b.on_bind_ok(encode_bind_ok(kToken), now + milliseconds(90)) == BindAnswerKind::kOk);
    CHECK(b.next_deadline() == refresh + milliseconds(40) + kBindRefreshInterval);

    b.stop();
    CHECK(b.next_deadline() == kNever);
    CHECK(b.on_bind_ok(encode_bind_ok(kToken), now) == BindAnswerKind::kNotOurs);
    CHECK(b.status() == UdpBindingStatus::kUnknown);
}

TEST_CASE("keepalive: learned from BindMoved (halved, down to 1 s), or fixed when configured") {
    Time now = time_from_us(1'000'000);
    SECTION("learned") {
        UdpBinding b;
        std::deque<ServerDatagram> out;
        b.start(kToken, now, out);
        CHECK(b.learning());
        CHECK(b.refresh_interval() == kBindRefreshInterval);
        CHECK(b.on_bind_ok(encode_bind_ok(kToken), now) == BindAnswerKind::kOk);
        CHECK(b.next_deadline() == now + kBindRefreshInterval);
        // Each refresh finds the NAT moved us: the interval halves until the NAT keeps the
        // mapping, then stays.
        Duration expect = kBindRefreshInterval;
        for (int i = 0; i < 8; ++i) {
            CHECK(run(b, now, b.next_deadline()) == 1);
            CHECK(b.on_bind_ok(encode_bind_ok(kToken, true), now) == BindAnswerKind::kMoved);
            expect = std::max(kMinLearnedKeepalive, expect / 2);
            CHECK(b.refresh_interval() == expect);
            CHECK(b.next_deadline() == now + expect);
        }
        CHECK(b.refresh_interval() == kMinLearnedKeepalive);
        CHECK(run(b, now, b.next_deadline()) == 1);
        CHECK(b.on_bind_ok(encode_bind_ok(kToken), now) == BindAnswerKind::kOk);
        CHECK(b.refresh_interval() == kMinLearnedKeepalive);
        // What was learned survives a new connection (the NAT is the same).
        b.stop();
        b.start(kToken, now, out);
        CHECK(b.refresh_interval() == kMinLearnedKeepalive);
    }
    SECTION("a BindMoved for another token teaches nothing") {
        UdpBinding b;
        std::deque<ServerDatagram> out;
        b.start(kToken, now, out);
        UdpToken other = kToken;
        other[0] ^= 1;
        CHECK(b.on_bind_ok(encode_bind_ok(other, true), now) == BindAnswerKind::kNotOurs);
        CHECK(b.refresh_interval() == kBindRefreshInterval);
    }
    SECTION("fixed") {
        UdpBinding b;
        b.set_keepalive(std::chrono::seconds(4));
        std::deque<ServerDatagram> out;
        b.start(kToken, now, out);
        CHECK_FALSE(b.learning());
        CHECK(b.on_bind_ok(encode_bind_ok(kToken, true), now) == BindAnswerKind::kMoved);
        CHECK(b.refresh_interval() == std::chrono::seconds(4));
        CHECK(b.next_deadline() == now + std::chrono::seconds(4));
        CHECK(run(b, now, now + std::chrono::seconds(4)) == 1);
    }
}
