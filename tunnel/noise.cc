#include "tunnel/noise.h"

#include <sodium.h>

#include <algorithm>
#include <initializer_list>

#include "tunnel/wire.h"

namespace burrow {

namespace {

constexpr size_t kSha256HashLen = 32;     // Noise §12.5
constexpr size_t kSha256BlockLen = 64;    // Noise §12.5
constexpr size_t kBlake2bHashLen = 64;    // Noise §12.8
constexpr size_t kBlake2bBlockLen = 128;  // Noise §12.8
constexpr size_t kMaxBlockLen = kBlake2bBlockLen;
constexpr uint8_t kHmacInnerPad = 0x36;  // RFC 2104 §2 ipad
constexpr uint8_t kHmacOuterPad = 0x5c;  // RFC 2104 §2 opad

size_t hash_len(NoiseHash hash) {
    return hash == NoiseHash::kSha256 ? kSha256HashLen : kBlake2bHashLen;
}
size_t block_len(NoiseHash hash) {
    return hash == NoiseHash::kSha256 ? kSha256BlockLen : kBlake2bBlockLen;
}

using HashOutput = std::array<uint8_t, kMaxHashLen>;

// HASH() of Noise §4.3 fed in pieces, so HMAC and MixHash never concatenate into a buffer.
class Hasher {
public:
    explicit Hasher(NoiseHash hash) : hash_(hash) {
        if (hash_ == NoiseHash::kSha256) {
            crypto_hash_sha256_init(&sha256_);
        } else {
            crypto_generichash_init(&blake2b_, nullptr, 0, kBlake2bHashLen);
        }
    }
    ~Hasher() { sodium_memzero(&blake2b_, sizeof blake2b_); }
    Hasher(const Hasher&) = delete;
    Hasher& operator=(const Hasher&) = delete;

