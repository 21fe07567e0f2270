// The session handshake: Noise IK (tunnel/noise.h) in two datagrams, with WireGuard's mac1
// in front so garbage is refused before any Diffie-Hellman.
//
// Initiation (type 0x01), 148 bytes, initiator -> responder:
//
//    0                   1                   2                   3
//    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//   |  type = 0x01  |     suite     |         reserved = 0          |
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//   |                     sender index (32)                         |
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//   |        noise message 1 (108):  e (32)                         |
//   |                                encrypted s (32 + 16)          |
//   |                                encrypted TAI64N timestamp     |
//   |                                  (12 + 16)                    |
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//   |        mac1 (16): keyed by the responder's static public key  |
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//   |        mac2 (16): keyed by a cookie (tunnel/cookie.h), or 0   |
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// Response (type 0x02), 76 bytes, responder -> initiator:
//
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//   |  type = 0x02  |                reserved = 0                   |
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//   |                     sender index (32)                         |
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//   |            receiver index (32): the initiation's sender       |
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//   |        noise message 2 (48):   e (32), encrypted empty (16)   |
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//   |        mac1 (16): keyed by the initiator's static public key  |
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// Cookie replies (type 0x03) are tunnel/cookie.h's, data packets (type 0x04) tunnel/packet.h's. Integers are big-endian.
//
// - The initiator names the suite; it selects the Noise protocol name
//   (Noise_IK_25519_{ChaChaPoly,AESGCM}_SHA256), which is hashed into the handshake, so a
//   rewritten suite byte makes the handshake fail instead of downgrading it. The prologue
//   "burrow v1" binds the protocol version the same way.
// - mac1 = BLAKE2b-128 keyed with BLAKE2b-256("mac1----" || receiver's static public key),
//   over every byte before it (WireGuard §5.4.4). In an initiation mac2 follows it: the MAC
//   of every byte before mac2 under the cookie of the last cookie reply, zeros without one;
//   a responder under load answers an initiation without a valid mac2 with a cookie reply
//   and does no Diffie-Hellman for it (tunnel/cookie.h). Anyone who knows the public key can compute
//   it, so it proves nothing about the sender; it makes a random or misaddressed datagram
//   cost one hash instead of two X25519 operations.
// - The timestamp (TAI64N) is what makes a replayed initiation detectable: the responder
//   accepts only timestamps greater than every one it accepted before.
// - The response (76 bytes) is smaller than the initiation (148): a spoofed initiation can
//   never make the responder send more bytes than it received.
// - The indexes are not inside the Noise transcript (as in WireGuard): an on-path attacker
//   who rewrites one can only make a handshake fail, which it could do by dropping it.
//
// Sans-IO: the caller passes `now`, the timestamp and an Rng.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <string_view>
#include <variant>

#include "tunnel/aead.h"
#include "tunnel/bytes.h"
#include "tunnel/cookie.h"
#include "tunnel/noise.h"
#include "tunnel/rng.h"
#include "tunnel/time.h"

