// AgentClients wired to a real ServerCore in memory: control frames go by connection id, UDP
// datagrams through fake NATs with made-up addresses, time is virtual and nothing sleeps.
#include <catch2/catch.hpp>

#include <functional>
#include <set>

#include "signal/agent_client.h"
#include "signal/udp_messages.h"
#include "signal_server_harness.h"

using namespace burrow;
using namespace burrow::test;
using std::chrono::milliseconds;
using std::chrono::seconds;

namespace {

enum class NatKind {
    kNone,                 // the agent's own address is public
    kEndpointIndependent,  // one mapping for every destination (MASQUERADE)
    kSymmetric,            // a different source port per destination port (--random-fully)
};

constexpr uint16_t kAgentPort = 40000;     // the agent's UDP socket
constexpr uint16_t kNatBasePort = 61000;   // what its NAT maps it to
constexpr uint16_t kSymmetricStride = 77;  // symmetric NAT: another port per destination

struct Agent {
    std::string name;  // the key it holds in the harness
    NatKind nat = NatKind::kEndpointIndependent;
    SocketAddress host;
    std::array<uint8_t, kIpv4Size> public_ip{};
    std::unique_ptr<AgentClient> client;

    std::optional<ConnId> conn;  // its TLS connection at the server
    bool refuse_dials = false;   // the server's TCP port is unreachable
    bool udp_blocked = false;    // every datagram to or from it is lost
    bool server_muted = false;   // nothing from the server reaches it (a black-holed TCP path)
    double udp_loss = 0;         // chance each datagram to or from it is lost
    // Changes a message from the server before the client sees it (a man in the middle).
    std::function<void(ControlMessage&)> tamper;

    std::vector<std::pair<Time, AgentEvent>> events;
    std::vector<Time> dial_times;
    std::vector<ControlMessage> sent;  // every message it sent to the server

    // The address its NAT gives it towards the server's `to` port.
    SocketAddress mapped(UdpPort to) const {
        if (nat == NatKind::kNone) return host;
        uint16_t port = kNatBasePort;
        if (nat == NatKind::kSymmetric) {
            port = static_cast<uint16_t>(port + kSymmetricStride * (1 + static_cast<int>(to)));
        }
        return SocketAddress::ipv4(public_ip, port);
    }
    bool connected() const {
        const AgentClientState s = client->state();
        return s == AgentClientState::kAwaitingHello || s == AgentClientState::kAwaitingAuthOk ||
               s == AgentClientState::kOnline;
    }

    template <class T>
    std::vector<T> all() const {
        std::vector<T> out;
        for (const auto& [t, e] : events) {
            if (auto* x = std::get_if<T>(&e)) out.push_back(*x);
        }
        return out;
    }
    template <class T>
    std::vector<Time> times() const {
        std::vector<Time> out;
        for (const auto& [t, e] : events) {
            if (std::holds_alternative<T>(e)) out.push_back(t);
        }
        return out;
    }
    template <class T>
    std::optional<T> last() const {
        std::vector<T> v = all<T>();
        if (v.empty()) return std::nullopt;
        return v.back();
    }
    template <class T>
    std::vector<T> sent_of() const {
        std::vector<T> out;
        for (const ControlMessage& m : sent) {
            if (auto* x = std::get_if<T>(&m)) out.push_back(*x);
        }
        return out;
    }
};

class World {
  public:
    explicit World(uint64_t seed = 1) : h(seed), net_rng(seed ^ 0x4e47) {}

    Agent& add(const std::string& name, NatKind nat = NatKind::kEndpointIndependent,
               std::optional<std::string> key_of = std::nullopt,
               std::optional<PublicKey> pinned = std::nullopt) {
        auto a = std::make_unique<Agent>();
        a->name = name;
        a->nat = nat;
        const auto n = static_cast<uint8_t>(agents.size() + 1);
        a->public_ip = {203, 0, 113, n};
        a->host = nat == NatKind::kNone ? SocketAddress::ipv4(a->public_ip, kAgentPort)
                                        : SocketAddress::ipv4({192, 168, n, 10}, kAgentPort);
        AgentClientConfig config;
        config.key = h.keys.at(key_of.value_or(name));
        config.server_key = pinned;
        config.software = software;
        a->client = std::make_unique<AgentClient>(config, h.rng, h.now);
        a->client->set_host_candidates({a->host}, h.now);
        agents.push_back(std::move(a));
        return *agents.back();
    }

    // Delivers every output until nothing moves.
    void pump() {
        for (int round = 0;; ++round) {
            REQUIRE(round < 10000);
            bool moved = false;
            for (auto& a : agents) moved |= drain(*a);
            if (!moved) break;
        }
    }

    // Runs virtual time forward by d, firing every deadline on the way.
    void run_for(Duration d) {
        const Time end = h.now + d;
        while (step(end)) {
        }
    }

    // Runs until pred() holds (checked after every deadline), at most `limit`.
    bool run_until(const std::function<bool()>& pred, Duration limit = seconds(60)) {
        const Time end = h.now + limit;
        pump();
        while (!pred()) {
            if (!step(end)) return pred();
        }
        return true;
    }

    // The server end of a's connection closes (the server restarted, a middlebox reset it).
    void drop_connection(Agent& a, const std::string& reason) {
        REQUIRE(a.conn);
        const ConnId c = *a.conn;
        a.conn.reset();
        process(h.core->on_connection_closed(c, h.now));
        a.client->on_disconnected(reason, h.now);
        pump();
    }

    // The server restarts: every connection drops at once and a new core (same identity key,
    // nothing else) answers the next dials.
    void restart_server() {
        for (auto& a : agents) {
            if (!a->conn) continue;
            a->conn.reset();
            a->client->on_disconnected("connection reset by peer", h.now);
        }
        h.restart();
        pump();
    }

    // Bytes as if the server had sent them on a's connection.
    void inject(Agent& a, ByteView bytes) {
        a.client->on_control_bytes(bytes, h.now);
        pump();
    }

    bool logged(std::string_view part) const {
        return std::any_of(log.begin(), log.end(),
                           [&](const std::string& l) { return l.find(part) != std::string::npos; });
    }

    Harness h;
    SeededRng net_rng;
    std::vector<std::unique_ptr<Agent>> agents;
    std::vector<std::string> log;
    // Delivers control bytes to agents in pieces of random size (the decoder must not care).
    bool chunked = false;
    std::string software = "burrow-test-agent";  // for agents added from now on

