#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <sys/un.h>

#include "src/sockaddr.h"
#include "tunnel/rng.h"

using namespace burrow;

TEST_CASE("sockaddr: IPv4 and IPv6 round-trip, seeded") {
    for (uint64_t seed = 1; seed <= 200; ++seed) {
        INFO("seed " << seed);
        SeededRng rng(seed);
        std::array<uint8_t, kIpv6Size> ip6;
        rng.fill(ip6);
        ip6[0] = 0x20;  // never the IPv4-mapped prefix
        std::array<uint8_t, kIpv4Size> ip4;
        rng.fill(ip4);
        const auto port = static_cast<uint16_t>(rng.uniform(65536));
        for (const auto& a : {SocketAddress::ipv4(ip4, port), SocketAddress::ipv6(ip6, port)}) {
            const sockaddr_storage sa = to_sockaddr(a);
            CHECK(sa.ss_family == (a.v6 ? AF_INET6 : AF_INET));
            const auto back = from_sockaddr(reinterpret_cast<const sockaddr*>(&sa));
            REQUIRE(back);
            CHECK(*back == a);
        }
    }
}

TEST_CASE("sockaddr: the OS sees the address and port we meant") {
    const auto a = parse_socket_address("192.0.2.7:5353");
    REQUIRE(a);
    const sockaddr_storage sa = to_sockaddr(*a);
    const auto* in = reinterpret_cast<const sockaddr_in*>(&sa);
    char text[INET_ADDRSTRLEN];
    REQUIRE(inet_ntop(AF_INET, &in->sin_addr, text, sizeof text));
    CHECK(std::string(text) == "192.0.2.7");
    CHECK(ntohs(in->sin_port) == 5353);
}

TEST_CASE("sockaddr: IPv4 through a dual-stack socket is mapped out and unmapped in") {
    const auto a = parse_socket_address("198.51.100.1:443");
    REQUIRE(a);
    const sockaddr_storage sa = to_sockaddr(*a, /*to_v6_socket=*/true);
    REQUIRE(sa.ss_family == AF_INET6);
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&sa);
    char text[INET6_ADDRSTRLEN];
    REQUIRE(inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof text));
    CHECK(std::string(text) == "::ffff:198.51.100.1");
    const auto back = from_sockaddr(reinterpret_cast<const sockaddr*>(&sa));
    REQUIRE(back);
    CHECK_FALSE(back->v6);
    CHECK(*back == *a);
    // An IPv6 address stays IPv6 for a v6 socket.
    const auto v6 = parse_socket_address("[2001:db8::1]:443");
    REQUIRE(v6);
    const sockaddr_storage sa6 = to_sockaddr(*v6, true);
    CHECK(from_sockaddr(reinterpret_cast<const sockaddr*>(&sa6)) == v6);
}

TEST_CASE("sockaddr: other families and null are not addresses") {
    sockaddr_un un{};
    un.sun_family = AF_UNIX;
    CHECK_FALSE(from_sockaddr(reinterpret_cast<const sockaddr*>(&un)));
    CHECK_FALSE(from_sockaddr(nullptr));
}

TEST_CASE("sockaddr: which IPv6 addresses are host candidates (issue 17)") {
    const auto host = [](const char* text) {
        const auto a = parse_socket_address(text);
        REQUIRE(a);
        return usable_v6_host(*a);
    };
    CHECK(host("[2001:db8::2]:1"));          // global unicast
    CHECK(host("[2a00:1450:4001::200e]:1"));  // global unicast
    CHECK(host("[fd00:1::2]:1"));            // unique local (RFC 4193): same-site peers
    CHECK_FALSE(host("[fe80::1]:1"));         // link-local: needs a zone the peer cannot know
    CHECK_FALSE(host("[febf:ffff::1]:1"));    // the top of fe80::/10
    CHECK_FALSE(host("[fec0::1]:1"));         // site-local, deprecated (RFC 3879)
    CHECK_FALSE(host("[::1]:1"));             // loopback
    CHECK_FALSE(host("[::]:1"));              // unspecified
    CHECK_FALSE(host("[ff02::1]:1"));         // multicast
    CHECK_FALSE(host("[::ffff:192.0.2.1]:1"));  // IPv4-mapped: IPv4 candidates cover it
    CHECK_FALSE(host("192.0.2.1:1"));         // IPv4 is not an IPv6 host address
}

TEST_CASE("sockaddr: interface addresses: IPv6 only when asked, never loopback or link-local") {
    const auto v4_only = interface_addresses(4242);
    for (const auto& a : v4_only) {
        CHECK_FALSE(a.v6);
        CHECK(a.port == 4242);
    }
    const auto both = interface_addresses(4242, true);
    CHECK(both.size() >= v4_only.size());
    for (const auto& a : both) {
        CHECK(a.port == 4242);
        if (a.v6) CHECK(usable_v6_host(a));
    }
}
