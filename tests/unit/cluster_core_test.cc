// ClusterCore (signal/cluster_core.h) and its codec (signal/cluster_message.h), alone and as
// two ServerCores joined through an in-memory Redis that runs the commands they ask for.
#include <catch2/catch.hpp>

#include <deque>
#include <map>

#include "signal/cluster_core.h"
#include "signal/cluster_message.h"
#include "signal_server_harness.h"
#include "tunnel/wire.h"

using namespace burrow;
using namespace burrow::test;

namespace {

const Time kT0 = time_from_us(1'000'000);

PeerInfo sample_info() {
    PeerInfo p;
    p.session_id = 0xfedcba9876543210;  // all 64 bits: ids are random
    p.peer = "laptop";
    p.peer_pub[0] = 7;
    p.candidates = {{CandidateKind::kHost, *parse_socket_address("192.168.1.2:4000")}};
    p.nat = NatMapping::kEndpointIndependent;
    p.relay_token[3] = 9;
    p.start_in_ms = 480;
    p.role = SessionRole::kResponder;
    p.service = "web";
    p.opener = false;
    return p;
}

std::vector<RedisCommand> commands(const std::vector<ClusterEvent>& events) {
    std::vector<RedisCommand> out;
    for (const auto& e : events) {
        if (auto* c = std::get_if<RedisCommand>(&e)) out.push_back(*c);
    }
    return out;
}

template <class T>
std::vector<T> events_of(const std::vector<ClusterEvent>& events) {
    std::vector<T> out;
    for (const auto& e : events) {
        if (auto* x = std::get_if<T>(&e)) out.push_back(*x);
    }
    return out;
}

PunchReport sample_report() {
    PunchReport r;
    r.peer = "laptop";
    r.nat = NatMapping::kEndpointIndependent;
    r.udp_to_server = true;
    r.candidates = {{CandidateKind::kHost, *parse_socket_address("192.168.1.20:40000")}};
    r.tried = {*parse_socket_address("203.0.113.7:5000")};
    r.answered = *parse_socket_address("203.0.113.7:5000");
    r.strategy = ReportStrategy::kPlain;
    r.source = ReportSource::kServerReflexive;
    r.time_to_direct_ms = 350;
    r.path = ReportPath::kDirect;
    return r;
}

CrossConnect cross(uint64_t conn = 5) {
    return CrossConnect{conn, "laptop", ConnectRequest{"nas", "web"}, sample_info()};
}

}  // namespace

TEST_CASE("cluster messages round-trip, 64-bit session ids included") {
    ClusterRendezvous r{42, "s1", "laptop", "nas", "web", sample_info()};
    ClusterRendezvousReply ok{42, true, "", sample_info()};
    ClusterRendezvousReply no{43, false, "peer offline", {}};
    ClusterRelay relay{0xfedcba9876543210, {}, "laptop", "s1", Bytes{1, 2, 3, 4}};
    relay.token[0] = 0xaa;
    ClusterPunchReport report{"s2", "nas", sample_report()};
    ClusterRefresh refresh{"s1", "laptop", "nas", true, sample_info()};
    ClusterRefresh answer{"s2", "nas", "laptop", false, sample_info()};
    for (const ClusterMessage& m :
         std::vector<ClusterMessage>{r, ok, no, relay, report, refresh, answer}) {
        const Bytes b = encode_cluster(m);
        auto back = decode_cluster(b);
        REQUIRE(back);
        CHECK(*back == m);
        // Every strict prefix and one extra byte are refused.
        for (size_t n = 0; n < b.size(); ++n) CHECK_FALSE(decode_cluster(ByteView(b).first(n)));
        Bytes longer = b;
        longer.push_back(0);
        CHECK_FALSE(decode_cluster(longer));
    }
    CHECK_FALSE(decode_cluster(Bytes{2, 1}));     // another version
    CHECK_FALSE(decode_cluster(Bytes{1, 9, 0}));  // unknown type
}

