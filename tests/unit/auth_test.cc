#include <catch2/catch.hpp>

#include <sodium.h>

#include "signal/auth.h"
#include "tunnel/crypto_init.h"
#include "tunnel/rng.h"

using namespace burrow;

namespace {

AuthNonce random_nonce(Rng& rng) {
    AuthNonce n{};
    rng.fill(n);
    return n;
}

}  // namespace

TEST_CASE("a proof made with the agent's key verifies with the server's") {
    REQUIRE(crypto_init());
    for (int seed = 0; seed < 100; ++seed) {
        INFO("seed " << seed);
        SeededRng rng(seed);
        const PrivateKey server = PrivateKey::generate(rng);
        const PrivateKey agent = PrivateKey::generate(rng);
        const AuthNonce nonce = random_nonce(rng);
        auto proof = compute_auth_proof(agent, public_key(server), nonce);
        REQUIRE(proof);
        CHECK(verify_auth_proof(server, public_key(agent), nonce, *proof));
    }
}

TEST_CASE("a proof fails with any other key, nonce or bit") {
    REQUIRE(crypto_init());
    for (int seed = 0; seed < 50; ++seed) {
        INFO("seed " << seed);
        SeededRng rng(seed);
        const PrivateKey server = PrivateKey::generate(rng);
        const PrivateKey agent = PrivateKey::generate(rng);
        const PrivateKey other = PrivateKey::generate(rng);
        const AuthNonce nonce = random_nonce(rng);
        const AuthProof proof = *compute_auth_proof(agent, public_key(server), nonce);

        // Wrong key: the agent claims another's public key, or a thief uses its own key.
        CHECK_FALSE(verify_auth_proof(server, public_key(other), nonce, proof));
        const AuthProof thief = *compute_auth_proof(other, public_key(server), nonce);
        CHECK_FALSE(verify_auth_proof(server, public_key(agent), nonce, thief));
        // Another server (its own key) does not accept it either.
        CHECK_FALSE(verify_auth_proof(other, public_key(agent), nonce, proof));
        // A proof for another server's key is useless here.
        const AuthProof for_other = *compute_auth_proof(agent, public_key(other), nonce);
        CHECK_FALSE(verify_auth_proof(server, public_key(agent), nonce, for_other));

        // Replay: the same proof on a connection with a fresh nonce.
        const AuthNonce fresh = random_nonce(rng);
        CHECK_FALSE(verify_auth_proof(server, public_key(agent), fresh, proof));

        // Any flipped bit.
        const size_t bit = rng.uniform(proof.size() * 8);
        AuthProof flipped = proof;
        flipped[bit / 8] ^= static_cast<uint8_t>(1u << (bit % 8));
        CHECK_FALSE(verify_auth_proof(server, public_key(agent), nonce, flipped));
    }
}

TEST_CASE("the proof binds the nonce: different nonces give different proofs") {
    REQUIRE(crypto_init());
    SeededRng rng(9);
    const PrivateKey server = PrivateKey::generate(rng);
    const PrivateKey agent = PrivateKey::generate(rng);
    const AuthNonce a = random_nonce(rng);
    const AuthNonce b = random_nonce(rng);
    CHECK(*compute_auth_proof(agent, public_key(server), a) !=
          *compute_auth_proof(agent, public_key(server), b));
    CHECK(*compute_auth_proof(agent, public_key(server), a) ==
          *compute_auth_proof(agent, public_key(server), a));
}

TEST_CASE("low-order public keys are refused on both sides") {
    REQUIRE(crypto_init());
    SeededRng rng(1);
    const PrivateKey key = PrivateKey::generate(rng);
    const AuthNonce nonce = random_nonce(rng);
    PublicKey zero{};  // the identity point: X25519 with it is all zero
    PublicKey one{};
    one[0] = 1;  // order 1 as well (u = 1 maps to zero output)
    for (const PublicKey& bad : {zero, one}) {
        CHECK_FALSE(compute_auth_proof(key, bad, nonce));
        CHECK_FALSE(verify_auth_proof(key, bad, nonce, AuthProof{}));
    }
}

TEST_CASE("the proof is the documented construction") {
    // Recomputed here from the formula in signal/auth.h, in one shot rather than streamed, so
    // an agent written from the documentation interoperates.
    REQUIRE(crypto_init());
    SeededRng rng(4);
    const PrivateKey server = PrivateKey::generate(rng);
    const PrivateKey agent = PrivateKey::generate(rng);
    const AuthNonce nonce = random_nonce(rng);
    std::array<uint8_t, 32> k{};
    REQUIRE(crypto_scalarmult(k.data(), agent.bytes().data(), public_key(server).data()) == 0);
    Bytes input = {'b', 'u', 'r', 'r', 'o', 'w', '-', 'a', 'u', 't', 'h', '-', 'v', '1'};
    input.insert(input.end(), nonce.begin(), nonce.end());
    const PublicKey agent_pub = public_key(agent);
    const PublicKey server_pub = public_key(server);
    input.insert(input.end(), agent_pub.begin(), agent_pub.end());
    input.insert(input.end(), server_pub.begin(), server_pub.end());
    AuthProof expected{};
    crypto_generichash(expected.data(), expected.size(), input.data(), input.size(), k.data(),
                       k.size());
    CHECK(compute_auth_proof(agent, server_pub, nonce) == expected);
}
