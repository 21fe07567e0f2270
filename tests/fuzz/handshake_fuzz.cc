// Handshake target: the Noise IK messages (tunnel/handshake.h), raw and through a Session.
//
// Input: mode byte, then one datagram. Mode bits 0-1 pick the receiver:
//   0  HandshakeResponder::consume_initiation      2  a responder Session
//   1  InitiatorHandshake::consume_response        3  an initiator Session after start()
// Mode bit 2 rewrites the datagram's last 16 bytes to a valid mac1 for that receiver, so
// mutations get past mac1 into Noise (the fuzzer cannot compute a BLAKE2b MAC by itself).
//
// Invariants:
// - decode_initiation / decode_response round-trip through their encoders, and a datagram
//   whose mac1 verifies is re-encoded byte for byte.
// - A responder's reply is never larger than the datagram that caused it; a Session sends
//   nothing at all in reply to a datagram that completed no handshake.
// - A response that is dropped leaves the initiator's attempt intact: the genuine response
//   still completes it afterwards.
#include <algorithm>

#include "tests/fuzz/fuzz_fixtures.h"
#include "tests/fuzz/fuzz_support.h"

using namespace burrow;
using namespace burrow::fuzz;

namespace {

// A message that decodes re-encodes (with a fresh mac1 under key) to one that decodes to the
// same fields and carries a valid mac1; with a valid mac1 already, byte for byte the input.
template <class Decode, class Encode>
void message_round_trip(ByteView d, const Mac1Key& key, Decode decode, Encode encode) {
    auto m = decode(d);
    if (!m) return;
    const Bytes encoded = encode(*m, key);
    auto again = decode(encoded);
    FUZZ_CHECK(again.has_value());
    FUZZ_CHECK(verify_mac1(key, encoded));
    again->mac1 = m->mac1;
    FUZZ_CHECK(*again == *m);
    if (verify_mac1(key, d)) {
        FUZZ_CHECK(std::equal(d.begin(), d.end(), encoded.begin(), encoded.end()));
    }
}

void codec_round_trip(ByteView d, const Mac1Key& key) {
    message_round_trip(d, key, [](ByteView b) { return decode_initiation(b); },
                       [](const auto& m, const Mac1Key& k) { return encode_initiation(m, k); });
    message_round_trip(d, key, [](ByteView b) { return decode_response(b); },
                       [](const auto& m, const Mac1Key& k) { return encode_response(m, k); });
}

void fix_mac1(Bytes& d, const PublicKey& receiver) {
    if (d.size() < kMac1Size) return;
    const Mac1 mac = compute_mac1(mac1_key(receiver), ByteView(d).first(d.size() - kMac1Size));
    std::copy(mac.begin(), mac.end(), d.end() - kMac1Size);
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
        default: {
            const SessionConfig config = session_config(0);
            SeededRng rng(receiver);
            const bool initiator = receiver == 3;
            Session s(initiator ? Role::kInitiator : Role::kResponder,
                      initiator ? ids.initiator : ids.responder,
                      initiator ? ids.responder_pub : ids.initiator_pub, config, rng, Time{},
                      kWallClock);
            if (initiator) {
                s.start(Time{});
                drain(s, Time{});
            }
            const uint64_t completed = s.stats().handshakes_completed;
            s.on_datagram(d, now);
            const size_t reply = drain(s, now);
            if (s.stats().handshakes_completed == completed) {
                FUZZ_CHECK(reply == 0);
            } else if (!initiator) {
                FUZZ_CHECK(reply <= d.size());
            }
            break;
        }
    }
    return 0;
}