TEST_CASE("cluster messages: a PunchReport and a Refresh are checked whole") {
    const auto refresh_bytes = [](uint8_t answer, std::string_view from, const ControlMessage& m) {
        Bytes out{kClusterVersion, 5};
        ByteWriter w(out);
        w.varint(from.size());
        w.bytes(as_bytes(from));
        for (std::string_view s : {"laptop", "nas"}) {
            w.varint(s.size());
            w.bytes(as_bytes(s));
        }
        w.u8(answer);
        const Bytes frame = encode_control(m);
        w.varint(frame.size());
        w.bytes(frame);
        return out;
    };
    CHECK(decode_cluster(refresh_bytes(1, "s1", sample_info())));
    CHECK_FALSE(decode_cluster(refresh_bytes(2, "s1", sample_info())));  // answer not 0 or 1
    CHECK_FALSE(decode_cluster(refresh_bytes(1, "", sample_info())));    // no sender's server
    // A whole control frame of another kind where the PeerInfo belongs.
    CHECK_FALSE(decode_cluster(refresh_bytes(1, "s1", sample_report())));
    // A PunchReport whose frame holds a PeerInfo instead.
    Bytes report = encode_cluster(ClusterPunchReport{"s2", "nas", sample_report()});
    CHECK(decode_cluster(report));
    Bytes wrong{kClusterVersion, 4};
    ByteWriter w(wrong);
    for (std::string_view s : {"s2", "nas"}) {
        w.varint(s.size());
        w.bytes(as_bytes(s));
    }
    const Bytes frame = encode_control(sample_info());
    w.varint(frame.size());
    w.bytes(frame);
    CHECK_FALSE(decode_cluster(wrong));
    // The frame's own length prefix must agree with the blob's.
    Bytes bad_length = report;
    const size_t prefix = bad_length.size() - encode_control(sample_report()).size();
    bad_length[prefix + 3] ^= 1;
    CHECK_FALSE(decode_cluster(bad_length));
}

TEST_CASE("cluster core: presence follows agents and Redis") {
    ClusterCore c(ClusterConfig{"s1"});
    CHECK(c.channel() == "burrow:server:s1");
    // Redis down: nothing is written, but the agent is remembered.
    CHECK(commands(c.agent_online("nas", kT0)).empty());
    auto up = commands(c.on_redis_up(kT0));
    REQUIRE(up.size() == 1);
    CHECK(up[0].args == std::vector<std::string>{"SET", "burrow:agent:nas", "s1", "EX", "30"});
    CHECK(c.next_deadline() == kT0 + kPresenceRenew);
    auto more = commands(c.agent_online("laptop", kT0));
    REQUIRE(more.size() == 1);
    CHECK(more[0].args[1] == "burrow:agent:laptop");
    CHECK(commands(c.on_timer(kT0 + kPresenceRenew - std::chrono::milliseconds(1))).empty());
    CHECK(commands(c.on_timer(kT0 + kPresenceRenew)).size() == 2);  // both renewed
    auto gone = commands(c.agent_offline("nas"));
    REQUIRE(gone.size() == 1);
    CHECK(gone[0].args[0] == "EVAL");
    CHECK(gone[0].args[3] == "burrow:agent:nas");
    CHECK(gone[0].args[4] == "s1");  // deleted only while it names this server
    CHECK(commands(c.on_timer(kT0 + 2 * kPresenceRenew)).size() == 1);
    c.on_redis_down(kT0);
    CHECK(c.next_deadline() == kNever);
}

