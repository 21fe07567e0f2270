#include <catch2/catch.hpp>

#include <algorithm>

#include "signal/control.h"
#include "tunnel/rng.h"
#include "tunnel/wire.h"

using namespace burrow;

namespace {

constexpr int kSeeds = 200;

std::string random_text(Rng& rng, size_t cap) {
    std::string s(rng.uniform(cap + 1), ' ');
    // Printable ASCII plus bytes of UTF-8 sequences: everything the codec must carry.
    for (char& c : s)
        c = static_cast<char>(rng.chance(0.1) ? 0x80 + rng.uniform(0x80)
                                              : 0x20 + rng.uniform(0x7f - 0x20));
    return s;
}

SocketAddress random_address(Rng& rng) {
    SocketAddress a;
    a.v6 = rng.chance(0.5);
    rng.fill(std::span(a.ip).first(a.v6 ? kIpv6Size : kIpv4Size));
    a.port = static_cast<uint16_t>(rng.next_u64());
    return a;
}

// kind u8, delta u16, spread u16, block_first u16, block_size u32, last u16 (signal/control.h).
constexpr size_t kAllocationBytes = 13;

// One of measure_allocation's answers for random ports of each shape.
PortAllocation random_allocation(Rng& rng) {
    std::vector<uint16_t> ports;
    const uint16_t start = static_cast<uint16_t>(1024 + rng.uniform(60000));
    const uint64_t shape = rng.uniform(5);
    for (uint16_t i = 0; i < 4; ++i) {
        if (shape == 0) ports.push_back(start);
        if (shape == 1) ports.push_back(static_cast<uint16_t>(start + i * (1 + rng.uniform(3))));
        if (shape == 2) ports.push_back(static_cast<uint16_t>((start & ~511) + rng.uniform(512)));
        if (shape == 3) ports.push_back(static_cast<uint16_t>(1024 + rng.uniform(64000)));
    }
    return measure_allocation(ports);  // shape 4: no ports, unknown
}

std::vector<Candidate> random_candidates(Rng& rng) {
    std::vector<Candidate> cs(rng.uniform(kMaxCandidates + 1));
    for (Candidate& c : cs) {
        c.kind = static_cast<CandidateKind>(1 + rng.uniform(kMaxKnownCandidateKind));
        c.address = random_address(rng);
    }
    return cs;
}

template <size_t N>
std::array<uint8_t, N> random_array(Rng& rng) {
    std::array<uint8_t, N> a{};
    rng.fill(a);
    return a;
}

PunchReport random_report(Rng& rng) {
    PunchReport m;
    m.peer = random_text(rng, kMaxAgentNameLen);
    m.nat = static_cast<NatMapping>(rng.uniform(3));
    m.udp_to_server = rng.chance(0.5);
    m.candidates = random_candidates(rng);
    m.tried.resize(rng.uniform(kMaxCandidates + 1));
    for (SocketAddress& a : m.tried) a = random_address(rng);
    if (rng.chance(0.5)) m.answered = random_address(rng);
    m.strategy = static_cast<ReportStrategy>(1 + rng.uniform(3));
    m.source = static_cast<ReportSource>(rng.uniform(10));
    m.time_to_direct_ms = static_cast<uint32_t>(rng.next_u64());
    m.path = static_cast<ReportPath>(1 + rng.uniform(4));
    return m;
}

DoctorSide random_side(Rng& rng) {
    DoctorSide s;
    s.nat = static_cast<NatMapping>(rng.uniform(3));
    s.online = rng.chance(0.5);
    s.udp_heard = rng.chance(0.5);
    s.candidates = random_candidates(rng);
    if (rng.chance(0.7)) {
        s.report = random_report(rng);
        s.report_age_ms = static_cast<uint32_t>(rng.next_u64());
    }
    return s;
}

ControlMessage random_message(Rng& rng, size_t index) {
    switch (index) {
        case 0:
            return ServerHello{random_array<32>(rng), random_array<32>(rng)};
        case 1:
            return Auth{random_array<32>(rng), random_array<32>(rng),
                        random_text(rng, kMaxSoftwareLen)};
        case 2:
            return AuthOk{
                random_text(rng, kMaxAgentNameLen),
                random_array<16>(rng),
                {static_cast<uint16_t>(rng.next_u64()), static_cast<uint16_t>(rng.next_u64())},
                static_cast<uint16_t>(rng.next_u64())};
        case 3:
            return ControlErrorMessage{static_cast<uint16_t>(rng.next_u64()),
                                       random_text(rng, kMaxControlTextLen)};
        case 4:
            return Register{random_candidates(rng), static_cast<NatMapping>(rng.uniform(3)),
                            random_allocation(rng)};
        case 5:
            return ConnectRequest{random_text(rng, kMaxAgentNameLen),
                                  random_text(rng, kMaxServiceNameLen), rng.next_u64()};
        case 6: {
            PeerInfo p;
            p.session_id = rng.next_u64();
            p.peer = random_text(rng, kMaxAgentNameLen);
            p.peer_pub = random_array<32>(rng);
            p.candidates = random_candidates(rng);
            p.nat = static_cast<NatMapping>(rng.uniform(3));
            p.allocation = random_allocation(rng);
            p.relay_token = random_array<16>(rng);
            p.start_in_ms = static_cast<uint32_t>(rng.next_u64());
            p.role = rng.chance(0.5) ? SessionRole::kInitiator : SessionRole::kResponder;
            p.service = random_text(rng, kMaxServiceNameLen);
            p.opener = rng.chance(0.5);
            return p;
        }
        case 7:
            return ConnectRefused{random_text(rng, kMaxAgentNameLen),
                                  random_text(rng, kMaxServiceNameLen),
                                  random_text(rng, kMaxControlTextLen)};
        case 8: {
            RelayData d;
            d.session_id = rng.next_u64();
            d.payload.resize(rng.uniform(2000));
            rng.fill(d.payload);
            return d;
        }
        case 9:
            return Ping{rng.next_u64()};
        case 11:
            return RelayAttach{rng.next_u64(), random_text(rng, kMaxAgentNameLen),
                               random_array<16>(rng),
                               rng.chance(0.5) ? SessionRole::kInitiator : SessionRole::kResponder};
        case 12:
            return RelayDetached{rng.next_u64(), random_text(rng, kMaxControlTextLen)};
        case 13:
            return random_report(rng);
        case 14:
            return DoctorRequest{static_cast<uint32_t>(rng.next_u64()),
                                 random_text(rng, kMaxAgentNameLen)};
        case 15: {
            DoctorReply m;
            m.request_id = static_cast<uint32_t>(rng.next_u64());
            m.peer = random_text(rng, kMaxAgentNameLen);
            m.status = static_cast<DoctorStatus>(rng.uniform(3));
            m.rendezvous_age_ms = static_cast<uint32_t>(rng.next_u64());
            m.self = random_side(rng);
            m.peer_side = random_side(rng);
            return m;
        }
        default:
            return Pong{rng.next_u64()};
    }
}

// Feeds `bytes` to the decoder in random pieces, collecting every message.
std::vector<ControlMessage> feed_in_pieces(ControlDecoder& d, ByteView bytes, Rng& rng) {
    std::vector<ControlMessage> out;
    size_t pos = 0;
    while (pos < bytes.size()) {
        const size_t n = std::min(bytes.size() - pos, 1 + rng.uniform(64));
        d.feed(bytes.subspan(pos, n));
        pos += n;
        while (auto m = d.next()) out.push_back(std::move(*m));
    }
    return out;
}

Bytes frame_with(uint8_t version, uint8_t type, ByteView body) {
    Bytes out;
    ByteWriter w(out);
    w.u32(static_cast<uint32_t>(2 + body.size()));
    w.u8(version);
    w.u8(type);
    w.bytes(body);
    return out;
}

std::optional<ControlDecodeError> decode_error_of(ByteView frame_without_length) {
    auto r = decode_control_body(frame_without_length);
    if (auto* e = std::get_if<ControlDecodeError>(&r)) return *e;
    return std::nullopt;
}

std::optional<ControlDecodeError> body_error(uint8_t type, ByteView body) {
    Bytes f = frame_with(kControlVersion, type, body);
    return decode_error_of(ByteView(f).subspan(kControlLengthSize));
}

}  // namespace

