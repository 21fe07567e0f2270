#include "signal/happy_eyeballs.h"

#include <catch2/catch.hpp>

#include <string>

using namespace burrow;

namespace {

std::vector<SocketAddress> addrs(std::initializer_list<const char*> texts) {
    std::vector<SocketAddress> out;
    for (const char* t : texts) out.push_back(*parse_socket_address(t));
    return out;
}

}  // namespace

TEST_CASE("happy eyeballs: IPv6 first, then the families alternate (RFC 8305 §4)") {
    CHECK(happy_eyeballs_order(addrs({"192.0.2.1:7000", "192.0.2.2:7000", "[2001:db8::1]:7000",
                                      "[2001:db8::2]:7000"})) ==
          addrs({"[2001:db8::1]:7000", "192.0.2.1:7000", "[2001:db8::2]:7000",
                 "192.0.2.2:7000"}));
    // More of one family: the rest of it at the end, in the resolver's order.
    CHECK(happy_eyeballs_order(addrs({"[2001:db8::1]:7000", "192.0.2.1:7000", "192.0.2.2:7000",
                                      "192.0.2.3:7000"})) ==
          addrs({"[2001:db8::1]:7000", "192.0.2.1:7000", "192.0.2.2:7000", "192.0.2.3:7000"}));
}

TEST_CASE("happy eyeballs: one family, repeats and nothing") {
    CHECK(happy_eyeballs_order(addrs({"192.0.2.1:7000", "192.0.2.1:7000", "192.0.2.2:7000"})) ==
          addrs({"192.0.2.1:7000", "192.0.2.2:7000"}));
    CHECK(happy_eyeballs_order(addrs({"[::1]:7000"})) == addrs({"[::1]:7000"}));
    CHECK(happy_eyeballs_order({}).empty());
    CHECK(kConnectionAttemptDelay == std::chrono::milliseconds(250));
}
