#include <catch2/catch.hpp>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "src/udp_socket.h"
#include "tests/unit/uv_test_loop.h"

using namespace burrow;
using namespace std::chrono_literals;
using burrow::test::TestLoop;

namespace {

struct Received {
    SocketAddress from;
    Bytes data;
    Time at;
};

SocketAddress loopback4(uint16_t port = 0) {
    return SocketAddress::ipv4({127, 0, 0, 1}, port);
}

SocketAddress loopback6(uint16_t port = 0) {
    std::array<uint8_t, kIpv6Size> ip{};
    ip[15] = 1;
    return SocketAddress::ipv6(ip, port);
}

// Why this kernel cannot bind an IPv6 UDP socket to [::1], or nullopt when it can. Asked with
// plain socket calls, never through UdpSocket: a UdpSocket that fails at IPv6 must fail the
// test below, not pass for a machine without IPv6.
std::optional<std::string> kernel_lacks_ipv6() {
    const int fd = ::socket(AF_INET6, SOCK_DGRAM, 0);
    if (fd < 0) return std::string("socket(AF_INET6): ") + std::strerror(errno);
    sockaddr_in6 at{};
    at.sin6_family = AF_INET6;
    at.sin6_addr = in6addr_loopback;
    const int rc = ::bind(fd, reinterpret_cast<const sockaddr*>(&at), sizeof at);
    const int error = errno;
    ::close(fd);
    if (rc != 0) return std::string("bind [::1]:0: ") + std::strerror(error);
    return std::nullopt;
}

std::shared_ptr<UdpSocket> bind_or_fail(TestLoop& loop, const LoopClock& clock,
                                        const SocketAddress& at, std::vector<Received>* inbox,
                                        UdpOptions options = {}) {
    auto r = UdpSocket::bind(
        loop.get(), clock, at,
        [inbox](const SocketAddress& from, ByteView data, Time now) {
            if (inbox) inbox->push_back({from, Bytes(data.begin(), data.end()), now});
        },
        options);
    if (auto* e = std::get_if<OsError>(&r)) FAIL(e->message);
    return std::get<std::shared_ptr<UdpSocket>>(r);
}

}  // namespace

TEST_CASE("udp: bind to port 0 reports the port the OS picked") {
    TestLoop loop;
    LoopClock clock;
    auto s = bind_or_fail(loop, clock, loopback4(), nullptr);
    CHECK(s->local_address().port != 0);
    CHECK(s->local_address().ip_bytes()[0] == 127);
    CHECK(s->receive_buffer_size() > 0);
    CHECK(s->send_buffer_size() > 0);
    s->close();
    loop.settle();
}

TEST_CASE("udp: datagrams go both ways with the sender's address") {
    TestLoop loop;
    LoopClock clock;
    std::vector<Received> at_a, at_b;
    auto a = bind_or_fail(loop, clock, loopback4(), &at_a);
    auto b = bind_or_fail(loop, clock, loopback4(), &at_b);

    REQUIRE(a->send(b->local_address(), as_bytes("hello b")));
    REQUIRE(b->send(a->local_address(), as_bytes("hello a")));
    REQUIRE(loop.run_until([&] { return !at_a.empty() && !at_b.empty(); }));
    CHECK(as_chars(at_b[0].data) == "hello b");
    CHECK(at_b[0].from == a->local_address());
    CHECK(as_chars(at_a[0].data) == "hello a");
    CHECK(at_a[0].from == b->local_address());
    CHECK(at_b[0].at <= clock.now());
    CHECK(a->stats().datagrams_sent == 1);
    CHECK(b->stats().datagrams_received == 1);
    CHECK(b->stats().bytes_received == 7);
    a->close();
    b->close();
    loop.settle();
}

TEST_CASE("udp: a burst arrives whole and in order on loopback") {
    TestLoop loop;
    LoopClock clock;
    std::vector<Received> inbox;
    auto a = bind_or_fail(loop, clock, loopback4(), nullptr);
    auto b = bind_or_fail(loop, clock, loopback4(), &inbox);
    constexpr int kCount = 100;
    constexpr size_t kSize = 1350;  // ConnectionConfig::max_datagram_size
    for (int i = 0; i < kCount; ++i) {
        Bytes d(kSize, static_cast<uint8_t>(i));
        REQUIRE(a->send(b->local_address(), d));
    }
    REQUIRE(loop.run_until([&] { return inbox.size() == kCount; }));
    for (int i = 0; i < kCount; ++i) {
        REQUIRE(inbox[i].data.size() == kSize);
        CHECK(inbox[i].data[0] == static_cast<uint8_t>(i));
    }
    a->close();
    b->close();
    loop.settle();
}