    Hasher& update(ByteView data) {
        if (hash_ == NoiseHash::kSha256) {
            crypto_hash_sha256_update(&sha256_, data.data(), data.size());
        } else {
            crypto_generichash_update(&blake2b_, data.data(), data.size());
        }
        return *this;
    }
    // Writes hash_len(hash) bytes.
    void finish(uint8_t* out) {
        if (hash_ == NoiseHash::kSha256) {
            crypto_hash_sha256_final(&sha256_, out);
        } else {
            crypto_generichash_final(&blake2b_, out, kBlake2bHashLen);
        }
    }

private:
    NoiseHash hash_;
    union {
        crypto_hash_sha256_state sha256_;
        crypto_generichash_state blake2b_;
    };
};
static_assert(sizeof(crypto_generichash_state) >= sizeof(crypto_hash_sha256_state),
              "Hasher wipes the union through its larger member");

// HMAC-HASH(key, data...) per RFC 2104 with the hash's block length, as Noise §4.3 defines
// it (so BLAKE2b gets the plain HMAC construction, not its built-in keyed mode).
void hmac(NoiseHash hash, ByteView key, std::initializer_list<ByteView> data, uint8_t* out) {
    const size_t block = block_len(hash);
    std::array<uint8_t, kMaxBlockLen> padded{};
    if (key.size() > block) {
        Hasher(hash).update(key).finish(padded.data());
    } else {
        std::copy(key.begin(), key.end(), padded.begin());
    }
    std::array<uint8_t, kMaxBlockLen> pad;
    for (size_t i = 0; i < block; ++i) pad[i] = padded[i] ^ kHmacInnerPad;
    HashOutput inner;
    Hasher inner_hash(hash);
    inner_hash.update({pad.data(), block});
    for (ByteView d : data) inner_hash.update(d);
    inner_hash.finish(inner.data());

    for (size_t i = 0; i < block; ++i) pad[i] = padded[i] ^ kHmacOuterPad;
    Hasher(hash).update({pad.data(), block}).update({inner.data(), hash_len(hash)}).finish(out);

    sodium_memzero(padded.data(), padded.size());
    sodium_memzero(pad.data(), pad.size());
    sodium_memzero(inner.data(), inner.size());
}

// Noise §4.3 HKDF(chaining_key, input_key_material, num_outputs), num_outputs = 2 or 3.
struct HkdfOutputs {
    std::array<HashOutput, 3> out{};
    ~HkdfOutputs() { sodium_memzero(out.data(), sizeof out); }
};
void hkdf(NoiseHash hash, ByteView chaining_key, ByteView input_key_material, int num_outputs,
          HkdfOutputs& result) {
    const size_t len = hash_len(hash);
    HashOutput temp_key;
    hmac(hash, chaining_key, {input_key_material}, temp_key.data());
    const ByteView temp{temp_key.data(), len};
    const uint8_t one = 0x01, two = 0x02, three = 0x03;
    hmac(hash, temp, {ByteView(&one, 1)}, result.out[0].data());
    hmac(hash, temp, {ByteView(result.out[0].data(), len), ByteView(&two, 1)},
         result.out[1].data());
    if (num_outputs == 3) {
        hmac(hash, temp, {ByteView(result.out[1].data(), len), ByteView(&three, 1)},
             result.out[2].data());
    }
    sodium_memzero(temp_key.data(), temp_key.size());
}

// Noise §5.2: a 64-byte HASHLEN output is truncated to the 32-byte cipher key.
AeadKeyView cipher_key(const HashOutput& output) {
    return AeadKeyView(output.data(), kAeadKeySize);
}

}  // namespace

// --- keys ---------------------------------------------------------------------------------------

SecretKey::SecretKey(std::span<const uint8_t, 32> bytes) {
    std::copy(bytes.begin(), bytes.end(), bytes_.begin());
}

std::optional<SecretKey> SecretKey::from_bytes(ByteView bytes) {
    if (bytes.size() != 32) return std::nullopt;
    return SecretKey(bytes.first<32>());
}

SecretKey SecretKey::generate(Rng& rng) {
    SecretKey key;
    rng.fill(key.bytes_);
    return key;
}

SecretKey::~SecretKey() {
    sodium_memzero(bytes_.data(), bytes_.size());
}

bool SecretKey::equals(const SecretKey& other) const {
    return sodium_memcmp(bytes_.data(), other.bytes_.data(), bytes_.size()) == 0;
}

PublicKey public_key(const PrivateKey& key) {
    PublicKey pub;
    crypto_scalarmult_base(pub.data(), key.bytes().data());
    return pub;
}

std::string key_to_base64(std::span<const uint8_t, kDhLen> key) {
    std::array<char, kKeyBase64Len + 1> b64;  // + NUL
    sodium_bin2base64(b64.data(), b64.size(), key.data(), key.size(),
                      sodium_base64_VARIANT_ORIGINAL);
    std::string out(b64.data(), kKeyBase64Len);
    sodium_memzero(b64.data(), b64.size());  // it may have been a private key
    return out;
}

// --- protocol names -----------------------------------------------------------------------------

std::string NoiseProtocol::name() const {
    std::string name = psk2 ? "Noise_IKpsk2_25519_" : "Noise_IK_25519_";
    name += cipher == CipherSuite::kAes256Gcm ? "AESGCM_" : "ChaChaPoly_";
    name += hash == NoiseHash::kSha256 ? "SHA256" : "BLAKE2b";
    return name;
}

std::optional<NoiseProtocol> NoiseProtocol::parse(std::string_view name) {
    // Every combination this file implements; a name is one of them or nothing.
    for (bool psk2 : {false, true}) {
        for (CipherSuite cipher : {CipherSuite::kChaCha20Poly1305, CipherSuite::kAes256Gcm}) {
            for (NoiseHash hash : {NoiseHash::kSha256, NoiseHash::kBlake2b}) {
                NoiseProtocol p{psk2, cipher, hash};
                if (p.name() == name) return p;
            }
        }
    }
    return std::nullopt;
}

// --- CipherState --------------------------------------------------------------------------------

bool CipherState::encrypt_with_ad(ByteView ad, ByteView plaintext, Bytes& out) {
    if (!aead_) {
        out.insert(out.end(), plaintext.begin(), plaintext.end());
        return true;
    }
    if (n_ == kNoiseMaxNonce) return false;
    aead_->seal(n_, ad, plaintext, out);
    ++n_;
    return true;
}

std::optional<Bytes> CipherState::decrypt_with_ad(ByteView ad, ByteView ciphertext) {
    if (!aead_) return Bytes(ciphertext.begin(), ciphertext.end());
    if (n_ == kNoiseMaxNonce) return std::nullopt;
    auto plaintext = aead_->open(n_, ad, ciphertext);
    if (plaintext) ++n_;
    return plaintext;
}

void CipherState::rekey() {
    if (!aead_) return;
    const std::array<uint8_t, kAeadKeySize> zeros{};
    Bytes sealed;
    aead_->seal(kNoiseMaxNonce, {}, zeros, sealed);
    aead_.emplace(aead_->suite(), AeadKeyView(sealed.data(), kAeadKeySize));
    sodium_memzero(sealed.data(), sealed.size());
}

// --- SymmetricState -----------------------------------------------------------------------------

SymmetricState::SymmetricState(const NoiseProtocol& protocol)
    : protocol_(protocol), hash_len_(hash_len(protocol.hash)) {
    const std::string name = protocol.name();
    if (name.size() <= hash_len_) {
        std::copy(name.begin(), name.end(), h_.begin());  // zero-padded to HASHLEN
    } else {
        Hasher(protocol_.hash).update(as_bytes(name)).finish(h_.data());
    }
    ck_ = h_;
}

SymmetricState::~SymmetricState() {
    sodium_memzero(ck_.data(), ck_.size());
    sodium_memzero(h_.data(), h_.size());
}

void SymmetricState::mix_key(ByteView input_key_material) {
    HkdfOutputs k;
    hkdf(protocol_.hash, {ck_.data(), hash_len_}, input_key_material, 2, k);
    ck_ = k.out[0];
    cipher_ = CipherState(protocol_.cipher, cipher_key(k.out[1]));
}

void SymmetricState::mix_hash(ByteView data) {
    Hasher(protocol_.hash).update({h_.data(), hash_len_}).update(data).finish(h_.data());
}

void SymmetricState::mix_key_and_hash(ByteView input_key_material) {
    HkdfOutputs k;
    hkdf(protocol_.hash, {ck_.data(), hash_len_}, input_key_material, 3, k);
    ck_ = k.out[0];
    mix_hash({k.out[1].data(), hash_len_});
    cipher_ = CipherState(protocol_.cipher, cipher_key(k.out[2]));
}

bool SymmetricState::encrypt_and_hash(ByteView plaintext, Bytes& out) {
    const size_t start = out.size();
    if (!cipher_.encrypt_with_ad({h_.data(), hash_len_}, plaintext, out)) return false;
    mix_hash(ByteView(out).subspan(start));
    return true;
}

std::optional<Bytes> SymmetricState::decrypt_and_hash(ByteView ciphertext) {
    auto plaintext = cipher_.decrypt_with_ad({h_.data(), hash_len_}, ciphertext);
    if (plaintext) mix_hash(ciphertext);
    return plaintext;
}

std::pair<CipherState, CipherState> SymmetricState::split() const {
    HkdfOutputs k;
    hkdf(protocol_.hash, {ck_.data(), hash_len_}, {}, 2, k);
    return {CipherState(protocol_.cipher, cipher_key(k.out[0])),
            CipherState(protocol_.cipher, cipher_key(k.out[1]))};
}

// --- HandshakeState -----------------------------------------------------------------------------

std::span<const HandshakeState::Token> HandshakeState::tokens(int message_index, bool psk2) {
    using T = Token;
    static constexpr Token kInitiatorMessage[] = {T::kE, T::kES, T::kS, T::kSS};
    static constexpr Token kResponderMessage[] = {T::kE, T::kEE, T::kSE, T::kPsk};
    if (message_index == 0) return kInitiatorMessage;
    // IKpsk2 is IK with a psk token at the end of the second message (Noise §9.3).
    return std::span<const Token>(kResponderMessage).first(psk2 ? 4 : 3);
}

std::optional<HandshakeState> HandshakeState::create(const HandshakeConfig& config, Rng& rng) {
    return create(config, PrivateKey::generate(rng));
}

std::optional<HandshakeState> HandshakeState::create(const HandshakeConfig& config,
                                                     const PrivateKey& ephemeral) {
    const bool initiator = config.role == NoiseRole::kInitiator;
    if (initiator != config.remote_static.has_value()) return std::nullopt;
    if (config.protocol.psk2 != config.psk.has_value()) return std::nullopt;
    if (!suite_available(config.protocol.cipher)) return std::nullopt;
    return HandshakeState(config, ephemeral);
}

HandshakeState::HandshakeState(const HandshakeConfig& config, const PrivateKey& ephemeral)
    : protocol_(config.protocol),
      role_(config.role),
      symmetric_(config.protocol),
      s_(config.local_static),
      e_(ephemeral),
      rs_(config.remote_static),
      psk_(config.psk) {
    symmetric_.mix_hash(config.prologue);
    // The pre-message "<- s": both sides hash the responder's static key.
    const PublicKey responder_static = role_ == NoiseRole::kInitiator ? *rs_ : public_key(s_);
    symmetric_.mix_hash(responder_static);
}

bool HandshakeState::is_my_turn_to_write() const {
    if (is_complete()) return false;
    const bool initiator_writes = message_index_ % 2 == 0;
    return initiator_writes == (role_ == NoiseRole::kInitiator);
}

bool HandshakeState::mix_dh(const PrivateKey& local, const std::optional<PublicKey>& remote) {
    if (!remote) return false;
    // libsodium refuses (returns -1) when the result is all zeros, i.e. the remote key is a
    // low-order point that would let an attacker force a known shared secret.
    std::array<uint8_t, kDhLen> out;
    if (crypto_scalarmult(out.data(), local.bytes().data(), remote->data()) != 0) return false;
    symmetric_.mix_key(out);
    sodium_memzero(out.data(), out.size());
    return true;
}

bool HandshakeState::mix_token(Token token) {
    const bool initiator = role_ == NoiseRole::kInitiator;
    switch (token) {
        case Token::kEE:
            return mix_dh(e_, re_);
        case Token::kES:
            return initiator ? mix_dh(e_, rs_) : mix_dh(s_, re_);
        case Token::kSE:
            return initiator ? mix_dh(s_, re_) : mix_dh(e_, rs_);
        case Token::kSS:
            return mix_dh(s_, rs_);
        case Token::kPsk:
            symmetric_.mix_key_and_hash(psk_->bytes());
            return true;
        case Token::kE:
        case Token::kS:
            break;
    }
    return false;
}

std::optional<Bytes> HandshakeState::write_message(ByteView payload) {
    if (!is_my_turn_to_write()) return std::nullopt;
    HandshakeState next = *this;  // committed only if the whole message succeeds
    Bytes message;
    for (Token token : tokens(message_index_, protocol_.psk2)) {
        if (token == Token::kE) {
            const PublicKey e_pub = public_key(next.e_);
            message.insert(message.end(), e_pub.begin(), e_pub.end());
            next.symmetric_.mix_hash(e_pub);
            if (protocol_.psk2) next.symmetric_.mix_key(e_pub);  // Noise §9.2
        } else if (token == Token::kS) {
            if (!next.symmetric_.encrypt_and_hash(public_key(next.s_), message)) {
                return std::nullopt;
            }
        } else if (!next.mix_token(token)) {
            return std::nullopt;
        }
    }
    if (!next.symmetric_.encrypt_and_hash(payload, message)) return std::nullopt;
    if (message.size() > kNoiseMaxMessageLen) return std::nullopt;
    ++next.message_index_;
    *this = std::move(next);
    return message;
}

std::optional<Bytes> HandshakeState::read_message(ByteView message) {
    if (is_complete() || is_my_turn_to_write()) return std::nullopt;
    if (message.size() > kNoiseMaxMessageLen) return std::nullopt;
    HandshakeState next = *this;  // committed only if the whole message authenticates
    ByteReader reader(message);
    for (Token token : tokens(message_index_, protocol_.psk2)) {
        if (token == Token::kE) {
            const ByteView e_pub = reader.bytes(kDhLen);
            if (!reader.ok()) return std::nullopt;
            next.re_.emplace();
            std::copy(e_pub.begin(), e_pub.end(), next.re_->begin());
            next.symmetric_.mix_hash(e_pub);
            if (protocol_.psk2) next.symmetric_.mix_key(e_pub);  // Noise §9.2
        } else if (token == Token::kS) {
            const size_t len = kDhLen + (next.symmetric_.has_key() ? kAeadTagSize : 0);
            const ByteView sealed = reader.bytes(len);
            if (!reader.ok()) return std::nullopt;
            auto s_pub = next.symmetric_.decrypt_and_hash(sealed);
            if (!s_pub) return std::nullopt;
            next.rs_.emplace();
            std::copy(s_pub->begin(), s_pub->end(), next.rs_->begin());
        } else if (!next.mix_token(token)) {
            return std::nullopt;
        }
    }
    auto payload = next.symmetric_.decrypt_and_hash(reader.rest());
    if (!payload) return std::nullopt;
    ++next.message_index_;
    *this = std::move(next);
    return payload;
}

std::optional<TransportKeys> HandshakeState::split() const {
    if (!is_complete()) return std::nullopt;
    auto [initiator_to_responder, responder_to_initiator] = symmetric_.split();
    if (role_ == NoiseRole::kInitiator) {
        return TransportKeys{std::move(initiator_to_responder), std::move(responder_to_initiator)};
    }
    return TransportKeys{std::move(responder_to_initiator), std::move(initiator_to_responder)};
}

}  // namespace burrow