TEST_CASE("cluster core: a cross-server connect and every way it ends") {
    ClusterCore c(ClusterConfig{"s1"});
    SECTION("Redis down: refused at once, naming Redis") {
        auto f = events_of<ClusterConnectFailed>(c.connect(cross(), kT0));
        REQUIRE(f.size() == 1);
        CHECK(f[0].reason.find("Redis") != std::string::npos);
        CHECK(f[0].connect.conn == 5);
    }
    c.on_redis_up(kT0);
    auto lookup = commands(c.connect(cross(), kT0));
    REQUIRE(lookup.size() == 1);
    CHECK(lookup[0].args == std::vector<std::string>{"GET", "burrow:agent:nas"});
    const uint64_t tag = lookup[0].tag;
    REQUIRE(tag != 0);
    SECTION("not in Redis: peer offline") {
        auto f = events_of<ClusterConnectFailed>(c.on_reply(tag, {RedisReply::Kind::kNil, "", 0}, kT0));
        REQUIRE(f.size() == 1);
        CHECK(f[0].reason == "peer offline");
        CHECK(c.pending_count() == 0);
    }
    SECTION("found: the rendezvous is published to its server, then answered") {
        auto pub = commands(c.on_reply(tag, {RedisReply::Kind::kString, "s2", 0}, kT0));
        REQUIRE(pub.size() == 1);
        CHECK(pub[0].args[0] == "PUBLISH");
        CHECK(pub[0].args[1] == "burrow:server:s2");
        auto sent = decode_cluster(as_bytes(pub[0].args[2]));
        REQUIRE(sent);
        auto& r = std::get<ClusterRendezvous>(*sent);
        CHECK(r.from_server == "s1");
        CHECK(r.peer == "nas");
        CHECK(r.to_peer == sample_info());
        SECTION("nobody subscribed: the server is not listening") {
            RedisReply zero{RedisReply::Kind::kInteger, "", 0};
            auto f = events_of<ClusterConnectFailed>(c.on_reply(pub[0].tag, zero, kT0));
            REQUIRE(f.size() == 1);
            CHECK(f[0].reason.find("\"s2\" is not listening") != std::string::npos);
        }
        SECTION("answered with PeerInfo") {
            c.on_reply(pub[0].tag, {RedisReply::Kind::kInteger, "", 1}, kT0);
            PeerInfo about_nas = sample_info();
            about_nas.peer = "nas";
            const Bytes answer =
                encode_cluster(ClusterRendezvousReply{r.request_id, true, "", about_nas});
            auto a = events_of<ClusterConnectAnswered>(c.on_message(answer, kT0));
            REQUIRE(a.size() == 1);
            CHECK(a[0].to_requester == about_nas);
            CHECK(a[0].peer_server == "s2");
            CHECK(c.pending_count() == 0);
            // A second answer finds nothing waiting.
            CHECK(c.on_message(answer, kT0).empty());
        }
        SECTION("an answer about another agent is refused") {
            const Bytes answer =
                encode_cluster(ClusterRendezvousReply{r.request_id, true, "", sample_info()});
            CHECK(events_of<ClusterConnectFailed>(c.on_message(answer, kT0)).size() == 1);
        }
        SECTION("refused by the other server") {
            const Bytes answer = encode_cluster(
                ClusterRendezvousReply{r.request_id, false, "not allowed by the server", {}});
            auto f = events_of<ClusterConnectFailed>(c.on_message(answer, kT0));
            REQUIRE(f.size() == 1);
            CHECK(f[0].reason == "not allowed by the server");
        }
        SECTION("no answer: timed out") {
            CHECK(c.next_deadline() == kT0 + kClusterConnectTimeout);
            auto f = events_of<ClusterConnectFailed>(c.on_timer(kT0 + kClusterConnectTimeout));
            REQUIRE(f.size() == 1);
            CHECK(f[0].reason.find("no answer from the peer's server \"s2\"") !=
                  std::string::npos);
        }
        SECTION("Redis goes away: the connect fails naming Redis") {
            auto f = events_of<ClusterConnectFailed>(c.on_redis_down(kT0));
            REQUIRE(f.size() == 1);
            CHECK(f[0].reason.find("Redis") != std::string::npos);
        }
    }
    SECTION("malformed messages are counted and change nothing") {
        auto e = c.on_message(Bytes{1, 2, 3}, kT0);
        CHECK(events_of<ClusterLog>(e).size() == 1);
        CHECK(c.stats().malformed == 1);
        CHECK(c.pending_count() == 1);
    }
}

// ---- two servers through an in-memory Redis ----------------------------------------------------

namespace {

// GET, SET, EVAL (the delete-if-owned script) and PUBLISH, as Redis runs them; PUBLISH
// delivers to the subscribed core after the command (Redis answers the publisher first).
struct FakeRedis {
    std::map<std::string, std::string> kv;
    std::map<std::string, ServerCore*> subscribers;  // channel -> core
    bool up = true;
    Time now = kT0;
    // Non-Redis actions each core produced, by core.
    std::map<ServerCore*, Actions> seen;