TEST_CASE("udp: an empty datagram is delivered as one") {
    TestLoop loop;
    LoopClock clock;
    std::vector<Received> inbox;
    auto a = bind_or_fail(loop, clock, loopback4(), nullptr);
    auto b = bind_or_fail(loop, clock, loopback4(), &inbox);
    REQUIRE(a->send(b->local_address(), ByteView{}));
    REQUIRE(a->send(b->local_address(), as_bytes("x")));
    REQUIRE(loop.run_until([&] { return inbox.size() == 2; }));
    CHECK(inbox[0].data.empty());
    CHECK(as_chars(inbox[1].data) == "x");
    a->close();
    b->close();
    loop.settle();
}

TEST_CASE("udp: a datagram larger than the receive buffer is counted and dropped") {
    TestLoop loop;
    LoopClock clock;
    std::vector<Received> inbox;
    UdpOptions small;
    small.max_datagram_size = 100;
    auto a = bind_or_fail(loop, clock, loopback4(), nullptr);
    auto b = bind_or_fail(loop, clock, loopback4(), &inbox, small);
    REQUIRE(a->send(b->local_address(), Bytes(101, 0xaa)));
    REQUIRE(a->send(b->local_address(), Bytes(100, 0xbb)));  // fits exactly
    REQUIRE(loop.run_until([&] { return b->stats().truncated == 1 && inbox.size() == 1; }));
    CHECK(inbox[0].data == Bytes(100, 0xbb));
    CHECK(b->stats().datagrams_received == 1);
    a->close();
    b->close();
    loop.settle();
}

TEST_CASE("udp: IPv6 loopback, and IPv4 peers of a dual-stack socket look like IPv4") {
    TestLoop loop;
    LoopClock clock;
    if (const auto why = kernel_lacks_ipv6()) {
        WARN("SKIP: this kernel has no IPv6 (" << *why << ") " << std::string(40, '!'));
        return;
    }
    std::vector<Received> at_dual, at_v6;
    auto dual = bind_or_fail(loop, clock, SocketAddress::ipv6({}, 0), &at_dual);
    auto v4 = bind_or_fail(loop, clock, loopback4(), nullptr);
    auto v6 = bind_or_fail(loop, clock, loopback6(), &at_v6);

    REQUIRE(v4->send(loopback4(dual->local_address().port), as_bytes("from v4")));
    REQUIRE(loop.run_until([&] { return at_dual.size() == 1; }));
    CHECK(at_dual[0].from == v4->local_address());  // 127.0.0.1, not ::ffff:127.0.0.1

    // And the dual-stack socket answers an IPv4 address given as IPv4.
    std::vector<Received> at_v4;
    v4->close();
    auto v4b = bind_or_fail(loop, clock, loopback4(), &at_v4);
    REQUIRE(dual->send(v4b->local_address(), as_bytes("to v4")));
    REQUIRE(dual->send(v6->local_address(), as_bytes("to v6")));
    REQUIRE(loop.run_until([&] { return at_v4.size() == 1 && at_v6.size() == 1; }));
    CHECK(as_chars(at_v4[0].data) == "to v4");
    CHECK(at_v6[0].from.v6);
    CHECK(as_chars(at_v6[0].data) == "to v6");

    // An IPv4 socket cannot reach an IPv6 address: a counted failure, not a crash.
    CHECK_FALSE(v4b->send(v6->local_address(), as_bytes("nope")));
    CHECK(v4b->stats().send_failures == 1);
    dual->close();
    v4b->close();
    v6->close();
    loop.settle();
}

TEST_CASE("udp: closing from inside the receive callback stops delivery") {
    TestLoop loop;
    LoopClock clock;
    int calls = 0;
    std::shared_ptr<UdpSocket> b;
    auto r =
        UdpSocket::bind(loop.get(), clock, loopback4(), [&](const SocketAddress&, ByteView, Time) {
            ++calls;
            b->close();
        });
    b = std::get<std::shared_ptr<UdpSocket>>(r);
    auto a = bind_or_fail(loop, clock, loopback4(), nullptr);
    for (int i = 0; i < 5; ++i) REQUIRE(a->send(b->local_address(), as_bytes("x")));
    loop.run_for(50ms);
    CHECK(calls == 1);
    CHECK_FALSE(b->send(a->local_address(), as_bytes("closed")));
    a->close();
    loop.settle();
}

TEST_CASE("udp: binding an address that is in use is a one-line error") {
    TestLoop loop;
    LoopClock clock;
    auto a = bind_or_fail(loop, clock, loopback4(), nullptr);
    auto r = UdpSocket::bind(loop.get(), clock, a->local_address(),
                             [](const SocketAddress&, ByteView, Time) {});
    REQUIRE(std::holds_alternative<OsError>(r));
    CHECK(std::get<OsError>(r).message ==
          "bind udp " + to_string(a->local_address()) + ": address already in use");
    a->close();
    loop.settle();
}
