#include <catch2/catch.hpp>

#include <algorithm>
#include <set>

#include "signal/udp_messages.h"
#include "signal_server_harness.h"
#include "tunnel/wire.h"

using namespace burrow;
using namespace burrow::test;

namespace {

std::optional<uint16_t> error_code(const Actions& a, ConnId conn) {
    auto errors = messages_to<ControlErrorMessage>(a, conn);
    if (errors.empty()) return std::nullopt;
    return errors[0].code;
}

constexpr uint16_t code(ControlErrorCode c) {
    return static_cast<uint16_t>(c);
}

bool online(const Harness& h, const char* agent) {
    return h.core->registry().find(agent)->online();
}

// laptop and nas online and registered; returns the PeerInfos of laptop -> nas/web.
std::pair<PeerInfo, PeerInfo> rendezvous(Harness& h) {
    h.login(1, "laptop");
    h.login(2, "nas");
    const SocketAddress host = *parse_socket_address("192.168.1.20:40000");
    const SocketAddress srflx = *parse_socket_address("198.51.100.7:61000");
    h.send(2, Register{{{CandidateKind::kHost, host}, {CandidateKind::kServerReflexive, srflx}},
                       NatMapping::kEndpointIndependent});
    Actions a = h.send(1, ConnectRequest{"nas", "web"});
    auto to_laptop = messages_to<PeerInfo>(a, 1);
    auto to_nas = messages_to<PeerInfo>(a, 2);
    REQUIRE(to_laptop.size() == 1);
    REQUIRE(to_nas.size() == 1);
    return {to_laptop[0], to_nas[0]};
}

}  // namespace

TEST_CASE("good auth: AuthOk, online, a first ping") {
    Harness h;
    const AuthNonce nonce = h.open(7);
    CHECK(h.core->pending_count() == 1);
    CHECK(h.core->next_deadline() == h.now + kPreAuthDeadline);
    Actions a = h.send(7, h.auth_for("nas", nonce));
    auto ok = messages_to<AuthOk>(a, 7);
    REQUIRE(ok.size() == 1);
    CHECK(ok[0].name == "nas");
    CHECK(ok[0].stun_ports == std::array<uint16_t, 2>{kStunPort, kStunPort2});
    CHECK(ok[0].relay_udp_port == kStunPort);
    CHECK(messages_to<Ping>(a, 7).size() == 1);
    CHECK_FALSE(close_reason(a, 7));
    const AgentRecord* rec = h.core->registry().find("nas");
    CHECK(rec->online());
    CHECK(rec->conn == ConnId{7});
    CHECK(rec->last_seen == h.now);
    CHECK(rec->udp_token == ok[0].udp_token);
    CHECK(h.core->registry().online_count() == 1);
    CHECK(h.core->pending_count() == 0);
    CHECK(h.core->stats().registrations == 1);
}

TEST_CASE("every connection gets a fresh nonce") {
    Harness h;
    std::set<AuthNonce> nonces;
    for (ConnId c = 1; c <= 100; ++c) nonces.insert(h.open(c));
    CHECK(nonces.size() == 100);
}

TEST_CASE("auth failures: wrong proof, replay, unknown key") {
    Harness h;
    SECTION("wrong key: a proof made with another private key") {
        const AuthNonce nonce = h.open(1);
        Auth forged = h.auth_for("phone", nonce);  // phone's proof...
        forged.agent_pub = h.pubs.at("nas");       // ...claiming to be the nas
        Actions a = h.send(1, forged);
        CHECK(error_code(a, 1) == code(ControlErrorCode::kAuthFailed));
        CHECK(contains(close_reason(a, 1), "wrong proof"));
        CHECK_FALSE(online(h, "nas"));
        CHECK(h.core->stats().refusals[static_cast<size_t>(Refusal::kAuthFailed)] == 1);
        CHECK(h.core->stats().registrations == 0);
    }
    SECTION("replay: an Auth recorded on one connection fails on another") {
        const AuthNonce nonce = h.open(1);
        const Auth recorded = h.auth_for("nas", nonce);
        CHECK(messages_to<AuthOk>(h.send(1, recorded), 1).size() == 1);
        h.open(2);
        Actions a = h.send(2, recorded);
        CHECK(error_code(a, 2) == code(ControlErrorCode::kAuthFailed));
        CHECK(contains(close_reason(a, 2), "replayed auth"));
        // The genuine connection is untouched.
        CHECK(h.core->registry().find("nas")->conn == ConnId{1});
        CHECK_FALSE(close_reason(a, 1));
    }
    SECTION("unknown key, with a valid proof for it") {
        const AuthNonce nonce = h.open(1);
        Actions a = h.send(1, h.auth_for("stranger", nonce));
        CHECK(error_code(a, 1) == code(ControlErrorCode::kUnknownKey));
        CHECK(contains(close_reason(a, 1), "unknown key"));
        CHECK(h.core->registry().online_count() == 0);
        CHECK(h.core->stats().refusals[static_cast<size_t>(Refusal::kUnknownKey)] == 1);
        CHECK(h.core->stats().refusals[static_cast<size_t>(Refusal::kAuthFailed)] == 0);
    }
    SECTION("unknown key without a valid proof reads as a wrong proof, not as unknown") {
        const AuthNonce nonce = h.open(1);
        Auth a1 = h.auth_for("stranger", nonce);
        a1.proof[0] ^= 1;
        Actions a = h.send(1, a1);
        CHECK(error_code(a, 1) == code(ControlErrorCode::kAuthFailed));
        CHECK(contains(close_reason(a, 1), "wrong proof"));
    }
    // Whatever failed, the failed connection is gone.
    CHECK(h.core->pending_count() == 0);
}

