// Challenge-response authentication of an agent to the signalling server.
//
// The server has its own static X25519 key (not its TLS key) and sends a fresh random nonce on
// every connection (ServerHello). The agent proves it holds the private key of its static
// public key:
//
//   k     = X25519(agent_priv, server_pub) = X25519(server_priv, agent_pub)
//   proof = BLAKE2b-256(key = k, "burrow-auth-v1" || nonce || agent_pub || server_pub)
//
// Only the two key holders can compute k. The nonce makes a proof good for one connection
// only, so a recorded Auth is useless elsewhere; both public keys are hashed in, so a proof
// cannot be moved to another agent or another server. The server compares in constant time.
#pragma once

#include <optional>

#include "signal/control.h"
#include "tunnel/noise.h"

namespace burrow {

// The agent's side. nullopt when server_pub is a low-order point (the DH result is all zero,
// which any attacker could compute too).
std::optional<AuthProof> compute_auth_proof(const PrivateKey& agent_priv,
                                            const PublicKey& server_pub, const AuthNonce& nonce);

// The server's side: recomputes the proof and compares in constant time. False for a
// low-order agent_pub.
bool verify_auth_proof(const PrivateKey& server_priv, const PublicKey& agent_pub,
                       const AuthNonce& nonce, const AuthProof& proof);

}  // namespace burrow