  private:
    // Delivers everything, then fires the earliest deadline up to `end`; false (and time at
    // `end`) when there is none.
    bool step(Time end) {
        REQUIRE(++steps_ < 10'000'000);
        pump();
        Time next = h.core->next_deadline();
        for (auto& a : agents) next = std::min(next, a->client->next_deadline());
        if (next > end) {
            h.now = end;
            pump();
            return false;
        }
        h.now = std::max(h.now, next);
        for (auto& a : agents) a->client->on_timer(h.now);
        process(h.core->on_timer(h.now));
        pump();
        return true;
    }

    bool lost(const Agent& a) {
        return a.udp_blocked || (a.udp_loss > 0 && net_rng.chance(a.udp_loss));
    }

    bool drain(Agent& a) {
        bool moved = false;
        AgentClient& c = *a.client;
        if (c.want_connect(h.now)) {
            dial(a);
            moved = true;
        }
        while (std::optional<Bytes> b = c.poll_control()) {
            moved = true;
            if (!a.conn) continue;  // written to a closed connection
            const std::variant<ControlMessage, ControlDecodeError> m =
                decode_control_body(ByteView(*b).subspan(kControlLengthSize));
            REQUIRE(std::holds_alternative<ControlMessage>(m));
            a.sent.push_back(std::get<ControlMessage>(m));
            process(h.core->on_control_bytes(*a.conn, *b, h.now));
        }
        // The client ended the connection: close it, as src/ does after the last write.
        if (a.conn && !a.connected()) {
            const ConnId conn = *a.conn;
            a.conn.reset();
            process(h.core->on_connection_closed(conn, h.now));
            moved = true;
        }
        while (std::optional<ServerDatagram> d = c.poll_udp()) {
            moved = true;
            if (lost(a)) continue;
            if (std::optional<ServerAction> r =
                    h.core->on_udp(d->to, a.mapped(d->to), d->bytes, h.now)) {
                process({*r});
            }
        }
        while (std::optional<AgentEvent> e = c.poll_event()) {
            moved = true;
            a.events.emplace_back(h.now, std::move(*e));
        }
        return moved;
    }

    void dial(Agent& a) {
        a.dial_times.push_back(h.now);
        a.client->on_dial_started(h.now);
        if (a.refuse_dials) {
            a.client->on_disconnected("connection refused", h.now);
            return;
        }
        a.conn = next_conn_++;
        a.client->on_connected(h.now);
        process(h.core->on_connection_open(*a.conn, h.now));
    }

    Agent* by_conn(ConnId c) {
        for (auto& a : agents) {
            if (a->conn == c) return a.get();
        }
        return nullptr;
    }

    void process(const Actions& actions) {
        for (const ServerAction& action : actions) {
            if (auto* s = std::get_if<SendControl>(&action)) {
                Agent* a = by_conn(s->conn);
                REQUIRE(a);
                if (a->server_muted) continue;
                ControlMessage m = s->message;
                if (a->tamper) a->tamper(m);
                deliver(*a, encode_control(m));
            } else if (auto* close = std::get_if<CloseConnection>(&action)) {
                log.push_back(close->reason);
                Agent* a = by_conn(close->conn);
                if (!a) continue;
                a->conn.reset();
                if (!a->server_muted) a->client->on_disconnected("closed by the server", h.now);
            } else if (auto* d = std::get_if<SendDatagram>(&action)) {
                for (auto& a : agents) {
                    if (a->mapped(d->from) == d->to && !lost(*a)) {
                        a->client->on_udp(d->from, d->bytes, h.now);
                    }
                }
            } else if (auto* l = std::get_if<LogEvent>(&action)) {
                log.push_back(l->line);
            }
        }
    }

    void deliver(Agent& a, const Bytes& frame) {
        if (!chunked) {
            a.client->on_control_bytes(frame, h.now);
            return;
        }
        size_t pos = 0;
        while (pos < frame.size()) {
            const size_t n = 1 + net_rng.uniform(frame.size() - pos);
            a.client->on_control_bytes(ByteView(frame).subspan(pos, n), h.now);
            pos += n;
        }
    }

    ConnId next_conn_ = 100;
    uint64_t steps_ = 0;
};

// laptop and nas registered; returns the PeerReady each got for laptop -> nas/web.
std::pair<PeerReady, PeerReady> rendezvous(World& w, Agent& laptop, Agent& nas) {
    REQUIRE(w.run_until([&] { return laptop.client->registered() && nas.client->registered(); }));
    laptop.client->connect("nas", "web", 0, w.h.now);
    w.pump();
    auto a = laptop.last<PeerReady>();
    auto b = nas.last<PeerReady>();
    REQUIRE(a);
    REQUIRE(b);
    return {*a, *b};
}

Bytes payload_of(uint64_t n) {
    Bytes b(100 + n % 50);
    for (size_t i = 0; i < b.size(); ++i) b[i] = static_cast<uint8_t>(n * 31 + i);
    return b;
}

}  // namespace

TEST_CASE("two agents register: candidates, reflexive address, NAT mapping, UDP binding") {
    World w;
    Agent& laptop = w.add("laptop");
    Agent& nas = w.add("nas");
    w.run_for(seconds(1));

    for (Agent* a : {&laptop, &nas}) {
        INFO(a->name);
        CHECK(a->client->registered());
        CHECK(a->client->udp_bound());
        CHECK(a->client->name() == a->name);
        CHECK(a->client->server_udp_port(UdpPort::kMain) == kStunPort);
        CHECK(a->client->server_udp_port(UdpPort::kSecondary) == kStunPort2);
        auto nat = a->all<NatDiscovered>();
        REQUIRE(nat.size() == 1);
        CHECK(nat[0].mapped[0] == a->mapped(UdpPort::kMain));
        CHECK(nat[0].mapped[1] == a->mapped(UdpPort::kSecondary));
        CHECK(nat[0].mapping == NatMapping::kEndpointIndependent);
        auto reg = a->all<Registered>();
        REQUIRE(reg.size() == 1);
        CHECK(reg[0].name == a->name);
        const std::vector<Candidate> expected = {
            {CandidateKind::kHost, a->host},
            {CandidateKind::kServerReflexive, a->mapped(UdpPort::kMain)}};
        CHECK(reg[0].candidates == expected);
        CHECK(a->all<UdpBound>().size() == 1);
        CHECK(a->all<UdpBlocked>().empty());
        CHECK(a->all<Disconnected>().empty());

        // What the server now knows.
        const AgentRecord* rec = w.h.core->registry().find(a->name);
        CHECK(rec->online());
        CHECK(rec->candidates == expected);
        CHECK(rec->nat == NatMapping::kEndpointIndependent);
        CHECK(rec->udp_address == a->mapped(UdpPort::kMain));
        CHECK(a->client->stats().registrations == 1);
    }
    // STUN requests are padded enough to be answered; nothing was dropped on either side.
    CHECK(w.h.core->drops().total() == 0);
    CHECK(laptop.client->stats() ==
          AgentClientStats{.dials = 1, .connections = 1, .registrations = 1});
    // Auth carried the software string and the right key.
    auto auth = nas.sent_of<Auth>();
    REQUIRE(auth.size() == 1);
    CHECK(auth[0].agent_pub == w.h.pubs.at("nas"));
    CHECK(auth[0].software == "burrow-test-agent");
}

