#include <catch2/catch.hpp>

#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>

#include "tunnel/crypto_init.h"
#include "tunnel/noise.h"
#include "tests/support/hex.h"
#include "tunnel/rng.h"

using namespace burrow;
using burrow::test::from_hex;
using burrow::test::to_hex;
using json = nlohmann::json;

namespace {

SecretKey secret_from_hex(std::string_view hex) {
    auto key = SecretKey::from_bytes(from_hex(hex));
    REQUIRE(key);
    return *key;
}

PublicKey public_from_hex(std::string_view hex) {
    const Bytes b = from_hex(hex);
    REQUIRE(b.size() == kDhLen);
    PublicKey key;
    std::copy(b.begin(), b.end(), key.begin());
    return key;
}

json load_vectors() {
    const std::string path =
        std::string(BURROW_SOURCE_DIR) + "/tests/unit/vectors/noise-25519.json";
    std::ifstream in(path);
    REQUIRE(in.good());
    return json::parse(in);
}

// CHECK with both sides shown in hex, and the result kept so a vector can be counted as a pass.
bool same(ByteView got, ByteView want, const std::string& what) {
    INFO(what);
    CHECK(to_hex(got) == to_hex(want));
    return std::equal(got.begin(), got.end(), want.begin(), want.end());
}

struct Party {
    HandshakeConfig config;
    PrivateKey ephemeral;
};

Party initiator_of(const json& v, const NoiseProtocol& protocol) {
    Party p;
    p.config.protocol = protocol;
    p.config.role = NoiseRole::kInitiator;
    p.config.prologue = from_hex(v.at("init_prologue").get<std::string>());
    p.config.local_static = secret_from_hex(v.at("init_static").get<std::string>());
    p.config.remote_static = public_from_hex(v.at("init_remote_static").get<std::string>());
    if (protocol.psk2) p.config.psk = secret_from_hex(v.at("init_psks").at(0).get<std::string>());
    p.ephemeral = secret_from_hex(v.at("init_ephemeral").get<std::string>());
    return p;
}

Party responder_of(const json& v, const NoiseProtocol& protocol) {
    Party p;
    p.config.protocol = protocol;
    p.config.role = NoiseRole::kResponder;
    p.config.prologue = from_hex(v.at("resp_prologue").get<std::string>());
    p.config.local_static = secret_from_hex(v.at("resp_static").get<std::string>());
    if (protocol.psk2) p.config.psk = secret_from_hex(v.at("resp_psks").at(0).get<std::string>());
    p.ephemeral = secret_from_hex(v.at("resp_ephemeral").get<std::string>());
    return p;
}

// Runs one cacophony vector: both handshake messages, the handshake hash, then the transport
// messages with the split keys, alternating initiator -> responder first.
bool run_vector(const json& v, const NoiseProtocol& protocol) {
    const std::string name = v.at("protocol_name").get<std::string>();
    INFO(name);
    const Party ip = initiator_of(v, protocol);
    const Party rp = responder_of(v, protocol);
    bool ok = same(public_key(rp.config.local_static), *ip.config.remote_static,
                   "responder's public key from its private key");

    auto initiator = HandshakeState::create(ip.config, ip.ephemeral);
    auto responder = HandshakeState::create(rp.config, rp.ephemeral);
    REQUIRE(initiator);
    REQUIRE(responder);

    const json& messages = v.at("messages");
    REQUIRE(messages.size() >= 2);
    for (size_t i = 0; i < 2; ++i) {
        const Bytes payload = from_hex(messages[i].at("payload").get<std::string>());
        const Bytes ciphertext = from_hex(messages[i].at("ciphertext").get<std::string>());
        HandshakeState& writer = i == 0 ? *initiator : *responder;
        HandshakeState& reader = i == 0 ? *responder : *initiator;
        auto written = writer.write_message(payload);
        CHECK(written);
        if (!written) return false;
        ok &= same(*written, ciphertext, "handshake message " + std::to_string(i));
        auto read = reader.read_message(ciphertext);
        CHECK(read);
        if (!read) return false;
        ok &= same(*read, payload, "payload of handshake message " + std::to_string(i));
    }
    CHECK(initiator->is_complete());
    CHECK(responder->is_complete());
    const Bytes hash = from_hex(v.at("handshake_hash").get<std::string>());
    ok &= same(initiator->handshake_hash(), hash, "initiator's handshake hash");
    ok &= same(responder->handshake_hash(), hash, "responder's handshake hash");
    CHECK(responder->remote_static());
    if (!responder->remote_static()) return false;
    ok &= same(*responder->remote_static(), public_key(ip.config.local_static),
               "initiator's static key as the responder learnt it");

    auto ikeys = initiator->split();
    auto rkeys = responder->split();
    CHECK(ikeys);
    CHECK(rkeys);
    if (!ikeys || !rkeys) return false;
    for (size_t i = 2; i < messages.size(); ++i) {
        const Bytes payload = from_hex(messages[i].at("payload").get<std::string>());
        const Bytes ciphertext = from_hex(messages[i].at("ciphertext").get<std::string>());
        const bool from_initiator = i % 2 == 0;
        CipherState& send = from_initiator ? ikeys->send : rkeys->send;
        CipherState& recv = from_initiator ? rkeys->recv : ikeys->recv;
        Bytes written;
        CHECK(send.encrypt_with_ad({}, payload, written));
        ok &= same(written, ciphertext, "transport message " + std::to_string(i));
        auto read = recv.decrypt_with_ad({}, ciphertext);
        CHECK(read);
        if (!read) return false;
        ok &= same(*read, payload, "payload of transport message " + std::to_string(i));
    }
    return ok;
}

const json& find_vector(const json& all, std::string_view name) {
    for (const json& v : all.at("vectors")) {
        if (v.at("protocol_name").get<std::string>() == name) return v;
    }
    FAIL("no vector " << name);
    throw std::logic_error("unreachable");
}

// Fresh keys from a seed, for the property tests.
struct Pair {
    HandshakeState initiator;
    HandshakeState responder;
};
Pair fresh_pair(const NoiseProtocol& protocol, Rng& rng, const Bytes& prologue = {}) {
    HandshakeConfig ic, rc;
    ic.protocol = rc.protocol = protocol;
    ic.role = NoiseRole::kInitiator;
    rc.role = NoiseRole::kResponder;
    ic.prologue = rc.prologue = prologue;
    ic.local_static = PrivateKey::generate(rng);
    rc.local_static = PrivateKey::generate(rng);
    ic.remote_static = public_key(rc.local_static);
    if (protocol.psk2) ic.psk = rc.psk = Psk::generate(rng);
    auto i = HandshakeState::create(ic, rng);
    auto r = HandshakeState::create(rc, rng);
    REQUIRE(i);
    REQUIRE(r);
    return {std::move(*i), std::move(*r)};
}

std::vector<NoiseProtocol> available_protocols() {
    std::vector<NoiseProtocol> out;
    for (bool psk2 : {false, true}) {
        for (CipherSuite c : {CipherSuite::kChaCha20Poly1305, CipherSuite::kAes256Gcm}) {
            for (NoiseHash h : {NoiseHash::kSha256, NoiseHash::kBlake2b}) {
                if (suite_available(c)) out.push_back({psk2, c, h});
            }
        }
    }
    return out;
}

}  // namespace