TEST_CASE("pre-auth deadline") {
    Harness h;
    h.open(1);
    h.advance(kPreAuthDeadline - Duration(1));
    CHECK(h.core->on_timer(h.now).empty());
    h.advance(Duration(1));
    Actions a = h.core->on_timer(h.now);
    CHECK(error_code(a, 1) == code(ControlErrorCode::kTimeout));
    CHECK(close_reason(a, 1) == "connection 1: authentication timeout");
    CHECK(h.core->pending_count() == 0);
    CHECK(h.core->next_deadline() == kNever);
    // Bytes after the close change nothing.
    CHECK(h.send(1, Ping{1}).empty());
}

TEST_CASE("a configured pre-auth deadline above 10 s is cut to 10 s") {
    ServerLimits limits;
    limits.pre_auth_deadline = std::chrono::seconds(60);
    Harness h(1, limits);
    h.open(1);
    CHECK(h.core->next_deadline() == h.now + std::chrono::seconds(10));
}

TEST_CASE("garbage and oversize frames before auth") {
    Harness h;
    SECTION("a valid message that is not Auth") {
        h.open(1);
        Actions a = h.send(1, Ping{1});
        CHECK(error_code(a, 1) == code(ControlErrorCode::kProtocol));
        CHECK(close_reason(a, 1) == "connection 1: garbage before auth (expected Auth, got Ping)");
    }
    SECTION("an oversize length is refused after its 4 bytes, before any body") {
        h.open(1);
        const Bytes len = {0, 0, 0x02, 0x01};  // 513 > kMaxPreAuthFrame
        Actions a = h.core->on_control_bytes(1, len, h.now);
        CHECK(close_reason(a, 1) == "connection 1: oversize frame before auth");
    }
    SECTION("random bytes") {
        for (int seed = 0; seed < 300; ++seed) {
            INFO("seed " << seed);
            SeededRng rng(seed);
            const ConnId conn = 100 + static_cast<ConnId>(seed);
            h.open(conn);
            Bytes junk(1 + rng.uniform(700));
            rng.fill(junk);
            Actions a = h.core->on_control_bytes(conn, junk, h.now);
            // Either still waiting for the rest of a frame, or closed as garbage / oversize.
            if (auto r = close_reason(a, conn)) {
                CHECK((contains(r, "garbage before auth") ||
                       contains(r, "oversize frame before auth")));
            } else {
                CHECK(a.empty());
            }
            CHECK(h.core->registry().online_count() == 0);
        }
    }
}

TEST_CASE("frame caps after auth") {
    Harness h;
    h.login(1, "laptop");
    RelayData big;
    big.payload.resize(kMaxPreAuthFrame * 2);  // above the pre-auth cap, below the other
    Actions a = h.send(1, big);
    CHECK_FALSE(close_reason(a, 1));  // dropped as an unknown session, not a protocol error
    CHECK(h.core->drops().get(DropReason::kRelayUnknownSession) == 1);
    // A relay payload that could not go out as one UDP datagram is dropped, not relayed.
    big.payload.resize(kMaxRelayPayload + 1);
    a = h.send(1, big);
    CHECK(a.empty());
    CHECK(h.core->drops().get(DropReason::kTooLarge) == 1);
    const Bytes len = {0, 1, 0, 1};  // 65537
    a = h.core->on_control_bytes(1, len, h.now);
    CHECK(close_reason(a, 1) == "agent \"laptop\": oversize frame");
    CHECK_FALSE(online(h, "laptop"));
}

TEST_CASE("Auth, Register and ConnectRequest pipelined in one read") {
    Harness h;
    h.login(2, "nas");
    const AuthNonce nonce = h.open(1);
    Bytes stream = encode_control(h.auth_for("laptop", nonce));
    for (const ControlMessage& m : {ControlMessage(Register{{}, NatMapping::kPerDestination}),
                                    ControlMessage(ConnectRequest{"nas", "web"})}) {
        Bytes f = encode_control(m);
        stream.insert(stream.end(), f.begin(), f.end());
    }
    Actions a = h.core->on_control_bytes(1, stream, h.now);
    CHECK(messages_to<AuthOk>(a, 1).size() == 1);
    REQUIRE(messages_to<PeerInfo>(a, 2).size() == 1);
    CHECK(messages_to<PeerInfo>(a, 2)[0].nat == NatMapping::kPerDestination);
}