TEST_CASE("a software string with control characters is cleaned before it goes out") {
    World w;
    w.software = "burrow 0.1\n\x1b[31m";
    Agent& nas = w.add("nas");
    w.run_for(seconds(1));
    CHECK(nas.client->registered());
    REQUIRE(nas.sent_of<Auth>().size() == 1);
    CHECK(nas.sent_of<Auth>()[0].software == "burrow 0.1[31m");
}

TEST_CASE("NAT mapping: per destination behind a symmetric NAT, one candidate without NAT") {
    World w;
    Agent& sym = w.add("nas", NatKind::kSymmetric);
    Agent& open = w.add("laptop", NatKind::kNone);
    w.run_for(seconds(1));

    auto nat = sym.last<NatDiscovered>();
    REQUIRE(nat);
    CHECK(nat->mapping == NatMapping::kPerDestination);
    REQUIRE(nat->mapped[0]);
    REQUIRE(nat->mapped[1]);
    CHECK(nat->mapped[0]->port != nat->mapped[1]->port);
    CHECK(nat->mapped[0] == sym.mapped(UdpPort::kMain));
    CHECK(w.h.core->registry().find("nas")->nat == NatMapping::kPerDestination);
    CHECK(sym.client->udp_bound());  // the main port's mapping is bound all the same

    auto open_nat = open.last<NatDiscovered>();
    REQUIRE(open_nat);
    CHECK(open_nat->mapping == NatMapping::kEndpointIndependent);
    CHECK(open_nat->mapped[0] == open.host);
    // The reflexive address is the host address: registered once.
    const std::vector<Candidate> only_host = {{CandidateKind::kHost, open.host}};
    CHECK(open.last<Registered>()->candidates == only_host);
}

TEST_CASE("connect: both sides get PeerReady for one session, opposite roles, each other's key") {
    World w;
    Agent& laptop = w.add("laptop");
    Agent& nas = w.add("nas", NatKind::kSymmetric);
    auto [a, b] = rendezvous(w, laptop, nas);

    CHECK(a.info.session_id == b.info.session_id);
    CHECK(a.info.relay_token == b.info.relay_token);
    CHECK(a.info.role == SessionRole::kInitiator);
    CHECK(b.info.role == SessionRole::kResponder);
    CHECK(a.info.peer == "nas");
    CHECK(b.info.peer == "laptop");
    CHECK(a.info.peer_pub == w.h.pubs.at("nas"));
    CHECK(b.info.peer_pub == w.h.pubs.at("laptop"));
    CHECK(a.info.service == "web");
    CHECK(b.info.service == "web");
    CHECK(a.info.nat == NatMapping::kPerDestination);
    CHECK(b.info.nat == NatMapping::kEndpointIndependent);
    // Each learns the other's registered candidates.
    const std::vector<Candidate> nas_cands = {
        {CandidateKind::kHost, nas.host},
        {CandidateKind::kServerReflexive, nas.mapped(UdpPort::kMain)}};
    CHECK(a.info.candidates == nas_cands);
    const std::vector<Candidate> laptop_cands = {
        {CandidateKind::kHost, laptop.host},
        {CandidateKind::kServerReflexive, laptop.mapped(UdpPort::kMain)}};
    CHECK(b.info.candidates == laptop_cands);
    // The start time is the server's offset from when the message arrived, within its lead.
    CHECK(a.start_at == w.h.now + milliseconds(a.info.start_in_ms));
    CHECK(a.start_at - w.h.now <= kRendezvousLead);
    CHECK(b.start_at == w.h.now + milliseconds(b.info.start_in_ms));
    CHECK(laptop.client->relay_session_count() == 1);
    CHECK(nas.client->relay_session_count() == 1);
    auto req = laptop.sent_of<ConnectRequest>();
    REQUIRE(req.size() == 1);
    CHECK(req[0] == ConnectRequest{"nas", "web"});
}

TEST_CASE("connect refused: by the ACL, a peer offline, a bad name") {
    World w;
    Agent& laptop = w.add("laptop");
    REQUIRE(w.run_until([&] { return laptop.client->registered(); }));

    laptop.client->connect("nas", "web", 0, w.h.now);  // allowed, but the nas is offline
    laptop.client->connect("nas", "ssh", 0, w.h.now);  // not in the ACL
    laptop.client->connect("bad\nname", "web", 0, w.h.now);
    laptop.client->connect("nas", std::string(kMaxServiceNameLen + 1, 's'), 0, w.h.now);
    w.pump();
    auto refused = laptop.all<ConnectRefused>();
    REQUIRE(refused.size() == 4);
    // Local refusals come at once; the server's answers after the round trip.
    CHECK(refused[0].peer == "bad\nname");
    CHECK_THAT(refused[0].reason, Catch::Contains("invalid peer name"));
    CHECK_THAT(refused[1].reason, Catch::Contains("invalid service name"));
    CHECK(refused[2] == ConnectRefused{"nas", "web", "peer offline"});
    CHECK(refused[3] == ConnectRefused{"nas", "ssh", "not allowed by the server"});
    CHECK(laptop.client->stats().connects_refused_locally == 2);
    CHECK(laptop.sent_of<ConnectRequest>().size() == 2);  // the bad names never left
    CHECK(laptop.all<PeerReady>().empty());
    CHECK(laptop.client->state() == AgentClientState::kOnline);
}

