#include "signal/auth.h"

#include <sodium.h>

#include <string_view>

namespace burrow {
namespace {

constexpr std::string_view kAuthLabel = "burrow-auth-v1";  // domain separation, versioned

std::optional<AuthProof> proof_for(const PrivateKey& local_priv, const PublicKey& remote_pub,
                                   const AuthNonce& nonce, const PublicKey& agent_pub,
                                   const PublicKey& server_pub) {
    std::array<uint8_t, crypto_scalarmult_BYTES> shared{};
    // libsodium refuses (returns -1 for) an all-zero result, i.e. a low-order remote key.
    if (crypto_scalarmult(shared.data(), local_priv.bytes().data(), remote_pub.data()) != 0) {
        return std::nullopt;
    }
    static_assert(kAuthProofSize >= crypto_generichash_BYTES_MIN &&
                  kAuthProofSize <= crypto_generichash_BYTES_MAX);
    AuthProof proof{};
    crypto_generichash_state state;
    crypto_generichash_init(&state, shared.data(), shared.size(), proof.size());
    const ByteView label = as_bytes(kAuthLabel);
    crypto_generichash_update(&state, label.data(), label.size());
    crypto_generichash_update(&state, nonce.data(), nonce.size());
    crypto_generichash_update(&state, agent_pub.data(), agent_pub.size());
    crypto_generichash_update(&state, server_pub.data(), server_pub.size());
    crypto_generichash_final(&state, proof.data(), proof.size());
    sodium_memzero(shared.data(), shared.size());
    sodium_memzero(&state, sizeof state);
    return proof;
}

}  // namespace

std::optional<AuthProof> compute_auth_proof(const PrivateKey& agent_priv,
                                            const PublicKey& server_pub, const AuthNonce& nonce) {
    return proof_for(agent_priv, server_pub, nonce, public_key(agent_priv), server_pub);
}

bool verify_auth_proof(const PrivateKey& server_priv, const PublicKey& agent_pub,
                       const AuthNonce& nonce, const AuthProof& proof) {
    std::optional<AuthProof> expected =
        proof_for(server_priv, agent_pub, nonce, agent_pub, public_key(server_priv));
    if (!expected) return false;
    const bool equal = sodium_memcmp(expected->data(), proof.data(), proof.size()) == 0;
    sodium_memzero(expected->data(), expected->size());
    return equal;
}

}  // namespace burrow
