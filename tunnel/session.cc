#include "tunnel/session.h"

#include <algorithm>
#include <cassert>
#include <string>

#include "tunnel/wire.h"

namespace burrow {

namespace {

std::optional<KeypairInfo> info(const std::optional<Keypair>& k) {
    if (!k) return std::nullopt;
    return KeypairInfo{k->local_index, k->remote_index, k->created_at, k->sent, k->received};
}

std::string seconds(Duration d) {
    return std::to_string(std::chrono::duration_cast<std::chrono::seconds>(d).count()) + " s";
}

}  // namespace

Role stream_role(const PublicKey& local_static, const PublicKey& peer_static) {
    return std::lexicographical_compare(peer_static.begin(), peer_static.end(),
                                        local_static.begin(), local_static.end())
               ? Role::kInitiator
               : Role::kResponder;
}

const char* session_state_name(SessionState state) {
    switch (state) {
        case SessionState::kHandshaking:
            return "handshaking";
        case SessionState::kEstablished:
            return "established";
        case SessionState::kDead:
            return "dead";
    }
    return "?";
}

Session::Session(Role role, const PrivateKey& local_static, const PublicKey& peer_static,
                 const SessionConfig& config, Rng& rng, Time now, int64_t wall_clock_at_zero_us)
    : role_(role),
      config_(config),
      suite_(config.suite.value_or(preferred_suite())),
      rng_(rng),
      local_static_(local_static),
      peer_static_(peer_static),
      own_mac1_key_(mac1_key(public_key(local_static))),
      wall_clock_at_zero_us_(wall_clock_at_zero_us),
      created_at_(now),
      protection_(config.key_limits),
      connection_(stream_role(public_key(local_static), peer_static), config.connection,
                  protection_, now),
      cookies_(public_key(local_static)),
      cookie_jar_(peer_static),
      load_(config.load ? config.load : &own_load_) {
    if (!suite_available(suite_)) suite_ = CipherSuite::kChaCha20Poly1305;
    protection_.set_now(now);
    if (role_ == Role::kResponder) responder_.emplace(local_static, peer_static, rng);
}

CipherSuite Session::suite() const {
    return protection_.current() ? protection_.current()->send.suite() : suite_;
}

// --- inputs -------------------------------------------------------------------------------

void Session::start(Time now) {
    if (role_ != Role::kInitiator || started_at_ || state_ == SessionState::kDead) return;
    protection_.set_now(now);
    started_at_ = now;
    send_initiation(now);
}

Session::Input Session::on_datagram(ByteView datagram, Time now, const SocketAddress& from) {
    receive_copy_.assign(datagram.begin(), datagram.end());
    return on_datagram(MutableByteView(receive_copy_), now, from);
}

std::optional<Bytes> Session::take_cookie_reply() {
    std::optional<Bytes> reply = std::move(cookie_reply_);
    cookie_reply_.reset();
    return reply;
}

Session::Input Session::on_datagram(MutableByteView datagram, Time now,
                                    const SocketAddress& from) {
    protection_.set_now(now);
    if (state_ == SessionState::kDead) {
        ++stats_.drop_unexpected;
        return Input::kDropped;
    }
    if (datagram.empty()) {
        ++stats_.drop_malformed;
        return Input::kDropped;
    }
    // Type and exact size first: a datagram of the wrong size costs nothing more.
    switch (datagram[0]) {
        case kMessageTypeInitiation:
            if (datagram.size() != kInitiationSize) {
                ++stats_.drop_malformed;
                return Input::kDropped;
            }
            return on_initiation(datagram, now, from);
        case kMessageTypeResponse:
            if (datagram.size() != kResponseSize) {
                ++stats_.drop_malformed;
            } else if (role_ != Role::kInitiator) {
                ++stats_.drop_unexpected;
            } else {
                return on_response(datagram, now) ? Input::kHandshake : Input::kDropped;
            }
            return Input::kDropped;
        case kMessageTypeCookieReply:
            if (datagram.size() != kCookieReplySize) {
                ++stats_.drop_malformed;
            } else if (role_ != Role::kInitiator) {
                ++stats_.drop_unexpected;
            } else {
                return on_cookie_reply(datagram, now) ? Input::kHandshake : Input::kDropped;
            }
            return Input::kDropped;
        case kPacketTypeData:
            return on_data(datagram, now) ? Input::kData : Input::kDropped;
        default:
            ++stats_.drop_malformed;
            return Input::kDropped;
    }
}

Session::Input Session::on_initiation(ByteView datagram, Time now, const SocketAddress& from) {
    // Cheapest first: mac1 (is it addressed to us at all?), then the tie between two
    // initiators, then the load, then the Diffie-Hellman work.
    if (!verify_initiation_mac1(own_mac1_key_, datagram)) {
        ++stats_.drop_bad_mac1;
        return Input::kDropped;
    }
    if (role_ == Role::kInitiator) {
        // Both sides initiated. Only the first handshake may be settled this way: once we
        // hold keys as the initiator, an initiation from the peer is out of place.
        if (had_keys_ || !yields_to_peer()) {
            ++(had_keys_ ? stats_.drop_unexpected : stats_.initiations_tie_won);
            return Input::kDropped;
        }
    }
    if (load_->under_load(now)) {
        const auto m = decode_initiation(datagram);
        if (!m) {
            ++stats_.drop_malformed;
            return Input::kDropped;
        }
        if (!cookies_.mac2_valid(initiation_mac2_covered(datagram), m->mac2, from, now, rng_)) {
            cookie_reply_ =
                cookies_.make_reply(m->sender_index, initiation_mac1(datagram), from, now, rng_);
            ++stats_.cookie_replies_sent;
            return Input::kCookieReply;
        }
    }
    // An initiator that may yield answers with a responder of its own, and becomes the
    // responder only once an initiation authenticated: a forged one changes no role.
    if (role_ == Role::kInitiator && !tie_responder_) {
        tie_responder_.emplace(local_static_, peer_static_, rng_);
    }
    HandshakeResponder& responder = role_ == Role::kInitiator ? *tie_responder_ : *responder_;
    const uint64_t reads_before = responder.noise_reads();
    auto result =
        responder.consume_initiation(datagram, now, [this] { return allocate_index(); });
    if (responder.noise_reads() != reads_before) load_->on_processed(now);
    if (const auto* drop = std::get_if<HandshakeDrop>(&result)) {
        count(*drop);
        return Input::kDropped;
    }
    if (role_ == Role::kInitiator) {
        become_responder();
        ++stats_.initiations_tie_yielded;
    }
    auto& accepted = std::get<HandshakeResponder::Accepted>(result);
    // The keys wait in `next` until the initiator uses them (SessionProtection::open).
    protection_.install_unconfirmed(std::move(accepted.keypair));
    outbox_.push_back(std::move(accepted.response));
    ++stats_.handshakes_sent;
    ++stats_.handshakes_completed;
    had_keys_ = true;
    return Input::kHandshake;
}

bool Session::yields_to_peer() const {
    return stream_role(public_key(local_static_), peer_static_) == Role::kResponder;
}

// Our first initiation lost the tie: the peer's handshake is the session's. Our attempt is
// dropped (a response to it will never come: the peer ignores it) and we answer from now on.
void Session::become_responder() {
    role_ = Role::kResponder;
    pending_.reset();
    outbox_.clear();
    started_at_.reset();
    responder_.emplace(std::move(*tie_responder_));
    tie_responder_.reset();
}

bool Session::on_cookie_reply(ByteView datagram, Time now) {
    if (!pending_ ||
        !cookie_jar_.consume_reply(datagram, pending_->handshake.local_index(),
                                   initiation_mac1(pending_->handshake.initiation()), now)) {
        ++stats_.drop_bad_cookie_reply;
        return false;
    }
    ++stats_.cookie_replies_received;
    // The attempt without mac2 will not be answered: retry with the cookie at once. An
    // attempt that carried mac2 and still got a cookie waits for its timer (the responder's
    // secret changed), so a responder that keeps answering with cookies cannot make us loop.
    if (!pending_->handshake.has_mac2()) pending_->retransmit_at = now;
    return true;
}

bool Session::on_response(ByteView datagram, Time now) {
    if (!pending_) {
        // Nothing of ours in flight: classify without any DH.
        if (!decode_response(datagram)) {
            ++stats_.drop_malformed;
        } else if (!verify_mac1(own_mac1_key_, datagram)) {
            ++stats_.drop_bad_mac1;
        } else {
            ++stats_.drop_unknown_index;
        }
        return false;
    }
    InitiatorHandshake& h = pending_->handshake;
    const uint64_t reads_before = h.noise_reads();
    auto result = h.consume_response(datagram, now);
    stats_.handshake_noise_reads += h.noise_reads() - reads_before;
    if (const auto* drop = std::get_if<HandshakeDrop>(&result)) {
        count(*drop);
        return false;
    }
    // The response proves the responder holds the keys: use them at once. The old current
    // stays as previous to decrypt what the responder sends until it switches too.
    protection_.install_confirmed(std::move(std::get<Keypair>(result)));
    // The responder switches to these keys once it sees a packet under them: send one now
    // rather than waiting for the next data or keepalive.
    connection_.ping();
    pending_.reset();
    ++stats_.handshakes_completed;
    had_keys_ = true;
    update_state();
    return true;
}

bool Session::on_data(MutableByteView datagram, Time now) {
    switch (protection_.classify(datagram)) {
        case DataVerdict::kAccept:
            break;
        case DataVerdict::kMalformed:
            ++stats_.drop_malformed;
            return false;
        case DataVerdict::kUnknownIndex:
            ++stats_.drop_unknown_index;
            return false;
        case DataVerdict::kKeyExpired:
            ++stats_.drop_key_expired;
            return false;
    }
    // The Connection checks its replay window, then opens (decrypt failures are counted by
    // protection_), then marks the counter. Opening under `next` confirms those keys.
    const uint64_t confirmed = protection_.keypairs_confirmed();
    const bool accepted = connection_.on_datagram(datagram, now);
    if (protection_.keypairs_confirmed() != confirmed) update_state();
    return accepted;
}

void Session::count(HandshakeDrop drop) {
    switch (drop) {
        case HandshakeDrop::kMalformed:
            ++stats_.drop_malformed;
            break;
        case HandshakeDrop::kUnsupportedSuite:
            ++stats_.drop_unsupported_suite;
            break;
        case HandshakeDrop::kBadMac1:
            ++stats_.drop_bad_mac1;
            break;
        case HandshakeDrop::kDecryptFailed:
            ++stats_.drop_decrypt_failed;
            break;
        case HandshakeDrop::kUnknownPeer:
            ++stats_.drop_unknown_peer;
            break;
        case HandshakeDrop::kReplayedInitiation:
            ++stats_.drop_replayed_initiation;
            break;
        case HandshakeDrop::kUnknownIndex:
            ++stats_.drop_unknown_index;
            break;
    }
}

void Session::on_timer(Time now) {
    protection_.set_now(now);
    if (state_ == SessionState::kDead) return;
    protection_.expire(now);
    check_alive(now);
    if (state_ == SessionState::kDead) return;
    if (role_ == Role::kInitiator && started_at_ && !connection_.is_closed()) {
        if (pending_ ? now >= pending_->retransmit_at : had_keys_ && protection_.needs_rekey()) {
            send_initiation(now);
        }
    }
    if (protection_.can_send()) connection_.on_timer(now);
    update_state();
}

// --- outputs ------------------------------------------------------------------------------

std::optional<Bytes> Session::poll_transmit(Time now) {
    Bytes out(config_.connection.max_datagram_size);
    const size_t n = write_transmit(now, out);
    if (n == 0) return std::nullopt;
    out.resize(n);
    return out;
}

size_t Session::write_transmit(Time now, MutableByteView out) {
    protection_.set_now(now);
    if (state_ == SessionState::kDead) return 0;
    const auto rekey_due = [&] {
        return role_ == Role::kInitiator && had_keys_ && !pending_ && !connection_.is_closed() &&
               protection_.needs_rekey();
    };
    if (rekey_due()) send_initiation(now);
    if (!outbox_.empty()) {
        const Bytes& message = outbox_.front();
        assert(message.size() <= out.size());
        std::copy(message.begin(), message.end(), out.begin());
        const size_t n = message.size();
        outbox_.pop_front();
        return n;
    }
    if (!protection_.can_send()) return 0;
    const size_t n = connection_.write_transmit(now, out);
    // The message count can cross the rekey point here; the initiation goes out next call.
    if (n > 0 && rekey_due()) send_initiation(now);
    return n;
}

Time Session::next_deadline() const {
    if (state_ == SessionState::kDead) return kNever;
    if (!outbox_.empty()) return Time{};  // send it now
    Time t = kNever;
    if (!connection_.is_closed()) {
        if (role_ == Role::kInitiator && started_at_) {
            if (pending_) {
                t = std::min(t, pending_->retransmit_at);
            } else if (protection_.current()) {
                t = std::min(t, protection_.current()->created_at + kRekeyAfterTime);
            }
        }
        if (!had_keys_) {
            if (role_ == Role::kResponder) t = std::min(t, created_at_ + attempt_limit());
            if (started_at_) t = std::min(t, *started_at_ + attempt_limit());
        }
        t = std::min(t, protection_.next_expiry());
    }
    if (protection_.can_send()) t = std::min(t, connection_.next_deadline());
    return t;
}

// --- helpers ------------------------------------------------------------------------------

void Session::send_initiation(Time now) {
    const Tai64n timestamp = tai64n_from_unix_us(wall_clock_at_zero_us_ + to_us(now));
    const uint32_t index = allocate_index();
    auto h = InitiatorHandshake::create(local_static_, peer_static_, suite_, index, timestamp,
                                        rng_, cookie_jar_.cookie(now));
    if (!h) {  // suite_ was checked in the constructor; this would be a libsodium failure
        die("cannot create a handshake", now);
        return;
    }
    const Duration jitter(static_cast<int64_t>(rng_.uniform(to_us(kRekeyTimeoutJitter))));
    // Before the first keys nothing flows, so a lost message is retried sooner: doubling from
    // kFirstHandshakeTimeout up to kRekeyTimeout. A rekey has old keys to send under meanwhile.
    Duration timeout = kRekeyTimeout;
    if (!had_keys_) {
        timeout = std::min<Duration>(kFirstHandshakeTimeout * (1 << std::min(first_attempts_, 3)),
                                     kRekeyTimeout);
        ++first_attempts_;
    }
    pending_.emplace(PendingInitiation{std::move(*h), now + timeout + jitter});
    // An older attempt not yet sent is superseded: its response would be ignored anyway.
    outbox_.clear();
    outbox_.push_back(pending_->handshake.initiation());
    ++stats_.handshakes_sent;
}

uint32_t Session::allocate_index() {
    for (;;) {
        const auto index = static_cast<uint32_t>(rng_.next_u64());
        const bool pending = pending_ && pending_->handshake.local_index() == index;
        if (!pending && !protection_.uses_index(index)) return index;
    }
}

Duration Session::attempt_limit() const {
    return std::min(kRekeyAttemptTime, config_.connection.idle_timeout);
}

void Session::check_alive(Time now) {
    if (!had_keys_) {
        const std::optional<Time> since = role_ == Role::kResponder ? created_at_ : started_at_;
        if (since && now >= *since + attempt_limit()) {
            die("no handshake completed within " + seconds(attempt_limit()), now);
        }
        return;
    }
    // The initiator needs current keys; the responder may still be waiting for the
    // initiator to confirm next ones.
    const bool alive =
        protection_.current() || (role_ == Role::kResponder && protection_.next().has_value());
    if (!alive) {
        die("keys expired: no handshake completed within " + seconds(kRejectAfterTime) +
                " of the last",
            now);
    }
}

void Session::die(std::string_view reason, Time now) {
    state_ = SessionState::kDead;
    dead_reason_ = reason;
    pending_.reset();
    outbox_.clear();
    // The application hears it where it hears everything else: ConnectionClosed, and a reset
    // for every open stream. The CLOSE frame is never sent (nothing can be sealed any more).
    connection_.close(ConnectionError::kIdleTimeout, "session: " + dead_reason_, now);
}

void Session::update_state() {
    if (state_ == SessionState::kDead) return;
    state_ = protection_.can_send() ? SessionState::kEstablished : SessionState::kHandshaking;
}

// --- introspection ------------------------------------------------------------------------

SessionStats Session::stats() const {
    SessionStats s = stats_;
    s.drop_decrypt_failed += protection_.decrypt_failed();
    s.keypairs_confirmed = protection_.keypairs_confirmed();
    if (responder_) s.handshake_noise_reads += responder_->noise_reads();
    if (tie_responder_) s.handshake_noise_reads += tie_responder_->noise_reads();
    return s;
}

SessionSnapshot Session::snapshot() const {
    SessionSnapshot s{};
    s.state = state_;
    s.current = info(protection_.current());
    s.previous = info(protection_.previous());
    s.next = info(protection_.next());
    if (pending_) {
        s.handshake_index = pending_->handshake.local_index();
        s.retransmit_at = pending_->retransmit_at;
    }
    if (responder_) s.greatest_timestamp = responder_->greatest_timestamp();
    s.queued_messages = outbox_.size();
    return s;
}

// --- path probes ------------------------------------------------------------------------------

std::optional<Bytes> Session::seal_probe(const Probe& probe, Time now) {
    protection_.set_now(now);
    if (state_ == SessionState::kDead || !protection_.can_send()) return std::nullopt;
    const Keypair& k = *protection_.current();
    const uint64_t counter = kProbeCounterBit | probes_sealed_++;
    Bytes out;
    out.reserve(kProbeSize);
    ByteWriter w(out);
    w.u8(kPacketTypeProbe);
    w.u32(k.remote_index);
    w.u64(counter);
    std::array<uint8_t, 1 + kPathDataLen> plain{};
    plain[0] = static_cast<uint8_t>(probe.kind);
    std::copy(probe.data.begin(), probe.data.end(), plain.begin() + 1);
    const Bytes header(out.begin(), out.end());
    k.send.seal(counter, header, plain, out);
    return out;
}

std::optional<uint32_t> Session::receiver_index(ByteView datagram) {
    if (datagram.size() < kPacketHeaderSize) return std::nullopt;
    if (datagram[0] != kPacketTypeData && datagram[0] != kPacketTypeProbe) return std::nullopt;
    ByteReader r(datagram.subspan(1, 4));
    return r.u32();
}

std::optional<Probe> Session::open_probe(ByteView datagram, Time now) {
    protection_.set_now(now);
    auto drop = [this]() -> std::optional<Probe> {
        ++stats_.drop_bad_probe;
        return std::nullopt;
    };
    if (state_ == SessionState::kDead || datagram.size() != kProbeSize ||
        datagram[0] != kPacketTypeProbe) {
        return drop();
    }
    ByteReader r(datagram.first(kPacketHeaderSize));
    r.u8();
    const uint32_t index = r.u32();
    const uint64_t counter = r.u64();
    if ((counter & kProbeCounterBit) == 0) return drop();
    const Keypair* k = nullptr;
    for (const auto* slot : {&protection_.current(), &protection_.previous(), &protection_.next()}) {
        if (*slot && (*slot)->local_index == index) k = &**slot;
    }
    if (!k || now >= k->created_at + kRejectAfterTime) return drop();
    auto plain = k->recv.open(counter, datagram.first(kPacketHeaderSize),
                              datagram.subspan(kPacketHeaderSize));
    if (!plain || plain->size() != 1 + kPathDataLen) return drop();
    const uint8_t kind = (*plain)[0];
    if (kind != static_cast<uint8_t>(ProbeKind::kChallenge) &&
        kind != static_cast<uint8_t>(ProbeKind::kResponse)) {
        return drop();
    }
    Probe probe;
    probe.kind = static_cast<ProbeKind>(kind);
    std::copy(plain->begin() + 1, plain->end(), probe.data.begin());
    ++stats_.probes_opened;
    return probe;
}

}  // namespace burrow
