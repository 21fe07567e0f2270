#include <catch2/catch.hpp>

#include "signal/acl.h"

using namespace burrow;

namespace {

PublicKey key_of(uint8_t b) {
    PublicKey k{};
    k.fill(b);
    return k;
}

// The NAS/laptop case: the laptop may open the NAS's web service and nothing else.
AclConfig nas_laptop() {
    AclConfig c;
    c.agents = {{"nas", key_of(1)}, {"laptop", key_of(2)}, {"phone", key_of(3)}};
    c.allow = {{"laptop", "nas", {"web"}}};
    return c;
}

}  // namespace

TEST_CASE("laptop may open nas/web only") {
    std::string error;
    auto acl = Acl::create(nas_laptop(), &error);
    REQUIRE(acl);
    CHECK(acl->allowed("laptop", "nas", "web"));
    CHECK_FALSE(acl->allowed("laptop", "nas", "ssh"));
    // Rules are one-directional.
    CHECK_FALSE(acl->allowed("nas", "laptop", "web"));
    // A third agent gets nothing.
    CHECK_FALSE(acl->allowed("phone", "nas", "web"));
    CHECK_FALSE(acl->allowed("phone", "nas", "ssh"));
    // Unknown names are denied, even with a matching service.
    CHECK_FALSE(acl->allowed("mallory", "nas", "web"));
    CHECK_FALSE(acl->allowed("laptop", "nobody", "web"));
    // Names match exactly.
    CHECK_FALSE(acl->allowed("Laptop", "nas", "web"));
    CHECK_FALSE(acl->allowed("laptop", "nas", "web "));
    CHECK_FALSE(acl->allowed("laptop", "nas", ""));
}

TEST_CASE("a \"*\" rule allows every service of that pair, and only that pair") {
    AclConfig c = nas_laptop();
    c.allow.push_back({"phone", "nas", {"*"}});
    auto acl = Acl::create(c, nullptr);
    REQUIRE(acl);
    CHECK(acl->allowed("phone", "nas", "web"));
    CHECK(acl->allowed("phone", "nas", "ssh"));
    CHECK_FALSE(acl->allowed("phone", "laptop", "web"));
    CHECK_FALSE(acl->allowed("laptop", "nas", "ssh"));
}

TEST_CASE("no rules: everything denied") {
    AclConfig c = nas_laptop();
    c.allow.clear();
    auto acl = Acl::create(c, nullptr);
    REQUIRE(acl);
    for (const char* from : {"nas", "laptop", "phone"}) {
        for (const char* to : {"nas", "laptop", "phone"}) {
            CHECK_FALSE(acl->allowed(from, to, "web"));
            CHECK_FALSE(acl->allowed(from, to, "*"));
        }
    }
}

TEST_CASE("lookups by name and by key") {
    auto acl = Acl::create(nas_laptop(), nullptr);
    REQUIRE(acl);
    REQUIRE(acl->find_by_name("nas"));
    CHECK(acl->find_by_name("nas")->key == key_of(1));
    CHECK_FALSE(acl->find_by_name("mallory"));
    REQUIRE(acl->find_by_key(key_of(2)));
    CHECK(acl->find_by_key(key_of(2))->name == "laptop");
    PublicKey almost = key_of(2);
    almost[31] ^= 1;
    CHECK_FALSE(acl->find_by_key(almost));
}

TEST_CASE("inconsistent configurations are refused with a reason") {
    std::string error;
    SECTION("duplicate name") {
        AclConfig c = nas_laptop();
        c.agents.push_back({"nas", key_of(9)});
        CHECK_FALSE(Acl::create(c, &error));
        CHECK(error.find("\"nas\" listed twice") != std::string::npos);
    }
    SECTION("duplicate key") {
        AclConfig c = nas_laptop();
        c.agents.push_back({"other", key_of(1)});
        CHECK_FALSE(Acl::create(c, &error));
        CHECK(error.find("same key") != std::string::npos);
    }
    SECTION("empty name") {
        AclConfig c = nas_laptop();
        c.agents.push_back({"", key_of(9)});
        CHECK_FALSE(Acl::create(c, &error));
        CHECK(error.find("empty name") != std::string::npos);
    }
    SECTION("rule naming an unknown agent") {
        AclConfig c = nas_laptop();
        c.allow.push_back({"laptop", "printer", {"ipp"}});
        CHECK_FALSE(Acl::create(c, &error));
        CHECK(error.find("\"printer\"") != std::string::npos);
    }
}

TEST_CASE("pair_allowed: some rule joins the two, either way round; nobody else") {
    auto acl = Acl::create(nas_laptop(), nullptr);
    REQUIRE(acl);
    CHECK(acl->pair_allowed("laptop", "nas"));
    CHECK(acl->pair_allowed("nas", "laptop"));  // a relay session carries both directions
    CHECK_FALSE(acl->pair_allowed("phone", "nas"));
    CHECK_FALSE(acl->pair_allowed("nas", "phone"));
    CHECK_FALSE(acl->pair_allowed("laptop", "laptop"));
    CHECK_FALSE(acl->pair_allowed("mallory", "nas"));
    AclConfig empty_services = nas_laptop();
    empty_services.allow = {{"phone", "nas", {}}};
    auto none = Acl::create(empty_services, nullptr);
    REQUIRE(none);
    CHECK_FALSE(none->pair_allowed("phone", "nas"));
}
