// Handshake target: the Noise IK messages (tunnel/handshake.h), raw and through a Session.
//
// Input: mode byte, then one datagram. Mode bits 0-1 pick the receiver:
//   0  HandshakeResponder::consume_initiation      2  a responder Session
//   1  InitiatorHandshake::consume_response        3  an initiator Session after start()
// Mode bit 2 rewrites the datagram's mac1 (the last 16 bytes; an initiation's sit before its
// mac2) to a valid one for that receiver, so mutations get past mac1 into Noise (the fuzzer
// cannot compute a BLAKE2b MAC by itself). Mode bit 3 puts the Sessions under a handshake
// flood (tunnel/cookie.h): the responder's Diffie-Hellman budget is spent, and the initiator's
// first initiation has been answered by such a responder (LoadedResponder), whose genuine
// cookie reply is among the seeds.
//
// Invariants:
// - decode_initiation / decode_response round-trip through their encoders, and a datagram
//   whose mac1 verifies is re-encoded byte for byte.
// - A responder's reply is never larger than the datagram that caused it; a Session sends
//   nothing at all in reply to a datagram that completed no handshake.
// - A response that is dropped leaves the initiator's attempt intact: the genuine response
//   still completes it afterwards.
// - decode_cookie_reply round-trips through encode_cookie_reply byte for byte.
// - Under load, a responder Session answers with a cookie reply no larger than the datagram
//   and does no Diffie-Hellman for it; it never completes a handshake whose mac2 is not valid.
// - An initiator Session that accepts a cookie reply retries at once with mac2, and that
//   initiation gets through the loaded responder to a completed handshake.
#include <algorithm>

#include "tests/fuzz/fuzz_fixtures.h"
#include "tests/fuzz/fuzz_support.h"

using namespace burrow;
using namespace burrow::fuzz;

