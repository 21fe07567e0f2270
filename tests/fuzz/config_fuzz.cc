// Config target: TOML text to a validated AgentConfig or ServerConfig (config/agent_config.h,
// config/server_config.h), the path from a user's file to the values the agent and server run
// with.
//
// Input: selector byte (even: agent, odd: server), then the file's text. Relative paths resolve
// against /fuzz, where the files the examples name (nas.key, laptop.key, ca.pem) exist as far as
// the FileProbe says, so valid inputs get past the file checks.
//
// Invariants: the loader returns a config or exactly one error line naming the source; a config
// satisfies what its header promises (names present, allow lists non-empty, exactly one of
// fingerprint and CA, distinct server paths, listen ports not reused: no two of the agent's
// TCP listeners (admin, TCP forwards), nor of its UDP sockets (session socket, UDP forwards),
// nor the server's two STUN sockets, would fight over a port).
// Whether two binds fight is judged here from the addresses' bytes as Linux does, not with the
// loader's own helper, so a loader that misjudges it fails the invariant.
#include <arpa/inet.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <iterator>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "config/agent_config.h"
#include "config/server_config.h"
#include "tests/fuzz/fuzz_support.h"

using namespace burrow;

namespace {

constexpr std::string_view kSource = "fuzz.toml";

// The files the configs may name; config/ asks about them through a FileProbe, so the fuzzer
// never touches the disk.
const std::string kBaseDir = "/fuzz";
FileKind fake_files(const std::string& path) {
    for (const char* name : {"/fuzz/nas.key", "/fuzz/laptop.key", "/fuzz/ca.pem"}) {
        if (path == name) return FileKind::kFile;
    }
    return path == kBaseDir ? FileKind::kDirectory : FileKind::kMissing;
}

void check_error(const ConfigError& e) {
    FUZZ_CHECK(!e.message.empty());
    FUZZ_CHECK(e.message.find('\n') == std::string::npos);
    FUZZ_CHECK(e.message.rfind(kSource, 0) == 0);
}

// A listening address as the kernel sees it: an IPv4-mapped IPv6 address ([::ffff:a.b.c.d])
// binds the IPv4 address a.b.c.d.
struct BindAddress {
    int family;
    std::array<uint8_t, 16> ip;
    uint16_t port;
};

BindAddress bind_address(const HostPort& h) {
    BindAddress b{AF_INET, {}, h.port};
    if (::inet_pton(AF_INET, h.host.c_str(), b.ip.data()) == 1) return b;
    b.family = AF_INET6;
    FUZZ_CHECK(::inet_pton(AF_INET6, h.host.c_str(), b.ip.data()) == 1);  // listen: IP literals
    // ::ffff:0:0/96, IPv4-mapped addresses (RFC 4291 §2.5.5.2).
    static constexpr uint8_t kMappedPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (std::equal(std::begin(kMappedPrefix), std::end(kMappedPrefix), b.ip.begin())) {
        std::copy(b.ip.begin() + 12, b.ip.end(), b.ip.begin());
        std::fill(b.ip.begin() + 4, b.ip.end(), 0);
        b.family = AF_INET;
    }
    return b;
}

// Whether binding both (same protocol) fails with "address in use" on Linux: same port, and the
// same address, or a wildcard of the same family, or "::", which binds IPv4 too (dual-stack is
// the default, net.ipv6.bindv6only=0).
bool binds_collide(const HostPort& a, const HostPort& b) {
    const BindAddress x = bind_address(a), y = bind_address(b);
    if (x.port != y.port) return false;
    const auto wildcard = [](const BindAddress& v) {
        return std::all_of(v.ip.begin(), v.ip.end(), [](uint8_t byte) { return byte == 0; });
    };
    if (x.family == y.family) return x.ip == y.ip || wildcard(x) || wildcard(y);
    return (x.family == AF_INET6 && wildcard(x)) || (y.family == AF_INET6 && wildcard(y));
}

void check_no_collisions(const std::vector<HostPort>& binds) {
    for (size_t i = 0; i < binds.size(); ++i) {
        for (size_t j = 0; j < i; ++j) FUZZ_CHECK(!binds_collide(binds[i], binds[j]));
    }
}

void check(const AgentConfig& c) {
    FUZZ_CHECK(!c.name.empty() && c.name.size() <= 32);
    FUZZ_CHECK(c.server_fingerprint.has_value() != c.server_ca.has_value());
    FUZZ_CHECK(!c.key_file.empty());
    std::set<std::string> services;
    for (const ExposeConfig& e : c.expose) {
        FUZZ_CHECK(!e.service.empty() && !e.allow.empty());
        FUZZ_CHECK(std::set<std::string>(e.allow.begin(), e.allow.end()).size() == e.allow.size());
        services.insert(e.service);
    }
    FUZZ_CHECK(services.size() == c.expose.size());
    // A port of one protocol binds once: the admin endpoint and TCP forwards; the session
    // socket (every IPv4 address, when udp_port is set) and UDP forwards.
    std::vector<HostPort> tcp_listeners, udp_listeners;
    if (c.admin) tcp_listeners.push_back(*c.admin);
    if (c.udp_port != 0) udp_listeners.push_back(HostPort{"0.0.0.0", c.udp_port, HostKind::kIpv4});
    for (const ForwardConfig& f : c.forward) {
        FUZZ_CHECK(!f.peer.empty() && !f.service.empty());
        (f.protocol == ForwardProtocol::kUdp ? udp_listeners : tcp_listeners).push_back(f.listen);
    }
    check_no_collisions(tcp_listeners);
    check_no_collisions(udp_listeners);
}

// A server address list (issue 17): an IPv6 address that shares its port with an IPv4 one is
// bound IPv6-only, so only addresses of one family may not collide.
void check_no_collisions_per_family(const std::vector<HostPort>& binds) {
    for (size_t i = 0; i < binds.size(); ++i) {
        for (size_t j = 0; j < i; ++j) {
            if (bind_address(binds[i]).family != bind_address(binds[j]).family) continue;
            FUZZ_CHECK(!binds_collide(binds[i], binds[j]));
        }
    }
}

void check(const ServerConfig& c) {
    // The STUN sockets (UDP): each list on one port, the two ports different; the control
    // listeners are TCP and may share a port with them.
    FUZZ_CHECK(!c.listen.empty() && !c.stun[0].empty() && !c.stun[1].empty());
    std::vector<HostPort> stun;
    for (const auto& list : c.stun) {
        for (const HostPort& s : list) {
            FUZZ_CHECK(s.port == list.front().port);
            stun.push_back(s);
        }
    }
    FUZZ_CHECK(c.stun[0].front().port != c.stun[1].front().port);
    check_no_collisions_per_family(stun);
    check_no_collisions_per_family(c.listen);
    FUZZ_CHECK(c.cert_file != c.key_file && c.key_file != c.identity_key &&
               c.cert_file != c.identity_key);
    std::set<std::string> names;
    for (const AgentEntry& a : c.agents) names.insert(a.name);
    FUZZ_CHECK(names.size() == c.agents.size());
    for (const AllowRule& r : c.allow) {
        FUZZ_CHECK(names.count(r.from) == 1 && names.count(r.to) == 1);
        FUZZ_CHECK(!r.services.empty());
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0) return 0;
    const std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
    if (data[0] & 1) {
        auto r = parse_server_config(text, kSource, kBaseDir);
        if (auto* e = std::get_if<ConfigError>(&r)) check_error(*e);
        else check(std::get<ServerConfig>(r));
    } else {
        auto r = parse_agent_config(text, kSource, kBaseDir, fake_files);
        if (auto* e = std::get_if<ConfigError>(&r)) check_error(*e);
        else check(std::get<AgentConfig>(r));
    }
    return 0;
}