TEST_CASE("a second connection for the same agent replaces the first") {
    Harness h;
    const AuthOk first = h.login(1, "nas");
    const AuthNonce nonce = h.open(2);
    Actions a = h.send(2, h.auth_for("nas", nonce));
    REQUIRE(messages_to<AuthOk>(a, 2).size() == 1);
    CHECK(error_code(a, 1) == code(ControlErrorCode::kReplaced));
    CHECK(contains(close_reason(a, 1), "replaced by connection 2"));
    CHECK(h.core->registry().find("nas")->conn == ConnId{2});
    CHECK(messages_to<AuthOk>(a, 2)[0].udp_token != first.udp_token);
    CHECK(h.core->registry().online_count() == 1);
    // src/ reports the old connection closed later: the agent stays online.
    h.core->on_connection_closed(1, h.now);
    CHECK(online(h, "nas"));
    CHECK(h.send(1, Ping{1}).empty());
}

TEST_CASE("maximum agent count") {
    ServerLimits limits;
    limits.max_agents = 2;
    Harness h(1, limits);
    h.login(1, "nas");
    h.login(2, "laptop");
    const AuthNonce nonce = h.open(3);
    Actions a = h.send(3, h.auth_for("phone", nonce));
    CHECK(error_code(a, 3) == code(ControlErrorCode::kServerFull));
    CHECK(contains(close_reason(a, 3), "maximum of 2 agents"));
    CHECK_FALSE(online(h, "phone"));
    // An agent already online may still reconnect (it replaces itself).
    h.login(4, "nas");
    // When one leaves, there is room again.
    h.core->on_connection_closed(2, h.now);
    h.login(5, "phone");
    CHECK(h.core->registry().online_count() == 2);
}

TEST_CASE("maximum pending connections") {
    ServerLimits limits;
    limits.max_pending = 3;
    Harness h(1, limits);
    for (ConnId c = 1; c <= 3; ++c) h.open(c);
    Actions a = h.core->on_connection_open(4, h.now);
    CHECK(error_code(a, 4) == code(ControlErrorCode::kTooManyPending));
    CHECK(contains(close_reason(a, 4), "too many unauthenticated"));
    CHECK(messages_to<ServerHello>(a, 4).empty());
    h.send(1, h.auth_for("nas", AuthNonce{}));  // fails, frees a slot
    h.open(5);
}

TEST_CASE("rendezvous: PeerInfo to both sides") {
    Harness h;
    auto [to_laptop, to_nas] = rendezvous(h);
    CHECK(to_laptop.session_id == to_nas.session_id);
    CHECK(to_laptop.session_id != 0);
    CHECK(to_laptop.relay_token == to_nas.relay_token);
    CHECK(to_laptop.role == SessionRole::kInitiator);
    CHECK(to_nas.role == SessionRole::kResponder);
    CHECK(to_laptop.peer == "nas");
    CHECK(to_nas.peer == "laptop");
    CHECK(to_laptop.peer_pub == h.pubs.at("nas"));
    CHECK(to_nas.peer_pub == h.pubs.at("laptop"));
    CHECK(to_laptop.service == "web");
    CHECK(to_nas.service == "web");
    CHECK(to_laptop.opener);  // laptop asked to open web on nas
    CHECK_FALSE(to_nas.opener);
    CHECK(to_laptop.candidates.size() == 2);
    CHECK(to_laptop.nat == NatMapping::kEndpointIndependent);
    CHECK(to_nas.candidates.empty());
    CHECK(to_nas.nat == NatMapping::kUnknown);
    // No RTT measured yet: the full lead.
    CHECK(to_laptop.start_in_ms == 500);
    CHECK(h.core->relays().size() == 1);
    RelaySession* s = const_cast<RelayTable&>(h.core->relays()).find(to_laptop.session_id);
    REQUIRE(s);
    CHECK(s->initiator == "laptop");
    CHECK(s->responder == "nas");
}

TEST_CASE("rendezvous: an agent that listens for TCP gets a tcp-srflx candidate, others do not") {
    // nas's control connection comes from 203.0.113.9:40123 (its NAT's mapping of the port it
    // also listens on); it offers its TCP host candidate, so laptop learns the mapping.
    const SocketAddress observed = *parse_socket_address("203.0.113.9:40123");
    const SocketAddress tcp_host = *parse_socket_address("192.168.1.20:40000");
    const SocketAddress udp_srflx = *parse_socket_address("203.0.113.9:40123");  // same numbers
    for (bool listens : {true, false}) {
        INFO("listens " << listens);
        Harness h;
        h.login(1, "laptop", *parse_socket_address("198.51.100.1:5555"));
        h.login(2, "nas", observed);
        std::vector<Candidate> cs = {{CandidateKind::kServerReflexive, udp_srflx}};
        if (listens) cs.push_back({CandidateKind::kTcpHost, tcp_host});
        h.send(2, Register{cs, NatMapping::kEndpointIndependent});
        Actions a = h.send(1, ConnectRequest{"nas", "web"});
        auto to_laptop = messages_to<PeerInfo>(a, 1);
        REQUIRE(to_laptop.size() == 1);
        std::vector<Candidate> tcp;
        for (const auto& c : to_laptop[0].candidates) {
            if (is_tcp(c.kind)) tcp.push_back(c);
        }
        if (listens) {
            // A UDP candidate at the same address does not hide the TCP one.
            REQUIRE(tcp.size() == 2);
            CHECK(tcp[0] == Candidate{CandidateKind::kTcpHost, tcp_host});
            CHECK(tcp[1] == Candidate{CandidateKind::kTcpServerReflexive, observed});
        } else {
            CHECK(tcp.empty());
        }
        // laptop offered no TCP host candidate: nas learns no TCP address of laptop's.
        const auto to_nas = messages_to<PeerInfo>(a, 2);  // kept: the loop reads into it
        REQUIRE(to_nas.size() == 1);
        for (const auto& c : to_nas[0].candidates) CHECK_FALSE(is_tcp(c.kind));
    }
}

