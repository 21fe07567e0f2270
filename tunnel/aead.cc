#include "tunnel/aead.h"

#include <algorithm>
#include <cstdlib>

namespace burrow {

namespace {
constexpr size_t kNonceCounterOffset = 4;  // Noise §12.3/§12.4: 32 zero bits, then the counter
constexpr size_t kCounterBytes = 8;
}  // namespace

bool suite_available(CipherSuite suite) {
    return suite == CipherSuite::kChaCha20Poly1305 || crypto_aead_aes256gcm_is_available() == 1;
}

CipherSuite preferred_suite() {
    return suite_available(CipherSuite::kAes256Gcm) ? CipherSuite::kAes256Gcm
                                                    : CipherSuite::kChaCha20Poly1305;
}

const char* suite_name(CipherSuite suite) {
    return suite == CipherSuite::kAes256Gcm ? "AES-256-GCM" : "ChaCha20-Poly1305";
}

AeadNonce aead_nonce(CipherSuite suite, uint64_t counter) {
    AeadNonce nonce{};
    for (size_t i = 0; i < kCounterBytes; ++i) {
        const size_t shift = suite == CipherSuite::kAes256Gcm ? 8 * (kCounterBytes - 1 - i) : 8 * i;
        nonce[kNonceCounterOffset + i] = static_cast<uint8_t>(counter >> shift);
    }
    return nonce;
}

Aead::Aead(CipherSuite suite, AeadKeyView key) : suite_(suite) {
    if (!suite_available(suite)) std::abort();
    if (suite == CipherSuite::kAes256Gcm) {
        crypto_aead_aes256gcm_beforenm(&aes_, key.data());
    } else {
        std::copy(key.begin(), key.end(), key_.begin());
    }
}

Aead::~Aead() {
    sodium_memzero(key_.data(), key_.size());
    sodium_memzero(&aes_, sizeof aes_);
}

void Aead::seal(uint64_t counter, ByteView ad, ByteView plaintext, Bytes& out) const {
    seal_with_nonce(aead_nonce(suite_, counter), ad, plaintext, out);
}

std::optional<Bytes> Aead::open(uint64_t counter, ByteView ad, ByteView ciphertext) const {
    return open_with_nonce(aead_nonce(suite_, counter), ad, ciphertext);
}

void Aead::seal_in_place(uint64_t counter, ByteView ad, MutableByteView buffer) const {
    const AeadNonce nonce = aead_nonce(suite_, counter);
    const size_t plaintext_len = buffer.size() - kAeadTagSize;
    unsigned long long written = 0;
    if (suite_ == CipherSuite::kAes256Gcm) {
        crypto_aead_aes256gcm_encrypt_afternm(buffer.data(), &written, buffer.data(),
                                              plaintext_len, ad.data(), ad.size(), nullptr,
                                              nonce.data(), &aes_);
    } else {
        crypto_aead_chacha20poly1305_ietf_encrypt(buffer.data(), &written, buffer.data(),
                                                  plaintext_len, ad.data(), ad.size(), nullptr,
                                                  nonce.data(), key_.data());
    }
}

bool Aead::open_in_place(uint64_t counter, ByteView ad, MutableByteView buffer) const {
    if (buffer.size() < kAeadTagSize) return false;
    const AeadNonce nonce = aead_nonce(suite_, counter);
    unsigned long long written = 0;
    int rc;
    if (suite_ == CipherSuite::kAes256Gcm) {
        rc = crypto_aead_aes256gcm_decrypt_afternm(buffer.data(), &written, nullptr, buffer.data(),
                                                   buffer.size(), ad.data(), ad.size(),
                                                   nonce.data(), &aes_);
    } else {
        rc = crypto_aead_chacha20poly1305_ietf_decrypt(buffer.data(), &written, nullptr,
                                                       buffer.data(), buffer.size(), ad.data(),
                                                       ad.size(), nonce.data(), key_.data());
    }
    return rc == 0;
}

void Aead::seal_with_nonce(const AeadNonce& nonce, ByteView ad, ByteView plaintext,
                           Bytes& out) const {
    const size_t start = out.size();
    out.resize(start + plaintext.size() + kAeadTagSize);
    unsigned long long written = 0;
    // Both calls fail only for messages beyond 2^32 blocks, far above any datagram.
    if (suite_ == CipherSuite::kAes256Gcm) {
        crypto_aead_aes256gcm_encrypt_afternm(out.data() + start, &written, plaintext.data(),
                                              plaintext.size(), ad.data(), ad.size(), nullptr,
                                              nonce.data(), &aes_);
    } else {
        crypto_aead_chacha20poly1305_ietf_encrypt(out.data() + start, &written, plaintext.data(),
                                                  plaintext.size(), ad.data(), ad.size(), nullptr,
                                                  nonce.data(), key_.data());
    }
}

std::optional<Bytes> Aead::open_with_nonce(const AeadNonce& nonce, ByteView ad,
                                           ByteView ciphertext) const {
    if (ciphertext.size() < kAeadTagSize) return std::nullopt;
    Bytes plaintext(ciphertext.size() - kAeadTagSize);
    unsigned long long written = 0;
    int rc;
    if (suite_ == CipherSuite::kAes256Gcm) {
        rc = crypto_aead_aes256gcm_decrypt_afternm(plaintext.data(), &written, nullptr,
                                                   ciphertext.data(), ciphertext.size(), ad.data(),
                                                   ad.size(), nonce.data(), &aes_);
    } else {
        rc = crypto_aead_chacha20poly1305_ietf_decrypt(
            plaintext.data(), &written, nullptr, ciphertext.data(), ciphertext.size(), ad.data(),
            ad.size(), nonce.data(), key_.data());
    }
    if (rc != 0) return std::nullopt;
    return plaintext;
}

}  // namespace burrow
