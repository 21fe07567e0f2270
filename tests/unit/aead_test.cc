#include <catch2/catch.hpp>

#include <string>

#include "tunnel/aead.h"
#include "tunnel/crypto_init.h"
#include "tests/support/hex.h"
#include "tunnel/rng.h"

using namespace burrow;
using burrow::test::from_hex;

namespace {

Bytes random_bytes(Rng& rng, size_t n) {
    Bytes b(n);
    rng.fill(b);
    return b;
}

std::array<uint8_t, kAeadKeySize> random_key(Rng& rng) {
    std::array<uint8_t, kAeadKeySize> key;
    rng.fill(key);
    return key;
}

// The suites to test on this machine; AES-256-GCM needs AES-NI and is reported when missing.
std::vector<CipherSuite> testable_suites() {
    std::vector<CipherSuite> suites{CipherSuite::kChaCha20Poly1305};
    if (suite_available(CipherSuite::kAes256Gcm)) {
        suites.push_back(CipherSuite::kAes256Gcm);
    } else {
        WARN("SKIP: AES-256-GCM not available on this CPU (no AES-NI/PCLMUL)");
    }
    return suites;
}

}  // namespace

TEST_CASE("crypto initialises") {
    REQUIRE(crypto_init());
}

TEST_CASE("nonce is 32 zero bits then the counter, LE for ChaCha20 and BE for AES-GCM") {
    const uint64_t counter = 0x0102030405060708ULL;
    const AeadNonce chacha = aead_nonce(CipherSuite::kChaCha20Poly1305, counter);
    const AeadNonce aes = aead_nonce(CipherSuite::kAes256Gcm, counter);
    CHECK(chacha == AeadNonce{0, 0, 0, 0, 8, 7, 6, 5, 4, 3, 2, 1});
    CHECK(aes == AeadNonce{0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8});
}

TEST_CASE("preferred suite is AES-256-GCM exactly when the CPU supports it") {
    REQUIRE(crypto_init());
    const bool aes = crypto_aead_aes256gcm_is_available() == 1;
    CHECK(preferred_suite() == (aes ? CipherSuite::kAes256Gcm : CipherSuite::kChaCha20Poly1305));
}

TEST_CASE("RFC 8439 §2.8.2 AEAD_CHACHA20_POLY1305 test vector") {
    REQUIRE(crypto_init());
    const Bytes key = from_hex("808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f");
    const Bytes nonce_bytes = from_hex("070000004041424344454647");
    const Bytes ad = from_hex("50515253c0c1c2c3c4c5c6c7");
    const std::string plaintext =
        "Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the "
        "future, sunscreen would be it.";
    const Bytes expected = from_hex(
        "d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d6"
        "3dbea45e8ca9671282fafb69da92728b1a71de0a9e060b2905d6a5b67ecd3b36"
        "92ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc"
        "3ff4def08e4b7a9de576d26586cec64b6116"
        "1ae10b594f09e26a7e902ecbd0600691");  // tag
    AeadNonce nonce;
    std::copy(nonce_bytes.begin(), nonce_bytes.end(), nonce.begin());

    const Aead aead(CipherSuite::kChaCha20Poly1305, AeadKeyView(key.data(), kAeadKeySize));
    Bytes sealed;
    aead.seal_with_nonce(nonce, ad, as_bytes(plaintext), sealed);
    CHECK(sealed == expected);
    auto opened = aead.open_with_nonce(nonce, ad, expected);
    REQUIRE(opened);
    CHECK(as_chars(*opened) == plaintext);
}

TEST_CASE("GCM spec test case 16 (AES-256, 96-bit IV, with AAD)") {
    REQUIRE(crypto_init());
    if (!suite_available(CipherSuite::kAes256Gcm)) {
        WARN("SKIP: AES-256-GCM not available on this CPU (no AES-NI/PCLMUL)");
        return;
    }
    const Bytes key = from_hex("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308");
    const Bytes nonce_bytes = from_hex("cafebabefacedbaddecaf888");
    const Bytes ad = from_hex("feedfacedeadbeeffeedfacedeadbeefabaddad2");
    const Bytes plaintext = from_hex(
        "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
        "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39");
    const Bytes expected = from_hex(
        "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
        "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662"
        "76fc6ece0f4e1768cddf8853bb2d551b");  // tag
    AeadNonce nonce;
    std::copy(nonce_bytes.begin(), nonce_bytes.end(), nonce.begin());

    const Aead aead(CipherSuite::kAes256Gcm, AeadKeyView(key.data(), kAeadKeySize));
    Bytes sealed;
    aead.seal_with_nonce(nonce, ad, plaintext, sealed);
    CHECK(sealed == expected);
    CHECK(aead.open_with_nonce(nonce, ad, expected) == plaintext);
}

TEST_CASE("seal(counter) is seal_with_nonce(aead_nonce(counter))") {
    REQUIRE(crypto_init());
    SeededRng rng(7);
    for (CipherSuite suite : testable_suites()) {
        const auto key = random_key(rng);
        const Aead aead(suite, key);
        const Bytes ad = random_bytes(rng, 13);
        const Bytes plaintext = random_bytes(rng, 100);
        for (uint64_t counter : {uint64_t{0}, uint64_t{1}, uint64_t{0x1234567890abcdefULL}}) {
            Bytes a, b;
            aead.seal(counter, ad, plaintext, a);
            aead.seal_with_nonce(aead_nonce(suite, counter), ad, plaintext, b);
            CHECK(a == b);
        }
    }
}