namespace {

// A message that decodes re-encodes (with a fresh mac1 under key) to one that decodes to the
// same fields and carries a valid mac1; with a valid mac1 already, byte for byte the input.
template <class Decode, class Encode, class Verify>
void message_round_trip(ByteView d, const Mac1Key& key, Decode decode, Encode encode,
                        Verify verify) {
    auto m = decode(d);
    if (!m) return;
    const Bytes encoded = encode(*m, key);
    auto again = decode(encoded);
    FUZZ_CHECK(again.has_value());
    FUZZ_CHECK(verify(key, encoded));
    again->mac1 = m->mac1;
    if constexpr (requires { again->mac2; }) {
        // Encoded without a cookie: mac2 is zeros; with the input's mac2 zero too, the bytes
        // match.
        FUZZ_CHECK(again->mac2 == Mac2{});
        if (m->mac2 != Mac2{}) return;
    }
    FUZZ_CHECK(*again == *m);
    if (verify(key, d)) {
        FUZZ_CHECK(std::equal(d.begin(), d.end(), encoded.begin(), encoded.end()));
    }
}

void codec_round_trip(ByteView d, const Mac1Key& key) {
    message_round_trip(
        d, key, [](ByteView b) { return decode_initiation(b); },
        [](const auto& m, const Mac1Key& k) { return encode_initiation(m, k); },
        [](const Mac1Key& k, ByteView b) { return verify_initiation_mac1(k, b); });
    message_round_trip(
        d, key, [](ByteView b) { return decode_response(b); },
        [](const auto& m, const Mac1Key& k) { return encode_response(m, k); },
        [](const Mac1Key& k, ByteView b) { return verify_mac1(k, b); });
    if (auto m = decode_cookie_reply(d)) {
        const Bytes encoded = encode_cookie_reply(*m);
        FUZZ_CHECK(std::equal(d.begin(), d.end(), encoded.begin(), encoded.end()));
    }
}

void fix_mac1(Bytes& d, const PublicKey& receiver) {
    if (d.size() < kMac1Size) return;
    const size_t end = d.size() == kInitiationSize && d[0] == kMessageTypeInitiation
                           ? d.size() - kMac2Size
                           : d.size();
    const Mac1 mac = compute_mac1(mac1_key(receiver), ByteView(d).first(end - kMac1Size));
    std::copy(mac.begin(), mac.end(), d.begin() + static_cast<ptrdiff_t>(end - kMac1Size));
}

uint32_t next_index() { return kResponderIndex; }

size_t drain(Session& s, Time now) {
    size_t bytes = 0;
    while (auto d = s.poll_transmit(now)) bytes += d->size();
    return bytes;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const Identities& ids = identities();
    FuzzReader in(data, size);
    const uint8_t mode = in.u8();
    const int receiver = mode & 3;
    const bool to_responder = receiver == 0 || receiver == 2;
    const PublicKey& receiver_pub = to_responder ? ids.responder_pub : ids.initiator_pub;
    const ByteView rest = in.rest();
    Bytes d(rest.begin(), rest.end());
    if (mode & 4) fix_mac1(d, receiver_pub);
    codec_round_trip(d, mac1_key(receiver_pub));
    const Time now = time_from_us(1'000'000);

    switch (receiver) {
        case 0: {
            SeededRng rng(2);
            HandshakeResponder responder(ids.responder, ids.initiator_pub, rng);
            auto result = responder.consume_initiation(d, now, next_index);
            if (auto* accepted = std::get_if<HandshakeResponder::Accepted>(&result)) {
                FUZZ_CHECK(accepted->response.size() <= d.size());
                FUZZ_CHECK(decode_response(accepted->response).has_value());
            } else {
                FUZZ_CHECK(responder.greatest_timestamp() == Tai64n{});
            }
            break;
        }
        case 1: {
            SeededRng rng(1);
            InitiatorHandshake initiator = make_initiator(rng);
            auto result = initiator.consume_response(d, now);
            if (std::holds_alternative<HandshakeDrop>(result)) {
                // The genuine response must still complete the attempt.
                SeededRng responder_rng(2);
                HandshakeResponder responder(ids.responder, ids.initiator_pub, responder_rng);
                auto accepted =
                    responder.consume_initiation(initiator.initiation(), now, next_index);
                auto* a = std::get_if<HandshakeResponder::Accepted>(&accepted);
                FUZZ_CHECK(a != nullptr);
                auto completed = initiator.consume_response(a->response, now);
                FUZZ_CHECK(std::holds_alternative<Keypair>(completed));
            }
            break;
        }
        case 2: {
            // A responder Session, under load with mode bit 3.
            SeededRng rng(receiver);
            HandshakeLoad load;
            SessionConfig config = session_config(0);
            config.load = &load;
            const bool loaded = (mode & 8) != 0;
            if (loaded) {
                while (!load.under_load(now)) load.on_processed(now);
            }
            Session s(Role::kResponder, ids.responder, ids.initiator_pub, config, rng, Time{},
                      kWallClock);
            const SessionStats before = s.stats();
            const Session::Input input = s.on_datagram(d, now, kFuzzSource);
            const SessionStats after = s.stats();
            const size_t reply = drain(s, now);
            if (input == Session::Input::kCookieReply) {
                FUZZ_CHECK(loaded);
                const auto cookie = s.take_cookie_reply();
                FUZZ_CHECK(cookie.has_value() && cookie->size() <= d.size());
                FUZZ_CHECK(decode_cookie_reply(*cookie).has_value());
                FUZZ_CHECK(after.handshake_noise_reads == before.handshake_noise_reads);
                FUZZ_CHECK(reply == 0);
            } else {
                FUZZ_CHECK(!s.take_cookie_reply().has_value());
            }
            if (after.handshakes_completed == before.handshakes_completed) {
                FUZZ_CHECK(reply == 0);
            } else {
                FUZZ_CHECK(reply <= d.size());
                // Under load only a valid mac2 gets this far: the fuzzer cannot make one, so
                // a completed handshake under load is a hole in the cookie check.
                FUZZ_CHECK(!loaded);
            }
            break;
        }
        default: {
            // An initiator Session after start(); with mode bit 3 its first initiation was
            // answered by a loaded responder, whose cookie reply is a seed.
            SeededRng rng(receiver);
            Session s(Role::kInitiator, ids.initiator, ids.responder_pub, session_config(0), rng,
                      Time{}, kWallClock);
            s.start(Time{});
            const auto first = s.poll_transmit(Time{});
            FUZZ_CHECK(first.has_value());
            drain(s, Time{});
            const SessionStats before = s.stats();
            s.on_datagram(d, now, kFuzzSource);
            const size_t reply = drain(s, now);
            const SessionStats after = s.stats();
            if (after.handshakes_completed == before.handshakes_completed) {
                FUZZ_CHECK(reply == 0);
            }
            if (after.cookie_replies_received != before.cookie_replies_received) {
                // The retry with the cookie goes out at once and gets through the flood.
                FUZZ_CHECK(after.handshakes_completed == before.handshakes_completed);
                FUZZ_CHECK(s.next_deadline() <= now);
                s.on_timer(now);
                const auto retry = s.poll_transmit(now);
                FUZZ_CHECK(retry.has_value() && retry->size() == kInitiationSize);
                const auto m = decode_initiation(*retry);
                FUZZ_CHECK(m.has_value() && m->mac2 != Mac2{});
                if (mode & 8) {
                    LoadedResponder flood(now);
                    FUZZ_CHECK(flood.session.on_datagram(*first, now, kFuzzSource) ==
                               Session::Input::kCookieReply);
                    FUZZ_CHECK(flood.session.on_datagram(*retry, now, kFuzzSource) ==
                               Session::Input::kHandshake);
                }
            }
            break;
        }
    }
    return 0;
}