    void run(ServerCore* from, Actions actions) {
        std::deque<std::pair<ServerCore*, Actions>> work{{from, std::move(actions)}};
        while (!work.empty()) {
            auto [core, list] = std::move(work.front());
            work.pop_front();
            for (auto& a : list) {
                auto* cmd = std::get_if<RedisCommand>(&a);
                if (!cmd) {
                    seen[core].push_back(std::move(a));
                    continue;
                }
                REQUIRE(up);  // a core never sends while it knows Redis is down
                RedisReply reply{RedisReply::Kind::kString, "OK", 0};
                const auto& args = cmd->args;
                std::optional<std::pair<ServerCore*, Bytes>> deliver;
                if (args[0] == "SET") {
                    kv[args[1]] = args[2];
                } else if (args[0] == "GET") {
                    auto it = kv.find(args[1]);
                    reply = it == kv.end() ? RedisReply{RedisReply::Kind::kNil, "", 0}
                                           : RedisReply{RedisReply::Kind::kString, it->second, 0};
                } else if (args[0] == "EVAL") {
                    auto it = kv.find(args[3]);
                    const bool owned = it != kv.end() && it->second == args[4];
                    if (owned) kv.erase(it);
                    reply = RedisReply{RedisReply::Kind::kInteger, "", owned ? 1 : 0};
                } else if (args[0] == "PUBLISH") {
                    auto it = subscribers.find(args[1]);
                    reply = RedisReply{RedisReply::Kind::kInteger, "", it == subscribers.end() ? 0 : 1};
                    if (it != subscribers.end()) {
                        deliver.emplace(it->second, Bytes(args[2].begin(), args[2].end()));
                    }
                } else {
                    FAIL("unexpected Redis command " << args[0]);
                }
                if (cmd->tag != 0) work.emplace_back(core, core->on_redis_reply(cmd->tag, reply, now));
                if (deliver) {
                    work.emplace_back(deliver->first,
                                      deliver->first->on_cluster_message(deliver->second, now));
                }
            }
        }
    }
    Actions take(ServerCore* core) { return std::exchange(seen[core], {}); }
};

struct TwoServers {
    explicit TwoServers(bool same_identity = true, int count = 2) {
        // laptop may open nas/web (across servers) and phone/web (on its own server).
        acl = h.acl_config;
        acl.allow.push_back({"laptop", "phone", {"web"}});
        for (int i = 0; i < count; ++i) {
            ServerCoreConfig config = h.core_config;
            config.cluster = ClusterConfig{"s" + std::to_string(i + 1)};
            if (i == 1 && !same_identity) config.static_key = PrivateKey::generate(h.key_rng);
            std::string error;
            auto a = Acl::create(acl, &error);
            REQUIRE(a);
            cores[i] = std::make_unique<ServerCore>(config, std::move(*a), h.rng);
            redis.subscribers[cores[i]->cluster()->channel()] = cores[i].get();
            redis.run(cores[i].get(), cores[i]->on_redis_up(kT0));
        }
    }
    ServerCore* s(int i) { return cores[i].get(); }

    // Authenticates agent on conn of server i.
    void login(int i, ConnId conn, const std::string& agent) {
        Actions a = s(i)->on_connection_open(conn, kT0);
        auto hello = messages_to<ServerHello>(a, conn);
        REQUIRE(hello.size() == 1);
        Auth auth{h.pubs.at(agent),
                  *compute_auth_proof(h.keys.at(agent), hello[0].server_static_pub,
                                      hello[0].nonce),
                  "test"};
        redis.run(s(i), s(i)->on_control_bytes(conn, encode_control(auth), kT0));
        REQUIRE(messages_to<AuthOk>(redis.take(s(i)), conn).size() == 1);
    }
    void send(int i, ConnId conn, const ControlMessage& m) {
        redis.run(s(i), s(i)->on_control_bytes(conn, encode_control(m), kT0));
    }

    Harness h;
    AclConfig acl;
    std::unique_ptr<ServerCore> cores[3];
    FakeRedis redis;
};

}  // namespace

