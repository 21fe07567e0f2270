// Session: one encrypted peer-to-peer session. It owns the handshake (tunnel/handshake.h),
// the keypairs and packet protection (tunnel/session_protection.h) and the Connection that
// carries the streams (tunnel/connection.h). Sans-IO (docs/architecture.md §2):
//
//   start(now)                  initiator: send the first initiation
//   on_datagram(bytes, now)     any datagram from the peer's path (a mutable view: data
//                               packets are opened in place)
//   on_timer(now)               next_deadline() has passed
//   write_transmit(now, buf)    a datagram built into buf, until it returns 0
//                               (poll_transmit(now): the same into a new vector)
//   next_deadline()             when to call on_timer next
//
// Roles are fixed once the first handshake completes: the side the server told to connect is
// the initiator; it starts every handshake, the first and each rekey. The responder knows the
// initiator's static key in advance and answers no one else. If both sides were told to
// initiate (simultaneous initiation), the side with the larger static public key keeps its
// initiation and ignores the peer's; the other side drops its own attempt and answers the
// peer's, becoming the responder for the session's life. Stream ids do not follow the Noise
// role but the order of the two public keys (stream_role()), so streams either side opened
// before the tie was settled keep their ids.
//
// Handshake floods (tunnel/cookie.h): a responder whose HandshakeLoad says it is under load
// answers an initiation without a valid mac2 with a cookie reply (take_cookie_reply(), to be
// sent to the initiation's source) and does no Diffie-Hellman for it; an initiator keeps the
// cookie of a cookie reply to its attempt and retries at once with mac2.
//
// Datagrams are classified by their type byte and exact size first; wrong size or unknown
// type is dropped and counted without any other work. Then, as WireGuard orders it: mac1,
// DH, identity, replay; for data: receiver index, key age, then the Connection's replay
// window, then decryption. A dropped datagram changes nothing but a counter, and nothing is
// ever sent in reply to an unauthenticated datagram except the (smaller) handshake response.
//
// Keys: the initiator rekeys when its current keypair is kRekeyAfterTime old or has sent
// KeyLimits::rekey_after_messages packets. Data keeps flowing under the old keys while the
// handshake runs, and the old keys still decrypt packets in flight after the switch, so
// streams never stall or reset. An unanswered initiation is retried after kRekeyTimeout (plus
// jitter). Keys older than kRejectAfterTime are never used; if no handshake has replaced them
// by then, the session is dead (state() == kDead, and the Connection reports ConnectionClosed
// to the application): it sends nothing more, plaintext least of all.
//
// Before the first keypair the application may already open streams and write; the Connection
// holds the data and sends it once the handshake completes (relay-first connect relies on it).
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>

#include "tunnel/connection.h"
#include "tunnel/cookie.h"
#include "tunnel/handshake.h"
#include "tunnel/noise.h"
#include "tunnel/path_probe.h"
#include "tunnel/rng.h"
#include "tunnel/session_protection.h"
#include "tunnel/socket_address.h"
#include "tunnel/time.h"

