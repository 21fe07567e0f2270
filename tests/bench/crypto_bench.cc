// burrow-bench crypto: AEAD throughput on data-packet-sized messages, libsodium (what the
// data plane uses, through tunnel/aead.h) against mbedTLS (what the TLS control channel
// links anyway), to keep docs/architecture.md §11's choice honest on each machine.
#include <mbedtls/chachapoly.h>
#include <mbedtls/gcm.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "tests/bench/bench_registry.h"
#include "tunnel/aead.h"
#include "tunnel/packet.h"
#include "tunnel/rng.h"

namespace burrow::bench {
namespace {

constexpr size_t kPacketPayload = 1400;  // a full datagram's worth of frames on a 1500 MTU
constexpr size_t kBatch = 256;           // packets between clock reads, and distinct packets opened
constexpr double kDefaultSeconds = 0.5;  // per table cell
constexpr double kMinSeconds = 0.01;     // below this the clock reads dominate
constexpr double kMaxSeconds = 60.0;     // the machine is shared: keep runs short
constexpr double kBytesPerMB = 1e6;
constexpr uint64_t kSeed = 1;

// One AEAD implementation under test. seal appends ciphertext+tag; open writes the plaintext.
class Contender {
public:
    virtual ~Contender() = default;
    virtual const char* library() const = 0;
    virtual CipherSuite suite() const = 0;
    virtual void seal(uint64_t counter, ByteView ad, ByteView plaintext, Bytes& out) = 0;
    virtual bool open(uint64_t counter, ByteView ad, ByteView sealed, Bytes& out) = 0;
};

class SodiumContender final : public Contender {
public:
    SodiumContender(CipherSuite suite, AeadKeyView key) : aead_(suite, key) {}
    const char* library() const override { return "libsodium"; }
    CipherSuite suite() const override { return aead_.suite(); }
    void seal(uint64_t counter, ByteView ad, ByteView plaintext, Bytes& out) override {
        aead_.seal(counter, ad, plaintext, out);
    }
    bool open(uint64_t counter, ByteView ad, ByteView sealed, Bytes& out) override {
        auto plaintext = aead_.open(counter, ad, sealed);
        if (!plaintext) return false;
        out = std::move(*plaintext);
        return true;
    }

private:
    Aead aead_;
};

class MbedGcmContender final : public Contender {
public:
    explicit MbedGcmContender(AeadKeyView key) {
        mbedtls_gcm_init(&ctx_);
        mbedtls_gcm_setkey(&ctx_, MBEDTLS_CIPHER_ID_AES, key.data(), 8 * kAeadKeySize);
    }
    ~MbedGcmContender() override { mbedtls_gcm_free(&ctx_); }
    const char* library() const override { return "mbedTLS"; }
    CipherSuite suite() const override { return CipherSuite::kAes256Gcm; }
    void seal(uint64_t counter, ByteView ad, ByteView plaintext, Bytes& out) override {
        const AeadNonce nonce = aead_nonce(suite(), counter);
        const size_t start = out.size();
        out.resize(start + plaintext.size() + kAeadTagSize);
        mbedtls_gcm_crypt_and_tag(&ctx_, MBEDTLS_GCM_ENCRYPT, plaintext.size(), nonce.data(),
                                  nonce.size(), ad.data(), ad.size(), plaintext.data(),
                                  out.data() + start, kAeadTagSize,
                                  out.data() + start + plaintext.size());
    }
    bool open(uint64_t counter, ByteView ad, ByteView sealed, Bytes& out) override {
        if (sealed.size() < kAeadTagSize) return false;
        const AeadNonce nonce = aead_nonce(suite(), counter);
        const size_t len = sealed.size() - kAeadTagSize;
        out.resize(len);
        return mbedtls_gcm_auth_decrypt(&ctx_, len, nonce.data(), nonce.size(), ad.data(),
                                        ad.size(), sealed.data() + len, kAeadTagSize, sealed.data(),
                                        out.data()) == 0;
    }

private:
    mbedtls_gcm_context ctx_;
};

class MbedChaChaPolyContender final : public Contender {
public:
    explicit MbedChaChaPolyContender(AeadKeyView key) {
        mbedtls_chachapoly_init(&ctx_);
        mbedtls_chachapoly_setkey(&ctx_, key.data());
    }
    ~MbedChaChaPolyContender() override { mbedtls_chachapoly_free(&ctx_); }
    const char* library() const override { return "mbedTLS"; }
    CipherSuite suite() const override { return CipherSuite::kChaCha20Poly1305; }
    void seal(uint64_t counter, ByteView ad, ByteView plaintext, Bytes& out) override {
        const AeadNonce nonce = aead_nonce(suite(), counter);
        const size_t start = out.size();
        out.resize(start + plaintext.size() + kAeadTagSize);
        mbedtls_chachapoly_encrypt_and_tag(&ctx_, plaintext.size(), nonce.data(), ad.data(),
                                           ad.size(), plaintext.data(), out.data() + start,
                                           out.data() + start + plaintext.size());
    }
    bool open(uint64_t counter, ByteView ad, ByteView sealed, Bytes& out) override {
        if (sealed.size() < kAeadTagSize) return false;
        const AeadNonce nonce = aead_nonce(suite(), counter);
        const size_t len = sealed.size() - kAeadTagSize;
        out.resize(len);
        return mbedtls_chachapoly_auth_decrypt(&ctx_, len, nonce.data(), ad.data(), ad.size(),
                                               sealed.data() + len, sealed.data(), out.data()) == 0;
    }

private:
    mbedtls_chachapoly_context ctx_;
};

using Clock = std::chrono::steady_clock;

// Runs body(i) in batches until `seconds` have passed; returns MB/s of plaintext.
template <typename Body>
double throughput(double seconds, Body&& body) {
    const auto start = Clock::now();
    const auto budget = std::chrono::duration<double>(seconds);
    uint64_t packets = 0;
    std::chrono::duration<double> elapsed{};
    do {
        for (size_t i = 0; i < kBatch; ++i) body(packets + i);
        packets += kBatch;
        elapsed = Clock::now() - start;
    } while (elapsed < budget);
    return static_cast<double>(packets * kPacketPayload) / elapsed.count() / kBytesPerMB;
}

struct Row {
    std::string library;
    std::string cipher;
    std::string seal;
    std::string open;
};

std::string format_mbs(double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.0f", v);
    return buf;
}

int run_crypto(double seconds) {
    SeededRng rng(kSeed);
    std::array<uint8_t, kAeadKeySize> key;
    rng.fill(key);
    Bytes ad(kPacketHeaderSize);  // a data packet authenticates its header
    rng.fill(ad);
    Bytes payload(kPacketPayload);
    rng.fill(payload);

    const bool aes = suite_available(CipherSuite::kAes256Gcm);
    std::vector<std::unique_ptr<Contender>> contenders;
    if (aes) contenders.push_back(std::make_unique<SodiumContender>(CipherSuite::kAes256Gcm, key));
    contenders.push_back(std::make_unique<SodiumContender>(CipherSuite::kChaCha20Poly1305, key));
    contenders.push_back(std::make_unique<MbedGcmContender>(key));
    contenders.push_back(std::make_unique<MbedChaChaPolyContender>(key));

    std::vector<Row> rows;
    if (!aes) rows.push_back({"libsodium", "AES-256-GCM", "n/a (no AES-NI)", "n/a"});
    for (auto& c : contenders) {
        // Both libraries must produce the same bytes for the same key, nonce and AD, and open
        // each other's output: otherwise the numbers compare different things.
        Bytes ours, theirs, opened;
        Aead reference(c->suite(), key);
        reference.seal(7, ad, payload, ours);
        c->seal(7, ad, payload, theirs);
        if (ours != theirs || !c->open(7, ad, ours, opened) || opened != payload) {
            std::fprintf(stderr, "burrow-bench crypto: %s %s disagrees with tunnel/aead.h\n",
                         c->library(), suite_name(c->suite()));
            return 1;
        }

        Bytes out;
        out.reserve(kPacketPayload + kAeadTagSize);
        const double seal = throughput(seconds, [&](uint64_t counter) {
            out.clear();
            c->seal(counter, ad, payload, out);
        });

        std::vector<Bytes> sealed(kBatch);
        for (size_t i = 0; i < kBatch; ++i) c->seal(i, ad, payload, sealed[i]);
        bool all_opened = true;
        const double open = throughput(seconds, [&](uint64_t n) {
            all_opened &= c->open(n % kBatch, ad, sealed[n % kBatch], opened);
        });
        if (!all_opened) {
            std::fprintf(stderr, "burrow-bench crypto: %s %s failed to open its own packets\n",
                         c->library(), suite_name(c->suite()));
            return 1;
        }
        rows.push_back({c->library(), suite_name(c->suite()), format_mbs(seal), format_mbs(open)});
    }

    std::printf("crypto: %zu-byte packets, %zu-byte associated data, %.2f s per measurement\n\n",
                kPacketPayload, kPacketHeaderSize, seconds);
    std::printf("%-10s  %-18s  %15s  %10s\n", "library", "cipher", "seal MB/s", "open MB/s");
    for (const Row& r : rows) {
        std::printf("%-10s  %-18s  %15s  %10s\n", r.library.c_str(), r.cipher.c_str(),
                    r.seal.c_str(), r.open.c_str());
    }
    return 0;
}

const BenchRegistration kCrypto{
    "crypto", "AEAD seal/open throughput: libsodium vs mbedTLS, AES-256-GCM and ChaCha20-Poly1305",
    [](CLI::App& cmd) {
        auto seconds = std::make_shared<double>(kDefaultSeconds);
        cmd.add_option("--seconds", *seconds, "time per measurement (default 0.5)")
            ->check(CLI::Range(kMinSeconds, kMaxSeconds));
        return std::function<int()>([seconds] { return run_crypto(*seconds); });
    }};

}  // namespace
}  // namespace burrow::bench
