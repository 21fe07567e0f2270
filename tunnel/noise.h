// The Noise Protocol Framework (revision 34), as much as the session handshake needs:
// pattern IK and IKpsk2 over 25519, with ChaChaPoly or AESGCM and SHA256 or BLAKE2b.
//
//   IK:                          IKpsk2:
//     <- s                         <- s
//     ...                          ...
//     -> e, es, s, ss              -> e, es, s, ss
//     <- e, ee, se                 <- e, ee, se, psk
//
// The initiator knows the responder's static key in advance and sends its own encrypted, so
// the handshake takes one round trip and hides the initiator's identity (WireGuard, Nebula).
//
// Three layers, as in the spec (§5): CipherState (one key and its nonce), SymmetricState
// (chaining key ck and handshake hash h), HandshakeState (the pattern, the DH keys).
// Sans-IO: the ephemeral key comes from the caller's Rng or is given explicitly (the test
// vectors do that); nothing in here reads a random source, a clock or the network.
//
// Every object wipes its secrets (keys, ck, DH outputs) when it is destroyed.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include "tunnel/aead.h"
#include "tunnel/bytes.h"
#include "tunnel/rng.h"

namespace burrow {

inline constexpr size_t kDhLen = 32;                    // Noise §12.1: DHLEN for 25519
inline constexpr size_t kPskLen = 32;                   // Noise §9.1: psk is 32 bytes
inline constexpr size_t kMaxHashLen = 64;               // Noise §12.8: BLAKE2b HASHLEN
inline constexpr size_t kNoiseMaxMessageLen = 65535;    // Noise §3: message size limit
inline constexpr uint64_t kNoiseMaxNonce = UINT64_MAX;  // Noise §5.1: reserved, never used

using PublicKey = std::array<uint8_t, kDhLen>;

// 32 secret bytes (an X25519 private key or a pre-shared key), wiped on destruction.
class SecretKey {
public:
    SecretKey() = default;
    explicit SecretKey(std::span<const uint8_t, 32> bytes);
    // nullopt unless bytes is exactly 32 long.
    static std::optional<SecretKey> from_bytes(ByteView bytes);
    // Draws all 32 bytes from rng. For X25519 any 32 bytes are a valid private key: the
    // scalar is clamped when used (RFC 7748 §5).
    static SecretKey generate(Rng& rng);
    ~SecretKey();
    SecretKey(const SecretKey&) = default;
    SecretKey& operator=(const SecretKey&) = default;

    std::span<const uint8_t, 32> bytes() const { return bytes_; }
    // Constant-time comparison.
    bool equals(const SecretKey& other) const;

private:
    std::array<uint8_t, 32> bytes_{};
};
using PrivateKey = SecretKey;
using Psk = SecretKey;

// X25519 public key of a private key: the scalar times the base point.
PublicKey public_key(const PrivateKey& key);

// Base64 (libsodium's ORIGINAL variant, padded: 44 characters) of 32 key bytes: the form in
// which keys are shown, written into configs and stored in key files.
inline constexpr size_t kKeyBase64Len = 44;  // 4 * ceil(32 / 3)
std::string key_to_base64(std::span<const uint8_t, kDhLen> key);

enum class NoiseHash { kSha256, kBlake2b };
enum class NoiseRole { kInitiator, kResponder };

struct NoiseProtocol {
    bool psk2 = false;  // IKpsk2 instead of IK
    CipherSuite cipher = CipherSuite::kChaCha20Poly1305;
    NoiseHash hash = NoiseHash::kSha256;

    // "Noise_IK_25519_ChaChaPoly_SHA256" and so on (§8); it is hashed into h, so both sides
    // must agree on every part.
    std::string name() const;
    // nullopt for any pattern, DH, cipher or hash this file does not implement.
    static std::optional<NoiseProtocol> parse(std::string_view name);
    bool operator==(const NoiseProtocol&) const = default;
};

// Noise §5.1. Without a key it passes data through unchanged, as the spec requires for the
// parts of a handshake before the first DH.
class CipherState {
public:
    CipherState() = default;
    CipherState(CipherSuite suite, AeadKeyView key) : aead_(Aead(suite, key)) {}

    bool has_key() const { return aead_.has_value(); }
    uint64_t nonce() const { return n_; }
    void set_nonce(uint64_t n) { n_ = n; }

    // EncryptWithAd: appends the ciphertext (or, without a key, the plaintext) to out.
    // False, and nothing appended, once the nonce is exhausted.
    bool encrypt_with_ad(ByteView ad, ByteView plaintext, Bytes& out);
    // DecryptWithAd: nullopt when authentication fails or the nonce is exhausted; the nonce
    // advances only on success.
    std::optional<Bytes> decrypt_with_ad(ByteView ad, ByteView ciphertext);
    // Noise §4.2 REKEY: the new key is the first 32 bytes of ENCRYPT(k, 2^64-1, "", zeros).
    // The nonce is kept.
    void rekey();

