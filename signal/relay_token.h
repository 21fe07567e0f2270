// Relay session tokens the server can check after a restart without having kept them.
//
//   relay_key = BLAKE2b-256(key = server_static_priv, "burrow-relay-key-v1")
//   token     = BLAKE2b-128(key = relay_key, "burrow-relay-token-v1" || session_id (u64 BE)
//                           || min(pub_a, pub_b) || max(pub_a, pub_b))
//
// The token authenticates relay datagrams (signal/udp_messages.h) and a RelayAttach
// (signal/control.h): only the server (which holds its identity key) can compute it, and only
// the session's two agents are told it. The public keys go in in a fixed order, so either agent
// can name the pair; the session id goes in, so a token never moves to another session.
#pragma once

#include <array>
#include <cstdint>

#include "signal/control.h"
#include "tunnel/noise.h"

namespace burrow {

class RelayTokenKey {
  public:
    // A key that signs nothing useful; the server replaces it from its identity key.
    RelayTokenKey() = default;
    explicit RelayTokenKey(const PrivateKey& server_static);

    RelayToken token(uint64_t session_id, const PublicKey& a, const PublicKey& b) const;
    // Constant-time comparison against token(session_id, a, b).
    bool verify(const RelayToken& token, uint64_t session_id, const PublicKey& a,
                const PublicKey& b) const;

  private:
    std::array<uint8_t, 32> key_{};
};

}  // namespace burrow
