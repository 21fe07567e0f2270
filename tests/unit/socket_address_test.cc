#include <arpa/inet.h>

#include <catch2/catch.hpp>

#include "tunnel/socket_address.h"
#include "tunnel/rng.h"

using namespace burrow;

namespace {

SocketAddress v6(std::initializer_list<uint16_t> groups, uint16_t port) {
    std::array<uint8_t, kIpv6Size> ip{};
    size_t i = 0;
    for (uint16_t g : groups) {
        ip[i++] = static_cast<uint8_t>(g >> 8);
        ip[i++] = static_cast<uint8_t>(g);
    }
    REQUIRE(i == kIpv6Size);
    return SocketAddress::ipv6(ip, port);
}

}  // namespace

TEST_CASE("IPv4 addresses print and parse") {
    const SocketAddress a = SocketAddress::ipv4({192, 0, 2, 1}, 32853);
    CHECK(to_string(a) == "192.0.2.1:32853");
    CHECK(parse_socket_address("192.0.2.1:32853") == a);
    CHECK(to_string(SocketAddress::ipv4({0, 0, 0, 0}, 0)) == "0.0.0.0:0");
    CHECK(parse_socket_address("255.255.255.255:65535") ==
          SocketAddress::ipv4({255, 255, 255, 255}, 65535));
    CHECK(parse_socket_address("1.2.3.4:5") == SocketAddress::ipv4({1, 2, 3, 4}, 5));
    CHECK_FALSE(a.v6);
    CHECK(a.ip_bytes().size() == kIpv4Size);
}

TEST_CASE("IPv6 addresses print in RFC 5952 canonical form") {
    CHECK(to_string(v6({0, 0, 0, 0, 0, 0, 0, 1}, 5)) == "[::1]:5");
    CHECK(to_string(v6({0, 0, 0, 0, 0, 0, 0, 0}, 5)) == "[::]:5");
    CHECK(to_string(v6({0x2001, 0xdb8, 0x1234, 0x5678, 0x11, 0x2233, 0x4455, 0x6677}, 32853)) ==
          "[2001:db8:1234:5678:11:2233:4455:6677]:32853");
    // §4.2.2: one zero group is not shortened.
    CHECK(to_string(v6({0x2001, 0xdb8, 0, 1, 1, 1, 1, 1}, 1)) == "[2001:db8:0:1:1:1:1:1]:1");
    // §4.2.1: the longest run; §4.2.3: the first of equal runs.
    CHECK(to_string(v6({0x2001, 0, 0, 1, 0, 0, 0, 1}, 1)) == "[2001:0:0:1::1]:1");
    CHECK(to_string(v6({0x2001, 0xdb8, 0, 0, 1, 0, 0, 1}, 1)) == "[2001:db8::1:0:0:1]:1");
    CHECK(to_string(v6({0xabcd, 0, 0, 0, 0, 0, 0, 0}, 1)) == "[abcd::]:1");
    // §5: IPv4-mapped addresses keep the dotted tail.
    CHECK(to_string(v6({0, 0, 0, 0, 0, 0xffff, 0xc000, 0x0201}, 7)) == "[::ffff:192.0.2.1]:7");
}

TEST_CASE("IPv6 text forms parse") {
    const SocketAddress one = v6({0, 0, 0, 0, 0, 0, 0, 1}, 5);
    CHECK(parse_socket_address("[::1]:5") == one);
    CHECK(parse_socket_address("[0:0:0:0:0:0:0:1]:5") == one);
    CHECK(parse_socket_address("[0000:0000:0000:0000:0000:0000:0000:0001]:5") == one);
    CHECK(parse_socket_address("[::]:0") == v6({0, 0, 0, 0, 0, 0, 0, 0}, 0));
    CHECK(parse_socket_address("[2001:DB8::1]:80") == v6({0x2001, 0xdb8, 0, 0, 0, 0, 0, 1}, 80));
    CHECK(parse_socket_address("[1:2:3:4:5:6:7::]:1") == v6({1, 2, 3, 4, 5, 6, 7, 0}, 1));
    CHECK(parse_socket_address("[::2:3:4:5:6:7:8]:1") == v6({0, 2, 3, 4, 5, 6, 7, 8}, 1));
    CHECK(parse_socket_address("[::ffff:1.2.3.4]:1") ==
          v6({0, 0, 0, 0, 0, 0xffff, 0x0102, 0x0304}, 1));
    CHECK(parse_socket_address("[1:2:3:4:5:6:1.2.3.4]:1") ==
          v6({1, 2, 3, 4, 5, 6, 0x0102, 0x0304}, 1));
}

