// Cookie replies under a handshake flood (tunnel/cookie.h): the load budget, the cookie codec
// and crypto, and a responder Session under a flood of mac1-valid initiations from many
// addresses while the legitimate initiator completes its handshake.
#include <catch2/catch.hpp>

#include <algorithm>
#include <deque>
#include <vector>

#include "tests/support/identity.h"
#include "tunnel/cookie.h"
#include "tunnel/crypto_init.h"
#include "tunnel/handshake.h"
#include "tunnel/session.h"

using namespace burrow;
using burrow::test::Identity;
using burrow::test::make_identity;
using namespace std::chrono_literals;

namespace {

constexpr int64_t kWallClock = 1'700'000'000'000'000;
const SocketAddress kAddrA = SocketAddress::ipv4({198, 51, 100, 10}, 41000);

SocketAddress random_address(Rng& rng) {
    return SocketAddress::ipv4({static_cast<uint8_t>(rng.uniform(223) + 1),
                                static_cast<uint8_t>(rng.uniform(256)),
                                static_cast<uint8_t>(rng.uniform(256)),
                                static_cast<uint8_t>(rng.uniform(256))},
                               static_cast<uint16_t>(rng.uniform(65535) + 1));
}

}  // namespace

TEST_CASE("HandshakeLoad: a burst, then under load until the rate has been kept for a second") {
    HandshakeLoad load;
    Time now = Time{} + 10s;
    for (int i = 0; i < static_cast<int>(kHandshakeLoadBurst); ++i) {
        CHECK_FALSE(load.under_load(now));
        load.on_processed(now);
    }
    CHECK(load.under_load(now));
    // Tokens come back at kHandshakeLoadRate, but the flag lingers kUnderLoadLinger.
    now += 500ms;
    CHECK(load.under_load(now));
    now += kUnderLoadLinger;
    CHECK_FALSE(load.under_load(now));
    // A steady rate below the budget never puts it under load.
    HandshakeLoad steady;
    for (int i = 0; i < 1000; ++i) {
        now += std::chrono::microseconds(static_cast<int64_t>(1e6 / (kHandshakeLoadRate / 2)));
        CHECK_FALSE(steady.under_load(now));
        steady.on_processed(now);
    }
}

TEST_CASE("cookie replies: codec, only the initiation's sender decrypts, mac2 per address") {
    REQUIRE(crypto_init());
    SeededRng rng(21);
    const Identity responder = make_identity(rng);
    const Identity other = make_identity(rng);
    CookieResponder cookies(responder.pub);
    const Time t0 = Time{} + 1s;

    Mac1 mac1{};
    rng.fill(mac1);
    const Bytes reply = cookies.make_reply(0x01020304, mac1, kAddrA, t0, rng);
    REQUIRE(reply.size() == kCookieReplySize);
    CHECK(reply.size() < kInitiationSize);  // no amplification
    auto m = decode_cookie_reply(reply);
    REQUIRE(m);
    CHECK(m->receiver_index == 0x01020304);
    CHECK(encode_cookie_reply(*m) == reply);
    for (size_t size = 0; size <= 100; ++size) {
        Bytes b(size, 0);
        std::copy_n(reply.begin(), std::min(size, reply.size()), b.begin());
        CHECK(decode_cookie_reply(b).has_value() == (size == kCookieReplySize));
    }
    for (size_t byte : {0, 1, 2, 3}) {
        Bytes b = reply;
        b[byte] ^= 0x10;
        CHECK_FALSE(decode_cookie_reply(b));
    }

    // Only a jar for this responder, with this index and this mac1, takes it.
    Mac1 other_mac1 = mac1;
    other_mac1[0] ^= 1;
    CookieJar wrong_key(other.pub);
    CHECK_FALSE(wrong_key.consume_reply(reply, 0x01020304, mac1, t0));
    CookieJar jar(responder.pub);
    CHECK_FALSE(jar.consume_reply(reply, 0x01020305, mac1, t0));
    CHECK_FALSE(jar.consume_reply(reply, 0x01020304, other_mac1, t0));
    for (size_t bit = 32; bit < reply.size() * 8; bit += 7) {  // nonce and ciphertext
        Bytes b = reply;
        b[bit / 8] ^= static_cast<uint8_t>(1 << (bit % 8));
        CHECK_FALSE(jar.consume_reply(b, 0x01020304, mac1, t0));
    }
    CHECK_FALSE(jar.cookie(t0));
    REQUIRE(jar.consume_reply(reply, 0x01020304, mac1, t0));
    const auto cookie = jar.cookie(t0);
    REQUIRE(cookie);
    CHECK_FALSE(jar.cookie(t0 + kCookieRefreshTime));

    // mac2 under that cookie is valid from kAddrA only.
    Bytes covered(kInitiationSize - kMac2Size);
    rng.fill(covered);
    const Mac2 mac2 = compute_mac2(*cookie, covered);
    CHECK(cookies.mac2_valid(covered, mac2, kAddrA, t0, rng));
    SocketAddress other_port = kAddrA;
    other_port.port++;
    CHECK_FALSE(cookies.mac2_valid(covered, mac2, other_port, t0, rng));
    CHECK_FALSE(cookies.mac2_valid(covered, mac2, random_address(rng), t0, rng));
    Bytes changed = covered;
    changed[5] ^= 1;
    CHECK_FALSE(cookies.mac2_valid(changed, mac2, kAddrA, t0, rng));
    // The secret changes every kCookieRefreshTime; a cookie of the one before is still good,
    // one two changes old is not.
    CHECK(cookies.mac2_valid(covered, mac2, kAddrA, t0 + kCookieRefreshTime, rng));
    CHECK_FALSE(cookies.mac2_valid(covered, mac2, kAddrA, t0 + 2 * kCookieRefreshTime, rng));
}

