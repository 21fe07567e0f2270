// Server target: the signalling server's sans-IO core (signal/server_core.h) as the internet
// sees it: datagrams on both UDP ports (signal/udp_server.h: STUN, Bind, Relay) from any source,
// control bytes on an unauthenticated and on authenticated connections, and a moving clock.
//
// Every input starts from the same server: laptop and nas online (conns 1 and 2) and bound
// (laptop 203.0.113.5:50001, nas [2001:db8::7]:41000), a laptop -> nas/web relay session, and a
// third connection (3) that has only seen ServerHello. Then ops, each an op byte and its fields:
//   op % 5 == 0  raw datagram:   source byte, port bit, u16 length, bytes
//   op % 5 == 1  relay datagram: as 0, with the session's valid relay header put in front
//   op % 5 == 2  Bind:           source byte, which agent's token (a valid Bind from anywhere)
//   op % 5 == 3  clock:          u16 milliseconds forward
//   op % 5 == 4  control bytes:  connection byte (1, 2 or 3), u16 length, bytes
// Source byte % 4: laptop, nas, a fixed stranger, or a stranger whose IPv4 address and port
// come next (6 bytes).
//
// Invariants (docs/architecture.md §6): the server sends datagrams only back to their source or to a bound
// agent, never to an arbitrary address; to a source that was not a bound agent it never sends
// more bytes than it got; a relayed packet is never larger than the one received; relay data
// goes over TLS only to an online agent's connection.
#include <memory>
#include <set>

#include "signal/auth.h"
#include "signal/server_core.h"
#include "signal/udp_messages.h"
#include "tests/fuzz/fuzz_support.h"
#include "tunnel/crypto_init.h"

using namespace burrow;
using namespace burrow::fuzz;

namespace {

constexpr uint16_t kStunPort = 3478;  // RFC 8489 §9
constexpr uint16_t kStunPort2 = 3479;
constexpr ConnId kLaptopConn = 1, kNasConn = 2, kStrangerConn = 3;
constexpr size_t kMaxFuzzDatagram = kMaxUdpDatagram + 64;  // a little past the cap, to test it

const SocketAddress kLaptopAddr = *parse_socket_address("203.0.113.5:50001");
const SocketAddress kNasAddr = *parse_socket_address("[2001:db8::7]:41000");
const SocketAddress kStrangerAddr = *parse_socket_address("192.0.2.66:6666");

struct Keys {
    PrivateKey server, laptop, nas;
};
const Keys& keys() {
    static const Keys k = [] {
        FUZZ_CHECK(crypto_init());
        SeededRng rng(0x5e);
        return Keys{PrivateKey::generate(rng), PrivateKey::generate(rng),
                    PrivateKey::generate(rng)};
    }();
    return k;
}

template <class T>
const T* message_to(const std::vector<ServerAction>& actions, ConnId conn) {
    for (const ServerAction& a : actions) {
        if (auto* s = std::get_if<SendControl>(&a); s && s->conn == conn) {
            if (auto* m = std::get_if<T>(&s->message)) return m;
        }
    }
    return nullptr;
}

struct Server {
    SeededRng rng{7};
    std::unique_ptr<ServerCore> core;
    Time now = time_from_us(1'000'000);
    UdpToken tokens[2]{};  // laptop, nas
    uint64_t session_id = 0;
    RelayToken relay_token{};

    Server() {
        const Keys& k = keys();
        AclConfig acl;
        acl.agents = {{"laptop", public_key(k.laptop)}, {"nas", public_key(k.nas)}};
        acl.allow = {{"laptop", "nas", {"web"}}};
        std::string error;
        auto a = Acl::create(acl, &error);
        FUZZ_CHECK(a.has_value());
        ServerCoreConfig config;
        config.static_key = k.server;
        config.stun_ports = {kStunPort, kStunPort2};
        config.relay_udp_port = kStunPort;
        core = std::make_unique<ServerCore>(std::move(config), std::move(*a), rng);
        tokens[0] = login(kLaptopConn, k.laptop);
        tokens[1] = login(kNasConn, k.nas);
        FUZZ_CHECK(core->on_udp(UdpPort::kMain, kLaptopAddr, encode_bind(tokens[0]), now));
        FUZZ_CHECK(core->on_udp(UdpPort::kMain, kNasAddr, encode_bind(tokens[1]), now));
        auto actions = core->on_control_bytes(kLaptopConn,
                                              encode_control(ConnectRequest{"nas", "web"}), now);
        const PeerInfo* info = message_to<PeerInfo>(actions, kLaptopConn);
        FUZZ_CHECK(info != nullptr);
        session_id = info->session_id;
        relay_token = info->relay_token;
        FUZZ_CHECK(message_to<ServerHello>(core->on_connection_open(kStrangerConn, now),
                                           kStrangerConn));
    }