TEST_CASE("every control message round-trips through a stream in random pieces") {
    for (int seed = 0; seed < kSeeds; ++seed) {
        INFO("seed " << seed);
        SeededRng rng(seed);
        std::vector<ControlMessage> sent;
        Bytes stream;
        for (size_t i = 0; i < std::variant_size_v<ControlMessage>; ++i) {
            sent.push_back(random_message(rng, i));
            Bytes f = encode_control(sent.back());
            stream.insert(stream.end(), f.begin(), f.end());
        }
        ControlDecoder d(kMaxControlFrame);
        std::vector<ControlMessage> got = feed_in_pieces(d, stream, rng);
        CHECK_FALSE(d.error());
        CHECK(d.buffered() == 0);
        REQUIRE(got.size() == sent.size());
        for (size_t i = 0; i < sent.size(); ++i) {
            INFO(message_name(sent[i]));
            CHECK(got[i] == sent[i]);
        }
    }
}

TEST_CASE("PeerInfo's opener flag is one byte, 0 or 1; anything else is malformed") {
    PeerInfo p;
    p.peer = "nas";
    p.service = "web";
    for (bool opener : {false, true}) {
        p.opener = opener;
        Bytes f = encode_control(p);
        CHECK(f.back() == (opener ? 1 : 0));
        auto ok = decode_control_body(ByteView(f).subspan(kControlLengthSize));
        REQUIRE(std::holds_alternative<ControlMessage>(ok));
        CHECK(std::get<PeerInfo>(std::get<ControlMessage>(ok)).opener == opener);
        f.back() = 2;
        CHECK(decode_error_of(ByteView(f).subspan(kControlLengthSize)) ==
              ControlDecodeError::kMalformed);
    }
}

