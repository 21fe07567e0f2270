// Path probes sealed and opened by a session pair (tunnel/path_probe.h).
#include <catch2/catch.hpp>

#include "tunnel/crypto_init.h"
#include "tunnel/session.h"

using namespace burrow;
using namespace std::chrono_literals;

namespace {

constexpr int64_t kWallClock = 1'700'000'000'000'000;

struct Pair {
    SeededRng keys{11};
    PrivateKey a_key = PrivateKey::generate(keys);
    PrivateKey b_key = PrivateKey::generate(keys);
    SeededRng rng_a{1}, rng_b{2};
    Session a{Role::kInitiator, a_key, public_key(b_key), SessionConfig{}, rng_a, Time{}, kWallClock};
    Session b{Role::kResponder, b_key, public_key(a_key), SessionConfig{}, rng_b, Time{}, kWallClock};

    // Runs the handshake (and one data packet each way, so the responder's keys are confirmed).
    void establish() {
        a.start(Time{});
        for (int round = 0; round < 8; ++round) {
            const Time now = Time{} + std::chrono::milliseconds(round);
            while (auto d = a.poll_transmit(now)) b.on_datagram(*d, now);
            while (auto d = b.poll_transmit(now)) a.on_datagram(*d, now);
            a.connection().ping();
            b.connection().ping();
        }
    }
};

}  // namespace

TEST_CASE("session probes: sealed by one side, opened by the other, both ways") {
    REQUIRE(crypto_init());
    Pair p;
    const Probe challenge{ProbeKind::kChallenge, {1, 2, 3, 4, 5, 6, 7, 8}};
    CHECK_FALSE(p.a.seal_probe(challenge, Time{}));  // no keys yet
    p.establish();
    REQUIRE(p.a.established());
    REQUIRE(p.b.established());

    auto sealed = p.a.seal_probe(challenge, Time{} + 10ms);
    REQUIRE(sealed);
    CHECK(sealed->size() == kProbeSize);
    auto idx = Session::receiver_index(*sealed);
    REQUIRE(idx);
    CHECK(p.b.owns_index(*idx));
    CHECK_FALSE(p.a.owns_index(*idx));
    auto opened = p.b.open_probe(*sealed, Time{} + 10ms);
    REQUIRE(opened);
    CHECK(*opened == challenge);

    const Probe response{ProbeKind::kResponse, challenge.data};
    auto back = p.b.seal_probe(response, Time{} + 11ms);
    REQUIRE(back);
    CHECK(back->size() == sealed->size());  // never more than what came in
    auto opened_back = p.a.open_probe(*back, Time{} + 11ms);
    REQUIRE(opened_back);
    CHECK(*opened_back == response);
}

TEST_CASE("session probes: tampered, truncated or misdirected probes are dropped and counted") {
    REQUIRE(crypto_init());
    Pair p;
    p.establish();
    auto sealed = p.a.seal_probe(Probe{ProbeKind::kChallenge, {}}, Time{} + 10ms);
    REQUIRE(sealed);
    const auto before = p.b.stats();
    const auto snapshot_before = p.b.snapshot();
    const auto received_before = p.b.connection().stats().packets_received;

    Bytes flipped = *sealed;
    flipped.back() ^= 1;
    CHECK_FALSE(p.b.open_probe(flipped, Time{} + 10ms));
    Bytes short_one(sealed->begin(), sealed->end() - 1);
    CHECK_FALSE(p.b.open_probe(short_one, Time{} + 10ms));
    Bytes counter_low = *sealed;
    counter_low[5] &= 0x7f;  // top bit of the counter: probes never use data packet numbers
    CHECK_FALSE(p.b.open_probe(counter_low, Time{} + 10ms));
    CHECK_FALSE(p.a.open_probe(*sealed, Time{} + 10ms));  // our own probe: not our index
    CHECK(p.b.stats().drop_bad_probe == before.drop_bad_probe + 3);
    CHECK(p.a.stats().drop_bad_probe == 1);
    // Nothing else moved.
    CHECK(p.b.snapshot() == snapshot_before);
    CHECK(p.b.connection().stats().packets_received == received_before);
    // Keys older than RejectAfterTime open nothing.
    CHECK_FALSE(p.b.open_probe(*sealed, Time{} + kRejectAfterTime + 1s));
}