TEST_CASE("relay over UDP both ways once both bindings are confirmed") {
    World w;
    Agent& laptop = w.add("laptop");
    Agent& nas = w.add("nas");
    auto [a, b] = rendezvous(w, laptop, nas);
    const uint64_t id = a.info.session_id;

    for (uint64_t i = 0; i < 20; ++i) {
        CHECK(laptop.client->send_relay(id, payload_of(i), w.h.now));
        CHECK(nas.client->send_relay(id, payload_of(1000 + i), w.h.now));
        w.pump();
    }
    auto at_nas = nas.all<RelayReceived>();
    auto at_laptop = laptop.all<RelayReceived>();
    REQUIRE(at_nas.size() == 20);
    REQUIRE(at_laptop.size() == 20);
    for (uint64_t i = 0; i < 20; ++i) {
        CHECK(at_nas[i].session_id == id);
        CHECK(at_nas[i].payload == payload_of(i));
        CHECK(at_nas[i].via == RelayTransport::kUdp);
        CHECK(at_laptop[i].payload == payload_of(1000 + i));
        CHECK(at_laptop[i].via == RelayTransport::kUdp);
    }
    CHECK(laptop.client->stats().relay_sent_udp == 20);
    CHECK(laptop.client->stats().relay_sent_tls == 0);
    CHECK(nas.client->stats().relay_received_udp == 20);
    CHECK(laptop.sent_of<RelayData>().empty());
    CHECK(w.h.core->drops().total() == 0);

    // Unknown sessions and oversized payloads are refused and counted, nothing sent.
    CHECK_FALSE(laptop.client->send_relay(id + 1, payload_of(1), w.h.now));
    CHECK_FALSE(laptop.client->send_relay(id, Bytes(kMaxRelayPayload + 1), w.h.now));
    CHECK(laptop.client->stats().drop_relay_unknown_session == 1);
    CHECK(laptop.client->stats().drop_relay_too_large == 1);
    CHECK_FALSE(laptop.client->poll_udp());

    // A forged datagram from the server's address with the wrong token is dropped.
    RelayToken wrong = a.info.relay_token;
    wrong[0] ^= 1;
    nas.client->on_udp(UdpPort::kMain, encode_relay_datagram(id, wrong, payload_of(7)), w.h.now);
    CHECK(nas.client->stats().drop_relay_bad_token == 1);
    // A relay datagram from the secondary port is not the server's relay.
    nas.client->on_udp(UdpPort::kSecondary,
                       encode_relay_datagram(id, a.info.relay_token, payload_of(7)), w.h.now);
    CHECK(nas.client->stats().drop_udp_unexpected == 1);
    w.pump();
    CHECK(nas.all<RelayReceived>().size() == 20);

    // A runtime that stops draining: the queue is bounded, the excess dropped and counted.
    const Bytes big(kMaxRelayPayload);
    size_t accepted = 0;
    while (laptop.client->send_relay(id, big, w.h.now)) ++accepted;
    CHECK(accepted == kMaxQueuedRelayBytes / (kRelayFromHeaderSize + kMaxRelayPayload));
    CHECK(laptop.client->stats().drop_relay_queue_full == 1);
    w.pump();
    CHECK(nas.all<RelayReceived>().size() == 20 + accepted);
    CHECK(laptop.client->send_relay(id, big, w.h.now));  // drained: room again

    // After forget_session the client no longer accepts or sends for it.
    nas.client->forget_session(id);
    CHECK_FALSE(nas.client->send_relay(id, payload_of(1), w.h.now));
}

TEST_CASE("UDP blocked on one side: UdpBlocked after the retries, relay over TLS, recovery") {
    World w;
    Agent& laptop = w.add("laptop");
    Agent& nas = w.add("nas");
    nas.udp_blocked = true;
    const Time start = w.h.now;
    REQUIRE(w.run_until([&] { return nas.client->registered(); }));

    // Bind and STUN sent at 0, 100, 300, 700, 1500 ms and given up at 3100 ms.
    constexpr Duration kGiveUp = milliseconds(100 + 200 + 400 + 800 + 1600);
    auto blocked = nas.times<UdpBlocked>();
    REQUIRE(blocked.size() == 1);
    CHECK(blocked[0] == start + kGiveUp);
    CHECK(nas.all<UdpBlocked>()[0].tries == kUdpRequestMaxTries);
    CHECK(nas.times<Registered>()[0] == start + kGiveUp);
    auto nat = nas.last<NatDiscovered>();
    REQUIRE(nat);
    CHECK(nat->mapping == NatMapping::kUnknown);
    CHECK_FALSE(nat->mapped[0]);
    const std::vector<Candidate> only_host = {{CandidateKind::kHost, nas.host}};
    CHECK(nas.last<Registered>()->candidates == only_host);
    CHECK_FALSE(nas.client->udp_bound());
    CHECK(nas.all<UdpBound>().empty());

    auto [a, b] = rendezvous(w, laptop, nas);
    const uint64_t id = a.info.session_id;
    for (uint64_t i = 0; i < 5; ++i) {
        CHECK(laptop.client->send_relay(id, payload_of(i), w.h.now));
        CHECK(nas.client->send_relay(id, payload_of(100 + i), w.h.now));
        w.pump();
    }
    auto at_nas = nas.all<RelayReceived>();
    auto at_laptop = laptop.all<RelayReceived>();
    REQUIRE(at_nas.size() == 5);
    REQUIRE(at_laptop.size() == 5);
    for (uint64_t i = 0; i < 5; ++i) {
        CHECK(at_nas[i].payload == payload_of(i));
        CHECK(at_nas[i].via == RelayTransport::kTls);  // the server has no address for nas
        CHECK(at_laptop[i].payload == payload_of(100 + i));
        CHECK(at_laptop[i].via == RelayTransport::kUdp);
    }
    CHECK(nas.client->stats().relay_sent_tls == 5);
    CHECK(nas.client->stats().relay_sent_udp == 0);
    CHECK(nas.client->stats().relay_received_tls == 5);
    CHECK(nas.sent_of<RelayData>().size() == 5);

    // UDP comes back: a later Bind round binds again, and relay moves to UDP.
    nas.udp_blocked = false;
    REQUIRE(w.run_until([&] { return nas.client->udp_bound(); }, kBindRefreshInterval));
    CHECK(nas.times<UdpBound>().size() == 1);
    CHECK(nas.client->send_relay(id, payload_of(50), w.h.now));
    w.pump();
    CHECK(laptop.all<RelayReceived>().back().payload == payload_of(50));
    CHECK(nas.client->stats().relay_sent_udp == 1);
    CHECK(w.h.core->registry().find("nas")->udp_address == nas.mapped(UdpPort::kMain));

    // And when it goes away again, the next refresh round notices.
    nas.udp_blocked = true;
    REQUIRE(
        w.run_until([&] { return !nas.client->udp_bound(); }, kBindRefreshInterval + seconds(4)));
    CHECK(nas.all<UdpBlocked>().size() == 2);
}