TEST_CASE("cacophony IK and IKpsk2 vectors: every message and the handshake hash match") {
    REQUIRE(crypto_init());
    const json all = load_vectors();
    REQUIRE(all.contains("source"));
    int passed = 0, failed = 0;
    for (const json& v : all.at("vectors")) {
        const std::string name = v.at("protocol_name").get<std::string>();
        const auto protocol = NoiseProtocol::parse(name);
        if (!protocol) continue;  // NN and XX: patterns burrow does not use
        if (!suite_available(protocol->cipher)) {
            std::cout << "noise-vectors: SKIP " << name
                      << ": AES-256-GCM is not available on this CPU (no AES-NI)\n";
            continue;
        }
        if (run_vector(v, *protocol)) {
            ++passed;
        } else {
            ++failed;
        }
    }
    std::cout << "noise-vectors: " << passed << " passed\n";
    CHECK(failed == 0);
    CHECK(passed > 0);
}

TEST_CASE("protocol names round-trip and unknown ones are refused") {
    for (const NoiseProtocol& p : available_protocols()) {
        CHECK(NoiseProtocol::parse(p.name()) == p);
    }
    CHECK(NoiseProtocol{true, CipherSuite::kAes256Gcm, NoiseHash::kBlake2b}.name() ==
          "Noise_IKpsk2_25519_AESGCM_BLAKE2b");
    CHECK_FALSE(NoiseProtocol::parse("Noise_XX_25519_ChaChaPoly_SHA256"));
    CHECK_FALSE(NoiseProtocol::parse("Noise_IK_448_ChaChaPoly_SHA256"));
    CHECK_FALSE(NoiseProtocol::parse("Noise_IK_25519_ChaChaPoly_SHA512"));
    CHECK_FALSE(NoiseProtocol::parse(""));
}

