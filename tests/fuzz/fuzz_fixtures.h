// Fixed identities and handshakes shared by the fuzz targets and the seed generator
// (seed_gen.cc): a seed input is only useful if the target rebuilds exactly the state the
// generator used, so both draw every key and every random choice from these seeds.
#pragma once

#include <cstdint>
#include <optional>

#include "tests/fuzz/fuzz_support.h"
#include "tunnel/crypto_init.h"
#include "tunnel/handshake.h"
#include "tunnel/noise.h"
#include "tunnel/rng.h"
#include "tunnel/session.h"

namespace burrow::fuzz {

inline constexpr int64_t kWallClock = 1'700'000'000'000'000;  // Unix time in us, any fixed value
inline constexpr uint32_t kInitiatorIndex = 0x01020304;
inline constexpr uint32_t kResponderIndex = 0x0a0b0c0d;

struct Identities {
    PrivateKey initiator, responder;
    PublicKey initiator_pub, responder_pub;
};

// Identities are the same in every run; crypto_init() has run once they exist.
inline const Identities& identities() {
    static const Identities ids = [] {
        FUZZ_CHECK(crypto_init());
        SeededRng rng(0x1d);
        Identities i{PrivateKey::generate(rng), PrivateKey::generate(rng), {}, {}};
        i.initiator_pub = public_key(i.initiator);
        i.responder_pub = public_key(i.responder);
        return i;
    }();
    return ids;
}

// The initiator's attempt, as a target rebuilds it for every input (seeded: same every time).
inline InitiatorHandshake make_initiator(SeededRng& rng) {
    const Identities& ids = identities();
    auto h = InitiatorHandshake::create(ids.initiator, ids.responder_pub,
                                        CipherSuite::kChaCha20Poly1305, kInitiatorIndex,
                                        tai64n_from_unix_us(kWallClock), rng);
    FUZZ_CHECK(h.has_value());
    return std::move(*h);
}

// A session configuration chosen by one fuzzer byte: small key limits (rekeys within a run),
// NewReno instead of BBR, small windows and send buffers (flow control and backpressure).
inline SessionConfig session_config(uint8_t flags) {
    SessionConfig c;
    c.suite = CipherSuite::kChaCha20Poly1305;  // available on every CPU: runs replay anywhere
    if (flags & 1) c.key_limits = KeyLimits{32, 256};
    if (flags & 2) c.connection.congestion = CongestionKind::kNewReno;
    if (flags & 4) {
        // The smallest the Connection accepts (its initial credits, tunnel/flow_control.h),
        // and a send buffer small enough that write() pushes back within a run.
        c.connection.stream_receive_window = kInitialStreamWindow;
        c.connection.session_receive_window = kInitialSessionWindow;
        c.connection.max_incoming_streams = kInitialMaxStreams;
        c.connection.stream_send_buffer = 8 * 1024;
    }
    return c;
}

// A handshake flood's responder: a responder Session whose Diffie-Hellman budget is spent, so
// it answers every initiation without a valid mac2 with a cookie reply (tunnel/cookie.h).
// Built the same way every time (its rng seeded with 4), so its cookies are too.
inline const SocketAddress kFuzzSource = SocketAddress::ipv4({192, 0, 2, 7}, 40000);
struct LoadedResponder {
    SeededRng rng{4};
    HandshakeLoad load;
    SessionConfig config = [this] {
        SessionConfig c = session_config(0);
        c.load = &load;
        return c;
    }();
    Session session{Role::kResponder, identities().responder, identities().initiator_pub,
                    config, rng, Time{}, kWallClock};
    explicit LoadedResponder(Time now) {
        while (!load.under_load(now)) load.on_processed(now);
    }
};

// Two sessions that have completed their handshake, built the same way every time: run the
// handshake over a perfect network on a 1 ms clock until both are established.
struct EstablishedPair {
    SeededRng rng_a{1}, rng_b{2};
    Session a, b;
    Time now{};

    EstablishedPair()
        : a(Role::kInitiator, identities().initiator, identities().responder_pub,
            session_config(0), rng_a, Time{}, kWallClock),
          b(Role::kResponder, identities().responder, identities().initiator_pub,
            session_config(0), rng_b, Time{}, kWallClock) {
        a.start(now);
        // A handful of round trips is plenty; the bound only stops a broken build looping.
        for (int round = 0; round < 100 && !(a.established() && b.established()); ++round) {
            now += std::chrono::milliseconds(1);
            for (Session* s : {&a, &b}) {
                if (s->next_deadline() <= now) s->on_timer(now);
            }
            while (auto d = a.poll_transmit(now)) b.on_datagram(*d, now);
            while (auto d = b.poll_transmit(now)) a.on_datagram(*d, now);
        }
        FUZZ_CHECK(a.established() && b.established());
    }
};

}  // namespace burrow::fuzz