namespace burrow {

inline constexpr uint8_t kMessageTypeInitiation = 0x01;
inline constexpr uint8_t kMessageTypeResponse = 0x02;
// 0x03 is the cookie reply (tunnel/cookie.h).

inline constexpr std::string_view kHandshakePrologue = "burrow v1";
inline constexpr std::string_view kMac1Label = "mac1----";  // WireGuard §5.4.4 LABEL_MAC1
inline constexpr size_t kMac1Size = 16;                     // WireGuard §5.4.4: BLAKE2s-128
inline constexpr size_t kMac1KeySize = 32;
inline constexpr size_t kTimestampSize = 12;  // TAI64N: 8 bytes of seconds, 4 of nanoseconds

// Noise IK message sizes with the payloads above (Noise §7.4: e, then s and the payload each
// encrypted with a 16-byte tag).
inline constexpr size_t kNoiseInitiationSize =
    kDhLen + (kDhLen + kAeadTagSize) + (kTimestampSize + kAeadTagSize);
inline constexpr size_t kNoiseResponseSize = kDhLen + kAeadTagSize;
inline constexpr size_t kInitiationHeaderSize = 1 + 1 + 2 + 4;
inline constexpr size_t kResponseHeaderSize = 1 + 3 + 4 + 4;
inline constexpr size_t kMac2Size = kCookieSize;
inline constexpr size_t kInitiationSize =
    kInitiationHeaderSize + kNoiseInitiationSize + kMac1Size + kMac2Size;
inline constexpr size_t kResponseSize = kResponseHeaderSize + kNoiseResponseSize + kMac1Size;
static_assert(kResponseSize < kInitiationSize, "a response must never amplify an initiation");
static_assert(kCookieReplySize < kInitiationSize, "a cookie reply must never amplify either");

using Mac1 = std::array<uint8_t, kMac1Size>;
using Tai64n = std::array<uint8_t, kTimestampSize>;

// The TAI64N label of a time given in microseconds since the Unix epoch: 2^62 + seconds,
// then nanoseconds, both big-endian, so byte-wise comparison orders timestamps. Like
// WireGuard we skip the TAI-UTC leap-second offset: only the order matters.
Tai64n tai64n_from_unix_us(int64_t unix_us);

// The suite byte: 0 is never valid, and no single bit flip turns one suite into the other.
inline constexpr uint8_t kSuiteChaCha20Poly1305 = 0x01;
inline constexpr uint8_t kSuiteAes256Gcm = 0x02;
uint8_t suite_code(CipherSuite suite);
std::optional<CipherSuite> suite_from_code(uint8_t code);
// The Noise protocol a suite runs: IK, 25519, the suite's cipher, SHA-256.
NoiseProtocol handshake_protocol(CipherSuite suite);

// mac1's key for messages addressed to the holder of `receiver_static`. Computed once per
// peer key; it is public (derived from a public key).
using Mac1Key = std::array<uint8_t, kMac1KeySize>;
Mac1Key mac1_key(const PublicKey& receiver_static);
Mac1 compute_mac1(const Mac1Key& key, ByteView covered);
// Whether the last kMac1Size bytes of message are the mac1 of the bytes before them.
// Constant time in the mac's value.
bool verify_mac1(const Mac1Key& key, ByteView message);
// An initiation's mac1 sits before its mac2: whether it is valid. Any size is accepted (a
// wrong one fails).
bool verify_initiation_mac1(const Mac1Key& key, ByteView initiation);
// An initiation's mac1 and the bytes mac2 covers (everything before it).
ByteView initiation_mac1(ByteView initiation);
ByteView initiation_mac2_covered(ByteView initiation);

struct InitiationMessage {
    CipherSuite suite = CipherSuite::kChaCha20Poly1305;
    uint32_t sender_index = 0;
    std::array<uint8_t, kNoiseInitiationSize> noise{};
    Mac1 mac1{};
    Mac2 mac2{};
    bool operator==(const InitiationMessage&) const = default;
};

struct ResponseMessage {
    uint32_t sender_index = 0;
    uint32_t receiver_index = 0;
    std::array<uint8_t, kNoiseResponseSize> noise{};
    Mac1 mac1{};
    bool operator==(const ResponseMessage&) const = default;
};

// Encoders fill in mac1 with `key` (the receiver's), and an initiation's mac2 with `cookie`
// (zeros without one); the message's own mac fields are ignored.
Bytes encode_initiation(const InitiationMessage& m, const Mac1Key& key,
                        const std::optional<Cookie>& cookie = std::nullopt);
Bytes encode_response(const ResponseMessage& m, const Mac1Key& key);
// Structural checks only (exact size, type, reserved bytes zero, a known suite); the macs are
// returned, not verified.
std::optional<InitiationMessage> decode_initiation(ByteView datagram);
std::optional<ResponseMessage> decode_response(ByteView datagram);

// The product of a completed handshake: one key per direction and the indexes that route
// data packets to it. The Noise nonce is not used: data packets carry their own counter.
struct Keypair {
    Aead send;
    Aead recv;
    uint32_t local_index;   // what the peer puts in packets to us
    uint32_t remote_index;  // what we put in packets to the peer
    Time created_at;
    uint64_t sent = 0;      // packets sealed under send
    uint64_t received = 0;  // packets opened under recv
};

// Why a handshake message was dropped. The receiver's state is unchanged in every case.
enum class HandshakeDrop {
    kMalformed,           // wrong size, type, reserved bytes or suite
    kUnsupportedSuite,    // a suite this CPU cannot run (AES-GCM without AES-NI)
    kBadMac1,             // not addressed to our static key: refused before any DH
    kDecryptFailed,       // Noise rejected it (forged, corrupted, wrong keys)
    kUnknownPeer,         // a valid handshake from a static key we do not expect
    kReplayedInitiation,  // timestamp not greater than the greatest accepted
    kUnknownIndex,        // a response to no handshake of ours in progress
};
const char* handshake_drop_name(HandshakeDrop drop);

// One initiation attempt. A retransmission is a new attempt (new ephemeral key, timestamp
// and index), as in WireGuard, so a response always belongs to exactly one attempt.
class InitiatorHandshake {
  public:
    // nullopt when the suite is not available on this CPU. With a cookie (from the
    // responder's last cookie reply) the initiation carries mac2.
    static std::optional<InitiatorHandshake> create(const PrivateKey& local_static,
                                                    const PublicKey& responder_static,
                                                    CipherSuite suite, uint32_t local_index,
                                                    const Tai64n& timestamp, Rng& rng,
                                                    const std::optional<Cookie>& cookie = {});

