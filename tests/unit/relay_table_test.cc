#include <catch2/catch.hpp>

#include <set>

#include "signal/relay_table.h"

using namespace burrow;

namespace {

PublicKey key_of(uint8_t b) {
    PublicKey k{};
    k.fill(b);
    return k;
}

Acl make_acl() {
    AclConfig c;
    c.agents = {{"nas", key_of(1)}, {"laptop", key_of(2)}, {"phone", key_of(3)}};
    c.allow = {{"laptop", "nas", {"web"}}, {"phone", "nas", {"*"}}};
    return *Acl::create(c, nullptr);
}

}  // namespace

TEST_CASE("the relay refuses pairs the ACL does not allow") {
    const Acl acl = make_acl();
    RelayTable t(acl, 8);
    SeededRng rng(1);
    const Time now = time_from_us(0);
    CHECK(t.open("laptop", "nas", "web", now, rng));
    CHECK_FALSE(t.open("laptop", "nas", "ssh", now, rng));
    CHECK_FALSE(t.open("nas", "laptop", "web", now, rng));
    CHECK_FALSE(t.open("laptop", "phone", "web", now, rng));
    CHECK_FALSE(t.open("mallory", "nas", "web", now, rng));
    CHECK(t.open("phone", "nas", "ssh", now, rng));
    CHECK(t.size() == 2);
}

TEST_CASE("sessions have distinct random ids and tokens, and know their members") {
    const Acl acl = make_acl();
    RelayTable t(acl, 1000);
    SeededRng rng(2);
    std::set<uint64_t> ids;
    std::set<RelayToken> tokens;
    for (int i = 0; i < 200; ++i) {
        const RelaySession* s = t.open("laptop", "nas", "web", time_from_us(i), rng);
        REQUIRE(s);
        CHECK(s->id != 0);
        ids.insert(s->id);
        tokens.insert(s->token);
        CHECK(s->has_member("laptop"));
        CHECK(s->has_member("nas"));
        CHECK_FALSE(s->has_member("phone"));
        CHECK(s->peer_of("laptop") == "nas");
        CHECK(s->peer_of("nas") == "laptop");
        CHECK(t.find(s->id) == s);
    }
    CHECK(ids.size() == 200);
    CHECK(tokens.size() == 200);
    CHECK_FALSE(t.find(0));
}

TEST_CASE("an agent's sessions are capped, evicting its least recently used") {
    const Acl acl = make_acl();
    RelayTable t(acl, 3);
    SeededRng rng(3);
    std::vector<uint64_t> ids;
    for (int i = 0; i < 3; ++i)
        ids.push_back(t.open("laptop", "nas", "web", time_from_us(i), rng)->id);
    t.find(ids[0])->last_used = time_from_us(100);  // the oldest is now ids[1]
    const uint64_t fourth = t.open("laptop", "nas", "web", time_from_us(200), rng)->id;
    CHECK(t.size() == 3);
    CHECK(t.find(ids[0]));
    CHECK_FALSE(t.find(ids[1]));
    CHECK(t.find(ids[2]));
    CHECK(t.find(fourth));
    // nas is at its cap too: phone's session evicts one of nas's.
    CHECK(t.open("phone", "nas", "web", time_from_us(300), rng));
    CHECK(t.count_for("nas") == 3);
    CHECK(t.count_for("laptop") == 2);
}

TEST_CASE("closing an agent ends exactly its sessions") {
    const Acl acl = make_acl();
    RelayTable t(acl, 10);
    SeededRng rng(4);
    const uint64_t a = t.open("laptop", "nas", "web", time_from_us(0), rng)->id;
    const uint64_t b = t.open("phone", "nas", "web", time_from_us(0), rng)->id;
    t.close_agent("laptop");
    CHECK_FALSE(t.find(a));
    CHECK(t.find(b));
    t.close_agent("nas");
    CHECK(t.size() == 0);
}