TEST_CASE("rendezvous: a request naming the pair's session keeps it; roles stay") {
    Harness h;
    auto [first, _] = rendezvous(h);
    Actions a = h.send(1, ConnectRequest{"nas", "web", first.session_id});
    auto again_laptop = messages_to<PeerInfo>(a, 1);
    auto again_nas = messages_to<PeerInfo>(a, 2);
    REQUIRE(again_laptop.size() == 1);
    REQUIRE(again_nas.size() == 1);
    CHECK(again_laptop[0].session_id == first.session_id);
    CHECK(again_laptop[0].relay_token == first.relay_token);
    CHECK(again_laptop[0].role == SessionRole::kInitiator);
    CHECK(again_nas[0].role == SessionRole::kResponder);
    CHECK(h.core->relays().size() == 1);
}

TEST_CASE("rendezvous: candidates that change while a session lives reach both agents again") {
    // nas's router granted a port mapping after the session started (UPnP takes seconds):
    // laptop, which punched with nas's old candidates, must learn the mapped one.
    Harness h;
    auto [first_laptop, first_nas] = rendezvous(h);
    const SocketAddress host = *parse_socket_address("192.168.1.20:40000");
    const SocketAddress srflx = *parse_socket_address("198.51.100.7:61000");
    const SocketAddress mapped = *parse_socket_address("198.51.100.7:40000");
    const Register with_mapping{{{CandidateKind::kHost, host},
                                 {CandidateKind::kServerReflexive, srflx},
                                 {CandidateKind::kMapped, mapped}},
                                NatMapping::kEndpointIndependent};
    Actions a = h.send(2, with_mapping);
    auto to_laptop = messages_to<PeerInfo>(a, 1);
    auto to_nas = messages_to<PeerInfo>(a, 2);
    REQUIRE(to_laptop.size() == 1);
    REQUIRE(to_nas.size() == 1);
    // The same session, roles and direction of approval: nothing new is granted.
    CHECK(to_laptop[0].session_id == first_laptop.session_id);
    CHECK(to_laptop[0].relay_token == first_laptop.relay_token);
    CHECK(to_laptop[0].role == SessionRole::kInitiator);
    CHECK(to_nas[0].role == SessionRole::kResponder);
    CHECK(to_laptop[0].service == "web");
    CHECK(to_laptop[0].opener);
    CHECK_FALSE(to_nas[0].opener);
    CHECK(std::find(to_laptop[0].candidates.begin(), to_laptop[0].candidates.end(),
                    Candidate{CandidateKind::kMapped, mapped}) != to_laptop[0].candidates.end());
    CHECK(h.core->stats().rendezvous_refreshed == 1);
    CHECK(h.core->stats().rendezvous == 1);
    // The same candidates again: nothing to tell.
    a = h.send(2, with_mapping);
    CHECK(messages_to<PeerInfo>(a, 1).empty());
    CHECK(messages_to<PeerInfo>(a, 2).empty());
    // Once laptop is gone, its sessions are too: nas's next change tells nobody.
    h.core->on_connection_closed(1, h.now);
    a = h.send(2, Register{{{CandidateKind::kHost, host}}, NatMapping::kEndpointIndependent});
    CHECK(messages_to<PeerInfo>(a, 1).empty());
    CHECK(messages_to<PeerInfo>(a, 2).empty());
    CHECK(h.core->stats().rendezvous_refreshed == 1);
}

TEST_CASE("rendezvous: a requester without a link gets a new session") {
    Harness h;
    auto [first, _] = rendezvous(h);
    Actions a = h.send(1, ConnectRequest{"nas", "web"});
    auto second = messages_to<PeerInfo>(a, 1);
    REQUIRE(second.size() == 1);
    CHECK(second[0].session_id != first.session_id);
    CHECK(second[0].relay_token != first.relay_token);
}