    const Bytes& initiation() const { return initiation_; }
    bool has_mac2() const { return has_mac2_; }
    uint32_t local_index() const { return local_index_; }
    CipherSuite suite() const { return suite_; }

    // The keypair when datagram is the response to this attempt; otherwise why not, and this
    // attempt is unchanged (a forged response cannot spoil the genuine one).
    std::variant<Keypair, HandshakeDrop> consume_response(ByteView datagram, Time now);

    // Handshake messages that got as far as Noise (and so cost Diffie-Hellman operations).
    uint64_t noise_reads() const { return noise_reads_; }

  private:
    InitiatorHandshake(HandshakeState noise, CipherSuite suite, uint32_t local_index,
                       const Mac1Key& own_mac1_key);
    HandshakeState noise_;
    CipherSuite suite_;
    uint32_t local_index_;
    Mac1Key own_mac1_key_;  // responses are addressed to our static key
    Bytes initiation_;
    bool has_mac2_ = false;
    uint64_t noise_reads_ = 0;
};

// The responder's side: answers initiations from the one expected initiator.
class HandshakeResponder {
  public:
    HandshakeResponder(const PrivateKey& local_static, const PublicKey& expected_initiator,
                       Rng& rng);

    struct Accepted {
        Bytes response;
        Keypair keypair;
    };
    // allocate_index is called only once the initiation is accepted, for the keypair's
    // local index. On a drop nothing changes (no Rng draw either: the next ephemeral key is
    // drawn in advance).
    std::variant<Accepted, HandshakeDrop> consume_initiation(
        ByteView datagram, Time now, const std::function<uint32_t()>& allocate_index);

    // The greatest timestamp accepted so far (all zeros before the first).
    const Tai64n& greatest_timestamp() const { return greatest_timestamp_; }
    uint64_t noise_reads() const { return noise_reads_; }

  private:
    PrivateKey local_static_;
    PublicKey expected_initiator_;
    Mac1Key own_mac1_key_;        // initiations are addressed to our static key
    Mac1Key initiator_mac1_key_;  // responses to the initiator's
    Rng& rng_;
    PrivateKey next_ephemeral_;
    Tai64n greatest_timestamp_{};
    uint64_t noise_reads_ = 0;
};

}  // namespace burrow