TEST_CASE("two servers: presence, rendezvous and relay across them") {
    TwoServers t;
    t.login(0, 1, "laptop");
    t.login(1, 1, "nas");
    CHECK(t.redis.kv.at("burrow:agent:laptop") == "s1");
    CHECK(t.redis.kv.at("burrow:agent:nas") == "s2");

    const SocketAddress host = *parse_socket_address("192.168.1.20:40000");
    t.send(1, 1, Register{{{CandidateKind::kHost, host}}, NatMapping::kEndpointIndependent});
    t.send(0, 1, ConnectRequest{"nas", "web"});
    auto to_laptop = messages_to<PeerInfo>(t.redis.take(t.s(0)), 1);
    auto to_nas = messages_to<PeerInfo>(t.redis.take(t.s(1)), 1);
    REQUIRE(to_laptop.size() == 1);
    REQUIRE(to_nas.size() == 1);
    // Each learns the other as from one server: keys, candidates, one session, two roles.
    CHECK(to_laptop[0].peer == "nas");
    CHECK(to_laptop[0].peer_pub == t.h.pubs.at("nas"));
    CHECK(to_laptop[0].candidates.at(0).address == host);
    CHECK(to_laptop[0].opener);
    CHECK(to_nas[0].peer == "laptop");
    CHECK(to_nas[0].peer_pub == t.h.pubs.at("laptop"));
    CHECK_FALSE(to_nas[0].opener);
    CHECK(to_nas[0].service == "web");
    CHECK(to_laptop[0].session_id == to_nas[0].session_id);
    CHECK(to_laptop[0].relay_token == to_nas[0].relay_token);
    CHECK(to_laptop[0].role != to_nas[0].role);
    CHECK(t.s(0)->stats().rendezvous == 1);
    CHECK(t.s(1)->stats().rendezvous == 1);

    // Relayed over laptop's TLS connection: s1 -> Redis -> s2 -> nas, and back.
    const uint64_t id = to_laptop[0].session_id;
    t.send(0, 1, RelayData{id, Bytes{1, 2, 3}});
    auto at_nas = messages_to<RelayData>(t.redis.take(t.s(1)), 1);
    REQUIRE(at_nas.size() == 1);
    CHECK(at_nas[0].payload == Bytes{1, 2, 3});
    t.send(1, 1, RelayData{id, Bytes{4, 5}});
    auto at_laptop = messages_to<RelayData>(t.redis.take(t.s(0)), 1);
    REQUIRE(at_laptop.size() == 1);
    CHECK(at_laptop[0].payload == Bytes{4, 5});

    // nas leaves: its presence goes, and a new connect says the peer is offline.
    t.redis.run(t.s(1), t.s(1)->on_connection_closed(1, kT0));
    CHECK(t.redis.kv.count("burrow:agent:nas") == 0);
    t.send(0, 1, ConnectRequest{"nas", "web"});
    auto refused = messages_to<ConnectRefused>(t.redis.take(t.s(0)), 1);
    REQUIRE(refused.size() == 1);
    CHECK(refused[0].reason == "peer offline");
}

namespace {

DoctorReply ask_doctor(TwoServers& t, int i, ConnId conn, const std::string& peer) {
    t.send(i, conn, DoctorRequest{7, peer});
    auto replies = messages_to<DoctorReply>(t.redis.take(t.s(i)), conn);
    REQUIRE(replies.size() == 1);
    return replies[0];
}

// laptop on s1 (conn 1) has connected to nas on s2 (conn 1), which registered `nas_host`.
void meet_across(TwoServers& t, const SocketAddress& nas_host) {
    t.login(0, 1, "laptop");
    t.login(1, 1, "nas");
    t.send(1, 1, Register{{{CandidateKind::kHost, nas_host}}, NatMapping::kEndpointIndependent});
    t.send(0, 1, ConnectRequest{"nas", "web"});
    REQUIRE(messages_to<PeerInfo>(t.redis.take(t.s(0)), 1).size() == 1);
    REQUIRE(messages_to<PeerInfo>(t.redis.take(t.s(1)), 1).size() == 1);
}

}  // namespace