TEST_CASE("rendezvous start time accounts for each side's RTT") {
    Harness h;
    Actions a1 = h.core->on_connection_open(1, h.now);
    const AuthNonce n1 = messages_to<ServerHello>(a1, 1)[0].nonce;
    a1 = h.send(1, h.auth_for("laptop", n1));
    const uint64_t ping1 = messages_to<Ping>(a1, 1).at(0).value;
    h.advance(std::chrono::milliseconds(200));  // laptop: 200 ms RTT
    h.send(1, Pong{ping1});
    CHECK(h.core->rtt("laptop") == Duration(std::chrono::milliseconds(200)));
    Actions a2 = h.core->on_connection_open(2, h.now);
    const AuthNonce n2 = messages_to<ServerHello>(a2, 2)[0].nonce;
    a2 = h.send(2, h.auth_for("nas", n2));
    const uint64_t ping2 = messages_to<Ping>(a2, 2).at(0).value;
    h.advance(std::chrono::milliseconds(40));  // nas: 40 ms
    h.send(2, Pong{ping2 + 1});                // not the ping we sent: ignored
    CHECK_FALSE(h.core->rtt("nas"));
    h.send(2, Pong{ping2});
    Actions a = h.send(1, ConnectRequest{"nas", "web"});
    CHECK(messages_to<PeerInfo>(a, 1).at(0).start_in_ms == 500 - 100);
    CHECK(messages_to<PeerInfo>(a, 2).at(0).start_in_ms == 500 - 20);
}

TEST_CASE("connect refusals") {
    Harness h;
    h.login(1, "laptop");
    h.login(2, "nas");
    h.login(3, "phone");
    auto refused = [&](ConnId conn, ConnectRequest req) -> std::string {
        Actions a = h.send(conn, req);
        CHECK(messages_to<PeerInfo>(a, 1).empty());
        CHECK(messages_to<PeerInfo>(a, 2).empty());
        CHECK(messages_to<PeerInfo>(a, 3).empty());
        auto r = messages_to<ConnectRefused>(a, conn);
        REQUIRE(r.size() == 1);
        CHECK(r[0].peer == req.peer);
        CHECK(r[0].service == req.service);
        CHECK_FALSE(close_reason(a, conn));
        return r[0].reason;
    };
    CHECK(refused(1, {"nas", "ssh"}) == "not allowed by the server");
    CHECK(refused(3, {"nas", "web"}) == "not allowed by the server");
    CHECK(refused(3, {"nas", "ssh"}) == "not allowed by the server");
    CHECK(refused(2, {"laptop", "web"}) == "not allowed by the server");
    CHECK(refused(1, {"nobody", "web"}) == "not allowed by the server");
    CHECK(refused(1, {"laptop", "web"}) == "cannot connect to yourself");
    CHECK(refused(1, {"nas", ""}) == "empty service name");
    CHECK(h.core->relays().size() == 0);
    h.core->on_connection_closed(2, h.now);
    CHECK(refused(1, {"nas", "web"}) == "peer offline");
    // The ACL is checked first: phone learns nothing about whether nas is online.
    CHECK(refused(3, {"nas", "web"}) == "not allowed by the server");
    // Each refusal counted under its reason (the server's metrics).
    const auto& refusals = h.core->stats().refusals;
    CHECK(refusals[static_cast<size_t>(Refusal::kConnectNotAllowed)] == 6);
    CHECK(refusals[static_cast<size_t>(Refusal::kConnectInvalid)] == 2);
    CHECK(refusals[static_cast<size_t>(Refusal::kConnectPeerOffline)] == 1);
    CHECK(h.core->stats().rendezvous == 0);
    CHECK(std::string(to_string(Refusal::kConnectPeerOffline)) == "connect_peer_offline");
}

TEST_CASE("relay over TLS between the two agents of a session") {
    Harness h;
    auto [to_laptop, to_nas] = rendezvous(h);
    const Bytes payload = {1, 2, 3, 4, 5};
    Actions a = h.send(1, RelayData{to_laptop.session_id, payload});
    auto got = messages_to<RelayData>(a, 2);
    REQUIRE(got.size() == 1);
    CHECK(got[0].session_id == to_laptop.session_id);
    CHECK(got[0].payload == payload);
    a = h.send(2, RelayData{to_laptop.session_id, {9}});
    CHECK(messages_to<RelayData>(a, 1).size() == 1);
    CHECK(h.core->stats().rendezvous == 1);
    CHECK(h.core->relay_stats().packets[static_cast<size_t>(RelayVia::kTls)] == 2);
    CHECK(h.core->relay_stats().bytes[static_cast<size_t>(RelayVia::kTls)] == payload.size() + 1);
    CHECK(h.core->relay_stats().packets[static_cast<size_t>(RelayVia::kUdp)] == 0);
    // Unknown session and non-members: dropped and counted, the connection stays.
    a = h.send(1, RelayData{to_laptop.session_id + 1, payload});
    CHECK(a.empty());
    CHECK(h.core->drops().get(DropReason::kRelayUnknownSession) == 1);
    h.login(3, "phone");
    a = h.send(3, RelayData{to_laptop.session_id, payload});
    CHECK(a.empty());
    CHECK(h.core->drops().get(DropReason::kRelayNotMember) == 1);
    // Dropped payloads are not counted as relayed.
    CHECK(h.core->relay_stats().packets[static_cast<size_t>(RelayVia::kTls)] == 2);
}

