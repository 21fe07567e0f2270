#include <catch2/catch.hpp>

#include <set>

#include "signal/relay_table.h"

using namespace burrow;
using namespace std::chrono_literals;

namespace {

PublicKey key_of(uint8_t b) {
    PublicKey k{};
    k.fill(b);
    return k;
}

Acl make_acl() {
    AclConfig c;
    c.agents = {{"nas", key_of(1)}, {"laptop", key_of(2)}, {"phone", key_of(3)},
                {"tablet", key_of(4)}};
    c.allow = {{"laptop", "nas", {"web", "ssh"}},
               {"nas", "laptop", {"backup"}},
               {"phone", "nas", {"*"}},
               {"tablet", "nas", {"*"}}};
    return *Acl::create(c, nullptr);
}

}  // namespace

TEST_CASE("the relay refuses pairs the ACL does not allow") {
    const Acl acl = make_acl();
    RelayTable t(acl, 8);
    SeededRng rng(1);
    const Time now = time_from_us(0);
    CHECK(t.open("laptop", "nas", "web", 0, now, rng));
    CHECK_FALSE(t.open("laptop", "nas", "mail", 0, now, rng));
    CHECK_FALSE(t.open("nas", "laptop", "web", 0, now, rng));
    CHECK_FALSE(t.open("laptop", "phone", "web", 0, now, rng));
    CHECK_FALSE(t.open("mallory", "nas", "web", 0, now, rng));
    CHECK(t.open("phone", "nas", "ssh", 0, now, rng));
    CHECK(t.size() == 2);
}

TEST_CASE("one session per pair: every service of the pair, both ways, rides it") {
    const Acl acl = make_acl();
    RelayTable t(acl, 8);
    SeededRng rng(2);
    const RelaySession* web = t.open("laptop", "nas", "web", 0, time_from_us(0), rng);
    REQUIRE(web);
    const uint64_t id = web->id;
    const RelayToken token = web->token;
    CHECK(web->initiator == "laptop");
    CHECK(web->responder == "nas");
    // A second service, named by the link's id: the same session, the same token.
    const RelaySession* ssh = t.open("laptop", "nas", "ssh", id, time_from_us(60'000'000), rng);
    REQUIRE(ssh);
    CHECK(ssh->id == id);
    CHECK(ssh->token == token);
    // The other direction too; the initiator stays the one who made it.
    const RelaySession* backup =
        t.open("nas", "laptop", "backup", id, time_from_us(61'000'000), rng);
    REQUIRE(backup);
    CHECK(backup->id == id);
    CHECK(backup->initiator == "laptop");
    CHECK(backup->services() == std::set<std::string>{"backup", "ssh", "web"});
    CHECK(t.size() == 1);
}

TEST_CASE("which session a request gets follows the id it names") {
    const Acl acl = make_acl();
    RelayTable t(acl, 8);
    SeededRng rng(3);
    const Time t0 = time_from_us(0);
    const uint64_t first = t.open("laptop", "nas", "web", 0, t0, rng)->id;

    SECTION("both sides' first requests at once share the session") {
        const RelaySession* s = t.open("nas", "laptop", "backup", 0, t0 + 2s, rng);
        CHECK(s->id == first);
    }
    SECTION("a requester without a link, long after the peer made the session, gets a new one") {
        const RelaySession* s = t.open("nas", "laptop", "backup", 0, t0 + kPairReuseWindow, rng);
        CHECK(s->id != first);
        CHECK(s->initiator == "nas");
        CHECK_FALSE(t.find(first));
        CHECK(t.size() == 1);
    }
    SECTION("a requester without a link that made the session itself gets a new one") {
        const RelaySession* s = t.open("laptop", "nas", "web", 0, t0 + 1s, rng);
        CHECK(s->id != first);
        CHECK_FALSE(t.find(first));
    }
    SECTION("a requester naming a stale id gets the pair's session") {
        const RelaySession* s = t.open("laptop", "nas", "ssh", first + 1, t0 + 1s, rng);
        CHECK(s->id == first);
    }
    SECTION("after the server forgot the pair, the named id is taken up again") {
        t.close_agent("nas");
        const RelaySession* s = t.open("laptop", "nas", "ssh", first, t0 + 1s, rng);
        CHECK(s->id == first);
    }
    SECTION("an id another pair holds is never taken") {
        t.close_agent("nas");
        const uint64_t other = t.open("phone", "nas", "web", 0, t0, rng)->id;
        const RelaySession* s = t.open("laptop", "nas", "web", other, t0 + 1s, rng);
        CHECK(s->id != other);
        CHECK(s->has_member("laptop"));
        CHECK(t.find(other)->has_member("phone"));
    }
}

TEST_CASE("sessions have distinct random ids and tokens, and know their members") {
    const Acl acl = make_acl();
    RelayTable t(acl, 1000);
    SeededRng rng(4);
    std::set<uint64_t> ids;
    std::set<RelayToken> tokens;
    for (int i = 0; i < 200; ++i) {
        // No link on the requester's side each time: a new session replaces the last.
        const RelaySession* s = t.open("laptop", "nas", "web", 0, time_from_us(i), rng);
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
    CHECK(t.size() == 1);
    CHECK_FALSE(t.find(0));
}

TEST_CASE("an agent's sessions are capped, evicting its least recently used") {
    const Acl acl = make_acl();
    RelayTable t(acl, 2);
    SeededRng rng(5);
    const uint64_t laptop = t.open("laptop", "nas", "web", 0, time_from_us(0), rng)->id;
    const uint64_t phone = t.open("phone", "nas", "web", 0, time_from_us(1), rng)->id;
    t.find(laptop)->last_used = time_from_us(100);  // the oldest is now phone's
    const uint64_t tablet = t.open("tablet", "nas", "web", 0, time_from_us(200), rng)->id;
    CHECK(t.size() == 2);
    CHECK(t.find(laptop));
    CHECK_FALSE(t.find(phone));
    CHECK(t.find(tablet));
    CHECK(t.count_for("nas") == 2);
}

TEST_CASE("closing an agent ends exactly its sessions") {
    const Acl acl = make_acl();
    RelayTable t(acl, 10);
    SeededRng rng(6);
    const uint64_t a = t.open("laptop", "nas", "web", 0, time_from_us(0), rng)->id;
    const uint64_t b = t.open("phone", "nas", "web", 0, time_from_us(0), rng)->id;
    t.close_agent("laptop");
    CHECK_FALSE(t.find(a));
    CHECK(t.find(b));
    t.close_agent("nas");
    CHECK(t.size() == 0);
}