TEST_CASE("two servers: burrow doctor on either server sees both sides") {
    TwoServers t;
    const SocketAddress nas_host = *parse_socket_address("192.168.1.20:40000");
    meet_across(t, nas_host);
    // Both servers recorded the rendezvous: each side's NAT and candidates.
    for (int i = 0; i < 2; ++i) {
        const DoctorRecord* r = t.s(i)->doctor_book().find("laptop", "nas");
        REQUIRE(r);
        CHECK(r->nat[1] == NatMapping::kEndpointIndependent);  // "nas" sorts second
        REQUIRE(r->candidates[1].size() == 1);
        CHECK(r->candidates[1][0].address == nas_host);
    }

    // Each agent reports to its own server; the report reaches the peer's server too.
    PunchReport from_nas = sample_report();
    t.send(1, 1, from_nas);
    PunchReport from_laptop = sample_report();
    from_laptop.peer = "nas";
    from_laptop.answered = nas_host;
    from_laptop.source = ReportSource::kHost;
    t.send(0, 1, from_laptop);
    for (int i = 0; i < 2; ++i) {
        CHECK(t.s(i)->stats().punch_reports == 2);
        CHECK(t.s(i)->cluster()->stats().reports_out == 1);
        CHECK(t.s(i)->cluster()->stats().reports_in == 1);
    }

    const DoctorReply laptop_view = ask_doctor(t, 0, 1, "nas");
    CHECK(laptop_view.status == DoctorStatus::kOk);
    REQUIRE(laptop_view.self.report);
    CHECK(*laptop_view.self.report == from_laptop);
    REQUIRE(laptop_view.peer_side.report);
    CHECK(*laptop_view.peer_side.report == from_nas);
    CHECK(laptop_view.peer_side.nat == NatMapping::kEndpointIndependent);
    // nas is on s2, with the pair's session live: not "offline".
    CHECK(laptop_view.peer_side.online);
    CHECK(laptop_view.self.online);

    // And the same record, mirrored, on the other server.
    const DoctorReply nas_view = ask_doctor(t, 1, 1, "laptop");
    CHECK(nas_view.status == DoctorStatus::kOk);
    CHECK(nas_view.self.report == laptop_view.peer_side.report);
    CHECK(nas_view.peer_side.report == laptop_view.self.report);
    CHECK(nas_view.self.candidates == laptop_view.peer_side.candidates);
    CHECK(nas_view.peer_side.nat == laptop_view.self.nat);
}

TEST_CASE("two servers: doctor keeps the ACL, and reports about pairs never joined are dropped") {
    TwoServers t;
    meet_across(t, *parse_socket_address("192.168.1.20:40000"));
    t.login(0, 2, "phone");
    // phone has no rule with nas: refused on s1 whatever s1 holds about nas.
    CHECK(ask_doctor(t, 0, 2, "nas").status == DoctorStatus::kNotAllowed);
    // A report from another server about a pair the ACL does not join is kept nowhere.
    PunchReport forged = sample_report();
    forged.peer = "phone";
    t.redis.run(t.s(0), t.s(0)->on_cluster_message(
                            encode_cluster(ClusterPunchReport{"s2", "nas", forged}), kT0));
    CHECK(t.s(0)->stats().punch_reports_dropped == 1);
    CHECK(t.s(0)->doctor_book().find("nas", "phone") == nullptr);
    // Nor one that claims to come from an agent connected here.
    PunchReport as_laptop = sample_report();
    as_laptop.peer = "nas";
    t.redis.run(t.s(0), t.s(0)->on_cluster_message(
                            encode_cluster(ClusterPunchReport{"s2", "laptop", as_laptop}), kT0));
    CHECK(t.s(0)->stats().punch_reports_dropped == 2);
    CHECK_FALSE(t.s(0)->doctor_book().find("laptop", "nas")->reports[0]);
}