TEST_CASE("frame layout: length counts version, type and body") {
    Bytes f = encode_control(Ping{0x0102030405060708});
    const Bytes expected = {0, 0, 0, 10, kControlVersion, 0x0a, 1, 2, 3, 4, 5, 6, 7, 8};
    CHECK(f == expected);
    CHECK(std::string(message_name(Ping{})) == "Ping");
    CHECK(std::string(message_name(ControlErrorMessage{})) == "Error");
}

TEST_CASE("every strict prefix of a frame is incomplete, never an error") {
    SeededRng rng(7);
    for (size_t i = 0; i < std::variant_size_v<ControlMessage>; ++i) {
        const Bytes f = encode_control(random_message(rng, i));
        for (size_t cut = 0; cut < f.size(); ++cut) {
            ControlDecoder d(kMaxControlFrame);
            d.feed(ByteView(f).first(cut));
            CHECK_FALSE(d.next());
            CHECK_FALSE(d.error());
            CHECK(d.buffered() == cut);
        }
    }
}

TEST_CASE("a body cut short (length adjusted) is malformed") {
    for (int seed = 0; seed < 50; ++seed) {
        INFO("seed " << seed);
        SeededRng rng(seed);
        for (size_t i = 0; i < std::variant_size_v<ControlMessage>; ++i) {
            const ControlMessage m = random_message(rng, i);
            const Bytes f = encode_control(m);
            const ByteView frame = ByteView(f).subspan(kControlLengthSize);
            // RelayData's payload is the rest of the frame: only its session id can be cut.
            const size_t end =
                std::holds_alternative<RelayData>(m) ? kControlHeaderSize + 8 : frame.size();
            for (size_t len = kControlHeaderSize; len < end; ++len) {
                INFO(message_name(m) << " cut to " << len);
                CHECK(decode_error_of(frame.first(len)) == ControlDecodeError::kMalformed);
            }
        }
    }
}

TEST_CASE("trailing bytes after a body are malformed") {
    SeededRng rng(3);
    for (size_t i = 0; i < std::variant_size_v<ControlMessage>; ++i) {
        const ControlMessage m = random_message(rng, i);
        if (std::holds_alternative<RelayData>(m)) continue;  // payload runs to the end
        Bytes frame = encode_control(m);
        frame.erase(frame.begin(), frame.begin() + kControlLengthSize);
        frame.push_back(0);
        INFO(message_name(m));
        CHECK(decode_error_of(frame) == ControlDecodeError::kMalformed);
    }
}

