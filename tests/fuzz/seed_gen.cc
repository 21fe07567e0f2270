// Writes the seed corpora of tests/fuzz/corpus/: valid inputs built with the codecs' own
// encoders and the fixtures the targets use (tests/fuzz/fuzz_fixtures.h), so fuzzing starts
// from messages that get past every check, not from random bytes.
//
//   build/burrow-fuzz-seeds CORPUS_ROOT EXAMPLES_DIR
//
// Each target gets its seeds as CORPUS_ROOT/<target>/seed-NN; existing seeds are overwritten,
// other files (crash reproducers, merged inputs) are left alone.
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>

#include "signal/cluster_message.h"
#include "signal/control.h"
#include "signal/pcp.h"
#include "signal/stun.h"
#include "signal/stun_tcp.h"
#include "tests/fuzz/fuzz_fixtures.h"
#include "tests/fuzz/fuzz_pair.h"
#include "tunnel/frame.h"
#include "tunnel/packet.h"
#include "tunnel/path_probe.h"
#include "tunnel/stream_framer.h"

using namespace burrow;
using namespace burrow::fuzz;
namespace fs = std::filesystem;

namespace {

fs::path g_root;

void write_seeds(const std::string& target, const std::vector<Bytes>& seeds) {
    const fs::path dir = g_root / target;
    fs::create_directories(dir);
    for (size_t i = 0; i < seeds.size(); ++i) {
        char name[32];
        std::snprintf(name, sizeof(name), "seed-%02zu", i);
        std::ofstream out(dir / name, std::ios::binary);
        out.write(reinterpret_cast<const char*>(seeds[i].data()),
                  static_cast<std::streamsize>(seeds[i].size()));
    }
    std::printf("%-12s %zu seeds\n", target.c_str(), seeds.size());
}

Bytes with_prefix(std::initializer_list<uint8_t> prefix, ByteView rest) {
    Bytes out(prefix);
    out.insert(out.end(), rest.begin(), rest.end());
    return out;
}

void put16(Bytes& out, uint16_t v) {
    out.push_back(static_cast<uint8_t>(v >> 8));
    out.push_back(static_cast<uint8_t>(v));
}
void put32(Bytes& out, uint32_t v) {
    put16(out, static_cast<uint16_t>(v >> 16));
    put16(out, static_cast<uint16_t>(v));
}

const Bytes kPayload = {'h', 'e', 'l', 'l', 'o', ',', ' ', 'b', 'u', 'r', 'r', 'o', 'w'};

std::vector<std::vector<Frame>> frame_sets() {
    std::vector<std::vector<Frame>> sets = {
        {PingFrame{}},
        {PaddingFrame{5}},
        {AckFrame{{{10, 20}}, 250}},
        {AckFrame{{{90, 100}, {50, 60}, {0, 3}}, 0}},
        {StreamFrame{0, 0, kPayload, false}},
        {StreamFrame{4, 1'000'000, kPayload, true}},
        {StreamFrame{1, 0, {}, true}},
        {StreamOpenFrame{0, "web"}},
        {ResetStreamFrame{2, ResetReason::kRefused, 77}},
        {MaxDataFrame{1 << 20}},
        {MaxStreamDataFrame{0, 65536}},
        {MaxStreamsFrame{100}},
        {PathChallengeFrame{{1, 2, 3, 4, 5, 6, 7, 8}}},
        {PathResponseFrame{{8, 7, 6, 5, 4, 3, 2, 1}}},
        {CloseFrame{2, "protocol violation"}},
        {StreamOpenFrame{0, "web"}, StreamFrame{0, 0, kPayload, false}, PingFrame{}},
        {AckFrame{{{5, 5}}, 10}, MaxDataFrame{100000}, PaddingFrame{20}},
        {ResetStreamFrame{0, ResetReason::kAborted, 0}, CloseFrame{0, ""}},
        {FlowOpenFrame{0, "dns"}},
        {DatagramFrame{0, kPayload}},
        {DatagramFrame{(uint64_t{1} << 40) + 1, {}}},
        {FlowCloseFrame{2}},
        {FlowOpenFrame{0, "dns"}, DatagramFrame{0, kPayload}, PingFrame{}},
        {AckFrame{{{7, 9}}, 5}, DatagramFrame{1, kPayload}, DatagramFrame{1, kPayload},
         FlowCloseFrame{1}},
    };
    return sets;
}

Bytes encode_frames(const std::vector<Frame>& frames) {
    Bytes out;
    for (const Frame& f : frames) encode_frame(f, out);
    return out;
}

void frame_seeds() {
    std::vector<Bytes> seeds;
    uint64_t pn = 0;
    for (const auto& set : frame_sets()) {
        const Bytes plain = encode_frames(set);
        seeds.push_back(with_prefix({0}, plain));
        Bytes packet;
        NullProtection(0x01020304).seal(pn++ * 1000, plain, packet);
        seeds.push_back(with_prefix({1}, packet));
    }
    write_seeds("frame", seeds);
}

void stun_seeds() {
    std::vector<Bytes> seeds;
    const StunTransactionId txid = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    const SocketAddress v4 = SocketAddress::ipv4({203, 0, 113, 5}, 50001);
    const SocketAddress v6 = *parse_socket_address("[2001:db8::7]:41000");
    seeds.push_back(encode_binding_request(txid, false));
    seeds.push_back(encode_binding_request(txid, true));
    seeds.push_back(encode_binding_success(txid, v4, "burrow"));
    seeds.push_back(encode_binding_success(txid, v6, ""));
    seeds.push_back(encode_binding_error(txid, 400, "Bad Request"));
    const uint16_t unknown[] = {0x0024, 0x0025};
    seeds.push_back(encode_binding_error(txid, 420, "Unknown Attribute", unknown));
    StunMessage m;
    m.type = kStunBindingRequest;
    m.transaction_id = txid;
    m.software = std::string(48, 'p');
    seeds.push_back(encode_stun(m));
    m.fingerprint = true;
    seeds.push_back(encode_stun(m));
    StunMessage ind;
    ind.type = kStunBindingIndication;
    ind.transaction_id = txid;
    seeds.push_back(encode_stun(ind));
    // A request with a comprehension-required attribute this codec does not know (PRIORITY).
    Bytes unknown_attr = encode_binding_request(txid, false);
    const Bytes attr = {0x00, 0x24, 0x00, 0x04, 0x6e, 0x00, 0x01, 0xff};
    unknown_attr.insert(unknown_attr.end(), attr.begin(), attr.end());
    unknown_attr[3] = static_cast<uint8_t>(unknown_attr.size() - kStunHeaderSize);
    seeds.push_back(unknown_attr);
    // MAPPED-ADDRESS, as old servers send it.
    Bytes mapped = {0x01, 0x01, 0x00, 0x0c, 0x21, 0x12, 0xa4, 0x42};
    mapped.insert(mapped.end(), txid.begin(), txid.end());
    const Bytes mapped_attr = {0x00, 0x01, 0x00, 0x08, 0x00, 0x01, 0x12, 0x34, 10, 1, 2, 3};
    mapped.insert(mapped.end(), mapped_attr.begin(), mapped_attr.end());
    seeds.push_back(mapped);
    write_seeds("stun", seeds);
}

// pcp_fuzz's input: the request's nonce and internal port, then the gateway's datagram.
void pcp_seeds() {
    PcpMapRequest sent;
    for (size_t i = 0; i < sent.nonce.size(); ++i) sent.nonce[i] = static_cast<uint8_t>(i + 1);
    sent.client = SocketAddress::ipv4({10, 0, 1, 2}, 0);
    sent.internal_port = 41641;
    auto seed = [&](const Bytes& datagram) {
        Bytes s(sent.nonce.begin(), sent.nonce.end());
        s.push_back(static_cast<uint8_t>(sent.internal_port >> 8));
        s.push_back(static_cast<uint8_t>(sent.internal_port));
        s.insert(s.end(), datagram.begin(), datagram.end());
        return s;
    };
    std::vector<Bytes> seeds;
    PcpMapResponse ok;
    ok.lifetime_s = 7200;
    ok.epoch_s = 5;
    ok.external = SocketAddress::ipv4({100, 128, 0, 11}, 44001);
    seeds.push_back(seed(encode_pcp_map_response(ok, sent)));
    PcpMapResponse v6 = ok;
    v6.external = *parse_socket_address("[2001:db8::7]:41000");
    seeds.push_back(seed(encode_pcp_map_response(v6, sent)));
    PcpMapResponse refused;
    refused.result = 8;
    seeds.push_back(seed(encode_pcp_map_response(refused, sent)));
    seeds.push_back(seed({0x00, 0x81, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00}));  // NAT-PMP only
    seeds.push_back(seed(encode_pcp_announce(sent.client)));
    write_seeds("pcp", seeds);
}

std::vector<ControlMessage> control_messages() {
    const SocketAddress v4 = SocketAddress::ipv4({192, 168, 1, 20}, 40000);
    const SocketAddress v6 = *parse_socket_address("[2001:db8::7]:41000");
    PublicKey key{};
    key.fill(0x42);
    return {
        ServerHello{key, {}},
        Auth{key, {}, "burrow 0.1.0"},
        AuthOk{"nas", {}, {3478, 3479}, 3478},
        ControlErrorMessage{3, "authentication failed"},
        Register{{{CandidateKind::kHost, v4}, {CandidateKind::kServerReflexive, v6}},
                 NatMapping::kEndpointIndependent,
                 PortAllocation{PortAllocationKind::kSame, 0, 0, 0, 0, 41000}},
        // Issue 16: a sequential per-destination NAT (delta 2, one step of 3) and a block one.
        Register{{{CandidateKind::kServerReflexive, v4}}, NatMapping::kPerDestination,
                 PortAllocation{PortAllocationKind::kSequential, 2, 3, 0, 0, 40007}},
        ConnectRequest{"nas", "web"},
        PeerInfo{42, "laptop", key, {{CandidateKind::kPredicted, v4}},
                 NatMapping::kPerDestination,
                 PortAllocation{PortAllocationKind::kBlock, 0, 0, 2048, 512, 2300}, {}, 500,
                 SessionRole::kResponder, "web"},
        ConnectRefused{"nas", "ssh", "not allowed"},
        RelayData{42, kPayload},
        Ping{7},
        Pong{7},
        PunchReport{"nas", NatMapping::kPerDestination, true,
                    {{CandidateKind::kHost, v4}}, {v4, v6}, v6, ReportStrategy::kBirthday,
                    ReportSource::kBirthday, 6300, ReportPath::kDirect},
        DoctorRequest{3, "nas"},
        DoctorReply{3, "nas", DoctorStatus::kOk, 12000,
                    DoctorSide{NatMapping::kEndpointIndependent, true, true,
                               {{CandidateKind::kHost, v4}}, std::nullopt, 0},
                    DoctorSide{NatMapping::kPerDestination, true, false, {},
                               PunchReport{"laptop", NatMapping::kPerDestination, false, {}, {v4},
                                           std::nullopt, ReportStrategy::kPlain,
                                           ReportSource::kNone, 0, ReportPath::kRelayTcp},
                               900}},
        DoctorReply{4, "phone", DoctorStatus::kNotAllowed, 0, {}, {}},
        // Issue 17: a dual-stack peer (global and ULA IPv6 host candidates beside IPv4).
        PeerInfo{43, "nas", key,
                 {{CandidateKind::kHost, v6},
                  {CandidateKind::kHost, *parse_socket_address("[fd00:ab::1]:41000")},
                  {CandidateKind::kServerReflexive, v4}},
                 NatMapping::kEndpointIndependent, {}, {}, 500, SessionRole::kInitiator, "web"},
        // Issue 15: TCP host and tcp-srflx candidates beside the UDP ones.
        PeerInfo{44, "nas", key,
                 {{CandidateKind::kHost, v4},
                  {CandidateKind::kTcpHost, v4},
                  {CandidateKind::kTcpServerReflexive, *parse_socket_address("203.0.113.9:40123")}},
                 NatMapping::kEndpointIndependent, {}, {}, 500, SessionRole::kResponder, "web"},
        // Control version 6: a report of a direct TCP path to the peer's tcp-srflx.
        PunchReport{"nas", NatMapping::kUnknown, false, {{CandidateKind::kTcpHost, v4}}, {v4},
                    *parse_socket_address("203.0.113.9:40123"), ReportStrategy::kPlain,
                    ReportSource::kTcpServerReflexive, 300, ReportPath::kDirectTcp},
    };
}

void control_seeds() {
    std::vector<Bytes> seeds;
    const auto messages = control_messages();
    for (size_t i = 0; i < messages.size(); ++i) {
        // Alternate the frame cap and the piece-size seed.
        seeds.push_back(with_prefix({static_cast<uint8_t>((i << 1) | (i & 1))},
                                    encode_control(messages[i])));
    }
    Bytes all = {0x01};
    for (const auto& m : messages) {
        const Bytes e = encode_control(m);
        all.insert(all.end(), e.begin(), e.end());
    }
    seeds.push_back(all);
    write_seeds("control", seeds);
}

void handshake_seeds() {
    std::vector<Bytes> seeds;
    const Identities& ids = identities();
    const Time now = time_from_us(1'000'000);
    // The target's InitiatorHandshake (rng 1) and HandshakeResponder (rng 2).
    SeededRng irng(1);
    InitiatorHandshake initiator = make_initiator(irng);
    SeededRng rrng(2);
    HandshakeResponder responder(ids.responder, ids.initiator_pub, rrng);
    auto accepted = responder.consume_initiation(initiator.initiation(), now,
                                                 [] { return kResponderIndex; });
    const Bytes response = std::get<HandshakeResponder::Accepted>(accepted).response;
    for (uint8_t fix : {0, 4}) {
        seeds.push_back(with_prefix({static_cast<uint8_t>(0 | fix)}, initiator.initiation()));
        seeds.push_back(with_prefix({static_cast<uint8_t>(1 | fix)}, response));
    }
    // Sessions: an initiator Session (rng 3, as the target builds it) and any responder.
    const SessionConfig config = session_config(0);
    SeededRng srng(3), brng(9);
    Session si(Role::kInitiator, ids.initiator, ids.responder_pub, config, srng, Time{},
               kWallClock);
    Session sr(Role::kResponder, ids.responder, ids.initiator_pub, config, brng, Time{},
               kWallClock);
    si.start(Time{});
    const Bytes session_initiation = *si.poll_transmit(Time{});
    sr.on_datagram(session_initiation, now);
    const Bytes session_response = *sr.poll_transmit(now);
    seeds.push_back(with_prefix({2}, session_initiation));
    seeds.push_back(with_prefix({6}, session_initiation));
    seeds.push_back(with_prefix({3}, session_response));
    seeds.push_back(with_prefix({7}, session_response));
    // Right sizes and types, wrong contents.
    seeds.push_back(with_prefix({4}, Bytes(kInitiationSize, 0x01)));
    seeds.push_back(with_prefix({5}, Bytes(kResponseSize, 0x02)));
    // Under a flood (mode bit 3): the initiation to a loaded responder, and the cookie reply
    // such a responder (LoadedResponder, as the target builds it) sends the initiator Session.
    seeds.push_back(with_prefix({10}, session_initiation));
    seeds.push_back(with_prefix({14}, session_initiation));
    LoadedResponder flood(now);
    flood.session.on_datagram(session_initiation, now, kFuzzSource);
    const Bytes cookie_reply = *flood.session.take_cookie_reply();
    seeds.push_back(with_prefix({11}, cookie_reply));
    seeds.push_back(with_prefix({3}, cookie_reply));
    seeds.push_back(with_prefix({11}, Bytes(kCookieReplySize, 0x03)));
    write_seeds("handshake", seeds);
}

void probe_seeds() {
    std::vector<Bytes> seeds;
    EstablishedPair pair;
    for (ProbeKind kind : {ProbeKind::kChallenge, ProbeKind::kResponse}) {
        Probe p{kind, {1, 2, 3, 4, 5, 6, 7, 8}};
        seeds.push_back(with_prefix({0}, *pair.a.seal_probe(p, pair.now)));
        seeds.push_back(with_prefix({0}, *pair.b.seal_probe(p, pair.now)));
        Bytes structured = {1, static_cast<uint8_t>(kind == ProbeKind::kResponse)};
        structured.insert(structured.end(), p.data.begin(), p.data.end());
        structured.push_back(0);  // no corruption
        seeds.push_back(structured);
        structured.back() = 1;  // one corruption: position 20, mask 0x80
        structured.push_back(20);
        structured.push_back(0x80);
        seeds.push_back(structured);
    }
    write_seeds("probe", seeds);
}

std::string read_text(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

void config_seeds(const fs::path& examples) {
    std::vector<Bytes> seeds;
    auto add = [&](uint8_t selector, const std::string& text) {
        seeds.push_back(with_prefix({selector}, as_bytes(text)));
    };
    const std::string nas = read_text(examples / "nas.toml");
    const std::string laptop = read_text(examples / "laptop.toml");
    const std::string server = read_text(examples / "server.toml");
    add(0, nas);
    add(0, laptop);
    add(1, server);
    add(0, "[agent]\nname = \"a\"\nkey_file = \"nas.key\"\nserver = \"[::1]:7000\"\n"
           "server_ca = \"ca.pem\"\nudp_port = 4000\nadmin = \"127.0.0.1:7070\"\n"
           "log_level = \"debug\"\n");
    add(0, "[agent]\nname = \"a\"\nkey_file = \"nas.key\"\nserver = \"s.example:7000\"\n"
           "server_fingerprint = \"sha256:" + std::string(64, 'a') + "\"\n"
           "[[expose]]\nservice = \"web\"\ntarget = \"127.0.0.1:80\"\nallow = [\"b\", \"c\"]\n"
           "[[forward]]\nlisten = \"127.0.0.1:8080\"\npeer = \"b\"\nservice = \"ssh\"\n");
    add(1, "[server]\nlisten = \"0.0.0.0:7000\"\nstun = [\"0.0.0.0:3478\", \"0.0.0.0:3479\"]\n"
           "cert_file = \"c\"\nkey_file = \"k\"\nidentity_key = \"i\"\nmax_agents = 5\n"
           "relay_rate_mbit = 1\nrelay_packets_per_sec = 10\nstun_standard_clients = true\n");
    add(0, "[agent]\nname = \"NAS\"\n");  // errors: each should be one line
    add(1, "[server]\nlisten = 7000\n");
    // Listen ports: two that collide on Linux (each must be rejected), and some that only look
    // alike (accepted). A loader that misjudges either way fails the invariant or an error.
    const std::string agent =
        "[agent]\nname = \"a\"\nkey_file = \"nas.key\"\n"
        "server = \"s.example:7000\"\nserver_ca = \"ca.pem\"\n";
    const auto forward = [](const std::string& listen) {
        return "[[forward]]\nlisten = \"" + listen + "\"\npeer = \"b\"\nservice = \"web\"\n";
    };
    add(0, agent + "admin = \"127.0.0.1:7070\"\n" + forward("0.0.0.0:7070"));
    add(0, agent + forward("[::]:8080") + forward("127.0.0.1:8080"));
    add(0, agent + forward("127.0.0.1:8080") + forward("[::ffff:127.0.0.1]:8080"));
    add(0, agent + "admin = \"[::1]:7070\"\n" + forward("0.0.0.0:7070") +
               forward("127.0.0.1:8080") + forward("127.0.0.2:8080"));
    add(1,
        "[server]\nlisten = \"0.0.0.0:3478\"\nstun = [\"0.0.0.0:3478\", \"127.0.0.1:3478\"]\n"
        "cert_file = \"c\"\nkey_file = \"k\"\nidentity_key = \"i\"\n");
    add(1,
        "[server]\nlisten = \"0.0.0.0:3478\"\nstun = [\"127.0.0.1:3478\", \"[::1]:3478\"]\n"
        "cert_file = \"c\"\nkey_file = \"k\"\nidentity_key = \"i\"\n");
    write_seeds("config", seeds);
}

// Op scripts for the pair targets (tests/fuzz/fuzz_pair.h): a handshake and some streams over
// a network that first behaves, then loses, duplicates, corrupts and reorders.
Bytes pair_script(uint64_t seed, uint8_t flags, bool inject_frames) {
    SeededRng rng(seed);
    Bytes s = {flags};
    auto deliver_all = [&](int rounds) {
        for (int i = 0; i < rounds; ++i) {
            s.push_back(1), s.push_back(1);  // deliver to B
            s.push_back(1), s.push_back(0);  // deliver to A
        }
    };
    auto clock = [&](uint16_t units) { s.push_back(0), put16(s, units); };
    auto app = [&](int side, int action, uint8_t pick, uint16_t n) {
        s.push_back(6);
        s.push_back(static_cast<uint8_t>(side | (action << 1)));
        s.push_back(pick);
        if (action == 1 || action == 2) put16(s, n);
    };
    deliver_all(3);
    clock(100);
    app(0, 0, 0, 0);  // A opens a stream
    app(0, 1, 0, static_cast<uint16_t>(500 + rng.uniform(3000)));
    deliver_all(4);
    app(1, 1, 0, static_cast<uint16_t>(rng.uniform(2000)));  // B answers on it
    for (int i = 0; i < 12; ++i) {
        const uint8_t op = static_cast<uint8_t>(rng.uniform(inject_frames ? 8 : 7));
        switch (op) {
            case 0: clock(static_cast<uint16_t>(rng.uniform(3000))); break;
            case 6: app(static_cast<int>(rng.uniform(2)), static_cast<int>(rng.uniform(5)), 0,
                        static_cast<uint16_t>(rng.uniform(4096)));
                break;
            case 7: {
                s.push_back(7);
                s.push_back(static_cast<uint8_t>(rng.uniform(2)));
                put32(s, static_cast<uint32_t>(1000 + rng.uniform(100)));
                const auto sets = frame_sets();
                const Bytes plain = encode_frames(sets[rng.uniform(sets.size())]);
                put16(s, static_cast<uint16_t>(plain.size()));
                s.insert(s.end(), plain.begin(), plain.end());
                break;
            }
            case 4:
                s.push_back(4), s.push_back(static_cast<uint8_t>(rng.uniform(2)));
                put16(s, static_cast<uint16_t>(rng.uniform(1500)));
                s.push_back(0x40);
                break;
            default: s.push_back(op), s.push_back(static_cast<uint8_t>(rng.uniform(2))); break;
        }
        deliver_all(1);
    }
    app(0, 3, 0, 0);  // A half-closes
    deliver_all(4);
    clock(2000);
    deliver_all(4);
    return s;
}

void pair_seeds(const std::string& target, bool inject_frames) {
    std::vector<Bytes> seeds;
    for (uint64_t seed = 0; seed < 24; ++seed) {
        seeds.push_back(pair_script(seed, static_cast<uint8_t>(seed % 8), inject_frames));
    }
    write_seeds(target, seeds);
}

void server_seeds() {
    std::vector<Bytes> seeds;
    const StunTransactionId txid = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    StunMessage padded;
    padded.transaction_id = txid;
    padded.software = std::string(40, 'p');
    padded.fingerprint = true;
    auto raw = [](uint8_t source, uint8_t port, const Bytes& d) {
        Bytes s = {0, source, port};
        put16(s, static_cast<uint16_t>(d.size()));
        s.insert(s.end(), d.begin(), d.end());
        return s;
    };
    for (uint8_t source = 0; source < 3; ++source) {
        seeds.push_back(raw(source, 0, encode_stun(padded)));
        seeds.push_back(raw(source, 1, encode_binding_request(txid, true)));
    }
    Bytes relay = {1, 0, 0};
    put16(relay, static_cast<uint16_t>(kPayload.size()));
    relay.insert(relay.end(), kPayload.begin(), kPayload.end());
    seeds.push_back(relay);
    relay[1] = 1;
    seeds.push_back(relay);
    seeds.push_back({2, 3, 10, 0, 0, 9, 0x1f, 0x90, 1});  // nas's Bind from a new address
    seeds.push_back({3, 0x75, 0x30});                     // 30 s pass
    const Bytes ping = encode_control(Ping{9});
    Bytes control = {4, 1};
    put16(control, static_cast<uint16_t>(ping.size()));
    control.insert(control.end(), ping.begin(), ping.end());
    seeds.push_back(control);
    const Bytes req = encode_control(ConnectRequest{"nas", "web"});
    control = {4, 2};
    put16(control, static_cast<uint16_t>(req.size()));
    control.insert(control.end(), req.begin(), req.end());
    seeds.push_back(control);
    // Relay over TLS from the laptop, then a timer long enough to drop idle agents.
    const Bytes relay_tls = encode_control(RelayData{0, kPayload});
    control = {4, 0};
    put16(control, static_cast<uint16_t>(relay_tls.size()));
    control.insert(control.end(), relay_tls.begin(), relay_tls.end());
    control.insert(control.end(), {3, 0xff, 0xff});
    seeds.push_back(control);
    write_seeds("server_udp", seeds);
}

// A direct TCP path's byte stream: a real probe and handshake-sized datagrams, framed, whole,
// coalesced, cut short, with an oversized and an empty length.
void stream_framer_seeds() {
    std::vector<Bytes> seeds;
    EstablishedPair pair;
    const Bytes probe = *pair.a.seal_probe(Probe{ProbeKind::kChallenge, {1, 2, 3, 4, 5, 6, 7, 8}},
                                           pair.now);
    const Bytes big(1350, 0x5a);
    Bytes stream;
    for (const Bytes* d : {&probe, &big, &probe}) {
        const Bytes f = *frame_for_tcp_path(*d);
        stream.insert(stream.end(), f.begin(), f.end());
    }
    for (uint8_t cut : {0, 1, 77}) seeds.push_back(with_prefix({cut}, stream));
    const Bytes whole = with_prefix({3}, stream);
    seeds.push_back(Bytes(whole.begin(), whole.end() - 100));  // ends inside a datagram
    Bytes oversized = with_prefix({5}, *frame_for_tcp_path(probe));
    oversized.push_back(0x10);
    oversized.push_back(0x01);  // 4097 bytes: past kMaxTcpPathFrame
    oversized.insert(oversized.end(), 64, 0);
    seeds.push_back(oversized);
    seeds.push_back(Bytes{9, 0, 0, 1, 2});  // an empty datagram
    write_seeds("stream_framer", seeds);
}

// The client's side of a STUN-over-TCP connection: Binding requests back to back (with and
// without FINGERPRINT and SOFTWARE), cut and whole, one cut short, an HTTP request, a declared
// length past kStunTcpMaxMessage, a response instead of a request.
void stun_tcp_seeds() {
    std::vector<Bytes> seeds;
    const StunTransactionId txid = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    StunMessage padded;
    padded.type = kStunBindingRequest;
    padded.transaction_id = txid;
    padded.software = "netcheck";
    padded.fingerprint = true;
    Bytes stream = encode_binding_request(txid, false);
    const Bytes second = encode_stun(padded);
    stream.insert(stream.end(), second.begin(), second.end());
    for (uint8_t cut : {0, 1, 33}) seeds.push_back(with_prefix({cut}, stream));
    seeds.push_back(with_prefix({7}, ByteView(stream).first(stream.size() - 3)));
    Bytes four;
    for (int i = 0; i < 4; ++i) four.insert(four.end(), second.begin(), second.end());
    seeds.push_back(with_prefix({0}, four));
    const std::string http = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    seeds.push_back(with_prefix({0}, ByteView(reinterpret_cast<const uint8_t*>(http.data()),
                                              http.size())));
    Bytes too_long = encode_binding_request(txid, false);
    too_long[2] = 0x02;
    too_long[3] = 0x20;
    seeds.push_back(with_prefix({2}, too_long));
    StunMessage response;
    response.type = kStunBindingSuccess;
    response.transaction_id = txid;
    response.xor_mapped_address = SocketAddress::ipv4({198, 51, 100, 20}, 40312);
    seeds.push_back(with_prefix({0}, encode_stun(response)));
    write_seeds("stun_tcp", seeds);
}

}  // namespace

// Every cluster message kind (signal/cluster_message.h), with and without candidates.
void cluster_seeds() {
    PeerInfo info;
    info.session_id = 0xf00dfeedcafe0001;  // above a varint's range: the id is a u64
    info.peer = "laptop";
    info.candidates = {{CandidateKind::kHost, *parse_socket_address("192.168.1.2:4000")},
                       {CandidateKind::kServerReflexive, *parse_socket_address("[2001:db8::1]:9")}};
    info.service = "web";
    std::vector<Bytes> seeds;
    seeds.push_back(encode_cluster(ClusterRendezvous{1, "s1", "laptop", "nas", "web", info}));
    seeds.push_back(encode_cluster(ClusterRendezvousReply{1, true, "", info}));
    seeds.push_back(encode_cluster(ClusterRendezvousReply{2, false, "peer offline", {}}));
    seeds.push_back(
        encode_cluster(ClusterRelay{info.session_id, {}, "nas", "s2", Bytes(64, 0x5a)}));
    PunchReport report;
    report.peer = "laptop";
    report.nat = NatMapping::kPerDestination;
    report.udp_to_server = true;
    report.candidates = info.candidates;
    report.tried = {*parse_socket_address("203.0.113.7:5000")};
    report.answered = report.tried[0];
    report.strategy = ReportStrategy::kBirthday;
    report.source = ReportSource::kBirthday;
    report.time_to_direct_ms = 900;
    report.path = ReportPath::kDirect;
    seeds.push_back(encode_cluster(ClusterPunchReport{"s2", "nas", report}));
    seeds.push_back(encode_cluster(ClusterRefresh{"s1", "laptop", "nas", true, info}));
    seeds.push_back(encode_cluster(ClusterRefresh{"s2", "nas", "laptop", false, info}));
    write_seeds("cluster", seeds);
}

int main(int argc, char** argv) {
    if (argc != 3) {
        std::fprintf(stderr, "usage: burrow-fuzz-seeds CORPUS_ROOT EXAMPLES_DIR\n");
        return 2;
    }
    g_root = argv[1];
    frame_seeds();
    stun_seeds();
    pcp_seeds();
    control_seeds();
    handshake_seeds();
    probe_seeds();
    config_seeds(argv[2]);
    pair_seeds("session", false);
    pair_seeds("connection", true);
    server_seeds();
    cluster_seeds();
    stream_framer_seeds();
    stun_tcp_seeds();
    return 0;
}
