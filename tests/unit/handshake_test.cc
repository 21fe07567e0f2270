#include <catch2/catch.hpp>

#include <cstring>
#include <vector>

#include "tests/support/identity.h"
#include "tunnel/crypto_init.h"
#include "tunnel/handshake.h"
#include "tunnel/rng.h"

using namespace burrow;
using burrow::test::Identity;
using burrow::test::make_identity;

namespace {

constexpr int64_t kWallClock = 1'700'000'000'000'000;  // some time in 2023, in microseconds
constexpr Time kT0 = time_from_us(1'000'000);

std::vector<CipherSuite> testable_suites() {
    std::vector<CipherSuite> suites{CipherSuite::kChaCha20Poly1305};
    if (suite_available(CipherSuite::kAes256Gcm)) {
        suites.push_back(CipherSuite::kAes256Gcm);
    } else {
        WARN("SKIP: AES-256-GCM not available on this CPU (no AES-NI/PCLMUL)");
    }
    return suites;
}

// A fixed cast: initiator I, responder R, and a stranger S.
struct Cast {
    explicit Cast(uint64_t seed)
        : rng(seed), i(make_identity(rng)), r(make_identity(rng)), s(make_identity(rng)) {
        REQUIRE(crypto_init());
    }
    SeededRng rng;
    Identity i, r, s;

    InitiatorHandshake initiate(int64_t at_us, uint32_t index = 7,
                                CipherSuite suite = CipherSuite::kChaCha20Poly1305) {
        auto h = InitiatorHandshake::create(i.secret, r.pub, suite, index,
                                            tai64n_from_unix_us(kWallClock + at_us), rng);
        REQUIRE(h);
        return *h;
    }
};

std::function<uint32_t()> fixed_index(uint32_t index) {
    return [index] { return index; };
}

template <typename T>
bool is_drop(const T& result, HandshakeDrop drop) {
    const auto* d = std::get_if<HandshakeDrop>(&result);
    if (d == nullptr) return false;
    INFO("got " << handshake_drop_name(*d) << ", want " << handshake_drop_name(drop));
    CHECK(*d == drop);
    return *d == drop;
}

// Keys agree when what one side seals the other opens, both ways.
void check_keys_agree(const Keypair& a, const Keypair& b, uint64_t counter) {
    const Bytes ad{1, 2, 3};
    const Bytes plain{'h', 'e', 'l', 'l', 'o'};
    Bytes sealed;
    a.send.seal(counter, ad, plain, sealed);
    auto opened = b.recv.open(counter, ad, sealed);
    REQUIRE(opened);
    CHECK(*opened == plain);
    sealed.clear();
    b.send.seal(counter, ad, plain, sealed);
    opened = a.recv.open(counter, ad, sealed);
    REQUIRE(opened);
    CHECK(*opened == plain);
    // And the directions use different keys.
    CHECK_FALSE(a.recv.open(counter, ad, [&] {
        Bytes own;
        a.send.seal(counter, ad, plain, own);
        return own;
    }()));
}

}  // namespace

TEST_CASE("message sizes: 148-byte initiation, 76-byte response, 64-byte cookie reply") {
    CHECK(kNoiseInitiationSize == 108);
    CHECK(kNoiseResponseSize == 48);
    CHECK(kInitiationSize == 148);
    CHECK(kResponseSize == 76);
    CHECK(kCookieReplySize == 64);
    CHECK(kResponseSize < kInitiationSize);
    CHECK(kCookieReplySize < kInitiationSize);

    Cast c(1);
    auto h = c.initiate(0);
    CHECK(h.initiation().size() == kInitiationSize);
    HandshakeResponder responder(c.r.secret, c.i.pub, c.rng);
    auto result = responder.consume_initiation(h.initiation(), kT0, fixed_index(9));
    auto* accepted = std::get_if<HandshakeResponder::Accepted>(&result);
    REQUIRE(accepted);
    CHECK(accepted->response.size() == kResponseSize);
    CHECK(accepted->response.size() < h.initiation().size());
}