TEST_CASE("seal appends and open round-trips, for many sizes and counters") {
    REQUIRE(crypto_init());
    for (CipherSuite suite : testable_suites()) {
        for (uint64_t seed = 1; seed <= 200; ++seed) {
            INFO(suite_name(suite) << " seed " << seed);
            SeededRng rng(seed);
            const Aead aead(suite, random_key(rng));
            const uint64_t counter = rng.next_u64();
            const Bytes ad = random_bytes(rng, rng.uniform(40));
            const Bytes plaintext = random_bytes(rng, rng.uniform(1500));
            const Bytes prefix = random_bytes(rng, rng.uniform(20));

            Bytes out = prefix;
            aead.seal(counter, ad, plaintext, out);
            REQUIRE(out.size() == prefix.size() + plaintext.size() + kAeadTagSize);
            CHECK(std::equal(prefix.begin(), prefix.end(), out.begin()));
            const ByteView sealed = ByteView(out).subspan(prefix.size());
            CHECK(aead.open(counter, ad, sealed) == plaintext);
        }
    }
}

TEST_CASE("every single-bit flip of ciphertext, tag or associated data is refused") {
    REQUIRE(crypto_init());
    for (CipherSuite suite : testable_suites()) {
        INFO(suite_name(suite));
        SeededRng rng(99);
        const Aead aead(suite, random_key(rng));
        const Bytes ad = random_bytes(rng, 13);
        const Bytes plaintext = random_bytes(rng, 64);
        Bytes sealed;
        aead.seal(5, ad, plaintext, sealed);
        REQUIRE(aead.open(5, ad, sealed) == plaintext);

        size_t refused = 0, flips = 0;
        for (size_t bit = 0; bit < sealed.size() * 8; ++bit, ++flips) {
            Bytes tampered = sealed;
            tampered[bit / 8] ^= static_cast<uint8_t>(1u << (bit % 8));
            if (!aead.open(5, ad, tampered)) ++refused;
        }
        for (size_t bit = 0; bit < ad.size() * 8; ++bit, ++flips) {
            Bytes tampered = ad;
            tampered[bit / 8] ^= static_cast<uint8_t>(1u << (bit % 8));
            if (!aead.open(5, tampered, sealed)) ++refused;
        }
        CHECK(refused == flips);
        CHECK(flips == (sealed.size() + ad.size()) * 8);
    }
}

TEST_CASE("wrong counter, wrong key, truncation and the other suite are refused") {
    REQUIRE(crypto_init());
    for (CipherSuite suite : testable_suites()) {
        INFO(suite_name(suite));
        SeededRng rng(3);
        const auto key = random_key(rng);
        const Aead aead(suite, key);
        const Bytes ad = random_bytes(rng, 13);
        const Bytes plaintext = random_bytes(rng, 200);
        Bytes sealed;
        aead.seal(1000, ad, plaintext, sealed);

        CHECK_FALSE(aead.open(999, ad, sealed));
        CHECK_FALSE(aead.open(1001, ad, sealed));
        CHECK_FALSE(aead.open(1000 + (uint64_t{1} << 32), ad, sealed));

        auto other_key = key;
        other_key[0] ^= 1;
        CHECK_FALSE(Aead(suite, other_key).open(1000, ad, sealed));

        CHECK_FALSE(aead.open(1000, ad, ByteView(sealed).first(sealed.size() - 1)));
        CHECK_FALSE(aead.open(1000, ad, ByteView(sealed).first(kAeadTagSize - 1)));
        CHECK_FALSE(aead.open(1000, ad, {}));

        const CipherSuite other = suite == CipherSuite::kAes256Gcm ? CipherSuite::kChaCha20Poly1305
                                                                   : CipherSuite::kAes256Gcm;
        if (suite_available(other)) CHECK_FALSE(Aead(other, key).open(1000, ad, sealed));
    }
}

TEST_CASE("empty plaintext gives a bare tag that still authenticates") {
    REQUIRE(crypto_init());
    for (CipherSuite suite : testable_suites()) {
        SeededRng rng(11);
        const Aead aead(suite, random_key(rng));
        const Bytes ad = random_bytes(rng, 8);
        Bytes sealed;
        aead.seal(0, ad, {}, sealed);
        REQUIRE(sealed.size() == kAeadTagSize);
        auto opened = aead.open(0, ad, sealed);
        REQUIRE(opened);
        CHECK(opened->empty());
        sealed[0] ^= 0x80;
        CHECK_FALSE(aead.open(0, ad, sealed));
    }
}

TEST_CASE("copies of an Aead seal identically") {
    REQUIRE(crypto_init());
    for (CipherSuite suite : testable_suites()) {
        SeededRng rng(21);
        const Aead original(suite, random_key(rng));
        const Aead copy = original;  // NOLINT(performance-unnecessary-copy-initialization)
        const Bytes plaintext = random_bytes(rng, 50);
        Bytes a, b;
        original.seal(9, {}, plaintext, a);
        copy.seal(9, {}, plaintext, b);
        CHECK(a == b);
    }
}