TEST_CASE("malformed socket addresses are rejected") {
    const char* bad[] = {
        "",
        ":",
        "1.2.3.4",
        "1.2.3.4:",
        ":5",
        "1.2.3:5",
        "1.2.3.4.5:5",
        "256.1.1.1:5",
        "01.2.3.4:5",
        "1.2.3.4:65536",
        "1.2.3.4:-1",
        "1.2.3.4:+5",
        "1.2.3.4:5:6",
        " 1.2.3.4:5",
        "1.2.3.4:5 ",
        "1.2.3.4:0x10",
        "1.2.3.4:123456",
        "a.b.c.d:5",
        "::1:5",
        "[::1]",
        "[::1]:",
        "[::1]5",
        "[::1:5",
        "::1]:5",
        "[]:5",
        "[:]:5",
        "[:::]:5",
        "[1::2::3]:5",
        "[12345::]:5",
        "[1:2:3:4:5:6:7:8:9]:5",
        "[1:2:3:4:5:6:7]:5",
        "[1:2:3:4:5:6:7:8::]:5",
        "[::1:2:3:4:5:6:7:8]:5",
        "[:1::]:5",
        "[1::2:]:5",
        "[1:2:3:4:5:6:7:1.2.3.4]:5",
        "[::1.2.3]:5",
        "[::1.2.3.4:5]:5",
        "[::256.1.1.1]:5",
        "[::g]:5",
        "[::1%eth0]:5",
        "[1.2.3.4]:5",
    };
    for (const char* text : bad) {
        INFO("'" << text << "'");
        CHECK_FALSE(parse_socket_address(text).has_value());
    }
}

TEST_CASE("printing and parsing agree with each other and with inet_ntop") {
    for (uint64_t seed = 1; seed <= 3000; ++seed) {
        INFO("seed " << seed);
        SeededRng rng(seed);
        SocketAddress a;
        a.port = static_cast<uint16_t>(rng.next_u64());
        a.v6 = rng.chance(0.7);
        char expected[INET6_ADDRSTRLEN] = {};
        if (a.v6) {
            // Zero groups often, so that runs of every length and position occur.
            for (size_t g = 0; g < kIpv6Size; g += 2) {
                if (rng.chance(0.5)) continue;
                a.ip[g] = static_cast<uint8_t>(rng.chance(0.5) ? 0 : rng.next_u64());
                a.ip[g + 1] = static_cast<uint8_t>(rng.next_u64());
            }
            REQUIRE(inet_ntop(AF_INET6, a.ip.data(), expected, sizeof expected) != nullptr);
        } else {
            rng.fill(std::span(a.ip).first(kIpv4Size));
            REQUIRE(inet_ntop(AF_INET, a.ip.data(), expected, sizeof expected) != nullptr);
        }
        const std::string text = to_string(a);
        INFO(text);
        CHECK(parse_socket_address(text) == a);
        // glibc prints ::a.b.c.d for the deprecated IPv4-compatible form; RFC 5952 does not.
        const bool ipv4_compatible =
            a.v6 &&
            std::all_of(a.ip.begin(), a.ip.begin() + 12, [](uint8_t b) { return b == 0; }) &&
            (a.ip[12] | a.ip[13]) != 0;
        if (!ipv4_compatible) {
            const std::string host = a.v6 ? "[" + std::string(expected) + "]" : expected;
            CHECK(text == host + ":" + std::to_string(a.port));
        }
    }
}

TEST_CASE("the IPv6 parser accepts exactly what inet_pton accepts") {
    static constexpr char kAlphabet[] = "0123456789abcdefABCDEF:::::...g";
    size_t accepted = 0;
    for (uint64_t seed = 1; seed <= 20000; ++seed) {
        INFO("seed " << seed);
        SeededRng rng(seed);
        std::string host;
        const size_t len = rng.uniform(40);
        for (size_t i = 0; i < len; ++i) host += kAlphabet[rng.uniform(sizeof kAlphabet - 1)];
        INFO("'" << host << "'");
        uint8_t expected[kIpv6Size];
        const bool valid = inet_pton(AF_INET6, host.c_str(), expected) == 1;
        const auto parsed = parse_socket_address("[" + host + "]:1");
        REQUIRE(parsed.has_value() == valid);
        if (valid) {
            ++accepted;
            CHECK(std::equal(parsed->ip.begin(), parsed->ip.end(), expected));
        }
    }
    CHECK(accepted > 100);
}

TEST_CASE("the IPv4 parser accepts exactly what inet_pton accepts") {
    size_t accepted = 0;
    for (uint64_t seed = 1; seed <= 20000; ++seed) {
        INFO("seed " << seed);
        SeededRng rng(seed);
        // Mostly dotted quads, with octets of 0-4 digits (leading zeros, values over 255) and
        // sometimes a part too few or too many.
        std::string host;
        const size_t parts = 3 + rng.uniform(3);
        for (size_t p = 0; p < parts; ++p) {
            if (p > 0) host += '.';
            const size_t digits = rng.uniform(5);
            for (size_t d = 0; d < digits; ++d) host += static_cast<char>('0' + rng.uniform(10));
        }
        if (rng.chance(0.1)) host[rng.uniform(host.size())] = rng.chance(0.5) ? ':' : 'x';
        INFO("'" << host << "'");
        uint8_t expected[kIpv4Size];
        const bool valid = inet_pton(AF_INET, host.c_str(), expected) == 1;
        const auto parsed = parse_socket_address(host + ":1");
        REQUIRE(parsed.has_value() == valid);
        if (valid) {
            ++accepted;
            CHECK(std::equal(expected, expected + kIpv4Size, parsed->ip.begin()));
        }
    }
    CHECK(accepted > 100);
}