TEST_CASE("oversized frames are refused as soon as the length arrives") {
    SECTION("before authentication the cap is kMaxPreAuthFrame") {
        ControlDecoder d;                // pre-auth cap by default
        Bytes len = {0, 0, 0x02, 0x01};  // 513
        d.feed(len);
        CHECK_FALSE(d.next());
        CHECK(d.error() == ControlDecodeError::kOversized);
        // Stays failed: later input is ignored.
        d.feed(encode_control(Ping{1}));
        CHECK_FALSE(d.next());
        CHECK(d.buffered() == 0);
    }
    SECTION("exactly the cap is fine") {
        Auth a;
        a.software = std::string(kMaxSoftwareLen, 'x');
        Bytes f = encode_control(a);
        CHECK(f.size() - kControlLengthSize <= kMaxPreAuthFrame);
        ControlDecoder d;
        d.feed(f);
        CHECK(d.next() == ControlMessage(a));

        RelayData big;
        big.payload.resize(kMaxPreAuthFrame - 2 - 8);
        Bytes fb = encode_control(big);
        REQUIRE(fb.size() - kControlLengthSize == kMaxPreAuthFrame);
        ControlDecoder d2;
        d2.feed(fb);
        CHECK(d2.next().has_value());
        big.payload.push_back(0);
        ControlDecoder d3;
        d3.feed(encode_control(big));
        CHECK_FALSE(d3.next());
        CHECK(d3.error() == ControlDecodeError::kOversized);
    }
    SECTION("after authentication the cap is kMaxControlFrame") {
        RelayData big;
        big.payload.resize(kMaxControlFrame - 2 - 8);
        ControlDecoder d;
        d.set_max_frame(kMaxControlFrame);
        d.feed(encode_control(big));
        CHECK(d.next() == ControlMessage(big));
        Bytes len = {0, 1, 0, 1};  // 65537
        d.feed(len);
        CHECK_FALSE(d.next());
        CHECK(d.error() == ControlDecodeError::kOversized);
    }
    SECTION("a length below the header is refused") {
        for (uint8_t n : {0, 1}) {
            ControlDecoder d;
            Bytes len = {0, 0, 0, n};
            d.feed(len);
            CHECK_FALSE(d.next());
            CHECK(d.error() == ControlDecodeError::kOversized);
        }
    }
    SECTION("raising the cap between frames applies to the next frame") {
        RelayData big;
        big.payload.resize(1000);
        Bytes stream = encode_control(Ping{5});
        Bytes f = encode_control(big);
        stream.insert(stream.end(), f.begin(), f.end());
        ControlDecoder d;
        d.feed(stream);
        CHECK(d.next() == ControlMessage(Ping{5}));
        d.set_max_frame(kMaxControlFrame);
        CHECK(d.next() == ControlMessage(big));
    }
}

TEST_CASE("bad version and unknown types are refused") {
    const Bytes ping_body = {0, 0, 0, 0, 0, 0, 0, 1};
    for (int v = 0; v < 256; ++v) {
        ControlDecoder d;
        d.feed(frame_with(static_cast<uint8_t>(v), 0x0a, ping_body));
        auto m = d.next();
        if (v == kControlVersion) {
            CHECK(m == ControlMessage(Ping{1}));
        } else {
            CHECK_FALSE(m);
            CHECK(d.error() == ControlDecodeError::kBadVersion);
        }
    }
    for (int t : {0x00, 0x11, 0x20, 0x7f, 0xff}) {
        ControlDecoder d;
        d.feed(frame_with(kControlVersion, static_cast<uint8_t>(t), ping_body));
        CHECK_FALSE(d.next());
        CHECK(d.error() == ControlDecodeError::kUnknownType);
    }
}

// The bytes of one PunchReport, built by hand from the table in control.h, so a codec that
// drifted from its documented layout fails here even if it still round-trips.
TEST_CASE("PunchReport and DoctorRequest have the documented layout") {
    PunchReport m;
    m.peer = "nas";
    m.nat = NatMapping::kPerDestination;
    m.udp_to_server = true;
    m.candidates = {{CandidateKind::kHost, SocketAddress::ipv4({10, 0, 0, 2}, 0x1234)}};
    m.tried = {SocketAddress::ipv4({198, 51, 100, 7}, 40002)};
    m.answered = SocketAddress::ipv4({198, 51, 100, 7}, 40002);
    m.strategy = ReportStrategy::kBirthday;
    m.source = ReportSource::kBirthday;
    m.time_to_direct_ms = 400;
    m.path = ReportPath::kDirect;
    const Bytes expected = {
        0, 0, 0, 40, kControlVersion, 0x0e,  // length, version, type
        3, 'n', 'a', 's',                    // peer
        2, 1,                                // nat per-destination, udp_to_server
        1, 1, 4, 10, 0, 0, 2, 0x12, 0x34,    // one host candidate
        1, 4, 198, 51, 100, 7, 0x9c, 0x42,   // tried
        1, 4, 198, 51, 100, 7, 0x9c, 0x42,   // answered
        3, 4,                                // strategy birthday, source birthday
        0, 0, 1, 0x90,                       // 400 ms
        1};                                  // path direct
    CHECK(encode_control(m) == expected);
    CHECK(encode_control(DoctorRequest{7, "nas"}) ==
          Bytes{0, 0, 0, 10, kControlVersion, 0x0f, 0, 0, 0, 7, 3, 'n', 'a', 's'});
}