TEST_CASE("a tampered handshake message fails to read and leaves the state usable") {
    REQUIRE(crypto_init());
    const json all = load_vectors();
    for (std::string_view name :
         {"Noise_IK_25519_ChaChaPoly_SHA256", "Noise_IKpsk2_25519_ChaChaPoly_SHA256"}) {
        INFO(name);
        const json& v = find_vector(all, name);
        const auto protocol = NoiseProtocol::parse(name);
        REQUIRE(protocol);
        const Party ip = initiator_of(v, *protocol);
        const Party rp = responder_of(v, *protocol);
        auto initiator = HandshakeState::create(ip.config, ip.ephemeral);
        auto responder = HandshakeState::create(rp.config, rp.ephemeral);
        REQUIRE(initiator);
        REQUIRE(responder);

        for (size_t index = 0; index < 2; ++index) {
            INFO("message " << index);
            const Bytes payload = from_hex(v["messages"][index]["payload"].get<std::string>());
            HandshakeState& writer = index == 0 ? *initiator : *responder;
            HandshakeState& reader = index == 0 ? *responder : *initiator;
            auto genuine = writer.write_message(payload);
            REQUIRE(genuine);

            for (size_t i = 0; i < genuine->size(); ++i) {
                INFO("byte " << i);
                Bytes tampered = *genuine;
                tampered[i] ^= 0xff;
                CHECK_FALSE(reader.read_message(tampered));
            }
            for (size_t len = 0; len < genuine->size(); ++len) {
                INFO("truncated to " << len);
                CHECK_FALSE(reader.read_message(ByteView(*genuine).first(len)));
            }
            Bytes extended = *genuine;
            extended.push_back(0);
            CHECK_FALSE(reader.read_message(extended));
            CHECK_FALSE(reader.is_complete());

            auto read = reader.read_message(*genuine);
            REQUIRE(read);
            CHECK(*read == payload);
        }
        const Bytes hash = from_hex(v["handshake_hash"].get<std::string>());
        CHECK(to_hex(initiator->handshake_hash()) == to_hex(hash));
        CHECK(to_hex(responder->handshake_hash()) == to_hex(hash));
    }
}