    UdpToken login(ConnId conn, const PrivateKey& agent) {
        const ServerHello* hello = nullptr;
        auto opened = core->on_connection_open(conn, now);
        hello = message_to<ServerHello>(opened, conn);
        FUZZ_CHECK(hello != nullptr);
        const Auth auth{public_key(agent),
                        *compute_auth_proof(agent, core->static_public_key(), hello->nonce),
                        "fuzz"};
        auto actions = core->on_control_bytes(conn, encode_control(auth), now);
        const AuthOk* ok = message_to<AuthOk>(actions, conn);
        FUZZ_CHECK(ok != nullptr);
        return ok->udp_token;
    }

    std::set<SocketAddress> bound() const {
        std::set<SocketAddress> out;
        for (const auto& [name, rec] : core->registry().agents()) {
            if (rec.udp_address) out.insert(*rec.udp_address);
        }
        return out;
    }

    std::set<ConnId> online() const {
        std::set<ConnId> out;
        for (const auto& [name, rec] : core->registry().agents()) {
            if (rec.conn) out.insert(*rec.conn);
        }
        return out;
    }

    void udp(UdpPort port, const SocketAddress& from, ByteView d) {
        const std::set<SocketAddress> bound_before = bound();
        auto action = core->on_udp(port, from, d, now);
        if (!action) return;
        if (auto* s = std::get_if<SendDatagram>(&*action)) {
            FUZZ_CHECK(s->to == from || bound().count(s->to) == 1);
            if (bound_before.count(s->to) == 0) FUZZ_CHECK(s->bytes.size() <= d.size());
            if (s->to != from) FUZZ_CHECK(s->bytes.size() <= d.size());  // relayed
        } else if (auto* c = std::get_if<SendControl>(&*action)) {
            FUZZ_CHECK(online().count(c->conn) == 1);
            auto* relay = std::get_if<RelayData>(&c->message);
            FUZZ_CHECK(relay != nullptr);
            FUZZ_CHECK(relay->payload.size() <= d.size());
        }
    }
};

SocketAddress source(FuzzReader& in) {
    switch (in.u8() % 4) {
        case 0: return kLaptopAddr;
        case 1: return kNasAddr;
        case 2: return kStrangerAddr;
        default: {
            std::array<uint8_t, kIpv4Size> ip{in.u8(), in.u8(), in.u8(), in.u8()};
            return SocketAddress::ipv4(ip, in.u16());
        }
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    Server server;
    FuzzReader in(data, size);
    while (!in.empty()) {
        const uint8_t op = in.u8() % 5;
        switch (op) {
            case 0:
            case 1: {
                const SocketAddress from = source(in);
                const UdpPort port = (in.u8() & 1) ? UdpPort::kSecondary : UdpPort::kMain;
                ByteView body = in.take(in.u16() % (kMaxFuzzDatagram + 1));
                if (op == 0) {
                    server.udp(port, from, body);
                } else {
                    const size_t room = std::min(body.size(), kMaxRelayPayload);
                    server.udp(port, from,
                               encode_relay_datagram(server.session_id, server.relay_token,
                                                     body.first(room)));
                }
                break;
            }
            case 2: {
                const SocketAddress from = source(in);
                server.udp(UdpPort::kMain, from, encode_bind(server.tokens[in.u8() & 1]));
                break;
            }
            case 3:
                server.now += std::chrono::milliseconds(in.u16());
                server.core->on_timer(server.now);
                break;
            case 4: {
                const ConnId conn = 1 + in.u8() % 3;
                ByteView bytes = in.take(in.u16() % 1024);
                server.core->on_control_bytes(conn, bytes, server.now);
                break;
            }
        }
    }
    return 0;
}