TEST_CASE("going offline ends the agent's relay sessions and records last seen") {
    Harness h;
    rendezvous(h);
    CHECK(h.core->relays().size() == 1);
    h.advance(std::chrono::seconds(3));
    h.send(2, Ping{4});
    h.advance(std::chrono::seconds(1));
    Actions a = h.core->on_connection_closed(2, h.now);
    CHECK(a.size() == 1);
    CHECK(std::holds_alternative<LogEvent>(a[0]));
    CHECK_FALSE(online(h, "nas"));
    CHECK(h.core->registry().find("nas")->last_seen == h.now);
    CHECK(h.core->relays().size() == 0);
    CHECK(h.core->registry().online_count() == 1);
}

TEST_CASE("relay sessions outlive a restart: RelayAttach re-creates them, same id and token") {
    Harness before;
    auto [to_laptop, to_nas] = rendezvous(before);
    const uint64_t id = to_laptop.session_id;
    const RelayToken token = to_laptop.relay_token;

    // The restarted server: a new core with the same identity key and ACL, and no state.
    Harness h;
    REQUIRE(h.server_key.bytes()[0] == before.server_key.bytes()[0]);
    h.login(1, "laptop");
    h.login(2, "nas");
    CHECK(h.core->relays().size() == 0);

    Actions a = h.send(1, RelayAttach{id, "nas", token, SessionRole::kInitiator});
    CHECK(messages_to<RelayDetached>(a, 1).empty());
    const RelaySession* s = h.core->relays().find(id);
    REQUIRE(s);
    CHECK(s->token == token);
    CHECK(s->initiator == "laptop");
    CHECK(s->responder == "nas");
    // The other side attaching too changes nothing.
    a = h.send(2, RelayAttach{id, "laptop", token, SessionRole::kResponder});
    CHECK(messages_to<RelayDetached>(a, 2).empty());
    CHECK(h.core->relays().size() == 1);
    // Relaying works under the old id, and a later connect keeps the session and the roles.
    a = h.send(1, RelayData{id, {1, 2, 3}});
    CHECK(messages_to<RelayData>(a, 2).size() == 1);
    a = h.send(1, ConnectRequest{"nas", "web", id});
    auto again = messages_to<PeerInfo>(a, 1);
    REQUIRE(again.size() == 1);
    CHECK(again[0].session_id == id);
    CHECK(again[0].relay_token == token);
    CHECK(again[0].role == SessionRole::kInitiator);
    CHECK(messages_to<PeerInfo>(a, 2).at(0).role == SessionRole::kResponder);
}

TEST_CASE("RelayAttach refusals: a forged token, another server's, a pair the ACL parts") {
    Harness before;
    auto [to_laptop, _] = rendezvous(before);
    const uint64_t id = to_laptop.session_id;
    Harness h;
    h.login(1, "laptop");
    h.login(2, "nas");
    h.login(3, "phone");
    auto refused = [&](ConnId conn, const RelayAttach& m) {
        Actions a = h.send(conn, m);
        CHECK_FALSE(close_reason(a, conn));  // a refusal, not a protocol error
        auto d = messages_to<RelayDetached>(a, conn);
        REQUIRE(d.size() == 1);
        CHECK(d[0].session_id == m.session_id);
        return d[0].reason;
    };
    RelayToken forged = to_laptop.relay_token;
    forged[3] ^= 0x10;
    CHECK(refused(1, RelayAttach{id, "nas", forged, SessionRole::kInitiator})
              .find("token") != std::string::npos);
    // The token names the session: it does not attach another id.
    refused(1, RelayAttach{id + 1, "nas", to_laptop.relay_token, SessionRole::kInitiator});
    // phone has the token (say nas leaked it) but no rule joins it to nas.
    CHECK(refused(3, RelayAttach{id, "nas", to_laptop.relay_token, SessionRole::kInitiator}) ==
          "not allowed by the server");
    CHECK(h.core->relays().size() == 0);

    // A server with another identity key issued other tokens.
    Harness other(7);
    other.login(1, "laptop");
    other.login(2, "nas");
    Actions a =
        other.send(1, RelayAttach{id, "nas", to_laptop.relay_token, SessionRole::kInitiator});
    CHECK(messages_to<RelayDetached>(a, 1).size() == 1);
    CHECK(other.core->relays().size() == 0);

    // A pair that has moved on to a newer session keeps it.
    h.send(1, RelayAttach{id, "nas", to_laptop.relay_token, SessionRole::kInitiator});
    const RelayToken newer = RelayTokenKey(h.server_key).token(id ^ 0xff, h.pubs.at("laptop"),
                                                               h.pubs.at("nas"));
    CHECK(refused(2, RelayAttach{id ^ 0xff, "laptop", newer, SessionRole::kResponder}) ==
          "replaced by a newer session");
    CHECK(h.core->relays().find(id));
}