TEST_CASE("fresh handshakes agree on keys and hash for every protocol, over many seeds") {
    REQUIRE(crypto_init());
    for (const NoiseProtocol& protocol : available_protocols()) {
        for (uint64_t seed = 1; seed <= 25; ++seed) {
            INFO(protocol.name() << " seed " << seed);
            SeededRng rng(seed);
            Pair p = fresh_pair(protocol, rng, Bytes{1, 2, 3});
            CHECK(p.initiator.is_my_turn_to_write());
            CHECK_FALSE(p.responder.is_my_turn_to_write());

            Bytes hello(rng.uniform(100));
            rng.fill(hello);
            auto m1 = p.initiator.write_message(hello);
            REQUIRE(m1);
            // e, encrypted s, encrypted payload (Noise §7.4: IK message sizes).
            CHECK(m1->size() == kDhLen + kDhLen + kAeadTagSize + hello.size() + kAeadTagSize);
            CHECK(p.responder.read_message(*m1) == hello);
            REQUIRE(p.responder.remote_static());

            auto m2 = p.responder.write_message({});
            REQUIRE(m2);
            CHECK(m2->size() == kDhLen + kAeadTagSize);
            CHECK(p.initiator.read_message(*m2) == Bytes{});
            REQUIRE(p.initiator.is_complete());
            REQUIRE(p.responder.is_complete());
            CHECK(to_hex(p.initiator.handshake_hash()) == to_hex(p.responder.handshake_hash()));

            auto ik = p.initiator.split();
            auto rk = p.responder.split();
            REQUIRE(ik);
            REQUIRE(rk);
            for (int i = 0; i < 5; ++i) {
                Bytes data(rng.uniform(300));
                rng.fill(data);
                Bytes c1, c2;
                REQUIRE(ik->send.encrypt_with_ad({}, data, c1));
                CHECK(rk->recv.decrypt_with_ad({}, c1) == data);
                REQUIRE(rk->send.encrypt_with_ad({}, data, c2));
                CHECK(ik->recv.decrypt_with_ad({}, c2) == data);
                CHECK(c1 != c2);  // the two directions use different keys
            }
        }
    }
}

TEST_CASE("the responder learns the initiator's static key from message 1") {
    REQUIRE(crypto_init());
    SeededRng rng(5);
    HandshakeConfig ic, rc;
    ic.role = NoiseRole::kInitiator;
    rc.role = NoiseRole::kResponder;
    ic.local_static = PrivateKey::generate(rng);
    rc.local_static = PrivateKey::generate(rng);
    ic.remote_static = public_key(rc.local_static);
    auto i = HandshakeState::create(ic, rng);
    auto r = HandshakeState::create(rc, rng);
    REQUIRE(i);
    REQUIRE(r);
    CHECK_FALSE(r->remote_static());
    auto m1 = i->write_message({});
    REQUIRE(m1);
    REQUIRE(r->read_message(*m1));
    REQUIRE(r->remote_static());
    CHECK(*r->remote_static() == public_key(ic.local_static));
}

TEST_CASE("mismatched prologue, psk, protocol or responder key fail the handshake") {
    REQUIRE(crypto_init());
    const NoiseProtocol ik{false, CipherSuite::kChaCha20Poly1305, NoiseHash::kSha256};
    const NoiseProtocol ikpsk2{true, CipherSuite::kChaCha20Poly1305, NoiseHash::kSha256};
    for (uint64_t seed = 1; seed <= 10; ++seed) {
        INFO("seed " << seed);
        SeededRng rng(seed);
        HandshakeConfig ic, rc;
        ic.protocol = rc.protocol = ik;
        ic.role = NoiseRole::kInitiator;
        rc.role = NoiseRole::kResponder;
        ic.local_static = PrivateKey::generate(rng);
        rc.local_static = PrivateKey::generate(rng);
        ic.remote_static = public_key(rc.local_static);

        // Returns whether message 1 reads; on success runs message 2 and returns whether that
        // reads.
        auto handshake = [&rng](const HandshakeConfig& icfg, const HandshakeConfig& rcfg,
                                bool& first_read) {
            auto i = HandshakeState::create(icfg, rng);
            auto r = HandshakeState::create(rcfg, rng);
            REQUIRE(i);
            REQUIRE(r);
            auto m1 = i->write_message({});
            REQUIRE(m1);
            first_read = r->read_message(*m1).has_value();
            if (!first_read) return false;
            auto m2 = r->write_message({});
            REQUIRE(m2);
            const bool second = i->read_message(*m2).has_value();
            CHECK(i->is_complete() == second);
            return second;
        };
        bool first = false;

        CHECK(handshake(ic, rc, first));  // the control: matching configs succeed

        HandshakeConfig bad_prologue = ic;
        bad_prologue.prologue = {1};
        CHECK_FALSE(handshake(bad_prologue, rc, first));
        CHECK_FALSE(first);

        HandshakeConfig wrong_key = ic;
        wrong_key.remote_static = public_key(PrivateKey::generate(rng));
        CHECK_FALSE(handshake(wrong_key, rc, first));
        CHECK_FALSE(first);

        HandshakeConfig ipsk = ic, rpsk = rc;
        ipsk.protocol = rpsk.protocol = ikpsk2;
        ipsk.psk = Psk::generate(rng);
        rpsk.psk = Psk::generate(rng);
        CHECK_FALSE(handshake(ipsk, rpsk, first));
        CHECK(first);  // IKpsk2 mixes the psk in only at the end of message 2
        rpsk.psk = ipsk.psk;
        CHECK(handshake(ipsk, rpsk, first));

        CHECK_FALSE(handshake(ic, rpsk, first));  // IK against IKpsk2
        CHECK_FALSE(first);
    }
}