// Control version 6 (issue 15): a direct TCP path and the TCP candidates it led to.
TEST_CASE("PunchReport carries a direct TCP path and its TCP source, byte for byte") {
    PunchReport m;
    m.peer = "nas";
    m.answered = SocketAddress::ipv4({198, 51, 100, 7}, 7001);
    m.strategy = ReportStrategy::kPlain;
    m.source = ReportSource::kTcpServerReflexive;
    m.time_to_direct_ms = 300;
    m.path = ReportPath::kDirectTcp;
    const Bytes expected = {
        0, 0, 0, 25, 6, 0x0e,               // length, version 6, type
        3, 'n', 'a', 's',                   // peer
        0, 0,                               // nat unknown, no udp_to_server
        0, 0,                               // no candidates, none tried
        1, 4, 198, 51, 100, 7, 0x1b, 0x59,  // answered: the tcp-srflx
        1, 8,                               // strategy plain, source tcp-srflx
        0, 0, 1, 0x2c,                      // 300 ms
        4};                                 // path direct-tcp
    CHECK(encode_control(m) == expected);
    for (ReportSource source : {ReportSource::kTcpHost, ReportSource::kTcpServerReflexive,
                                ReportSource::kTcpPeerReflexive}) {
        m.source = source;
        const Bytes f = encode_control(m);
        const auto r = decode_control_body(ByteView(f).subspan(kControlLengthSize));
        REQUIRE(std::holds_alternative<ControlMessage>(r));
        CHECK(std::get<ControlMessage>(r) == ControlMessage(m));
    }
    // A version 5 peer's frame is refused as a whole: it would not know these bytes.
    Bytes old = expected;
    old[4] = 5;
    CHECK(decode_error_of(ByteView(old).subspan(kControlLengthSize)) ==
          ControlDecodeError::kBadVersion);
}

TEST_CASE("PunchReport and DoctorReply refuse out-of-range enums and flags") {
    PunchReport r;
    r.peer = "a";
    const Bytes good = encode_control(r);
    const ByteView body(good.data() + kControlLengthSize, good.size() - kControlLengthSize);
    REQUIRE_FALSE(decode_error_of(body));
    // Offsets in the body: version, type, peer (2), nat, udp flag, candidates count, tried
    // count, answered flag, strategy, source, time (4), path.
    const std::vector<std::pair<size_t, uint8_t>> bad = {
        {4, 3}, {5, 2}, {8, 2}, {9, 0}, {9, 6}, {10, 10}, {15, 0}, {15, 5}};
    for (auto [offset, value] : bad) {
        Bytes b(body.begin(), body.end());
        REQUIRE(offset < b.size());
        b[offset] = value;
        CAPTURE(offset, value);
        CHECK(decode_error_of(b) == ControlDecodeError::kMalformed);
    }
    DoctorReply d;
    const Bytes reply = encode_control(d);
    Bytes rb(reply.begin() + kControlLengthSize, reply.end());
    rb[2 + 4 + 1] = 3;  // status beyond kNoRendezvous
    CHECK(decode_error_of(rb) == ControlDecodeError::kMalformed);
    // This agent's side: after status, age (4) and nat come the online and udp_heard flags.
    for (size_t flag : {2 + 4 + 1 + 1 + 4 + 1, 2 + 4 + 1 + 1 + 4 + 2}) {
        Bytes fb(reply.begin() + kControlLengthSize, reply.end());
        REQUIRE(fb[flag] == 0);
        fb[flag] = 2;
        CAPTURE(flag);
        CHECK(decode_error_of(fb) == ControlDecodeError::kMalformed);
    }
}

