#include "tunnel/handshake.h"

#include <sodium.h>

#include <algorithm>
#include <cstring>

#include "tunnel/wire.h"

namespace burrow {

namespace {

constexpr uint64_t kTai64Base = uint64_t{1} << 62;  // TAI64: label of 1970 TAI is 2^62
constexpr int64_t kMicrosPerSecond = 1'000'000;
constexpr uint32_t kNanosPerMicro = 1'000;

Bytes prologue() {
    const ByteView p = as_bytes(kHandshakePrologue);
    return Bytes(p.begin(), p.end());
}

// A Keypair from a finished Noise handshake's transport keys.
Keypair make_keypair(const HandshakeState& noise, uint32_t local_index, uint32_t remote_index,
                     Time now) {
    auto keys = noise.split();
    return Keypair{*keys->send.aead(), *keys->recv.aead(), local_index, remote_index, now};
}

}  // namespace

// --- message codec ---------------------------------------------------------------------------

Tai64n tai64n_from_unix_us(int64_t unix_us) {
    const int64_t seconds = unix_us >= 0 ? unix_us / kMicrosPerSecond
                                         : -((-unix_us + kMicrosPerSecond - 1) / kMicrosPerSecond);
    const int64_t micros = unix_us - seconds * kMicrosPerSecond;
    Bytes out;
    ByteWriter w(out);
    w.u64(kTai64Base + static_cast<uint64_t>(seconds));
    w.u32(static_cast<uint32_t>(micros) * kNanosPerMicro);
    Tai64n t{};
    std::copy(out.begin(), out.end(), t.begin());
    return t;
}

uint8_t suite_code(CipherSuite suite) {
    return suite == CipherSuite::kAes256Gcm ? kSuiteAes256Gcm : kSuiteChaCha20Poly1305;
}

std::optional<CipherSuite> suite_from_code(uint8_t code) {
    if (code == kSuiteChaCha20Poly1305) return CipherSuite::kChaCha20Poly1305;
    if (code == kSuiteAes256Gcm) return CipherSuite::kAes256Gcm;
    return std::nullopt;
}

NoiseProtocol handshake_protocol(CipherSuite suite) {
    return NoiseProtocol{false, suite, NoiseHash::kSha256};
}

Mac1Key mac1_key(const PublicKey& receiver_static) {
    Mac1Key key{};
    crypto_generichash_state state;
    crypto_generichash_init(&state, nullptr, 0, key.size());
    const ByteView label = as_bytes(kMac1Label);
    crypto_generichash_update(&state, label.data(), label.size());
    crypto_generichash_update(&state, receiver_static.data(), receiver_static.size());
    crypto_generichash_final(&state, key.data(), key.size());
    return key;
}

Mac1 compute_mac1(const Mac1Key& key, ByteView covered) {
    Mac1 mac{};
    crypto_generichash(mac.data(), mac.size(), covered.data(), covered.size(), key.data(),
                       key.size());
    return mac;
}

bool verify_mac1(const Mac1Key& key, ByteView message) {
    if (message.size() < kMac1Size) return false;
    const size_t covered = message.size() - kMac1Size;
    const Mac1 expected = compute_mac1(key, message.first(covered));
    return sodium_memcmp(expected.data(), message.data() + covered, kMac1Size) == 0;
}

bool verify_initiation_mac1(const Mac1Key& key, ByteView initiation) {
    if (initiation.size() < kMac1Size + kMac2Size) return false;
    return verify_mac1(key, initiation.first(initiation.size() - kMac2Size));
}

ByteView initiation_mac1(ByteView initiation) {
    return initiation.subspan(kInitiationSize - kMac2Size - kMac1Size, kMac1Size);
}

ByteView initiation_mac2_covered(ByteView initiation) {
    return initiation.first(kInitiationSize - kMac2Size);
}

Bytes encode_initiation(const InitiationMessage& m, const Mac1Key& key,
                        const std::optional<Cookie>& cookie) {
    Bytes out;
    out.reserve(kInitiationSize);
    ByteWriter w(out);
    w.u8(kMessageTypeInitiation);
    w.u8(suite_code(m.suite));
    w.u16(0);
    w.u32(m.sender_index);
    w.bytes(m.noise);
    w.bytes(compute_mac1(key, out));
    w.bytes(cookie ? compute_mac2(*cookie, out) : Mac2{});
    return out;
}

Bytes encode_response(const ResponseMessage& m, const Mac1Key& key) {
    Bytes out;
    out.reserve(kResponseSize);
    ByteWriter w(out);
    w.u8(kMessageTypeResponse);
    w.u8(0);
    w.u16(0);
    w.u32(m.sender_index);
    w.u32(m.receiver_index);
    w.bytes(m.noise);
    w.bytes(compute_mac1(key, out));
    return out;
}

std::optional<InitiationMessage> decode_initiation(ByteView datagram) {
    if (datagram.size() != kInitiationSize) return std::nullopt;
    ByteReader r(datagram);
    const uint8_t type = r.u8();
    const auto suite = suite_from_code(r.u8());
    const uint16_t reserved = r.u16();
    if (type != kMessageTypeInitiation || !suite || reserved != 0) return std::nullopt;
    InitiationMessage m;
    m.suite = *suite;
    m.sender_index = r.u32();
    const ByteView noise = r.bytes(kNoiseInitiationSize);
    const ByteView mac = r.bytes(kMac1Size);
    const ByteView mac2 = r.bytes(kMac2Size);
    if (!r.ok()) return std::nullopt;
    std::copy(noise.begin(), noise.end(), m.noise.begin());
    std::copy(mac.begin(), mac.end(), m.mac1.begin());
    std::copy(mac2.begin(), mac2.end(), m.mac2.begin());
    return m;
}

std::optional<ResponseMessage> decode_response(ByteView datagram) {
    if (datagram.size() != kResponseSize) return std::nullopt;
    ByteReader r(datagram);
    const uint8_t type = r.u8();
    const uint8_t reserved_high = r.u8();
    const uint16_t reserved_low = r.u16();
    if (type != kMessageTypeResponse || reserved_high != 0 || reserved_low != 0) {
        return std::nullopt;
    }
    ResponseMessage m;
    m.sender_index = r.u32();
    m.receiver_index = r.u32();
    const ByteView noise = r.bytes(kNoiseResponseSize);
    const ByteView mac = r.bytes(kMac1Size);
    if (!r.ok()) return std::nullopt;
    std::copy(noise.begin(), noise.end(), m.noise.begin());
    std::copy(mac.begin(), mac.end(), m.mac1.begin());
    return m;
}

const char* handshake_drop_name(HandshakeDrop drop) {
    switch (drop) {
        case HandshakeDrop::kMalformed:
            return "malformed";
        case HandshakeDrop::kUnsupportedSuite:
            return "unsupported suite";
        case HandshakeDrop::kBadMac1:
            return "bad mac1";
        case HandshakeDrop::kDecryptFailed:
            return "decrypt failed";
        case HandshakeDrop::kUnknownPeer:
            return "unknown peer";
        case HandshakeDrop::kReplayedInitiation:
            return "replayed initiation";
        case HandshakeDrop::kUnknownIndex:
            return "unknown index";
    }
    return "?";
}

// --- initiator --------------------------------------------------------------------------------

std::optional<InitiatorHandshake> InitiatorHandshake::create(const PrivateKey& local_static,
                                                             const PublicKey& responder_static,
                                                             CipherSuite suite,
                                                             uint32_t local_index,
                                                             const Tai64n& timestamp, Rng& rng,
                                                             const std::optional<Cookie>& cookie) {
    HandshakeConfig config{
        handshake_protocol(suite), NoiseRole::kInitiator, prologue(), local_static,
        responder_static,          std::nullopt};
    auto noise = HandshakeState::create(config, rng);
    if (!noise) return std::nullopt;
    auto msg1 = noise->write_message(timestamp);
    if (!msg1 || msg1->size() != kNoiseInitiationSize) return std::nullopt;

    InitiatorHandshake h(std::move(*noise), suite, local_index, mac1_key(public_key(local_static)));
    InitiationMessage m;
    m.suite = suite;
    m.sender_index = local_index;
    std::copy(msg1->begin(), msg1->end(), m.noise.begin());
    h.initiation_ = encode_initiation(m, mac1_key(responder_static), cookie);
    h.has_mac2_ = cookie.has_value();
    return h;
}

InitiatorHandshake::InitiatorHandshake(HandshakeState noise, CipherSuite suite,
                                       uint32_t local_index, const Mac1Key& own_mac1_key)
    : noise_(std::move(noise)),
      suite_(suite),
      local_index_(local_index),
      own_mac1_key_(own_mac1_key) {}

std::variant<Keypair, HandshakeDrop> InitiatorHandshake::consume_response(ByteView datagram,
                                                                          Time now) {
    // Cheapest first: size and fields, then the MAC, then the index, then the DH.
    const auto m = decode_response(datagram);
    if (!m) return HandshakeDrop::kMalformed;
    if (!verify_mac1(own_mac1_key_, datagram)) return HandshakeDrop::kBadMac1;
    if (m->receiver_index != local_index_ || noise_.is_complete()) {
        return HandshakeDrop::kUnknownIndex;
    }
    ++noise_reads_;
    HandshakeState attempt = noise_;  // the genuine response must still work after a forgery
    const auto payload = attempt.read_message(m->noise);
    if (!payload || !payload->empty()) return HandshakeDrop::kDecryptFailed;
    noise_ = std::move(attempt);
    return make_keypair(noise_, local_index_, m->sender_index, now);
}

// --- responder --------------------------------------------------------------------------------

HandshakeResponder::HandshakeResponder(const PrivateKey& local_static,
                                       const PublicKey& expected_initiator, Rng& rng)
    : local_static_(local_static),
      expected_initiator_(expected_initiator),
      own_mac1_key_(mac1_key(public_key(local_static))),
      initiator_mac1_key_(mac1_key(expected_initiator)),
      rng_(rng),
      next_ephemeral_(PrivateKey::generate(rng)) {}

std::variant<HandshakeResponder::Accepted, HandshakeDrop> HandshakeResponder::consume_initiation(
    ByteView datagram, Time now, const std::function<uint32_t()>& allocate_index) {
    // WireGuard's order: exact size, MAC, then the DH work, then identity and replay, and
    // state only once everything has passed.
    const auto m = decode_initiation(datagram);
    if (!m) return HandshakeDrop::kMalformed;
    if (!verify_initiation_mac1(own_mac1_key_, datagram)) return HandshakeDrop::kBadMac1;
    if (!suite_available(m->suite)) return HandshakeDrop::kUnsupportedSuite;

    HandshakeConfig config{handshake_protocol(m->suite),
                           NoiseRole::kResponder,
                           prologue(),
                           local_static_,
                           std::nullopt,
                           std::nullopt};
    auto noise = HandshakeState::create(config, next_ephemeral_);
    if (!noise) return HandshakeDrop::kUnsupportedSuite;
    ++noise_reads_;
    const auto payload = noise->read_message(m->noise);
    if (!payload || payload->size() != kTimestampSize) return HandshakeDrop::kDecryptFailed;
    const PublicKey& peer = *noise->remote_static();
    if (sodium_memcmp(peer.data(), expected_initiator_.data(), peer.size()) != 0) {
        return HandshakeDrop::kUnknownPeer;
    }
    Tai64n timestamp{};
    std::copy(payload->begin(), payload->end(), timestamp.begin());
    // Big-endian seconds then nanoseconds: byte order is time order.
    if (std::memcmp(timestamp.data(), greatest_timestamp_.data(), kTimestampSize) <= 0) {
        return HandshakeDrop::kReplayedInitiation;
    }
    auto msg2 = noise->write_message({});
    if (!msg2 || msg2->size() != kNoiseResponseSize) return HandshakeDrop::kDecryptFailed;

    // Accepted: from here on state changes.
    greatest_timestamp_ = timestamp;
    next_ephemeral_ = PrivateKey::generate(rng_);
    const uint32_t local_index = allocate_index();
    ResponseMessage r;
    r.sender_index = local_index;
    r.receiver_index = m->sender_index;
    std::copy(msg2->begin(), msg2->end(), r.noise.begin());
    return Accepted{encode_response(r, initiator_mac1_key_),
                    make_keypair(*noise, local_index, m->sender_index, now)};
}

}  // namespace burrow