TEST_CASE("Bind refreshes keep the binding through a NAT that moves the agent's port") {
    World w;
    Agent& nas = w.add("nas");
    w.run_for(seconds(1));
    REQUIRE(nas.client->udp_bound());
    // The NAT forgets the mapping and picks another port; the next refresh rebinds it.
    nas.public_ip = {198, 51, 100, 99};
    w.run_for(kBindRefreshInterval);
    CHECK(w.h.core->registry().find("nas")->udp_address == nas.mapped(UdpPort::kMain));
    CHECK(nas.all<UdpBlocked>().empty());
    CHECK(nas.all<UdpBound>().size() == 1);  // reported once, not per refresh
}

TEST_CASE("auth failures are fatal, reported once, and never retried") {
    World w;
    SECTION("a man in the middle swaps the server's key") {
        Agent& nas = w.add("nas");
        SeededRng other(99);
        const PublicKey fake = public_key(PrivateKey::generate(other));
        nas.tamper = [&](ControlMessage& m) {
            if (auto* hello = std::get_if<ServerHello>(&m)) hello->server_static_pub = fake;
        };
        w.run_for(seconds(120));
        auto failed = nas.all<AuthFailed>();
        REQUIRE(failed.size() == 1);
        CHECK_THAT(failed[0].reason, Catch::Contains("rejected this agent's authentication"));
        CHECK(w.logged("wrong proof"));
        CHECK(nas.client->state() == AgentClientState::kFailed);
        CHECK(nas.client->reconnect_at() == kNever);
        CHECK(nas.client->stats().dials == 1);
        CHECK(nas.all<Disconnected>().empty());
        CHECK_FALSE(w.h.core->registry().find("nas")->online());
    }
    SECTION("the agent's key is unknown to the server") {
        Agent& stranger = w.add("stranger");
        w.run_for(seconds(60));
        auto failed = stranger.all<AuthFailed>();
        REQUIRE(failed.size() == 1);
        CHECK_THAT(failed[0].reason, Catch::Contains("does not know this agent's key"));
        CHECK(stranger.client->stats().dials == 1);
    }
    SECTION("the server's key is not the pinned one: no Auth is sent") {
        SeededRng other(98);
        Agent& nas = w.add("nas", NatKind::kEndpointIndependent, std::nullopt,
                           public_key(PrivateKey::generate(other)));
        nas.client->connect("laptop", "web", 0, w.h.now);  // waiting: refused by the failure
        w.run_for(seconds(60));
        auto failed = nas.all<AuthFailed>();
        REQUIRE(failed.size() == 1);
        CHECK_THAT(failed[0].reason, Catch::Contains("is not the configured"));
        CHECK(nas.sent_of<Auth>().empty());
        CHECK(nas.client->stats().dials == 1);
        auto refused = nas.all<ConnectRefused>();
        REQUIRE(refused.size() == 1);
        CHECK_THAT(refused[0].reason, Catch::Contains("not authenticated"));
        // Later connects are refused at once.
        nas.client->connect("laptop", "web", 0, w.h.now);
        w.pump();
        CHECK(nas.all<ConnectRefused>().size() == 2);
    }
    SECTION("the pinned key matches: business as usual") {
        Agent& nas =
            w.add("nas", NatKind::kEndpointIndependent, std::nullopt, public_key(w.h.server_key));
        w.run_for(seconds(1));
        CHECK(nas.client->registered());
    }
    SECTION("a second agent with the same key replaces the first, which stops") {
        Agent& first = w.add("nas");
        w.run_for(seconds(1));
        REQUIRE(first.client->registered());
        Agent& second = w.add("nas", NatKind::kEndpointIndependent);
        w.run_for(seconds(60));
        CHECK(second.client->registered());
        auto failed = first.all<AuthFailed>();
        REQUIRE(failed.size() == 1);
        CHECK_THAT(failed[0].reason, Catch::Contains("only one agent per key"));
        CHECK(first.client->stats().dials == 1);
    }
}

TEST_CASE("reconnect: exponential backoff with jitter, reset by a registration") {
    std::set<int64_t> first_delays;
    for (uint64_t seed = 1; seed <= 40; ++seed) {
        INFO("seed " << seed);
        World w(seed);
        Agent& nas = w.add("nas");
        nas.refuse_dials = true;
        constexpr int kFailures = 12;  // past the 30 s cap
        REQUIRE(
            w.run_until([&] { return nas.all<Disconnected>().size() == kFailures; }, seconds(600)));
        auto disc = nas.all<Disconnected>();
        auto at = nas.times<Disconnected>();
        for (int i = 0; i < kFailures; ++i) {
            INFO("failure " << i);
            CHECK_THAT(disc[i].reason, Catch::Contains("connection refused"));
            const Duration base = std::min<Duration>(kReconnectInitial * (1 << i), kReconnectMax);
            const Duration delay = disc[i].retry_at - at[i];
            CHECK(delay >= base * 8 / 10);
            CHECK(delay <= base * 12 / 10);
            // The runtime dials when told, and not before.
            if (i + 1 < kFailures) CHECK(nas.dial_times[i + 1] == disc[i].retry_at);
        }
        first_delays.insert(to_us(disc[0].retry_at - at[0]));

        // The server is reachable again: the next dial registers.
        nas.refuse_dials = false;
        REQUIRE(w.run_until([&] { return nas.client->registered(); }, seconds(60)));
        CHECK(nas.all<Registered>().size() == 1);

        // A connection lost after registration is retried after about half a second again.
        w.drop_connection(nas, "connection reset by peer");
        auto lost = nas.last<Disconnected>();
        REQUIRE(lost);
        CHECK_THAT(lost->reason, Catch::Contains("connection reset by peer"));
        CHECK(lost->retry_at - w.h.now >= kReconnectInitial * 8 / 10);
        CHECK(lost->retry_at - w.h.now <= kReconnectInitial * 12 / 10);
        CHECK_FALSE(nas.client->want_connect(w.h.now));
        CHECK(nas.client->next_deadline() == lost->retry_at);
        REQUIRE(w.run_until([&] { return nas.client->registered(); }, seconds(5)));
        CHECK(nas.all<Registered>().size() == 2);
        CHECK(nas.all<UdpBound>().size() == 2);  // a new connection binds again
        CHECK(w.h.core->registry().find("nas")->online());
        CHECK(w.h.core->registry().find("nas")->conn == nas.conn);
    }
    CHECK(first_delays.size() > 30);  // jitter really varies
}