    // The key, for a data path that numbers its packets itself (a counter in every packet
    // instead of the implicit n); nullptr without a key.
    const Aead* aead() const { return aead_ ? &*aead_ : nullptr; }

private:
    std::optional<Aead> aead_;
    uint64_t n_ = 0;
};

// Noise §5.2.
class SymmetricState {
public:
    explicit SymmetricState(const NoiseProtocol& protocol);  // InitializeSymmetric
    ~SymmetricState();
    SymmetricState(const SymmetricState&) = default;
    SymmetricState& operator=(const SymmetricState&) = default;

    void mix_key(ByteView input_key_material);
    void mix_hash(ByteView data);
    void mix_key_and_hash(ByteView input_key_material);
    // Appends EncryptWithAd(h, plaintext) to out and mixes it into h; false on nonce exhaustion.
    bool encrypt_and_hash(ByteView plaintext, Bytes& out);
    std::optional<Bytes> decrypt_and_hash(ByteView ciphertext);
    bool has_key() const { return cipher_.has_key(); }
    ByteView handshake_hash() const { return {h_.data(), hash_len_}; }
    // The two transport CipherStates: first for initiator -> responder, second for the reverse.
    std::pair<CipherState, CipherState> split() const;

private:
    NoiseProtocol protocol_;
    size_t hash_len_;
    std::array<uint8_t, kMaxHashLen> ck_{};
    std::array<uint8_t, kMaxHashLen> h_{};
    CipherState cipher_;
};

struct HandshakeConfig {
    NoiseProtocol protocol;
    NoiseRole role = NoiseRole::kInitiator;
    Bytes prologue;  // both sides must give the same bytes, or the handshake fails
    PrivateKey local_static;
    std::optional<PublicKey> remote_static;  // the responder's key: initiator only, required
    std::optional<Psk> psk;                  // required for IKpsk2, refused for IK
};

// Transport keys for one side of a finished handshake.
struct TransportKeys {
    CipherState send;
    CipherState recv;
};

// Noise §5.3 for IK and IKpsk2. The initiator writes message 1 and reads message 2; the
// responder does the reverse. A message that fails to read changes nothing, so a forged or
// corrupted datagram cannot break a handshake in progress: the genuine one still works.
class HandshakeState {
public:
    // nullopt when the config does not fit the protocol (initiator without remote_static, a
    // psk missing for IKpsk2 or present for IK, a remote_static given to the responder) or
    // the cipher is not available on this CPU.
    static std::optional<HandshakeState> create(const HandshakeConfig& config, Rng& rng);
    // The same with the ephemeral private key given, for test vectors.
    static std::optional<HandshakeState> create(const HandshakeConfig& config,
                                                const PrivateKey& ephemeral);

    NoiseRole role() const { return role_; }
    bool is_complete() const { return message_index_ == kMessageCount; }
    // True when the next step is write_message, false when it is read_message (or done).
    bool is_my_turn_to_write() const;

    // The next handshake message carrying payload (encrypted: both IK messages come after a
    // DH); nullopt when it is not our turn, a DH result is invalid (a low-order remote key)
    // or the message would exceed kNoiseMaxMessageLen. Nothing changes on failure.
    std::optional<Bytes> write_message(ByteView payload);
    // The payload of the peer's next message; nullopt, and nothing changed, when it is not
    // the peer's turn or the message is malformed, fails to authenticate or carries an
    // invalid key.
    std::optional<Bytes> read_message(ByteView message);

    // h: after completion, a unique identifier of this session for both sides (§11.2).
    ByteView handshake_hash() const { return symmetric_.handshake_hash(); }
    // The peer's static key: known from the start on the initiator, after reading message 1
    // on the responder (check it against the allowed peers before answering).
    const std::optional<PublicKey>& remote_static() const { return rs_; }
    // Send and receive keys for this side; nullopt before the handshake is complete.
    std::optional<TransportKeys> split() const;

private:
    static constexpr int kMessageCount = 2;  // IK: one round trip
    enum class Token { kE, kS, kEE, kES, kSE, kSS, kPsk };

    HandshakeState(const HandshakeConfig& config, const PrivateKey& ephemeral);
    static std::span<const Token> tokens(int message_index, bool psk2);
    bool mix_dh(const PrivateKey& local, const std::optional<PublicKey>& remote);
    bool mix_token(Token token);  // the tokens that are the same when reading and writing

    NoiseProtocol protocol_;
    NoiseRole role_;
    SymmetricState symmetric_;
    PrivateKey s_;
    PrivateKey e_;
    std::optional<PublicKey> rs_;
    std::optional<PublicKey> re_;
    std::optional<Psk> psk_;
    int message_index_ = 0;
};

}  // namespace burrow
