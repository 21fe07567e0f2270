// A ServerCore with the NAS/laptop ACL and helpers to drive it, for server_core_test.cc and
// udp_server_test.cc.
#pragma once

#include <catch2/catch.hpp>

#include <map>
#include <string>
#include <vector>

#include "signal/auth.h"
#include "signal/server_core.h"
#include "tunnel/crypto_init.h"
#include "tunnel/rng.h"

namespace burrow::test {

using Actions = std::vector<ServerAction>;

constexpr uint16_t kStunPort = 3478;  // RFC 8489 §9: the default STUN port
constexpr uint16_t kStunPort2 = 3479;

// nas exposes services; laptop may open nas/web only; phone is known but has no rules; a
// stranger's key is not in the configuration at all.
inline AclConfig nas_laptop_acl(const std::map<std::string, PublicKey>& keys) {
    AclConfig c;
    for (const char* name : {"nas", "laptop", "phone"}) c.agents.push_back({name, keys.at(name)});
    c.allow = {{"laptop", "nas", {"web"}}};
    return c;
}

template <class T>
std::vector<T> messages_to(const Actions& actions, ConnId conn) {
    std::vector<T> out;
    for (const ServerAction& a : actions) {
        if (auto* s = std::get_if<SendControl>(&a); s && s->conn == conn) {
            if (auto* m = std::get_if<T>(&s->message)) out.push_back(*m);
        }
    }
    return out;
}

inline std::optional<std::string> close_reason(const Actions& actions, ConnId conn) {
    for (const ServerAction& a : actions) {
        if (auto* c = std::get_if<CloseConnection>(&a); c && c->conn == conn) return c->reason;
    }
    return std::nullopt;
}

inline bool contains(const std::optional<std::string>& s, std::string_view part) {
    return s && s->find(part) != std::string::npos;
}

struct Harness {
    explicit Harness(uint64_t seed = 1, ServerLimits limits = {}, AclConfig* acl_override = nullptr)
        : rng(seed), key_rng(seed ^ 0x5eed) {
        REQUIRE(crypto_init());
        server_key = PrivateKey::generate(key_rng);
        for (const char* name : {"nas", "laptop", "phone", "stranger"}) {
            keys.emplace(name, PrivateKey::generate(key_rng));
            pubs.emplace(name, public_key(keys.at(name)));
        }
        ServerCoreConfig config;
        config.static_key = server_key;
        config.stun_ports = {kStunPort, kStunPort2};
        config.relay_udp_port = kStunPort;
        config.software = "burrow-test";
        config.limits = limits;
        acl_config = acl_override ? *acl_override : nas_laptop_acl(pubs);
        core_config = config;
        restart();
    }

    // A new core with the same identity key and ACL and nothing else: the server restarted.
    // Whoever drives it must tell the agents their connections are gone.
    void restart() {
        std::string error;
        auto acl = Acl::create(acl_config, &error);
        REQUIRE(acl);
        core = std::make_unique<ServerCore>(core_config, std::move(*acl), rng);
    }

    // Opens conn and returns the nonce of its ServerHello.
    AuthNonce open(ConnId conn, std::optional<SocketAddress> observed = std::nullopt) {
        Actions a = core->on_connection_open(conn, now, observed);
        auto hello = messages_to<ServerHello>(a, conn);
        REQUIRE(hello.size() == 1);
        CHECK(hello[0].server_static_pub == public_key(server_key));
        return hello[0].nonce;
    }

    Actions send(ConnId conn, const ControlMessage& m) {
        return core->on_control_bytes(conn, encode_control(m), now);
    }

    Auth auth_for(const std::string& agent, const AuthNonce& nonce) {
        return Auth{pubs.at(agent),
                    *compute_auth_proof(keys.at(agent), public_key(server_key), nonce),
                    "burrow-test-agent"};
    }

    // Opens conn and authenticates `agent` on it; returns the AuthOk.
    AuthOk login(ConnId conn, const std::string& agent,
                 std::optional<SocketAddress> observed = std::nullopt) {
        const AuthNonce nonce = open(conn, observed);
        Actions a = send(conn, auth_for(agent, nonce));
        auto ok = messages_to<AuthOk>(a, conn);
        REQUIRE(ok.size() == 1);
        CHECK_FALSE(close_reason(a, conn));
        return ok[0];
    }

    void advance(Duration d) { now += d; }

    SeededRng rng;
    SeededRng key_rng;
    PrivateKey server_key;
    std::map<std::string, PrivateKey> keys;
    std::map<std::string, PublicKey> pubs;
    ServerCoreConfig core_config;
    AclConfig acl_config;
    std::unique_ptr<ServerCore> core;
    Time now = time_from_us(1'000'000);
};

}  // namespace burrow::test