TEST_CASE(
    "garbage or a wrong message from the server: disconnect with the reason, then reconnect") {
    World w;
    Agent& nas = w.add("nas");
    REQUIRE(w.run_until([&] { return nas.client->registered(); }));

    SECTION("bytes that are no control frame") {
        const Bytes garbage = {0, 0, 0, 4, 0x47, 0x45, 0x54, 0x20};  // version 0x47: "GET "
        w.inject(nas, garbage);
        auto d = nas.last<Disconnected>();
        REQUIRE(d);
        CHECK(d->reason ==
              "malformed data from the signalling server (unsupported protocol version)");
        // The server hears why: the client's Error is in its log.
        CHECK(w.logged("reported error 1: malformed data from the signalling server"));
    }
    SECTION("a message that makes no sense in this state") {
        w.inject(nas, encode_control(AuthOk{"nas", {}, {1, 2}, 1}));
        auto d = nas.last<Disconnected>();
        REQUIRE(d);
        CHECK_THAT(d->reason, Catch::Contains("unexpected AuthOk from the signalling server"));
    }
    SECTION("a frame longer than any the protocol allows") {
        w.inject(nas, Bytes{0x00, 0x10, 0x00, 0x01});
        auto d = nas.last<Disconnected>();
        REQUIRE(d);
        CHECK_THAT(d->reason, Catch::Contains("oversize frame"));
    }
    CHECK(nas.client->state() == AgentClientState::kWaiting);
    CHECK_FALSE(nas.conn);
    REQUIRE(w.run_until([&] { return nas.client->registered(); }, seconds(5)));
    CHECK(nas.all<Registered>().size() == 2);
}

TEST_CASE("server errors that are not about identity: disconnect and retry") {
    World w;
    Agent& nas = w.add("nas");
    REQUIRE(w.run_until([&] { return nas.client->registered(); }));
    w.inject(nas, encode_control(ControlErrorMessage{
                      static_cast<uint16_t>(ControlErrorCode::kTimeout), "idle timeout"}));
    auto d = nas.last<Disconnected>();
    REQUIRE(d);
    CHECK(d->reason ==
          "the signalling server closed the connection: error 5 (server says: idle timeout)");
    CHECK(nas.all<AuthFailed>().empty());
    REQUIRE(w.run_until([&] { return nas.client->registered(); }, seconds(5)));
}

TEST_CASE("pings keep the connection; a server gone silent is noticed") {
    World w;
    Agent& nas = w.add("nas");
    w.run_for(seconds(600));
    CHECK(nas.all<Disconnected>().empty());
    CHECK(nas.client->stats().dials == 1);
    CHECK(nas.sent_of<Pong>().size() >= 600 / 25);
    // The server's pings (every 25 s) keep the agent from pinging on its own.
    CHECK(nas.sent_of<Ping>().empty());
    CHECK(w.h.core->registry().find("nas")->online());
    CHECK(w.h.core->rtt("nas"));

    nas.server_muted = true;  // the path black-holes (a NAT forgot it); TCP has not noticed
    const Time muted_at = w.h.now;
    REQUIRE(w.run_until([&] { return !nas.all<Disconnected>().empty(); }, seconds(120)));
    auto d = nas.last<Disconnected>();
    CHECK_THAT(d->reason, Catch::Contains("did not answer a ping within 10 s"));
    REQUIRE(nas.sent_of<Ping>().size() == 1);
    // The last input was a server ping at most 25 s before the mute: the agent pings
    // kQuietBeforePing after it and gives up kPongTimeout later.
    const Duration took = nas.times<Disconnected>()[0] - muted_at;
    CHECK(took <= kQuietBeforePing + kPongTimeout);
    CHECK(took >= kQuietBeforePing + kPongTimeout - seconds(25));
}

TEST_CASE("a server that never completes the handshake or authentication times out") {
    World w;
    Agent& nas = w.add("nas");
    SECTION("no ServerHello") {
        nas.server_muted = true;
        REQUIRE(w.run_until([&] { return !nas.all<Disconnected>().empty(); }, seconds(20)));
        CHECK_THAT(nas.last<Disconnected>()->reason,
                   Catch::Contains("did not complete authentication within 10 s"));
        CHECK(nas.times<Disconnected>()[0] == nas.dial_times[0] + kAuthTimeout);
    }
    SECTION("the dial itself hangs") {
        nas.client->on_dial_started(w.h.now);
        const Time start = w.h.now;
        nas.client->on_timer(start + kDialTimeout - milliseconds(1));
        CHECK(nas.client->state() == AgentClientState::kDialing);
        CHECK(nas.client->next_deadline() == start + kDialTimeout);
        nas.client->on_timer(start + kDialTimeout);
        CHECK(nas.client->state() == AgentClientState::kWaiting);
        auto e = nas.client->poll_event();
        REQUIRE(e);
        REQUIRE(std::holds_alternative<Disconnected>(*e));
        CHECK_THAT(std::get<Disconnected>(*e).reason, Catch::Contains("within 15 s"));
    }
}