TEST_CASE("IPv6 candidates: family 6, sixteen address bytes, exact round trip (issue 17)") {
    const SocketAddress global = *parse_socket_address("[2001:db8:1234::77]:41000");
    const SocketAddress ula = *parse_socket_address("[fd00:ab::1]:7000");
    const SocketAddress v4 = *parse_socket_address("203.0.113.5:50001");
    // An IPv4-mapped IPv6 address stays IPv6 on the wire: the codec never reinterprets it.
    const SocketAddress mapped = *parse_socket_address("[::ffff:192.0.2.1]:9");
    const std::vector<Candidate> cs = {{CandidateKind::kHost, global},
                                       {CandidateKind::kHost, ula},
                                       {CandidateKind::kServerReflexive, v4},
                                       {CandidateKind::kPredicted, mapped}};

    SECTION("Register: the bytes of one IPv6 candidate") {
        const Bytes f = encode_control(Register{{{CandidateKind::kHost, global}}, {}});
        const ByteView body = ByteView(f).subspan(kControlLengthSize + kControlHeaderSize);
        const Bytes expected = {1,    1,    6,    0x20, 0x01, 0x0d, 0xb8, 0x12, 0x34, 0,
                                0,    0,    0,    0,    0,    0,    0,    0,    0x77, 0xa0,
                                0x28, 0,     // count, kind, family, 16 bytes, port 41000, nat
                                0,    0,    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};  // allocation
        CHECK(Bytes(body.begin(), body.end()) == expected);
    }
    SECTION("Register and PeerInfo carry mixed families unchanged") {
        PeerInfo p;
        p.session_id = 9;
        p.peer = "nas";
        p.candidates = cs;
        p.service = "web";
        for (const ControlMessage& m : {ControlMessage(Register{cs, NatMapping::kPerDestination}),
                                        ControlMessage(p)}) {
            ControlDecoder d(kMaxControlFrame);
            d.feed(encode_control(m));
            auto got = d.next();
            REQUIRE(got);
            CHECK(*got == m);
            const auto& decoded = std::holds_alternative<Register>(*got)
                                      ? std::get<Register>(*got).candidates
                                      : std::get<PeerInfo>(*got).candidates;
            REQUIRE(decoded.size() == cs.size());
            CHECK(to_string(decoded[0].address) == "[2001:db8:1234::77]:41000");
            CHECK(to_string(decoded[1].address) == "[fd00:ab::1]:7000");
            CHECK_FALSE(decoded[2].address.v6);
            CHECK(to_string(decoded[3].address) == "[::ffff:192.0.2.1]:9");
        }
    }
    SECTION("an IPv6 address cut short is malformed, never read as IPv4") {
        // family 6 followed by only 4 address bytes and a port: 10 bytes short.
        const Bytes body = {1, 1, 6, 1, 2, 3, 4, 0, 80, 0};
        CHECK(body_error(0x05, body) == ControlDecodeError::kMalformed);
        // family 4 with 16 bytes leaves trailing bytes.
        Bytes v4_long = {1, 1, 4};
        v4_long.insert(v4_long.end(), 16, 0x11);
        v4_long.insert(v4_long.end(), {0, 80, 0});
        CHECK(body_error(0x05, v4_long) == ControlDecodeError::kMalformed);
    }
}