TEST_CASE("pings, pongs and the idle timeout") {
    ServerLimits limits;
    Harness h(1, limits);
    h.login(1, "nas");
    Actions a = h.send(1, Ping{42});
    CHECK(messages_to<Pong>(a, 1).at(0).value == 42);
    CHECK(h.core->next_deadline() == h.now + limits.ping_interval);
    h.advance(limits.ping_interval);
    a = h.core->on_timer(h.now);
    CHECK(messages_to<Ping>(a, 1).size() == 1);
    // The agent answers: it stays.
    h.send(1, Pong{messages_to<Ping>(a, 1)[0].value});
    const Time last_input = h.now;
    // Silence from now on: pings go out, then the idle timeout closes it.
    for (;;) {
        const Time next = h.core->next_deadline();
        REQUIRE(next != kNever);
        h.now = next;
        a = h.core->on_timer(h.now);
        if (close_reason(a, 1)) break;
        CHECK(messages_to<Ping>(a, 1).size() == 1);
    }
    CHECK(h.now == last_input + limits.idle_timeout);
    CHECK(contains(close_reason(a, 1), "idle timeout"));
    CHECK(error_code(a, 1) == code(ControlErrorCode::kTimeout));
    CHECK_FALSE(online(h, "nas"));
}

TEST_CASE("protocol violations after auth close the connection") {
    Harness h;
    SECTION("a second Auth") {
        const AuthNonce nonce = h.open(1);
        const Auth auth = h.auth_for("nas", nonce);
        h.send(1, auth);
        Actions a = h.send(1, auth);
        CHECK(contains(close_reason(a, 1), "unexpected Auth"));
    }
    for (const ControlMessage& m : {ControlMessage(ServerHello{}), ControlMessage(AuthOk{}),
                                    ControlMessage(PeerInfo{}), ControlMessage(ConnectRefused{})}) {
        SECTION(message_name(m)) {
            h.login(1, "nas");
            Actions a = h.send(1, m);
            CHECK(error_code(a, 1) == code(ControlErrorCode::kProtocol));
            CHECK(contains(close_reason(a, 1), std::string("unexpected ") + message_name(m)));
        }
    }
    SECTION("an Error from the agent is logged and closes without an answer") {
        h.login(1, "nas");
        Actions a = h.send(1, ControlErrorMessage{9, "shutting down"});
        CHECK_FALSE(error_code(a, 1));
        CHECK(close_reason(a, 1) == "agent \"nas\" reported error 9: shutting down");
    }
    SECTION("a malformed frame") {
        h.login(1, "nas");
        const Bytes bad = {0, 0, 0, 3, kControlVersion, 0x0a, 0};  // Ping with 1 byte
        Actions a = h.core->on_control_bytes(1, bad, h.now);
        CHECK(close_reason(a, 1) == "agent \"nas\": malformed control message (malformed message)");
    }
    CHECK_FALSE(online(h, "nas"));
}

TEST_CASE("random event sequences keep the registry consistent (property)") {
    for (int seed = 0; seed < 100; ++seed) {
        INFO("seed " << seed);
        ServerLimits limits;
        limits.max_agents = 2;
        limits.max_pending = 4;
        Harness h(static_cast<uint64_t>(seed), limits);
        SeededRng rng(static_cast<uint64_t>(seed) + 1000);
        const std::vector<std::string> names = {"nas", "laptop", "phone", "stranger"};
        std::map<ConnId, AuthNonce> open;
        ConnId next_conn = 1;
        for (int step = 0; step < 300; ++step) {
            Actions a;
            switch (rng.uniform(7)) {
                case 0: {
                    const ConnId c = next_conn++;
                    a = h.core->on_connection_open(c, h.now);
                    auto hello = messages_to<ServerHello>(a, c);
                    if (!hello.empty()) open[c] = hello[0].nonce;
                    break;
                }
                case 1:
                case 2: {  // authenticate (sometimes badly) on a random open connection
                    if (open.empty()) break;
                    auto it =
                        std::next(open.begin(), static_cast<ptrdiff_t>(rng.uniform(open.size())));
                    Auth auth = h.auth_for(names[rng.uniform(names.size())], it->second);
                    if (rng.chance(0.2)) auth.proof[rng.uniform(32)] ^= 1;
                    a = h.send(it->first, auth);
                    break;
                }
                case 3: {  // a random message or junk on a random connection
                    if (open.empty()) break;
                    auto it =
                        std::next(open.begin(), static_cast<ptrdiff_t>(rng.uniform(open.size())));
                    if (rng.chance(0.5)) {
                        a = h.send(it->first, ConnectRequest{names[rng.uniform(names.size())],
                                                             rng.chance(0.5) ? "web" : "ssh"});
                    } else {
                        Bytes junk(rng.uniform(40));
                        rng.fill(junk);
                        a = h.core->on_control_bytes(it->first, junk, h.now);
                    }
                    break;
                }
                case 4: {
                    if (open.empty()) break;
                    auto it =
                        std::next(open.begin(), static_cast<ptrdiff_t>(rng.uniform(open.size())));
                    a = h.core->on_connection_closed(it->first, h.now);
                    open.erase(it);
                    break;
                }
                case 5:
                    h.advance(Duration(static_cast<int64_t>(rng.uniform(4'000'000))));
                    a = h.core->on_timer(h.now);
                    break;
                default: {
                    Bytes d(rng.uniform(100));
                    rng.fill(d);
                    if (auto r = h.core->on_udp(UdpPort::kMain, SocketAddress{}, d, h.now)) {
                        a.push_back(*r);
                    }
                    break;
                }
            }
            for (const ServerAction& act : a) {
                if (auto* c = std::get_if<CloseConnection>(&act)) open.erase(c->conn);
                // PeerInfo only ever for pairs the ACL allows.
                if (auto* s = std::get_if<SendControl>(&act)) {
                    if (auto* p = std::get_if<PeerInfo>(&s->message)) {
                        const std::string self =
                            p->role == SessionRole::kInitiator ? "laptop" : "nas";
                        CHECK(p->peer == (self == "laptop" ? "nas" : "laptop"));
                        CHECK(p->service == "web");
                    }
                }
            }
            // Invariants: online agents are exactly those with a live current connection.
            size_t online_now = 0;
            for (const auto& [name, rec] : h.core->registry().agents()) {
                if (!rec.online()) continue;
                ++online_now;
                CHECK(open.count(*rec.conn) == 1);
            }
            CHECK(online_now == h.core->registry().online_count());
            CHECK(online_now <= limits.max_agents);
            CHECK(h.core->pending_count() <= limits.max_pending);
            CHECK_FALSE(h.core->registry().find("stranger"));
        }
    }
}