TEST_CASE("relay while disconnected is dropped and counted; sessions re-attach on reconnect") {
    World w;
    Agent& laptop = w.add("laptop");
    Agent& nas = w.add("nas");
    auto [a, b] = rendezvous(w, laptop, nas);
    const uint64_t id = a.info.session_id;

    w.drop_connection(laptop, "network down");
    CHECK_FALSE(laptop.client->send_relay(id, payload_of(1), w.h.now));
    CHECK_FALSE(laptop.client->send_relay(id, payload_of(2), w.h.now));
    CHECK(laptop.client->stats().drop_relay_offline == 2);
    CHECK_FALSE(laptop.client->poll_udp());
    CHECK_FALSE(laptop.client->poll_control());
    // The server ended the session with the connection; the client keeps it.
    CHECK(w.h.core->relays().size() == 0);
    CHECK(laptop.client->relay_session_count() == 1);

    REQUIRE(w.run_until([&] { return laptop.client->registered(); }, seconds(5)));
    auto attaches = laptop.sent_of<RelayAttach>();
    REQUIRE(attaches.size() == 1);
    CHECK(attaches[0] == RelayAttach{id, "nas", a.info.relay_token, SessionRole::kInitiator});
    CHECK(laptop.client->stats().relay_attaches == 1);
    CHECK(w.h.core->relays().find(id));
    // Relay goes on under the same session, both ways, without a new connect.
    CHECK(laptop.client->send_relay(id, payload_of(3), w.h.now));
    CHECK(nas.client->send_relay(id, payload_of(4), w.h.now));
    w.pump();
    CHECK(nas.all<RelayReceived>().back().payload == payload_of(3));
    CHECK(laptop.all<RelayReceived>().back().payload == payload_of(4));
    CHECK(laptop.all<PeerReady>().size() == 1);
    CHECK(nas.sent_of<RelayAttach>().empty());  // nas never lost its connection
}

TEST_CASE("a server restart: both agents re-attach, the relay goes on under the same id") {
    World w;
    Agent& laptop = w.add("laptop");
    Agent& nas = w.add("nas", NatKind::kSymmetric);
    auto [a, b] = rendezvous(w, laptop, nas);
    const uint64_t id = a.info.session_id;
    w.restart_server();
    CHECK(w.h.core->relays().size() == 0);
    REQUIRE(w.run_until([&] { return laptop.client->udp_bound() && nas.client->udp_bound(); },
                        seconds(10)));
    CHECK(laptop.sent_of<RelayAttach>().size() == 1);
    CHECK(nas.sent_of<RelayAttach>().at(0) ==
          RelayAttach{id, "laptop", b.info.relay_token, SessionRole::kResponder});
    const RelaySession* s = w.h.core->relays().find(id);
    REQUIRE(s);
    CHECK(s->initiator == "laptop");
    for (uint64_t i = 0; i < 5; ++i) {
        CHECK(laptop.client->send_relay(id, payload_of(i), w.h.now));
        CHECK(nas.client->send_relay(id, payload_of(100 + i), w.h.now));
    }
    w.pump();
    CHECK(nas.all<RelayReceived>().size() == 5);
    CHECK(laptop.all<RelayReceived>().size() == 5);
    CHECK(w.h.core->drops().total() == 0);
    CHECK(laptop.all<RelaySessionDetached>().empty());
}

TEST_CASE("a restarted server with another identity detaches the session") {
    World w;
    Agent& laptop = w.add("laptop");
    Agent& nas = w.add("nas");
    auto [a, b] = rendezvous(w, laptop, nas);
    const uint64_t id = a.info.session_id;
    w.h.core_config.static_key = PrivateKey::generate(w.h.key_rng);
    w.restart_server();
    REQUIRE(w.run_until([&] { return !laptop.all<RelaySessionDetached>().empty(); }, seconds(10)));
    CHECK(laptop.all<RelaySessionDetached>().at(0).session_id == id);
    CHECK(laptop.client->relay_session_count() == 0);
    CHECK_FALSE(laptop.client->send_relay(id, payload_of(1), w.h.now));
    CHECK(w.h.core->relays().size() == 0);
}

TEST_CASE("a BindMoved answer: the client reports it and learns a shorter keepalive") {
    World w;
    Agent& nas = w.add("nas");
    w.run_for(seconds(1));
    REQUIRE(nas.client->udp_bound());
    CHECK(nas.client->keepalive() == kBindRefreshInterval);
    // The NAT forgets the mapping between two refreshes and picks another address.
    nas.public_ip = {198, 51, 100, 99};
    w.run_for(kBindRefreshInterval);
    auto moved = nas.all<UdpMoved>();
    REQUIRE(moved.size() == 1);
    CHECK(moved[0].learning);
    CHECK(moved[0].keepalive == kBindRefreshInterval / 2);
    CHECK(nas.client->keepalive() == kBindRefreshInterval / 2);
    CHECK(nas.client->stats().udp_moves == 1);
    CHECK(w.h.core->registry().find("nas")->udp_address == nas.mapped(UdpPort::kMain));
}

TEST_CASE("connects wait for registration, and are refused when it does not come") {
    SECTION("asked before the client is registered: sent right after Register") {
        World w;
        Agent& nas = w.add("nas");
        REQUIRE(w.run_until([&] { return nas.client->registered(); }));
        Agent& laptop = w.add("laptop");
        laptop.udp_blocked = true;  // registration waits for the STUN probe to give up
        const Time asked = w.h.now;
        laptop.client->connect("nas", "web", 0, w.h.now);
        REQUIRE(w.run_until([&] { return !laptop.all<PeerReady>().empty(); }, seconds(5)));
        CHECK(laptop.times<PeerReady>()[0] == asked + milliseconds(3100));
        // Register went first, so the nas learned the laptop's candidates.
        const auto reg = std::find_if(laptop.sent.begin(), laptop.sent.end(),
                                      [](auto& m) { return std::holds_alternative<Register>(m); });
        const auto req = std::find_if(laptop.sent.begin(), laptop.sent.end(), [](auto& m) {
            return std::holds_alternative<ConnectRequest>(m);
        });
        REQUIRE(req != laptop.sent.end());
        CHECK(reg < req);
        const std::vector<Candidate> host = {{CandidateKind::kHost, laptop.host}};
        CHECK(nas.last<PeerReady>()->info.candidates == host);
    }
    SECTION("the server stays unreachable") {
        World w;
        Agent& laptop = w.add("laptop");
        laptop.refuse_dials = true;
        laptop.client->connect("nas", "web", 0, w.h.now);
        const Time asked = w.h.now;
        REQUIRE(w.run_until([&] { return !laptop.all<ConnectRefused>().empty(); }, seconds(20)));
        CHECK(laptop.times<ConnectRefused>()[0] == asked + kPendingConnectTimeout);
        CHECK_THAT(laptop.last<ConnectRefused>()->reason,
                   Catch::Contains("not registered with the signalling server within 10 s"));
        CHECK(laptop.client->stats().connects_refused_locally == 1);
    }
    SECTION("the queue is bounded") {
        World w;
        Agent& laptop = w.add("laptop");
        laptop.refuse_dials = true;
        for (size_t i = 0; i <= kMaxPendingConnects; ++i) {
            laptop.client->connect("nas", "web", 0, w.h.now);
        }
        w.pump();
        auto refused = laptop.all<ConnectRefused>();
        REQUIRE(refused.size() == 1);
        CHECK_THAT(refused[0].reason, Catch::Contains("too many connects waiting"));
    }
}

