#include "signal/registry.h"

#include <catch2/catch.hpp>

#include <string>
#include <vector>

using namespace burrow;

namespace {

Acl many_agents(size_t n) {
    AclConfig c;
    for (size_t i = 0; i < n; ++i) {
        PublicKey k{};
        k[0] = static_cast<uint8_t>(i);
        k[1] = static_cast<uint8_t>(i >> 8);
        c.agents.push_back(AclAgent{"a" + std::to_string(i), k});
    }
    auto acl = Acl::create(c, nullptr);
    REQUIRE(acl);
    return *acl;
}

UdpToken token_of(size_t i) {
    UdpToken t{};
    t[0] = static_cast<uint8_t>(i);
    t[1] = static_cast<uint8_t>(i >> 8);
    t[5] = 0x5a;
    return t;
}

}  // namespace

TEST_CASE("registry: udp tokens find their online agent, and only while it is online") {
    const Acl acl = many_agents(300);
    AgentRegistry reg(acl, RelayLimits{});
    reg.set_lookup_key({1, 2, 3});
    for (size_t i = 0; i < 300; ++i) {
        reg.set_online(*reg.find("a" + std::to_string(i)), i + 1, token_of(i), Time{});
    }
    for (size_t i = 0; i < 300; ++i) {
        AgentRecord* a = reg.find_by_udp_token(token_of(i));
        REQUIRE(a);
        CHECK(a->name == "a" + std::to_string(i));
    }
    UdpToken unknown = token_of(7);
    unknown.back() ^= 1;
    CHECK(reg.find_by_udp_token(unknown) == nullptr);

    // Offline: the token is gone. Online again: only the new token works.
    AgentRecord& a7 = *reg.find("a7");
    reg.set_offline(a7, Time{});
    CHECK(reg.find_by_udp_token(token_of(7)) == nullptr);
    reg.set_online(a7, 1000, token_of(1000), Time{});
    CHECK(reg.find_by_udp_token(token_of(1000)) == &a7);
    // A reconnect while online replaces the token.
    reg.set_online(a7, 1001, token_of(1001), Time{});
    CHECK(reg.find_by_udp_token(token_of(1000)) == nullptr);
    CHECK(reg.find_by_udp_token(token_of(1001)) == &a7);

    // A new lookup key keeps every online agent findable.
    reg.set_lookup_key({9, 9, 9});
    CHECK(reg.find_by_udp_token(token_of(1001)) == &a7);
    CHECK(reg.find_by_udp_token(token_of(299)) == reg.find("a299"));
    CHECK(reg.online_count() == 300);
}