TEST_CASE("calls out of turn fail without changing anything") {
    REQUIRE(crypto_init());
    SeededRng rng(8);
    Pair p = fresh_pair({}, rng);
    CHECK_FALSE(p.responder.write_message({}));
    CHECK_FALSE(p.initiator.read_message(Bytes(100)));
    CHECK_FALSE(p.initiator.split());

    auto m1 = p.initiator.write_message({});
    REQUIRE(m1);
    CHECK_FALSE(p.initiator.write_message({}));
    REQUIRE(p.responder.read_message(*m1));
    CHECK_FALSE(p.responder.read_message(*m1));  // a replayed message 1
    auto m2 = p.responder.write_message({});
    REQUIRE(m2);
    REQUIRE(p.initiator.read_message(*m2));
    CHECK_FALSE(p.initiator.read_message(*m2));
    CHECK_FALSE(p.initiator.write_message({}));
    CHECK(p.initiator.split());
}

TEST_CASE("create refuses configs that do not fit the pattern") {
    REQUIRE(crypto_init());
    SeededRng rng(9);
    HandshakeConfig c;
    c.local_static = PrivateKey::generate(rng);
    c.role = NoiseRole::kInitiator;
    CHECK_FALSE(HandshakeState::create(c, rng));  // initiator without the responder's key
    c.remote_static = public_key(PrivateKey::generate(rng));
    CHECK(HandshakeState::create(c, rng));
    c.psk = Psk::generate(rng);
    CHECK_FALSE(HandshakeState::create(c, rng));  // psk for IK
    c.protocol.psk2 = true;
    CHECK(HandshakeState::create(c, rng));
    c.psk.reset();
    CHECK_FALSE(HandshakeState::create(c, rng));  // IKpsk2 without psk
    c.protocol.psk2 = false;
    c.role = NoiseRole::kResponder;
    CHECK_FALSE(HandshakeState::create(c, rng));  // responder told a remote key
    c.remote_static.reset();
    CHECK(HandshakeState::create(c, rng));
}

TEST_CASE("a low-order remote key is refused instead of giving a known shared secret") {
    REQUIRE(crypto_init());
    SeededRng rng(10);
    HandshakeConfig c;
    c.local_static = PrivateKey::generate(rng);
    c.remote_static = PublicKey{};  // 0 is a point of small order on Curve25519
    auto i = HandshakeState::create(c, rng);
    REQUIRE(i);
    CHECK_FALSE(i->write_message({}));
    CHECK(i->is_my_turn_to_write());
}

TEST_CASE("oversized messages are refused") {
    REQUIRE(crypto_init());
    SeededRng rng(12);
    Pair p = fresh_pair({}, rng);
    CHECK_FALSE(p.initiator.write_message(Bytes(kNoiseMaxMessageLen)));
    CHECK_FALSE(p.responder.read_message(Bytes(kNoiseMaxMessageLen + 1)));
    auto m1 = p.initiator.write_message(Bytes(kNoiseMaxMessageLen - 96));  // exactly the limit
    REQUIRE(m1);
    CHECK(m1->size() == kNoiseMaxMessageLen);
    CHECK(p.responder.read_message(*m1));
}