namespace burrow {

inline constexpr Duration kRekeyTimeout = std::chrono::seconds(5);  // WireGuard §6.1
// The first handshake's first retry: a forwarded connection waits for it, so a lost message
// must not cost kRekeyTimeout. 1 s is RFC 6298's initial RTO, above any relay round trip.
inline constexpr Duration kFirstHandshakeTimeout = std::chrono::seconds(1);
// wireguard-go's RekeyTimeoutJitterMaxMs: spreads retries so two sessions that lost packets
// together do not retry in lockstep.
inline constexpr Duration kRekeyTimeoutJitter = std::chrono::milliseconds(334);
// WireGuard §6.1 Rekey-Attempt-Time: how long the first handshake is retried. Capped by the
// Connection's idle timeout, whose clock starts when the session is created.
inline constexpr Duration kRekeyAttemptTime = std::chrono::seconds(90);

struct SessionConfig {
    ConnectionConfig connection;
    // The suite the initiator names (the responder takes whichever the initiation names).
    // nullopt: preferred_suite(). A suite this CPU cannot run falls back to ChaCha20-Poly1305.
    std::optional<CipherSuite> suite;
    KeyLimits key_limits;
    // The Diffie-Hellman work budget this session's responder shares with others (AgentCore
    // passes one for all its links); null: a budget of the session's own. Must outlive the
    // session.
    HandshakeLoad* load = nullptr;
};

// Which stream ids a side opens (Connection's role): the side with the larger static public
// key opens even ids. Independent of who initiates the handshake, so the two sides never open
// the same id even when both started as initiators.
Role stream_role(const PublicKey& local_static, const PublicKey& peer_static);

enum class SessionState {
    kHandshaking,  // no keys to send under yet (or the current ones are used up)
    kEstablished,  // the Connection runs
    kDead,         // no handshake completed in time: nothing is sent or accepted any more
};
const char* session_state_name(SessionState state);

// Counters for `burrow status` and tests: every drop has a reason.
struct SessionStats {
    uint64_t handshakes_sent = 0;        // initiations (initiator) or responses (responder)
    uint64_t handshakes_completed = 0;   // keypairs created
    uint64_t keypairs_confirmed = 0;     // keypairs that became current
    uint64_t handshake_noise_reads = 0;  // handshake messages that got as far as DH
    uint64_t drop_malformed = 0;         // unknown type, wrong size, bad fields
    uint64_t drop_bad_mac1 = 0;
    uint64_t drop_unknown_peer = 0;
    uint64_t drop_replayed_initiation = 0;
    uint64_t drop_decrypt_failed = 0;  // handshake or data
    uint64_t drop_unknown_index = 0;
    uint64_t drop_key_expired = 0;  // keys older than kRejectAfterTime or used up
    uint64_t drop_unsupported_suite = 0;
    uint64_t drop_unexpected = 0;  // a message our role never receives, or after death
    uint64_t probes_opened = 0;
    uint64_t drop_bad_probe = 0;  // wrong size, unknown index, counter, or did not open
    // Handshake floods (tunnel/cookie.h).
    uint64_t cookie_replies_sent = 0;      // initiations refused under load, no DH done
    uint64_t cookie_replies_received = 0;  // valid ones, for our attempt in flight
    uint64_t drop_bad_cookie_reply = 0;    // not for our attempt, or did not decrypt
    // Simultaneous initiation: the peer's initiation ignored because ours wins the tie, or
    // ours given up to answer the peer's.
    uint64_t initiations_tie_won = 0;
    uint64_t initiations_tie_yielded = 0;
    bool operator==(const SessionStats&) const = default;
};

// Everything a Session holds besides the Connection and its counters, for tests that assert
// a datagram changed nothing.
struct KeypairInfo {
    uint32_t local_index;
    uint32_t remote_index;
    Time created_at;
    uint64_t sent;
    uint64_t received;
    bool operator==(const KeypairInfo&) const = default;
};
struct SessionSnapshot {
    SessionState state;
    std::optional<KeypairInfo> current;
    std::optional<KeypairInfo> previous;
    std::optional<KeypairInfo> next;
    std::optional<uint32_t> handshake_index;  // the initiation in flight
    Time retransmit_at;
    Tai64n greatest_timestamp;
    size_t queued_messages;
    bool operator==(const SessionSnapshot&) const = default;
};

class Session {
  public:
    // Precondition: crypto_init() has succeeded. wall_clock_at_zero_us is the Unix time (in
    // microseconds) at which `now` was Time{}: initiation timestamps are
    // wall_clock_at_zero_us + now, so they grow across process restarts.
    Session(Role role, const PrivateKey& local_static, const PublicKey& peer_static,
            const SessionConfig& config, Rng& rng, Time now, int64_t wall_clock_at_zero_us);
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;

    // Initiator: sends the first initiation (no-op if already started, and for a responder).
    void start(Time now);

    // What became of a datagram. Drops are counted in stats() under their reason.
    enum class Input : uint8_t {
        kHandshake,    // a handshake message that authenticated (it may still change nothing)
        kData,         // a data packet that authenticated and was new
        kDropped,
        kCookieReply,  // an initiation refused under load: send take_cookie_reply() to `from`
    };
    // `from` is the datagram's source: what a cookie is bound to (the relay passes {}). The
    // mutable form opens data packets in place (the datagram's bytes are scratch afterwards);
    // the const form copies once into a buffer the session keeps.
    Input on_datagram(MutableByteView datagram, Time now, const SocketAddress& from = {});
    Input on_datagram(ByteView datagram, Time now, const SocketAddress& from = {});
    // A vector, the way tests hold datagrams they may deliver again: the copying form (a
    // non-const vector would otherwise convert to both views).
    Input on_datagram(const Bytes& datagram, Time now, const SocketAddress& from = {}) {
        return on_datagram(ByteView(datagram), now, from);
    }
    // The cookie reply of the last on_datagram that returned kCookieReply (once).
    std::optional<Bytes> take_cookie_reply();
    void on_timer(Time now);
    // Every datagram of one socket read was handed in (Connection::on_receive_batch_end).
    void on_receive_batch_end() { connection_.on_receive_batch_end(); }
    // The next datagram, built into the front of `out`: its length, 0 when there is nothing
    // to send now. Precondition: out.size() >= the connection's max_datagram_size, which
    // every handshake message fits in too.
    size_t write_transmit(Time now, MutableByteView out);
    // write_transmit into a vector of its own.
    std::optional<Bytes> poll_transmit(Time now);
    Time next_deadline() const;