namespace {

// A responder Session B under a flood, the legitimate initiator A, and a wire with a fixed
// one-way delay that carries each datagram with its source address. The flood's initiations
// are mac1-valid (anyone who knows B's public key can compute mac1): each one B processes
// costs it Diffie-Hellman work, which handshake_noise_reads counts.
struct Flood {
    explicit Flood(uint64_t seed)
        : ok(crypto_init()),
          rng(seed),
          ia(make_identity(rng)),
          ib(make_identity(rng)),
          rng_a(seed * 2 + 1),
          rng_b(seed * 2 + 2),
          a(Role::kInitiator, ia.secret, ib.pub, {}, rng_a, Time{}, kWallClock),
          b(Role::kResponder, ib.secret, ia.pub, {}, rng_b, Time{}, kWallClock) {
        REQUIRE(ok);
        // A handful of distinct mac1-valid initiations from strangers, sent over and over.
        for (int i = 0; i < 16; ++i) {
            const Identity stranger = make_identity(rng);
            auto h = InitiatorHandshake::create(stranger.secret, ib.pub,
                                                CipherSuite::kChaCha20Poly1305,
                                                static_cast<uint32_t>(rng.next_u64()),
                                                tai64n_from_unix_us(kWallClock), rng);
            REQUIRE(h);
            flood.push_back(h->initiation());
        }
    }

    bool ok;
    SeededRng rng;
    Identity ia, ib;
    SeededRng rng_a, rng_b;
    Session a, b;
    std::vector<Bytes> flood;
    uint64_t flood_sent = 0;
    uint64_t replies_to_flood = 0;  // bytes B sent to the flood's addresses
    uint64_t flood_bytes = 0;

    // Runs `duration` of virtual time in 1 ms steps: `flood_per_ms` flood initiations a
    // millisecond from random addresses arrive at B; A and B exchange what they send.
    void run(Duration duration, int flood_per_ms) {
        struct InFlight {
            Time at;
            bool to_b;
            Bytes data;
        };
        std::deque<InFlight> wire;
        for (Time now{}; now < Time{} + duration; now += 1ms) {
            for (int i = 0; i < flood_per_ms; ++i) {
                const Bytes& d = flood[rng.uniform(flood.size())];
                const SocketAddress from = random_address(rng);
                ++flood_sent;
                flood_bytes += d.size();
                if (b.on_datagram(d, now, from) == Session::Input::kCookieReply) {
                    const auto reply = b.take_cookie_reply();
                    REQUIRE(reply);
                    REQUIRE(reply->size() < d.size());
                    replies_to_flood += reply->size();
                }
            }
            while (!wire.empty() && wire.front().at <= now) {
                InFlight f = std::move(wire.front());
                wire.pop_front();
                Session& to = f.to_b ? b : a;
                if (to.on_datagram(f.data, now, kAddrA) == Session::Input::kCookieReply) {
                    wire.push_back({now + 10ms, false, *to.take_cookie_reply()});
                }
            }
            for (Session* s : {&a, &b}) {
                if (s->next_deadline() <= now) s->on_timer(now);
                while (auto d = s->poll_transmit(now)) {
                    wire.push_back({now + 10ms, s == &a, std::move(*d)});
                }
            }
        }
    }
};

}  // namespace