TEST_CASE("two servers: new candidates on one server tell both agents again") {
    TwoServers t;
    const SocketAddress nas_host = *parse_socket_address("192.168.1.20:40000");
    meet_across(t, nas_host);
    const uint64_t id = t.s(0)->relays().sessions_of("laptop").at(0)->id;
    const SocketAddress mapped = *parse_socket_address("198.51.100.9:41000");

    SECTION("the opener's, on the requester's server") {
        t.send(0, 1, Register{{{CandidateKind::kMapped, mapped}}, NatMapping::kPerDestination});
        auto to_nas = messages_to<PeerInfo>(t.redis.take(t.s(1)), 1);
        REQUIRE(to_nas.size() == 1);
        CHECK(to_nas[0].session_id == id);
        CHECK(to_nas[0].peer == "laptop");
        CHECK(to_nas[0].candidates.at(0).address == mapped);
        CHECK(to_nas[0].nat == NatMapping::kPerDestination);
        CHECK_FALSE(to_nas[0].opener);
        CHECK(to_nas[0].service == "web");
        auto to_laptop = messages_to<PeerInfo>(t.redis.take(t.s(0)), 1);
        REQUIRE(to_laptop.size() == 1);
        CHECK(to_laptop[0].session_id == id);
        CHECK(to_laptop[0].peer == "nas");
        CHECK(to_laptop[0].candidates.at(0).address == nas_host);
        CHECK(to_laptop[0].opener);
        CHECK(to_laptop[0].role != to_nas[0].role);
        CHECK(t.s(0)->stats().rendezvous_refreshed == 1);
        CHECK(t.s(1)->stats().rendezvous_refreshed == 0);  // counted once, where it changed
        // Both doctor books hold the new candidates.
        for (int i = 0; i < 2; ++i) {
            CHECK(t.s(i)->doctor_book().find("laptop", "nas")->candidates[0].at(0).address ==
                  mapped);
        }
    }
    SECTION("the exposing side's, on the peer's server") {
        t.send(1, 1,
               Register{{{CandidateKind::kMapped, mapped}}, NatMapping::kEndpointIndependent});
        auto to_laptop = messages_to<PeerInfo>(t.redis.take(t.s(0)), 1);
        REQUIRE(to_laptop.size() == 1);
        CHECK(to_laptop[0].session_id == id);
        CHECK(to_laptop[0].candidates.at(0).address == mapped);
        CHECK(to_laptop[0].opener);
        auto to_nas = messages_to<PeerInfo>(t.redis.take(t.s(1)), 1);
        REQUIRE(to_nas.size() == 1);
        CHECK(to_nas[0].peer == "laptop");
        CHECK_FALSE(to_nas[0].opener);
        CHECK(t.s(1)->stats().rendezvous_refreshed == 1);
    }
    SECTION("unchanged candidates tell nobody") {
        t.send(1, 1,
               Register{{{CandidateKind::kHost, nas_host}}, NatMapping::kEndpointIndependent});
        CHECK(messages_to<PeerInfo>(t.redis.take(t.s(0)), 1).empty());
        CHECK(t.s(1)->cluster()->stats().refreshes_out == 0);
    }
    SECTION("a refresh with another token or about another agent is ignored") {
        PeerInfo info;
        info.session_id = id;
        info.peer = "laptop";
        info.peer_pub = t.h.pubs.at("laptop");
        info.service = "web";
        info.opener = false;  // laptop opened web on nas
        const auto refresh = [&](const std::string& agent) {
            t.redis.run(t.s(1), t.s(1)->on_cluster_message(
                                    encode_cluster(ClusterRefresh{"s1", agent, "nas", false, info}),
                                    kT0));
            return messages_to<PeerInfo>(t.redis.take(t.s(1)), 1);
        };
        CHECK(refresh("laptop").empty());  // a zero token is not the session's
        info.relay_token = t.s(1)->relays().find(id)->token;
        CHECK(refresh("laptop").size() == 1);  // the same, with the session's token, goes through
        // Another agent than the session's, or than the PeerInfo is about.
        CHECK(refresh("phone").empty());
        info.peer = "phone";
        info.peer_pub = t.h.pubs.at("phone");
        CHECK(refresh("phone").empty());
        // A service never opened on the session grants nothing.
        info.peer = "laptop";
        info.peer_pub = t.h.pubs.at("laptop");
        info.service = "ssh";
        CHECK(refresh("laptop").empty());
    }
}