TEST_CASE("new host candidates after registration are registered again") {
    World w;
    Agent& nas = w.add("nas");
    REQUIRE(w.run_until([&] { return nas.client->registered(); }));
    const SocketAddress wifi = *parse_socket_address("10.0.0.7:40000");
    const SocketAddress v6 = *parse_socket_address("[2001:db8::7]:40000");
    nas.client->set_host_candidates({wifi, v6, wifi}, w.h.now);
    w.pump();
    const std::vector<Candidate> expected = {
        {CandidateKind::kHost, wifi},
        {CandidateKind::kHost, v6},
        {CandidateKind::kServerReflexive, nas.mapped(UdpPort::kMain)}};
    CHECK(w.h.core->registry().find("nas")->candidates == expected);
    CHECK(nas.sent_of<Register>().size() == 2);
}

TEST_CASE("property: lossy UDP, chunked TLS, any NAT: registration always, never a wrong mapping") {
    for (uint64_t seed = 1; seed <= 150; ++seed) {
        INFO("seed " << seed);
        World w(seed);
        w.chunked = true;
        SeededRng pick(seed * 7919);
        const NatKind kinds[] = {NatKind::kNone, NatKind::kEndpointIndependent,
                                 NatKind::kSymmetric};
        Agent& laptop = w.add("laptop", kinds[pick.uniform(3)]);
        Agent& nas = w.add("nas", kinds[pick.uniform(3)]);
        laptop.udp_loss = pick.unit() * 0.6;
        nas.udp_loss = pick.unit() * 0.6;

        // Registration never depends on UDP: at most one probe schedule.
        w.run_for(seconds(4));
        REQUIRE(laptop.client->registered());
        REQUIRE(nas.client->registered());
        for (Agent* a : {&laptop, &nas}) {
            auto nat = a->last<NatDiscovered>();
            REQUIRE(nat);
            for (UdpPort p : {UdpPort::kMain, UdpPort::kSecondary}) {
                const auto& m = nat->mapped[static_cast<size_t>(p)];
                if (m) CHECK(*m == a->mapped(p));
            }
            const NatMapping truth = a->nat == NatKind::kSymmetric
                                         ? NatMapping::kPerDestination
                                         : NatMapping::kEndpointIndependent;
            CHECK((nat->mapping == truth || nat->mapping == NatMapping::kUnknown));
            CHECK((nat->mapping == NatMapping::kUnknown) == !(nat->mapped[0] && nat->mapped[1]));
            // Whether the client thinks it is bound matches the server, once a round is over.
            const AgentRecord* rec = w.h.core->registry().find(a->name);
            if (a->client->udp_bound()) CHECK(rec->udp_address == a->mapped(UdpPort::kMain));
        }

        // Relayed packets arrive intact, each at most once, in order; over TLS none is lost.
        laptop.client->connect("nas", "web", 0, w.h.now);
        w.pump();
        auto ready = laptop.last<PeerReady>();
        REQUIRE(ready);
        for (uint64_t i = 0; i < 30; ++i) {
            laptop.client->send_relay(ready->info.session_id, payload_of(i), w.h.now);
            w.run_for(milliseconds(20));
        }
        auto got = nas.all<RelayReceived>();
        std::vector<Bytes> sent;
        for (uint64_t i = 0; i < 30; ++i) sent.push_back(payload_of(i));
        size_t next = 0;
        for (const RelayReceived& r : got) {
            auto it = std::find(sent.begin() + static_cast<ptrdiff_t>(next), sent.end(), r.payload);
            REQUIRE(it != sent.end());
            next = static_cast<size_t>(it - sent.begin()) + 1;
        }
        CHECK(got.size() <= sent.size());
        // Neither leg on UDP: nothing can be lost.
        if (!laptop.client->udp_bound() && !w.h.core->registry().find("nas")->udp_address) {
            CHECK(got.size() == sent.size());
            CHECK(laptop.client->stats().relay_sent_tls == sent.size());
        }
        CHECK(laptop.client->stats().drop_relay_offline == 0);
        CHECK(laptop.all<Disconnected>().empty());
        CHECK(nas.all<Disconnected>().empty());
    }
}

TEST_CASE("a gateway's mapping is registered as a kMapped candidate and reaches the peer") {
    World w;
    Agent& laptop = w.add("laptop", NatKind::kSymmetric);
    Agent& nas = w.add("nas", NatKind::kSymmetric);
    REQUIRE(w.run_until([&] { return nas.client->registered() && laptop.client->registered(); }));
    const SocketAddress mapped = *parse_socket_address("203.0.113.5:40001");
    nas.client->set_mapped_candidate(mapped);
    w.pump();
    const std::vector<Candidate> expected = {
        {CandidateKind::kHost, nas.host},
        {CandidateKind::kMapped, mapped},
        {CandidateKind::kServerReflexive, nas.mapped(UdpPort::kMain)}};
    CHECK(w.h.core->registry().find("nas")->candidates == expected);
    CHECK(nas.sent_of<Register>().size() == 2);
    nas.client->set_mapped_candidate(mapped);  // the same: nothing to tell
    w.pump();
    CHECK(nas.sent_of<Register>().size() == 2);

    auto [a, b] = rendezvous(w, laptop, nas);
    CHECK(a.info.candidates == expected);

    // Withdrawn (a renewal failed): registered again without it.
    nas.client->set_mapped_candidate(std::nullopt);
    w.pump();
    CHECK(nas.sent_of<Register>().size() == 3);
    CHECK(w.h.core->registry().find("nas")->candidates.size() == 2);
}