// --- burrow doctor (signal/doctor_book.h) -------------------------------------------------------

namespace {

DoctorReply ask_doctor(Harness& h, ConnId conn, const std::string& peer, uint32_t id = 9) {
    Actions a = h.send(conn, DoctorRequest{id, peer});
    CHECK_FALSE(close_reason(a, conn));
    auto replies = messages_to<DoctorReply>(a, conn);
    REQUIRE(replies.size() == 1);
    CHECK(replies[0].request_id == id);
    CHECK(replies[0].peer == peer);
    return replies[0];
}

}  // namespace

TEST_CASE("doctor: no rendezvous yet, then the pair as each side sees it") {
    Harness h;
    h.login(1, "laptop");
    h.login(2, "nas");
    CHECK(ask_doctor(h, 1, "nas").status == DoctorStatus::kNoRendezvous);
    // A report about a pair the server never joined is kept nowhere.
    PunchReport early;
    early.peer = "nas";
    h.send(1, early);
    CHECK(h.core->stats().punch_reports_dropped == 1);
    CHECK(h.core->doctor_book().size() == 0);

    const SocketAddress host = *parse_socket_address("192.168.1.20:40000");
    h.send(2, Register{{{CandidateKind::kHost, host}}, NatMapping::kPerDestination});
    h.send(1, ConnectRequest{"nas", "web"});
    h.advance(std::chrono::milliseconds(1500));

    PunchReport from_nas;
    from_nas.peer = "laptop";
    from_nas.nat = NatMapping::kPerDestination;
    from_nas.udp_to_server = true;
    from_nas.path = ReportPath::kRelayUdp;
    h.send(2, from_nas);
    CHECK(h.core->stats().punch_reports == 1);
    h.advance(std::chrono::milliseconds(500));

    const DoctorReply laptop_view = ask_doctor(h, 1, "nas");
    CHECK(laptop_view.status == DoctorStatus::kOk);
    CHECK(laptop_view.rendezvous_age_ms == 2000);
    CHECK(laptop_view.peer_side.nat == NatMapping::kPerDestination);
    REQUIRE(laptop_view.peer_side.candidates.size() == 1);
    CHECK(laptop_view.peer_side.candidates[0].address == host);
    REQUIRE(laptop_view.peer_side.report);
    CHECK(*laptop_view.peer_side.report == from_nas);
    CHECK(laptop_view.peer_side.report_age_ms == 500);
    CHECK(laptop_view.self.nat == NatMapping::kUnknown);  // laptop never registered a mapping
    CHECK_FALSE(laptop_view.self.report);

    // The exposing side may ask about the peer that connects to it: the same record, mirrored.
    const DoctorReply nas_view = ask_doctor(h, 2, "laptop");
    CHECK(nas_view.status == DoctorStatus::kOk);
    CHECK(nas_view.self == laptop_view.peer_side);
    CHECK(nas_view.peer_side == laptop_view.self);
}

TEST_CASE("doctor: unknown, denied and self look the same and say nothing") {
    Harness h;
    h.login(1, "laptop");
    h.login(2, "nas");
    h.login(3, "phone");
    h.send(1, ConnectRequest{"nas", "web"});
    REQUIRE(h.core->doctor_book().size() == 1);
    for (const char* peer : {"nobody", "phone", "laptop"}) {
        const DoctorReply r = ask_doctor(h, 1, peer);
        CHECK(r.status == DoctorStatus::kNotAllowed);
        CHECK(r.self == DoctorSide{});
        CHECK(r.peer_side == DoctorSide{});
    }
    // phone has no rule with nas: the laptop-nas record is not its business.
    CHECK(ask_doctor(h, 3, "nas").status == DoctorStatus::kNotAllowed);
    // A report from phone about nas is dropped (no rendezvous of that pair).
    PunchReport r;
    r.peer = "nas";
    h.send(3, r);
    CHECK(h.core->stats().punch_reports_dropped == 1);
}