    Connection& connection() { return connection_; }
    const Connection& connection() const { return connection_; }
    Role role() const { return role_; }
    const PublicKey& peer_key() const { return peer_static_; }
    SessionState state() const { return state_; }
    bool established() const { return state_ == SessionState::kEstablished; }
    // Why the session died; empty while it lives.
    std::string_view dead_reason() const { return dead_reason_; }
    // The suite the current keys use (the configured one before any handshake).
    CipherSuite suite() const;

    SessionStats stats() const;
    SessionSnapshot snapshot() const;

    // --- path probes (tunnel/path_probe.h) ---
    // A probe sealed under the current keys; nullopt while there are none to send under.
    std::optional<Bytes> seal_probe(const Probe& probe, Time now);
    // The probe in datagram if it is exactly a probe for one of our keypairs and it opens;
    // otherwise nullopt, counted, and nothing else changes.
    std::optional<Probe> open_probe(ByteView datagram, Time now);
    // Whether a data or probe packet carrying this receiver index is addressed to us: how a
    // datagram from an address no path knows yet (a NAT that rebinds) finds its session.
    bool owns_index(uint32_t index) const { return protection_.uses_index(index); }
    // The receiver index of a data or probe packet; nullopt for anything else.
    static std::optional<uint32_t> receiver_index(ByteView datagram);

  private:
    struct PendingInitiation {
        InitiatorHandshake handshake;
        Time retransmit_at;
    };

    void send_initiation(Time now);
    // Each true when the datagram authenticated.
    Input on_initiation(ByteView datagram, Time now, const SocketAddress& from);
    bool on_response(ByteView datagram, Time now);
    bool on_cookie_reply(ByteView datagram, Time now);
    // Simultaneous initiation: whether our initiation loses to the peer's.
    bool yields_to_peer() const;
    void become_responder();
    bool on_data(MutableByteView datagram, Time now);
    void count(HandshakeDrop drop);
    uint32_t allocate_index();
    Duration attempt_limit() const;
    void check_alive(Time now);
    void die(std::string_view reason, Time now);
    void update_state();

    Role role_;  // changes only once, initiator to responder, on a lost tie
    SessionConfig config_;
    CipherSuite suite_;
    Rng& rng_;
    PrivateKey local_static_;
    PublicKey peer_static_;
    Mac1Key own_mac1_key_;
    int64_t wall_clock_at_zero_us_;
    Time created_at_;

    SessionProtection protection_;
    Connection connection_;  // after protection_: it keeps a reference to it

    std::optional<HandshakeResponder> responder_;  // responder role only
    // An initiator's answer to the peer's initiation in a tie it may lose (yields_to_peer).
    std::optional<HandshakeResponder> tie_responder_;
    CookieResponder cookies_;                      // makes cookies, checks mac2
    CookieJar cookie_jar_;                         // the peer's last cookie for us
    HandshakeLoad own_load_;                       // unless config_.load names a shared one
    HandshakeLoad* load_;
    std::optional<Bytes> cookie_reply_;
    std::optional<PendingInitiation> pending_;     // initiator: the attempt in flight
    std::optional<Time> started_at_;               // initiator: when start() was called
    bool had_keys_ = false;                        // a handshake has completed
    int first_attempts_ = 0;                       // initiations sent before had_keys_
    std::deque<Bytes> outbox_;                     // handshake messages to send
    SessionState state_ = SessionState::kHandshaking;
    uint64_t probes_sealed_ = 0;  // the probe counter, below kProbeCounterBit
    std::string dead_reason_;
    SessionStats stats_;
    Bytes receive_copy_;  // what the const on_datagram opens in place, reused
};

}  // namespace burrow