TEST_CASE("under a flood of mac1-valid initiations the legitimate handshake completes, DH bounded") {
    for (uint64_t seed = 1; seed <= 20; ++seed) {
        INFO("seed " << seed);
        Flood f(seed);
        f.a.start(Time{});
        constexpr auto kDuration = 3s;
        constexpr int kPerMs = 5;  // 5,000 initiations a second
        f.run(kDuration, kPerMs);
        CHECK(f.a.established());
        CHECK(f.b.established());
        const SessionStats sa = f.a.stats();
        const SessionStats sb = f.b.stats();
        // A was asked for a cookie (the flood had B under load before A's initiation came)
        // and got through with mac2.
        CHECK(sa.cookie_replies_received >= 1);
        CHECK(sb.handshakes_completed == 1);
        // The flood got DH work only within the budget: the burst, then kHandshakeLoadBurst
        // per kUnderLoadLinger (the bucket refills while cookies are sent, and the flag
        // lingers a second after it ran dry).
        const double seconds = std::chrono::duration<double>(kDuration).count();
        const double budget = kHandshakeLoadBurst * (1 + seconds / 1.0) + 2;  // + A's
        CHECK(static_cast<double>(sb.handshake_noise_reads) <= budget);
        CHECK(f.flood_sent == 3000u * kPerMs);
        CHECK(sb.cookie_replies_sent + sb.handshake_noise_reads >= f.flood_sent);
        // No amplification: B sent the flood fewer bytes than it received from it.
        CHECK(f.replies_to_flood < f.flood_bytes);
    }
}

TEST_CASE("not under load: no cookie, no extra round trip") {
    Flood f(5);
    f.a.start(Time{});
    f.run(200ms, 0);
    CHECK(f.a.established());
    CHECK(f.b.established());
    CHECK(f.b.stats().cookie_replies_sent == 0);
    CHECK(f.a.stats().cookie_replies_received == 0);
    CHECK(f.a.stats().handshakes_sent == 1);
}

TEST_CASE("a forged or misaddressed cookie reply changes nothing for the initiator") {
    Flood f(6);
    f.a.start(Time{});
    auto initiation = f.a.poll_transmit(Time{});
    REQUIRE(initiation);
    const SessionSnapshot before = f.a.snapshot();
    SeededRng rng(60);
    // Made by a responder with a different key (so, under the wrong cookie key).
    const Identity other = make_identity(rng);
    CookieResponder stranger(other.pub);
    const auto m = decode_initiation(*initiation);
    REQUIRE(m);
    CHECK(f.a.on_datagram(stranger.make_reply(m->sender_index, m->mac1, kAddrA, Time{}, rng),
                          Time{} + 1ms, kAddrA) == Session::Input::kDropped);
    // Made by B but for another initiation's mac1 or index.
    CookieResponder b_cookies(f.ib.pub);
    Mac1 wrong = m->mac1;
    wrong[3] ^= 1;
    CHECK(f.a.on_datagram(b_cookies.make_reply(m->sender_index, wrong, kAddrA, Time{}, rng),
                          Time{} + 1ms, kAddrA) == Session::Input::kDropped);
    CHECK(f.a.on_datagram(b_cookies.make_reply(m->sender_index + 1, m->mac1, kAddrA, Time{}, rng),
                          Time{} + 1ms, kAddrA) == Session::Input::kDropped);
    CHECK(f.a.stats().drop_bad_cookie_reply == 3);
    CHECK(f.a.snapshot() == before);
    // A responder never takes one.
    CHECK(f.b.on_datagram(b_cookies.make_reply(1, m->mac1, kAddrA, Time{}, rng), Time{} + 1ms,
                          kAddrA) == Session::Input::kDropped);
    CHECK(f.b.stats().drop_unexpected == 1);
    // The genuine one makes A retry at once, with mac2.
    CHECK(f.a.on_datagram(b_cookies.make_reply(m->sender_index, m->mac1, kAddrA, Time{}, rng),
                          Time{} + 1ms, kAddrA) == Session::Input::kHandshake);
    CHECK(f.a.next_deadline() <= Time{} + 1ms);
    f.a.on_timer(Time{} + 1ms);
    auto retry = f.a.poll_transmit(Time{} + 1ms);
    REQUIRE(retry);
    const auto r = decode_initiation(*retry);
    REQUIRE(r);
    CHECK(r->mac2 != Mac2{});
    CHECK(r->sender_index != m->sender_index);  // a new attempt
}
