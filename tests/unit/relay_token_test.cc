#include <catch2/catch.hpp>

#include <set>

#include "signal/relay_token.h"
#include "tunnel/crypto_init.h"
#include "tunnel/rng.h"

using namespace burrow;

TEST_CASE("relay tokens: a function of the server key, the id and the pair, in either order") {
    REQUIRE(crypto_init());
    SeededRng rng(11);
    const PrivateKey server = PrivateKey::generate(rng);
    const PublicKey a = public_key(PrivateKey::generate(rng));
    const PublicKey b = public_key(PrivateKey::generate(rng));
    const PublicKey c = public_key(PrivateKey::generate(rng));
    const RelayTokenKey key(server);
    // A restarted server derives the same key from the same identity.
    const RelayTokenKey again(server);
    const RelayToken t = key.token(42, a, b);
    CHECK(again.token(42, a, b) == t);
    CHECK(key.token(42, b, a) == t);
    CHECK(key.verify(t, 42, b, a));
    // Anything else changes it.
    std::set<RelayToken> others = {t, key.token(43, a, b), key.token(42, a, c),
                                   key.token(42, c, b),
                                   RelayTokenKey(PrivateKey::generate(rng)).token(42, a, b)};
    CHECK(others.size() == 5);
    // A wrong bit anywhere fails verification.
    for (size_t i = 0; i < t.size(); ++i) {
        RelayToken bad = t;
        bad[i] ^= static_cast<uint8_t>(1u << (i % 8));
        CHECK_FALSE(key.verify(bad, 42, a, b));
    }
    CHECK_FALSE(key.verify(t, 41, a, b));
    CHECK_FALSE(key.verify(t, 42, a, c));
}