TEST_CASE("field checks: enums, caps, control characters, address families") {
    SECTION("control characters in text") {
        for (char bad : {'\n', '\r', '\0', '\x1b', '\x7f'}) {
            Bytes body;
            ByteWriter w(body);
            w.varint(3);
            w.u8('a');
            w.u8(static_cast<uint8_t>(bad));
            w.u8('b');
            w.varint(1);
            w.u8('s');
            CHECK(body_error(0x06, body) == ControlDecodeError::kMalformed);
        }
    }
    SECTION("text over its cap") {
        ConnectRequest ok{std::string(kMaxAgentNameLen, 'n'), "web"};
        Bytes f = encode_control(ok);
        CHECK(decode_error_of(ByteView(f).subspan(kControlLengthSize)) == std::nullopt);
        Bytes body;
        ByteWriter w(body);
        w.varint(kMaxAgentNameLen + 1);
        w.bytes(Bytes(kMaxAgentNameLen + 1, 'n'));
        w.varint(3);
        w.bytes(as_bytes("web"));
        CHECK(body_error(0x06, body) == ControlDecodeError::kMalformed);
    }
    SECTION("enum values out of range") {
        for (int nat = 0; nat < 256; ++nat) {
            Bytes body = {0, static_cast<uint8_t>(nat)};  // no candidates, NAT byte
            body.resize(body.size() + kAllocationBytes, 0);
            auto e = body_error(0x05, body);
            if (nat <= 2) {
                CHECK_FALSE(e);
            } else {
                CHECK(e == ControlDecodeError::kMalformed);
            }
        }
        for (int kind = 0; kind < 256; ++kind) {
            Bytes body = {1, static_cast<uint8_t>(kind), 4, 1, 2, 3, 4, 0, 80, 0};
            body.resize(body.size() + kAllocationBytes, 0);
            auto e = body_error(0x05, body);
            if (kind == 0) {
                CHECK(e == ControlDecodeError::kMalformed);
            } else {
                // Kinds from a newer peer are skipped (see the next test), not a reason to close.
                CHECK_FALSE(e);
            }
        }
        for (int family = 0; family < 256; ++family) {
            if (family == 4 || family == 6) continue;
            Bytes body = {1, 1, static_cast<uint8_t>(family), 1, 2, 3, 4, 0, 80, 0};
            body.resize(body.size() + kAllocationBytes, 0);
            CHECK(body_error(0x05, body) == ControlDecodeError::kMalformed);
        }
    }
    SECTION("a malformed address under an unknown kind is still malformed") {
        const Bytes body = {1, 200, 5, 1, 2, 3, 4, 0, 80, 0};
        CHECK(body_error(0x05, body) == ControlDecodeError::kMalformed);
    }
    SECTION("too many candidates") {
        Bytes body;
        ByteWriter w(body);
        w.varint(kMaxCandidates + 1);
        for (size_t i = 0; i <= kMaxCandidates; ++i) {
            w.u8(1);
            w.u8(4);
            w.u32(0x01020304);
            w.u16(80);
        }
        w.u8(0);
        CHECK(body_error(0x05, body) == ControlDecodeError::kMalformed);
    }
}

TEST_CASE("a mapped candidate round-trips; a kind from a newer peer is skipped, not fatal") {
    Register r;
    r.candidates.push_back(
        Candidate{CandidateKind::kHost, SocketAddress::ipv4({10, 0, 0, 2}, 7001)});
    r.candidates.push_back(
        Candidate{CandidateKind::kMapped, SocketAddress::ipv4({203, 0, 113, 5}, 40001)});
    r.nat = NatMapping::kPerDestination;
    ControlDecoder d(kMaxControlFrame);
    d.feed(encode_control(r));
    auto m = d.next();
    REQUIRE(m);
    CHECK(*m == ControlMessage(r));
    CHECK(std::get<Register>(*m).candidates[1].kind == CandidateKind::kMapped);

    // The TCP kinds (issue 15) round-trip too.
    Register t;
    t.candidates = {{CandidateKind::kTcpHost, SocketAddress::ipv4({10, 0, 0, 2}, 7001)},
                    {CandidateKind::kTcpServerReflexive, SocketAddress::ipv4({203, 0, 113, 5}, 7)}};
    d.feed(encode_control(t));
    auto tm = d.next();
    REQUIRE(tm);
    CHECK(*tm == ControlMessage(t));
    CHECK(is_tcp(std::get<Register>(*tm).candidates[1].kind));
    CHECK_FALSE(is_tcp(CandidateKind::kMapped));

    // Kind 9 between two known ones: the known ones arrive, in order, and the frame is fine.
    Bytes body;
    ByteWriter w(body);
    w.varint(3);
    for (uint8_t kind : {uint8_t{1}, uint8_t{9}, uint8_t{4}}) {
        w.u8(kind);
        w.u8(4);
        w.u32(0xcb007105);
        w.u16(static_cast<uint16_t>(1000 + kind));
    }
    w.u8(static_cast<uint8_t>(NatMapping::kPerDestination));
    body.resize(body.size() + kAllocationBytes, 0);  // allocation unknown
    const Bytes f = frame_with(kControlVersion, 0x05, body);
    auto decoded = decode_control_body(ByteView(f).subspan(kControlLengthSize));
    REQUIRE(std::holds_alternative<ControlMessage>(decoded));
    const auto& got = std::get<Register>(std::get<ControlMessage>(decoded));
    REQUIRE(got.candidates.size() == 2);
    CHECK(got.candidates[0].kind == CandidateKind::kHost);
    CHECK(got.candidates[1].kind == CandidateKind::kMapped);
    CHECK(got.candidates[1].address.port == 1004);
}