TEST_CASE("TAI64N: 2^62 + seconds, then nanoseconds, big-endian; byte order is time order") {
    const Tai64n zero = tai64n_from_unix_us(0);
    const Tai64n expect_zero{0x40, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    CHECK(zero == expect_zero);
    const Tai64n t = tai64n_from_unix_us(1'500'000);                           // 1.5 s
    const Tai64n expect_t{0x40, 0, 0, 0, 0, 0, 0, 1, 0x1d, 0xcd, 0x65, 0x00};  // 5e8 ns
    CHECK(t == expect_t);

    SeededRng rng(2);
    for (int i = 0; i < 1000; ++i) {
        const int64_t a = static_cast<int64_t>(rng.uniform(uint64_t{1} << 60));
        const int64_t b = static_cast<int64_t>(rng.uniform(uint64_t{1} << 60));
        const Tai64n ta = tai64n_from_unix_us(a), tb = tai64n_from_unix_us(b);
        const int cmp = std::memcmp(ta.data(), tb.data(), kTimestampSize);
        INFO(a << " vs " << b);
        CHECK((cmp < 0) == (a < b));
        CHECK((cmp == 0) == (a == b));
    }
}

TEST_CASE("suite codes: 1 and 2, nothing else, and one bit flip never maps one to the other") {
    CHECK(suite_from_code(suite_code(CipherSuite::kChaCha20Poly1305)) ==
          CipherSuite::kChaCha20Poly1305);
    CHECK(suite_from_code(suite_code(CipherSuite::kAes256Gcm)) == CipherSuite::kAes256Gcm);
    int valid = 0;
    for (int code = 0; code < 256; ++code) valid += suite_from_code(uint8_t(code)) ? 1 : 0;
    CHECK(valid == 2);
    for (CipherSuite s : {CipherSuite::kChaCha20Poly1305, CipherSuite::kAes256Gcm}) {
        for (int bit = 0; bit < 8; ++bit) {
            CHECK_FALSE(suite_from_code(uint8_t(suite_code(s) ^ (1 << bit))));
        }
    }
}

TEST_CASE("messages round-trip through encode and decode, with mac1 filled in") {
    SeededRng rng(3);
    for (int n = 0; n < 200; ++n) {
        PublicKey receiver;
        rng.fill(receiver);
        const Mac1Key key = mac1_key(receiver);

        InitiationMessage init;
        init.suite = rng.chance(0.5) ? CipherSuite::kAes256Gcm : CipherSuite::kChaCha20Poly1305;
        init.sender_index = static_cast<uint32_t>(rng.next_u64());
        rng.fill(init.noise);
        const Bytes wire = encode_initiation(init, key);
        REQUIRE(wire.size() == kInitiationSize);
        CHECK(wire[0] == kMessageTypeInitiation);
        CHECK(verify_initiation_mac1(key, wire));
        auto back = decode_initiation(wire);
        REQUIRE(back);
        init.mac1 = compute_mac1(key, ByteView(wire).first(kInitiationSize - kMac1Size - kMac2Size));
        CHECK(*back == init);
        CHECK(back->mac2 == Mac2{});  // no cookie: zeros

        // With a cookie, mac2 covers everything before it, mac1 included.
        Cookie cookie{};
        rng.fill(cookie);
        const Bytes with_mac2 = encode_initiation(init, key, cookie);
        CHECK(verify_initiation_mac1(key, with_mac2));
        auto back2 = decode_initiation(with_mac2);
        REQUIRE(back2);
        CHECK(back2->mac1 == init.mac1);
        CHECK(back2->mac2 == compute_mac2(cookie, initiation_mac2_covered(with_mac2)));
        CHECK(back2->mac2 != Mac2{});

        ResponseMessage resp;
        resp.sender_index = static_cast<uint32_t>(rng.next_u64());
        resp.receiver_index = static_cast<uint32_t>(rng.next_u64());
        rng.fill(resp.noise);
        const Bytes rwire = encode_response(resp, key);
        REQUIRE(rwire.size() == kResponseSize);
        CHECK(rwire[0] == kMessageTypeResponse);
        CHECK(verify_mac1(key, rwire));
        auto rback = decode_response(rwire);
        REQUIRE(rback);
        resp.mac1 = compute_mac1(key, ByteView(rwire).first(kResponseSize - kMac1Size));
        CHECK(*rback == resp);

        // mac1 depends on the receiver's key.
        PublicKey other = receiver;
        other[rng.uniform(other.size())] ^= 1;
        CHECK_FALSE(verify_initiation_mac1(mac1_key(other), wire));
    }
}

TEST_CASE("decode refuses every other size, type, reserved value and suite") {
    SeededRng rng(4);
    InitiationMessage init;
    rng.fill(init.noise);
    const Mac1Key key = mac1_key(PublicKey{});
    const Bytes wire = encode_initiation(init, key);
    ResponseMessage resp;
    rng.fill(resp.noise);
    const Bytes rwire = encode_response(resp, key);

    for (size_t size = 0; size <= 200; ++size) {
        Bytes b(size, 0);
        std::copy_n(wire.begin(), std::min(size, wire.size()), b.begin());
        CHECK(decode_initiation(b).has_value() == (size == kInitiationSize));
        Bytes rb(size, 0);
        std::copy_n(rwire.begin(), std::min(size, rwire.size()), rb.begin());
        CHECK(decode_response(rb).has_value() == (size == kResponseSize));
    }
    for (int v = 0; v < 256; ++v) {
        Bytes b = wire;
        b[0] = uint8_t(v);
        CHECK(decode_initiation(b).has_value() == (v == kMessageTypeInitiation));
        b = wire;
        b[1] = uint8_t(v);
        CHECK(decode_initiation(b).has_value() == suite_from_code(uint8_t(v)).has_value());
        for (size_t reserved : {2, 3}) {
            b = wire;
            b[reserved] = uint8_t(v);
            CHECK(decode_initiation(b).has_value() == (v == 0));
        }
        Bytes rb = rwire;
        rb[0] = uint8_t(v);
        CHECK(decode_response(rb).has_value() == (v == kMessageTypeResponse));
        for (size_t reserved : {1, 2, 3}) {
            rb = rwire;
            rb[reserved] = uint8_t(v);
            CHECK(decode_response(rb).has_value() == (v == 0));
        }
    }
}

TEST_CASE("both suites complete, and the keys agree in both directions") {
    for (CipherSuite suite : testable_suites()) {
        INFO(suite_name(suite));
        Cast c(5);
        auto h = c.initiate(0, 0x11111111, suite);
        CHECK(h.initiation()[1] == suite_code(suite));
        HandshakeResponder responder(c.r.secret, c.i.pub, c.rng);
        auto result = responder.consume_initiation(h.initiation(), kT0, fixed_index(0x22222222));
        auto* accepted = std::get_if<HandshakeResponder::Accepted>(&result);
        REQUIRE(accepted);
        CHECK(accepted->keypair.local_index == 0x22222222);
        CHECK(accepted->keypair.remote_index == 0x11111111);
        CHECK(accepted->keypair.created_at == kT0);
        CHECK(accepted->keypair.send.suite() == suite);

        const Time later = kT0 + std::chrono::milliseconds(20);
        auto done = h.consume_response(accepted->response, later);
        auto* keypair = std::get_if<Keypair>(&done);
        REQUIRE(keypair);
        CHECK(keypair->local_index == 0x11111111);
        CHECK(keypair->remote_index == 0x22222222);
        CHECK(keypair->created_at == later);
        CHECK(keypair->recv.suite() == suite);
        check_keys_agree(*keypair, accepted->keypair, 0);
        check_keys_agree(*keypair, accepted->keypair, 123456789);
        CHECK(h.noise_reads() == 1);
        CHECK(responder.noise_reads() == 1);
    }
}

TEST_CASE("the responder accepts whichever suite the initiator names") {
    for (CipherSuite suite : testable_suites()) {
        Cast c(6);
        HandshakeResponder responder(c.r.secret, c.i.pub, c.rng);
        auto h = c.initiate(0, 1, suite);
        auto result = responder.consume_initiation(h.initiation(), kT0, fixed_index(2));
        auto* accepted = std::get_if<HandshakeResponder::Accepted>(&result);
        REQUIRE(accepted);
        CHECK(accepted->keypair.recv.suite() == suite);
        CHECK(std::holds_alternative<Keypair>(h.consume_response(accepted->response, kT0)));
    }
}

TEST_CASE("a rewritten suite byte (with a recomputed mac1) fails the handshake, no downgrade") {
    if (!suite_available(CipherSuite::kAes256Gcm)) {
        WARN("SKIP: AES-256-GCM not available");
        return;
    }
    Cast c(7);
    HandshakeResponder responder(c.r.secret, c.i.pub, c.rng);
    auto h = c.initiate(0, 1, CipherSuite::kAes256Gcm);
    auto m = decode_initiation(h.initiation());
    REQUIRE(m);
    m->suite = CipherSuite::kChaCha20Poly1305;
    const Bytes forged = encode_initiation(*m, mac1_key(c.r.pub));
    CHECK(is_drop(responder.consume_initiation(forged, kT0, fixed_index(2)),
                  HandshakeDrop::kDecryptFailed));
    CHECK(responder.greatest_timestamp() == Tai64n{});
}

TEST_CASE("mac1 rejects garbage and misaddressed initiations before any Diffie-Hellman") {
    Cast c(8);
    HandshakeResponder responder(c.r.secret, c.i.pub, c.rng);
    SeededRng rng(80);
    for (int n = 0; n < 1000; ++n) {
        Bytes garbage(kInitiationSize);
        rng.fill(garbage);
        garbage[0] = kMessageTypeInitiation;
        garbage[1] = rng.chance(0.5) ? kSuiteAes256Gcm : kSuiteChaCha20Poly1305;
        garbage[2] = garbage[3] = 0;
        CHECK(is_drop(responder.consume_initiation(garbage, kT0, fixed_index(1)),
                      HandshakeDrop::kBadMac1));
    }
    // An initiator that has the wrong key for us computes mac1 under that key.
    auto wrong = InitiatorHandshake::create(c.i.secret, c.s.pub, CipherSuite::kChaCha20Poly1305, 1,
                                            tai64n_from_unix_us(kWallClock), c.rng);
    REQUIRE(wrong);
    CHECK(is_drop(responder.consume_initiation(wrong->initiation(), kT0, fixed_index(1)),
                  HandshakeDrop::kBadMac1));
    CHECK(responder.noise_reads() == 0);  // not one message got as far as Noise
    CHECK(responder.greatest_timestamp() == Tai64n{});
}

TEST_CASE("a valid handshake from an unexpected static key is refused") {
    Cast c(9);
    // The responder expects S, and I (whom it does not expect) initiates correctly.
    HandshakeResponder responder(c.r.secret, c.s.pub, c.rng);
    auto h = c.initiate(0);
    bool called = false;
    CHECK(is_drop(responder.consume_initiation(h.initiation(), kT0,
                                               [&] {
                                                   called = true;
                                                   return 1u;
                                               }),
                  HandshakeDrop::kUnknownPeer));
    CHECK_FALSE(called);
    CHECK(responder.greatest_timestamp() == Tai64n{});
}

TEST_CASE("a replayed initiation, or one with an older timestamp, is refused") {
    Cast c(10);
    HandshakeResponder responder(c.r.secret, c.i.pub, c.rng);
    auto first = c.initiate(1'000'000);
    auto older = c.initiate(500'000);
    auto newer = c.initiate(6'000'000);

    auto r1 = responder.consume_initiation(first.initiation(), kT0, fixed_index(1));
    auto* a1 = std::get_if<HandshakeResponder::Accepted>(&r1);
    REQUIRE(a1);
    const Tai64n after_first = responder.greatest_timestamp();
    CHECK(after_first == tai64n_from_unix_us(kWallClock + 1'000'000));

    CHECK(is_drop(responder.consume_initiation(first.initiation(), kT0, fixed_index(2)),
                  HandshakeDrop::kReplayedInitiation));
    CHECK(is_drop(responder.consume_initiation(older.initiation(), kT0, fixed_index(2)),
                  HandshakeDrop::kReplayedInitiation));
    CHECK(responder.greatest_timestamp() == after_first);

    // A newer initiation (a retransmission) gets a new response with fresh keys.
    auto r2 = responder.consume_initiation(newer.initiation(), kT0, fixed_index(3));
    auto* a2 = std::get_if<HandshakeResponder::Accepted>(&r2);
    REQUIRE(a2);
    CHECK(a2->response != a1->response);
    auto k2 = newer.consume_response(a2->response, kT0);
    REQUIRE(std::holds_alternative<Keypair>(k2));
    check_keys_agree(std::get<Keypair>(k2), a2->keypair, 0);
    // The first response belongs to the first attempt only.
    CHECK(is_drop(newer.consume_response(a1->response, kT0), HandshakeDrop::kUnknownIndex));
}

TEST_CASE("responses: wrong index, wrong addressee, forgeries; the genuine one still works") {
    Cast c(11);
    HandshakeResponder responder(c.r.secret, c.i.pub, c.rng);
    auto h = c.initiate(0, 42);
    auto r = responder.consume_initiation(h.initiation(), kT0, fixed_index(43));
    auto* accepted = std::get_if<HandshakeResponder::Accepted>(&r);
    REQUIRE(accepted);

    auto m = decode_response(accepted->response);
    REQUIRE(m);
    ResponseMessage other_index = *m;
    other_index.receiver_index = 41;
    CHECK(is_drop(h.consume_response(encode_response(other_index, mac1_key(c.i.pub)), kT0),
                  HandshakeDrop::kUnknownIndex));
    CHECK(is_drop(h.consume_response(encode_response(*m, mac1_key(c.s.pub)), kT0),
                  HandshakeDrop::kBadMac1));
    // A forged response with a valid mac1 (anyone can compute it) costs DH but changes nothing.
    ResponseMessage forged = *m;
    c.rng.fill(forged.noise);
    CHECK(is_drop(h.consume_response(encode_response(forged, mac1_key(c.i.pub)), kT0),
                  HandshakeDrop::kDecryptFailed));
    CHECK(h.noise_reads() == 1);
    auto done = h.consume_response(accepted->response, kT0);
    REQUIRE(std::holds_alternative<Keypair>(done));
    check_keys_agree(std::get<Keypair>(done), accepted->keypair, 5);
    // Completed: a second copy is not processed again.
    CHECK(is_drop(h.consume_response(accepted->response, kT0), HandshakeDrop::kUnknownIndex));
}

TEST_CASE("a low-order ephemeral key is refused") {
    Cast c(12);
    HandshakeResponder responder(c.r.secret, c.i.pub, c.rng);
    auto h = c.initiate(0);
    auto m = decode_initiation(h.initiation());
    REQUIRE(m);
    std::fill(m->noise.begin(), m->noise.begin() + kDhLen, 0);  // the identity point
    CHECK(is_drop(
        responder.consume_initiation(encode_initiation(*m, mac1_key(c.r.pub)), kT0, fixed_index(1)),
        HandshakeDrop::kDecryptFailed));
}

TEST_CASE("every truncation and bit flip of an initiation is refused and changes nothing") {
    // Two responders from the same seed: one sees every damaged copy first. If that changed
    // anything (timestamp, ephemeral key, Rng), their answers to the genuine message differ.
    Cast c(13);
    SeededRng rng_a(130), rng_b(130);
    HandshakeResponder damaged(c.r.secret, c.i.pub, rng_a);
    HandshakeResponder pristine(c.r.secret, c.i.pub, rng_b);
    auto h = c.initiate(0);
    const Bytes& wire = h.initiation();
    const Mac1Key key = mac1_key(c.r.pub);

    for (size_t len = 0; len < wire.size(); ++len) {
        INFO("truncated to " << len);
        CHECK(is_drop(damaged.consume_initiation(ByteView(wire).first(len), kT0, fixed_index(1)),
                      HandshakeDrop::kMalformed));
    }
    Bytes longer = wire;
    longer.push_back(0);
    CHECK(is_drop(damaged.consume_initiation(longer, kT0, fixed_index(1)),
                  HandshakeDrop::kMalformed));

    uint64_t reached_noise = 0;
    // mac2 is not the responder's to check: the Session checks it, under load only
    // (session_test's cookie cases), as WireGuard ignores it otherwise.
    for (size_t bit = 0; bit < (wire.size() - kMac2Size) * 8; ++bit) {
        INFO("bit " << bit);
        Bytes flipped = wire;
        flipped[bit / 8] ^= uint8_t(1 << (bit % 8));
        auto result = damaged.consume_initiation(flipped, kT0, fixed_index(1));
        REQUIRE(std::holds_alternative<HandshakeDrop>(result));
        const auto drop = std::get<HandshakeDrop>(result);
        if (bit / 8 < kInitiationHeaderSize - 4) {
            CHECK(drop == HandshakeDrop::kMalformed);  // type, suite, reserved
        } else {
            CHECK(drop == HandshakeDrop::kBadMac1);
        }
        // The same flip in the Noise part with a valid mac1, as an attacker who knows our
        // public key can make: Noise refuses it.
        const size_t byte = bit / 8;
        if (byte >= kInitiationHeaderSize && byte < kInitiationSize - kMac1Size - kMac2Size) {
            flipped.resize(kInitiationSize - kMac1Size - kMac2Size);
            const Mac1 mac = compute_mac1(key, flipped);
            flipped.insert(flipped.end(), mac.begin(), mac.end());
            flipped.resize(kInitiationSize);  // mac2: zeros
            CHECK(is_drop(damaged.consume_initiation(flipped, kT0, fixed_index(1)),
                          HandshakeDrop::kDecryptFailed));
            ++reached_noise;
        }
    }
    CHECK(damaged.noise_reads() == reached_noise);
    CHECK(damaged.greatest_timestamp() == Tai64n{});

    auto ra = damaged.consume_initiation(wire, kT0, fixed_index(1));
    auto rb = pristine.consume_initiation(wire, kT0, fixed_index(1));
    REQUIRE(std::holds_alternative<HandshakeResponder::Accepted>(ra));
    REQUIRE(std::holds_alternative<HandshakeResponder::Accepted>(rb));
    CHECK(std::get<HandshakeResponder::Accepted>(ra).response ==
          std::get<HandshakeResponder::Accepted>(rb).response);
}

TEST_CASE("every truncation and bit flip of a response is refused; the genuine one then works") {
    Cast c(14);
    HandshakeResponder responder(c.r.secret, c.i.pub, c.rng);
    auto h = c.initiate(0, 77);
    auto r = responder.consume_initiation(h.initiation(), kT0, fixed_index(78));
    auto* accepted = std::get_if<HandshakeResponder::Accepted>(&r);
    REQUIRE(accepted);
    const Bytes& wire = accepted->response;

    for (size_t len = 0; len < wire.size(); ++len) {
        CHECK(
            is_drop(h.consume_response(ByteView(wire).first(len), kT0), HandshakeDrop::kMalformed));
    }
    for (size_t bit = 0; bit < wire.size() * 8; ++bit) {
        INFO("bit " << bit);
        Bytes flipped = wire;
        flipped[bit / 8] ^= uint8_t(1 << (bit % 8));
        auto result = h.consume_response(flipped, kT0);
        REQUIRE(std::holds_alternative<HandshakeDrop>(result));
        const auto drop = std::get<HandshakeDrop>(result);
        CHECK((drop == HandshakeDrop::kMalformed || drop == HandshakeDrop::kBadMac1));
    }
    CHECK(h.noise_reads() == 0);
    auto done = h.consume_response(wire, kT0);
    REQUIRE(std::holds_alternative<Keypair>(done));
    check_keys_agree(std::get<Keypair>(done), accepted->keypair, 9);
}
