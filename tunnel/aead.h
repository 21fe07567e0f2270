// The AEAD that protects data packets, and under which the Noise CipherState runs.
//
// One 32-byte key; every message names a 64-bit counter that becomes the 96-bit nonce the way
// the Noise spec (rev. 34) builds it, so the handshake and the data packets share one nonce
// construction and one code path:
//
//   ChaCha20-Poly1305 (Noise §12.3):   00 00 00 00 | counter, 64-bit little-endian
//   AES-256-GCM       (Noise §12.4):   00 00 00 00 | counter, 64-bit big-endian
//
// A counter must never repeat under one key; the caller (CipherState, the session's packet
// numbers) guarantees that. Ciphertext is the encrypted bytes followed by a 16-byte tag.
#pragma once

#include <sodium.h>

#include <array>
#include <cstdint>
#include <optional>
#include <span>

#include "tunnel/bytes.h"

namespace burrow {

enum class CipherSuite { kChaCha20Poly1305, kAes256Gcm };

inline constexpr size_t kAeadKeySize = 32;    // both suites use 256-bit keys
inline constexpr size_t kAeadTagSize = 16;    // RFC 8439 §2.8, NIST SP 800-38D full tag
inline constexpr size_t kAeadNonceSize = 12;  // RFC 5116 §5.1 N_MIN = N_MAX = 12
using AeadNonce = std::array<uint8_t, kAeadNonceSize>;
using AeadKeyView = std::span<const uint8_t, kAeadKeySize>;

// False only for AES-256-GCM on a CPU without AES-NI and PCLMUL (libsodium has no software
// fallback for it). Needs crypto_init() first.
bool suite_available(CipherSuite suite);
// AES-256-GCM where the CPU accelerates it (about 1.6x ChaCha20 here), otherwise ChaCha20.
CipherSuite preferred_suite();
const char* suite_name(CipherSuite suite);

// The nonce for `counter` under `suite`, per the table at the top of this file.
AeadNonce aead_nonce(CipherSuite suite, uint64_t counter);

class Aead {
public:
    // Precondition: suite_available(suite); aborts otherwise (a caller bug, not an input error).
    Aead(CipherSuite suite, AeadKeyView key);
    ~Aead();
    Aead(const Aead&) = default;
    Aead& operator=(const Aead&) = default;

    CipherSuite suite() const { return suite_; }

    // Appends ciphertext + tag to out. plaintext must not point into out.
    void seal(uint64_t counter, ByteView ad, ByteView plaintext, Bytes& out) const;
    // The plaintext, or nullopt when the tag does not verify (or the input is shorter than one).
    std::optional<Bytes> open(uint64_t counter, ByteView ad, ByteView ciphertext) const;

    // In place, for the data path (libsodium lets ciphertext and plaintext overlap exactly):
    // buffer holds the plaintext followed by kAeadTagSize bytes of room; afterwards it holds
    // the ciphertext and the tag. Precondition: buffer.size() >= kAeadTagSize.
    void seal_in_place(uint64_t counter, ByteView ad, MutableByteView buffer) const;
    // buffer holds ciphertext + tag; on success its first size() - kAeadTagSize bytes are the
    // plaintext. False when the tag does not verify; the buffer's bytes are then unspecified.
    bool open_in_place(uint64_t counter, ByteView ad, MutableByteView buffer) const;

    // The same with a caller-built nonce: for published test vectors whose nonces do not
    // have the shape above. Protocol code uses the counter forms.
    void seal_with_nonce(const AeadNonce& nonce, ByteView ad, ByteView plaintext, Bytes& out) const;
    std::optional<Bytes> open_with_nonce(const AeadNonce& nonce, ByteView ad,
                                         ByteView ciphertext) const;

private:
    CipherSuite suite_;
    std::array<uint8_t, kAeadKeySize> key_{};  // ChaCha20-Poly1305 uses the raw key
    // AES-256-GCM uses the expanded key schedule and GHASH powers, computed once per key
    // (crypto_aead_aes256gcm_beforenm) instead of once per packet.
    crypto_aead_aes256gcm_state aes_{};
};

}  // namespace burrow