TEST_CASE("garbage never crashes; what decodes re-encodes to the same message") {
    for (int seed = 0; seed < 2000; ++seed) {
        INFO("seed " << seed);
        SeededRng rng(seed);
        Bytes garbage(rng.uniform(600));
        rng.fill(garbage);
        // Half the time, a plausible header so the body parsers see the garbage.
        if (garbage.size() >= 6 && rng.chance(0.5)) {
            const uint32_t len = static_cast<uint32_t>(garbage.size() - 4);
            garbage[0] = 0;
            garbage[1] = 0;
            garbage[2] = static_cast<uint8_t>(len >> 8);
            garbage[3] = static_cast<uint8_t>(len);
            garbage[4] = kControlVersion;
            garbage[5] = static_cast<uint8_t>(1 + rng.uniform(std::variant_size_v<ControlMessage>));
        }
        ControlDecoder d(kMaxControlFrame);
        std::vector<ControlMessage> got = feed_in_pieces(d, garbage, rng);
        for (const ControlMessage& m : got) {
            ControlDecoder again(kMaxControlFrame);
            again.feed(encode_control(m));
            CHECK(again.next() == m);
        }
    }
}

TEST_CASE("Register and PeerInfo carry the NAT's port allocation, byte for byte (issue 16)") {
    Register r;
    r.nat = NatMapping::kPerDestination;
    r.allocation = measure_allocation(std::vector<uint16_t>{40000, 40002, 40004});
    const Bytes f = encode_control(r);
    const ByteView body = ByteView(f).subspan(kControlLengthSize + kControlHeaderSize);
    // no candidates, nat, kind 2 (sequential), delta 2, spread 2, block 0/0, last 40004
    const Bytes expected = {0, 2, 2, 0, 2, 0, 2, 0, 0, 0, 0, 0, 0, 0x9c, 0x44};
    CHECK(Bytes(body.begin(), body.end()) == expected);
    const auto decoded = decode_control_body(ByteView(f).subspan(kControlLengthSize));
    REQUIRE(std::holds_alternative<ControlMessage>(decoded));
    CHECK(std::get<Register>(std::get<ControlMessage>(decoded)) == r);

    PeerInfo p;
    p.peer = "nas";
    p.allocation = measure_allocation(std::vector<uint16_t>{2000, 2300, 2100, 2050});
    REQUIRE(p.allocation.kind == PortAllocationKind::kBlock);
    const Bytes pf = encode_control(p);
    const auto pd = decode_control_body(ByteView(pf).subspan(kControlLengthSize));
    REQUIRE(std::holds_alternative<ControlMessage>(pd));
    CHECK(std::get<PeerInfo>(std::get<ControlMessage>(pd)).allocation == p.allocation);
}

TEST_CASE("an allocation that measure_allocation never gives is malformed") {
    const auto with = [](std::vector<uint8_t> allocation) {
        Bytes body = {0, 2};
        body.insert(body.end(), allocation.begin(), allocation.end());
        return body_error(0x05, body);
    };
    CHECK_FALSE(with({2, 0, 1, 0, 3, 0, 0, 0, 0, 0, 0, 0x9c, 0x44}));   // sequential 1-3
    CHECK_FALSE(with({3, 0, 0, 0, 0, 0x08, 0, 0, 0, 2, 0, 0x08, 1}));   // block 2048 of 512
    CHECK(with({5, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1}) ==
          ControlDecodeError::kMalformed);                              // kind beyond random
    CHECK(with({2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}) ==
          ControlDecodeError::kMalformed);                              // sequential delta 0
    CHECK(with({2, 0, 3, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1}) ==
          ControlDecodeError::kMalformed);                              // spread below delta
    CHECK(with({3, 0, 0, 0, 0, 0x08, 0, 0, 0, 3, 0, 0x08, 1}) ==
          ControlDecodeError::kMalformed);                              // block of 768
    CHECK(with({3, 0, 0, 0, 0, 0x08, 0, 0, 0, 0, 0, 0x08, 1}) ==
          ControlDecodeError::kMalformed);                              // block of 0
    CHECK(with({3, 0, 0, 0, 0, 0x08, 0, 0, 2, 0, 0, 0x08, 1}) ==
          ControlDecodeError::kMalformed);                              // block of 131072
    CHECK(with({2, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0}) ==
          ControlDecodeError::kMalformed);                              // one byte short
}