TEST_CASE("three servers: an agent that moves re-attaches and the relay follows it") {
    TwoServers t(true, 3);
    t.login(0, 1, "laptop");
    t.login(1, 1, "nas");
    t.send(0, 1, ConnectRequest{"nas", "web"});
    auto to_nas = messages_to<PeerInfo>(t.redis.take(t.s(1)), 1);
    REQUIRE(to_nas.size() == 1);
    t.redis.take(t.s(0));
    const uint64_t id = to_nas[0].session_id;
    // nas loses s2 and registers with s3, then re-attaches its session there.
    t.redis.run(t.s(1), t.s(1)->on_connection_closed(1, kT0));
    t.login(2, 7, "nas");
    CHECK(t.redis.kv.at("burrow:agent:nas") == "s3");
    t.send(2, 7, RelayAttach{id, "laptop", to_nas[0].relay_token, to_nas[0].role});
    // nas -> s3 -> s1 -> laptop, and the answer laptop -> s1 -> s3 -> nas (not the old s2).
    t.send(2, 7, RelayData{id, Bytes{9}});
    auto at_laptop = messages_to<RelayData>(t.redis.take(t.s(0)), 1);
    REQUIRE(at_laptop.size() == 1);
    CHECK(at_laptop[0].payload == Bytes{9});
    t.send(0, 1, RelayData{id, Bytes{8}});
    auto at_nas = messages_to<RelayData>(t.redis.take(t.s(2)), 7);
    REQUIRE(at_nas.size() == 1);
    CHECK(at_nas[0].payload == Bytes{8});
    CHECK(t.s(1)->cluster()->stats().relayed_in == 0);
}

TEST_CASE("two servers: Redis down refuses cross-server connects only, and recovers") {
    TwoServers t;
    t.login(0, 1, "laptop");
    t.login(0, 2, "phone");
    t.login(1, 1, "nas");
    t.redis.up = false;
    for (int i = 0; i < 2; ++i) t.redis.run(t.s(i), t.s(i)->on_redis_down(kT0));
    t.send(0, 1, ConnectRequest{"nas", "web"});
    auto refused = messages_to<ConnectRefused>(t.redis.take(t.s(0)), 1);
    REQUIRE(refused.size() == 1);
    CHECK(refused[0].reason.find("Redis") != std::string::npos);
    // A local pair still meets.
    t.send(0, 1, ConnectRequest{"phone", "web"});
    CHECK(messages_to<PeerInfo>(t.redis.take(t.s(0)), 2).size() == 1);
    // Redis comes back empty (restarted): each server writes its agents' presence again.
    t.redis.kv.clear();
    t.redis.up = true;
    for (int i = 0; i < 2; ++i) t.redis.run(t.s(i), t.s(i)->on_redis_up(kT0));
    CHECK(t.redis.kv.at("burrow:agent:nas") == "s2");
    t.send(0, 1, ConnectRequest{"nas", "web"});
    CHECK(messages_to<PeerInfo>(t.redis.take(t.s(0)), 1).size() == 1);
    CHECK(messages_to<PeerInfo>(t.redis.take(t.s(1)), 1).size() == 1);
}

TEST_CASE("two servers: the ACL and the shared identity key are checked across servers") {
    SECTION("not allowed: refused before Redis is asked") {
        TwoServers t;
        t.login(0, 1, "phone");
        t.login(1, 1, "nas");
        t.send(0, 1, ConnectRequest{"nas", "web"});
        auto refused = messages_to<ConnectRefused>(t.redis.take(t.s(0)), 1);
        REQUIRE(refused.size() == 1);
        CHECK(refused[0].reason == "not allowed by the server");
        CHECK(messages_to<PeerInfo>(t.redis.take(t.s(1)), 1).empty());
    }
    SECTION("servers with different identity keys cannot share relay sessions") {
        TwoServers t(false);
        t.login(0, 1, "laptop");
        t.login(1, 1, "nas");
        t.send(0, 1, ConnectRequest{"nas", "web"});
        auto refused = messages_to<ConnectRefused>(t.redis.take(t.s(0)), 1);
        REQUIRE(refused.size() == 1);
        CHECK(refused[0].reason.find("identity_key") != std::string::npos);
        CHECK(messages_to<PeerInfo>(t.redis.take(t.s(1)), 1).empty());
    }
}

TEST_CASE("without [cluster] nothing touches Redis") {
    Harness h;
    h.login(1, "laptop");
    Actions a = h.send(1, ConnectRequest{"nas", "web"});
    for (const auto& x : a) CHECK_FALSE(std::holds_alternative<RedisCommand>(x));
    CHECK(messages_to<ConnectRefused>(a, 1).at(0).reason == "peer offline");
    CHECK(h.core->cluster() == nullptr);
}
