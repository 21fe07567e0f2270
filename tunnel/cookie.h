// Cookie replies: how a responder under a handshake flood refuses Diffie-Hellman work to
// anyone who cannot receive datagrams at the address they send from (WireGuard §5.4.7).
//
// Cookie reply (type 0x03), 64 bytes, responder -> initiator:
//
//    0                   1                   2                   3
//    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//   |  type = 0x03  |                reserved = 0                   |
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//   |          receiver index (32): the initiation's sender index   |
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//   |                       nonce (24), random                      |
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//   |        encrypted cookie (16 + 16): XChaCha20-Poly1305         |
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// - cookie = BLAKE2b-128 keyed with a random secret that changes every 2 minutes, over the
//   initiation's source address (IP bytes and port). The responder keeps no per-sender
//   state: it recomputes the cookie when a mac2 arrives.
// - The cookie is encrypted under BLAKE2b-256("cookie--" || responder's static public key)
//   with the initiation's mac1 as associated data, so only the initiator that sent that
//   initiation (and knows which responder it addressed) can use the reply.
// - mac2 (the initiation's last 16 bytes, tunnel/handshake.h) = BLAKE2b-128 keyed with the
//   cookie over every byte before it. A valid mac2 proves the sender received a datagram at
//   its source address within the last two minutes: a spoofed flood cannot produce one.
// - The reply (64 bytes) is smaller than the initiation that causes it (148): a spoofed
//   initiation never makes the responder send more bytes than it received.
//
// "Under load" is a token bucket of Diffie-Hellman work (HandshakeLoad): more than
// kHandshakeLoadRate initiations per second processed, after a burst of kHandshakeLoadBurst.
// Only then does the responder ask for mac2; a responder not under load answers at once, so
// a quiet network never pays the extra round trip.
#pragma once

#include <array>
#include <cstdint>
#include <optional>

#include "tunnel/bytes.h"
#include "tunnel/noise.h"
#include "tunnel/rng.h"
#include "tunnel/socket_address.h"
#include "tunnel/time.h"
#include "tunnel/token_bucket.h"

namespace burrow {

inline constexpr uint8_t kMessageTypeCookieReply = 0x03;
inline constexpr std::string_view kCookieLabel = "cookie--";  // WireGuard §5.4.4 LABEL_COOKIE
inline constexpr size_t kCookieSize = 16;                     // WireGuard §5.4.7: MAC output
inline constexpr size_t kCookieNonceSize = 24;                // XChaCha20-Poly1305's nonce
inline constexpr size_t kCookieSecretSize = 32;
inline constexpr size_t kCookieReplySize = 1 + 3 + 4 + kCookieNonceSize + kCookieSize + 16;
// WireGuard §6.1 Cookie-Refresh-Time: the responder's secret changes this often, and an
// initiator stops using a cookie this old.
inline constexpr Duration kCookieRefreshTime = std::chrono::seconds(120);

// Under load: more Diffie-Hellman work than this many initiations a second (after a burst).
// A legitimate agent sees about one initiation per peer every 2 minutes (a rekey), a few more
// while a handshake is retried: 20 a second is far above that and far below what one core
// can do (about 4 X25519 operations, ~0.2 ms, per initiation).
inline constexpr double kHandshakeLoadRate = 20;
inline constexpr double kHandshakeLoadBurst = 20;
// How long the responder keeps asking for mac2 after the bucket last ran dry (WireGuard's
// UnderLoadAfterTime), so a flood that pauses for a moment does not get a fresh burst.
inline constexpr Duration kUnderLoadLinger = std::chrono::seconds(1);

using Cookie = std::array<uint8_t, kCookieSize>;
using Mac2 = std::array<uint8_t, kCookieSize>;
using CookieKey = std::array<uint8_t, 32>;

// The key cookie replies to initiations addressed to `responder_static` are encrypted under.
CookieKey cookie_key(const PublicKey& responder_static);
Mac2 compute_mac2(const Cookie& cookie, ByteView covered);

// How much Diffie-Hellman work the responders of one agent have done lately. One object may
// serve many sessions (AgentCore shares one), so a flood spread across peers adds up.
class HandshakeLoad {
  public:
    HandshakeLoad() : bucket_(kHandshakeLoadRate, kHandshakeLoadBurst) {}
    // Whether an initiation arriving now must carry a valid mac2 to get any DH work.
    bool under_load(Time now);
    // An initiation got Diffie-Hellman work.
    void on_processed(Time now);

  private:
    TokenBucket bucket_;
    std::optional<Time> dry_at_;  // when the bucket last ran dry
};

struct CookieReplyMessage {
    uint32_t receiver_index = 0;
    std::array<uint8_t, kCookieNonceSize> nonce{};
    std::array<uint8_t, kCookieSize + 16> encrypted_cookie{};
    bool operator==(const CookieReplyMessage&) const = default;
};
Bytes encode_cookie_reply(const CookieReplyMessage& m);
// Structural checks only: exact size, type, reserved bytes zero.
std::optional<CookieReplyMessage> decode_cookie_reply(ByteView datagram);

// The responder's half: makes cookies and checks mac2. Holds only its two secrets.
class CookieResponder {
  public:
    explicit CookieResponder(const PublicKey& own_static);
    // Whether `mac2` is the MAC over `covered` under the cookie of `from`, with the current
    // secret or the one before it (a cookie handed out just before a change stays good).
    bool mac2_valid(ByteView covered, const Mac2& mac2, const SocketAddress& from, Time now,
                    Rng& rng);
    // A cookie reply to the initiation with this sender index and mac1, from `from`.
    Bytes make_reply(uint32_t sender_index, ByteView mac1, const SocketAddress& from, Time now,
                     Rng& rng);

  private:
    using Secret = std::array<uint8_t, kCookieSecretSize>;
    void rotate(Time now, Rng& rng);
    static Cookie cookie_for(const Secret& secret, const SocketAddress& from);

    CookieKey key_;
    std::optional<Secret> current_;
    std::optional<Secret> previous_;
    Time current_since_{};
};

// The initiator's half: the cookie of the last valid reply, and mac2 for later initiations.
class CookieJar {
  public:
    explicit CookieJar(const PublicKey& responder_static) : key_(cookie_key(responder_static)) {}
    // True (and the cookie kept) if datagram is a cookie reply to the initiation with this
    // sender index and mac1; otherwise nothing changes.
    bool consume_reply(ByteView datagram, uint32_t sender_index, ByteView mac1, Time now);
    // The cookie to compute mac2 with, while it is younger than kCookieRefreshTime.
    std::optional<Cookie> cookie(Time now) const;

  private:
    CookieKey key_;
    std::optional<Cookie> cookie_;
    Time received_at_{};
};

}  // namespace burrow