TEST_CASE("CipherState: nonce exhaustion, pass-through without key, rekey") {
    REQUIRE(crypto_init());
    SeededRng rng(13);
    std::array<uint8_t, kAeadKeySize> key;
    rng.fill(key);
    const Bytes data = {1, 2, 3, 4};

    SECTION("without a key data passes through") {
        CipherState c;
        Bytes out;
        REQUIRE(c.encrypt_with_ad({}, data, out));
        CHECK(out == data);
        CHECK(c.decrypt_with_ad({}, data) == data);
        CHECK(c.aead() == nullptr);
    }
    SECTION("2^64-1 is never used as a nonce") {
        CipherState a(CipherSuite::kChaCha20Poly1305, key);
        CipherState b(CipherSuite::kChaCha20Poly1305, key);
        a.set_nonce(kNoiseMaxNonce - 1);
        b.set_nonce(kNoiseMaxNonce - 1);
        Bytes out;
        REQUIRE(a.encrypt_with_ad({}, data, out));
        CHECK(b.decrypt_with_ad({}, out) == data);
        Bytes more;
        CHECK_FALSE(a.encrypt_with_ad({}, data, more));
        CHECK(more.empty());
        CHECK_FALSE(b.decrypt_with_ad({}, out));
    }
    SECTION("failed decryption does not advance the nonce") {
        CipherState a(CipherSuite::kChaCha20Poly1305, key);
        CipherState b(CipherSuite::kChaCha20Poly1305, key);
        Bytes out;
        REQUIRE(a.encrypt_with_ad({}, data, out));
        Bytes bad = out;
        bad[0] ^= 1;
        CHECK_FALSE(b.decrypt_with_ad({}, bad));
        CHECK(b.nonce() == 0);
        CHECK(b.decrypt_with_ad({}, out) == data);
        CHECK(b.nonce() == 1);
    }
    SECTION("rekey follows Noise §4.2 and both sides stay in step") {
        for (CipherSuite suite : {CipherSuite::kChaCha20Poly1305, CipherSuite::kAes256Gcm}) {
            if (!suite_available(suite)) continue;
            INFO(suite_name(suite));
            CipherState a(suite, key);
            CipherState b(suite, key);
            Bytes expected_key;
            Aead(suite, key).seal(kNoiseMaxNonce, {}, std::array<uint8_t, 32>{}, expected_key);
            Bytes before;
            REQUIRE(a.encrypt_with_ad({}, data, before));
            a.set_nonce(0);
            a.rekey();
            b.rekey();
            CHECK(a.nonce() == 0);
            Bytes after;
            REQUIRE(a.encrypt_with_ad({}, data, after));
            CHECK(after != before);
            CHECK(b.decrypt_with_ad({}, after) == data);

            Bytes by_definition;
            Aead(suite, AeadKeyView(expected_key.data(), kAeadKeySize))
                .seal(0, {}, data, by_definition);
            CHECK(after == by_definition);
        }
    }
}

TEST_CASE("X25519 public keys: RFC 7748 §6.1 Alice") {
    REQUIRE(crypto_init());
    const auto alice =
        secret_from_hex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
    CHECK(to_hex(public_key(alice)) ==
          "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
}

TEST_CASE("SecretKey compares by value and refuses wrong lengths") {
    SeededRng rng(14);
    const auto a = SecretKey::generate(rng);
    const auto b = SecretKey::generate(rng);
    const SecretKey a2 = a;
    CHECK(a.equals(a2));
    CHECK_FALSE(a.equals(b));
    CHECK_FALSE(SecretKey::from_bytes(Bytes(31)));
    CHECK_FALSE(SecretKey::from_bytes(Bytes(33)));
    REQUIRE(SecretKey::from_bytes(Bytes(32, 7)));
    CHECK(SecretKey::from_bytes(Bytes(32, 7))->bytes()[31] == 7);
}
