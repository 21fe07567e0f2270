#include "tests/sim/net/agent_world.h"

#include "tunnel/stream_framer.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "signal/control.h"
#include "signal/stun.h"
#include "tests/sim/net/transfer.h"
#include "tunnel/crypto_init.h"

namespace burrow::sim {
namespace {

using namespace std::chrono_literals;

const SocketAddress kServerIp = SocketAddress::ipv4({192, 0, 2, 1}, 0);
constexpr uint16_t kTlsPort = 7000;
constexpr std::array<uint16_t, 2> kStunPorts = {3478, 3479};
constexpr uint16_t kWebPort = 80;
constexpr uint16_t kEchoPort = 7;
constexpr size_t kChunk = 64 * 1024;  // one socket read or write
constexpr int64_t kWallClock = 1'700'000'000'000'000;

SocketAddress with_port(SocketAddress a, uint16_t port) {
    a.port = port;
    return a;
}

bool same_ip(const SocketAddress& a, const SocketAddress& b) {
    return a.v6 == b.v6 && a.ip == b.ip;
}

bool is_server(const SocketAddress& a) {
    return same_ip(a, kServerIp) || same_ip(a, kSimServer6);
}

std::string at_ms(Time t) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%9.3f", to_ms(t - Time{}));
    return buf;
}

}  // namespace

struct AgentWorld::Tcp {
    enum class App { kClient, kWeb, kEcho };
    TcpId id = 0;
    App app = App::kClient;
    WorldClient* client = nullptr;
    Bytes to_core;  // what the application wrote that the agent has not read yet
    size_t to_core_at = 0;
    bool app_fin = false;    // the application half-closed
    bool fin_given = false;  // ... and the agent has been told
    bool reading = false;    // the agent reads (TcpResumeReading)
    Bytes request;           // targets: what arrived from the agent
    uint64_t request_stream = 0;
    bool agent_fin = false;  // the agent's FIN (TcpShutdown)
    bool ended = false;
};

struct AgentWorld::Host {
    Host(std::string n, uint64_t seed) : name(std::move(n)), rng(seed) {}
    std::string name;
    SeededRng rng;
    std::unique_ptr<AgentCore> core;
    SocketAddress lan;  // its own address (private behind a NAT)
    SocketAddress public_ip;
    std::optional<SocketAddress> v6;  // its public IPv6 address (WorldConfig::*_ipv6)
    uint16_t main_port = 0;
    std::optional<SimNat> nat;
    std::map<RouteId, uint16_t> sockets;  // local ports
    std::map<SocketAddress, RouteId> udp_binds;  // UDP forwards' listen addresses
    uint16_t next_port = 40000;
    std::optional<ConnId> conn;  // its control connection at the server
    std::map<std::string, SocketAddress> listens;
    std::map<TcpId, std::unique_ptr<Tcp>> tcps;
    Time floor{};
    bool exited = false;
    std::vector<DoctorResult> doctor_results;  // the core's answers to doctor(), in order
};

AgentWorld::AgentWorld(WorldConfig config) : config_(config), rng_(config.seed ^ 0x776f726c64) {
    crypto_init();
    SeededRng keys(config.seed ^ 0x6b657973);
    const PrivateKey server_key = PrivateKey::generate(keys);
    const PrivateKey nas_key = PrivateKey::generate(keys);
    const PrivateKey laptop_key = PrivateKey::generate(keys);

    AclConfig acl;
    acl.agents = {{"nas", public_key(nas_key)}, {"laptop", public_key(laptop_key)}};
    acl.allow = {{"laptop", "nas", {"web", "echo"}}};
    if (config.udp_service) acl.allow[0].services.push_back("dns");
    ServerCoreConfig sc;
    sc.static_key = server_key;
    sc.stun_ports = kStunPorts;
    sc.relay_udp_port = kStunPorts[0];
    server_ = std::make_unique<ServerCore>(sc, *Acl::create(acl, nullptr), rng_);
    server_config_ = sc;
    acl_config_ = acl;

    const std::array<NatKind, 2> kinds = {config.nas_nat, config.laptop_nat};
    const std::array<const char*, 2> names = {"nas", "laptop"};
    const std::array<SocketAddress, 2> publics = {SocketAddress::ipv4({203, 0, 113, 10}, 0),
                                                  SocketAddress::ipv4({198, 51, 100, 20}, 0)};
    const std::array<SocketAddress, 2> lans = {SocketAddress::ipv4({10, 0, 1, 2}, 0),
                                               SocketAddress::ipv4({10, 0, 2, 2}, 0)};
    const std::array<bool, 2> ipv6 = {config.nas_ipv6, config.laptop_ipv6};
    for (int i = 0; i < 2; ++i) {
        auto h = std::make_unique<Host>(names[i], config.seed * 2 + static_cast<uint64_t>(i));
        h->public_ip = publics[i];
        if (ipv6[i]) {
            h->v6 = SocketAddress::ipv6(
                {0x20, 0x01, 0x0d, 0xb8, 0, static_cast<uint8_t>(i + 1), 0, 0, 0, 0, 0, 0, 0, 0, 0,
                 2},
                0);
        }
        h->main_port = static_cast<uint16_t>(41641 + i);
        h->sockets[kRouteMain] = h->main_port;
        if (auto nat = nat_config(kinds[i])) {
            if (config.nat_timeout) nat->timeout = *config.nat_timeout;
            if (config.sequential_delta) nat->sequential_delta = *config.sequential_delta;
            h->lan = lans[i];
            h->nat.emplace(*nat, publics[i],
                           config.seed ^ (0x6e6174ULL + static_cast<uint64_t>(i)));
        } else {
            h->lan = publics[i];
        }
        AgentCoreConfig ac;
        ac.name = names[i];
        ac.key = i == 0 ? nas_key : laptop_key;
        ac.server = HostPort{"192.0.2.1", kTlsPort, HostKind::kIpv4};
        ac.wall_clock_at_zero_us = kWallClock;
        ac.keepalive = config.keepalive;
        if (config.stun_server) ac.stun_servers = {HostPort{"stun.sim", 3478, HostKind::kName}};
        if (i == 0) {
            ac.port_mapping = config.nas_port_mapping_delay.has_value();
            ac.session.connection.max_incoming_streams = config.nas_max_streams;
            ac.expose = {{"web", {"127.0.0.1", kWebPort, HostKind::kIpv4}, {"laptop"}},
                         {"echo", {"127.0.0.1", kEchoPort, HostKind::kIpv4}, {"laptop"}}};
            if (config.udp_service) {
                ac.expose.push_back({"dns", {"127.0.0.1", kDnsTarget.port, HostKind::kIpv4},
                                     {"laptop"}, ForwardProtocol::kUdp});
            }
        } else {
            ac.forward = {{{"127.0.0.1", 8080, HostKind::kIpv4}, "nas", "web"},
                          {{"127.0.0.1", 8007, HostKind::kIpv4}, "nas", "echo"}};
            if (config.udp_service) {
                ac.forward.push_back({{"127.0.0.1", kDnsForward.port, HostKind::kIpv4}, "nas",
                                      "dns", ForwardProtocol::kUdp});
            }
        }
        h->core = std::make_unique<AgentCore>(ac, h->rng, now_);
        if (config.direct_tcp) h->core->enable_tcp_paths(kSimTcpPort);
        hosts_[i] = std::move(h);
    }
    for (auto& h : hosts_) {
        std::vector<SocketAddress> addresses = {with_port(h->lan, h->main_port)};
        if (h->v6) addresses.push_back(with_port(*h->v6, h->main_port));
        h->core->start(addresses, now_, h->v6.has_value());
        drain(*h);
    }
}

AgentWorld::~AgentWorld() = default;

AgentCore& AgentWorld::core(WorldSide side) {
    return *hosts_[static_cast<int>(side)]->core;
}

uint32_t AgentWorld::doctor(WorldSide side, const std::string& peer) {
    Host& h = *hosts_[static_cast<size_t>(side)];
    const uint32_t id = h.core->doctor(peer, now_);
    drain(h);
    return id;
}

const std::vector<DoctorResult>& AgentWorld::doctor_results(WorldSide side) const {
    return hosts_[static_cast<size_t>(side)]->doctor_results;
}

const PeerLink* AgentWorld::link(WorldSide side) const {
    const char* peer = side == WorldSide::kNas ? "laptop" : "nas";
    return hosts_[static_cast<int>(side)]->core->link(peer);
}

bool AgentWorld::registered(WorldSide side) const {
    return hosts_[static_cast<int>(side)]->core->client().registered();
}

bool AgentWorld::run_until_registered(Time limit) {
    return run_until([&] { return registered(WorldSide::kNas) && registered(WorldSide::kLaptop); },
                     limit);
}

void AgentWorld::at(Time t, std::function<void()> fn) {
    events_.emplace(std::max(t, now_), std::move(fn));
}

void AgentWorld::log(const std::string& who, const std::string& line) {
    log_.push_back(at_ms(now_) + " " + who + ": " + line);
}

std::string AgentWorld::path_of(WorldSide side) {
    const AgentStatus s = core(side).status(now_);
    return s.peers.empty() ? "none" : path_text(s.peers.front());
}

std::string AgentWorld::log_tail(size_t lines) const {
    std::string out;
    const size_t from = log_.size() > lines ? log_.size() - lines : 0;
    for (size_t i = from; i < log_.size(); ++i) out += "    " + log_[i] + "\n";
    return out;
}

// --- time ----------------------------------------------------------------------------------------

Time AgentWorld::next_timer(std::string* who) const {
    Time best = std::max(server_->next_deadline(), server_floor_);
    if (who) *who = "server";
    for (const auto& h : hosts_) {
        if (h->exited) continue;
        const Time t = std::max(h->core->next_deadline(), h->floor);
        if (t < best) {
            best = t;
            if (who) *who = h->name;
        }
    }
    return best;
}

bool AgentWorld::run_until(const std::function<bool()>& done, Time limit) {
    while (!done()) {
        std::string who;
        const Time timer = next_timer(&who);
        const Time event = events_.empty() ? kNever : events_.begin()->first;
        const Time next = std::min(timer, event);
        if (next == kNever || next > limit) {
            now_ = std::max(now_, limit);
            return false;
        }
        now_ = std::max(now_, next);
        stats_.events++;
        if (event <= timer) {
            auto fn = std::move(events_.begin()->second);
            events_.erase(events_.begin());
            fn();
            continue;
        }
        if (who == "server") {
            execute_server(server_->on_timer(now_));
            if (server_->next_deadline() <= now_) {
                server_floor_ = now_ + std::chrono::microseconds(1);
                stats_.livelock_steps++;
            }
            continue;
        }
        Host& h = who == "nas" ? *hosts_[0] : *hosts_[1];
        h.core->on_timer(now_);
        drain(h);
        if (h.core->next_deadline() <= now_) {
            h.floor = now_ + std::chrono::microseconds(1);
            stats_.livelock_steps++;
        }
    }
    return true;
}

// --- the agents' executor ------------------------------------------------------------------------

void AgentWorld::drain(Host& h) {
    auto actions = [&] {
        bool any = false;
        while (auto a = h.core->poll_action()) {
            execute(h, *a);
            any = true;
        }
        return any;
    };
    while (!h.exited) {
        bool any = actions();
        while (auto t = h.core->poll_transmit(now_)) {
            any = true;
            if (t->tcp) {
                send_peer_tcp(h, t->route, t->data);
                continue;
            }
            auto port = h.sockets.find(t->route);
            if (port == h.sockets.end()) continue;  // a socket it closed
            if (!t->to.v6 && t->to.ip[0] == 127) {  // a local service or client
                local_udp_.push_back(LocalDatagram{
                    &h == hosts_[0].get() ? WorldSide::kNas : WorldSide::kLaptop, t->to,
                    std::move(t->data), now_});
                continue;
            }
            std::optional<SocketAddress> from;
            if (t->to.v6) {
                // No NAT and no firewall on IPv6; a side without IPv6 has no route there.
                if (h.v6) from = with_port(*h.v6, port->second);
            } else {
                const SocketAddress local = with_port(h.lan, port->second);
                from = local;
                if (h.nat) from = h.nat->outbound(local, t->to, now_);
            }
            if (!from) {
                stats_.udp_undeliverable++;
                continue;
            }
            send_udp(*from, t->to, std::move(t->data), !is_server(t->to));
        }
        // Relayed packets for the TLS connection leave as actions, after poll_transmit.
        any = actions() || any;
        if (!any) break;
    }
}

void AgentWorld::execute(Host& h, AgentAction& action) {
    std::visit(
        [&](auto& a) {
            using A = std::decay_t<decltype(a)>;
            const Duration d = config_.server_one_way;
            if constexpr (std::is_same_v<A, Log>) {
                log(h.name, a.line);
            } else if constexpr (std::is_same_v<A, Exit>) {
                h.exited = true;
            } else if constexpr (std::is_same_v<A, DoctorResult>) {
                h.doctor_results.push_back(a);
            } else if constexpr (std::is_same_v<A, DialServer>) {
                // TCP and TLS handshakes: two round trips, then the server's hello.
                at(now_ + 4 * d, [this, &h] {
                    if (now_ < server_down_until_) {
                        h.core->on_control_closed("connection refused", now_);
                        drain(h);
                        return;
                    }
                    const ConnId conn = next_conn_++;
                    h.conn = conn;
                    // The server's name gives both addresses, IPv6 first; a side with IPv6
                    // reaches that one first.
                    const std::vector<SocketAddress> resolved = {with_port(kSimServer6, kTlsPort),
                                                                 with_port(kServerIp, kTlsPort)};
                    h.core->on_control_connected(resolved[h.v6 ? 0 : 1], resolved, now_);
                    drain(h);
                    // The control connection leaves from the shared TCP port: its NAT keeps the
                    // port (an endpoint-independent TCP mapping).
                    std::optional<SocketAddress> observed;
                    if (config_.direct_tcp && !h.v6) {
                        observed = with_port(h.public_ip, kSimTcpPort);
                    }
                    execute_server(server_->on_connection_open(conn, now_, observed));
                });
            } else if constexpr (std::is_same_v<A, WriteControl>) {
                if (!h.conn) return;
                if (config_.trace)
                    log(h.name, "writes " + std::to_string(a.bytes.size()) + " control bytes");
                const ConnId conn = *h.conn;
                at(now_ + d, [this, conn, bytes = std::move(a.bytes)] {
                    execute_server(server_->on_control_bytes(conn, bytes, now_));
                });
            } else if constexpr (std::is_same_v<A, CloseControl>) {
                if (!h.conn) return;
                const ConnId conn = *h.conn;
                h.conn.reset();
                at(now_ + d,
                   [this, conn] { execute_server(server_->on_connection_closed(conn, now_)); });
            } else if constexpr (std::is_same_v<A, ResolveStunServer>) {
                const size_t index = a.index;
                const bool known = a.server.host == "stun.sim";
                at(now_ + d, [this, &h, index, known] {
                    if (h.exited) return;
                    if (known) {
                        h.core->on_stun_server_resolved(index, kSimStunServer, "", now_);
                    } else {
                        h.core->on_stun_server_resolved(index, std::nullopt,
                                                        "Name or service not known", now_);
                    }
                    drain(h);
                });
            } else if constexpr (std::is_same_v<A, MapPort>) {
                const PortMapRequest r = a.request;
                if (r.op == PortMapRequest::Op::kDelete) {
                    if (h.nat) h.nat->unmap_port(r.external_port);
                    return;
                }
                const Duration delay = config_.nas_port_mapping_delay.value_or(Duration{});
                at(now_ + delay, [this, &h, r] {
                    if (h.exited) return;
                    PortMappingResult result;
                    if (h.nat) {
                        h.nat->map_port(with_port(h.lan, r.internal_port), r.internal_port);
                        result.granted = PortMappingGranted{PortMapProtocol::kUpnpIgd, "10.0.1.1",
                                                            with_port(h.public_ip, r.internal_port),
                                                            r.lease};
                    } else {
                        result.detail = "UPnP IGD: no IGD found; PCP: no answer; NAT-PMP: no answer";
                    }
                    h.core->on_port_mapping_result(std::move(result), now_);
                    drain(h);
                });
            } else if constexpr (std::is_same_v<A, OpenUdpSocket>) {
                h.sockets[a.route] = h.next_port++;
                if (a.bind) h.udp_binds[*a.bind] = a.route;
            } else if constexpr (std::is_same_v<A, CloseUdpSocket>) {
                h.sockets.erase(a.route);
            } else if constexpr (std::is_same_v<A, ListenTcp>) {
                h.listens[a.forward] = a.address;
            } else if constexpr (std::is_same_v<A, StopListening>) {
                h.listens.erase(a.forward);
            } else if constexpr (std::is_same_v<A, PauseAccepting> ||
                                 std::is_same_v<A, ResumeAccepting>) {
                // Only src/ reports a shortage of descriptors; the simulated OS has no limit.
            } else if constexpr (std::is_same_v<A, ConnectPeerTcp>) {
                connect_peer_tcp(h, a);
            } else if constexpr (std::is_same_v<A, ClosePeerTcp>) {
                const int side = side_of(h);
                const RouteId route = a.route;
                at(now_, [this, side, route] { close_peer_tcp(side, route, "closed"); });
            } else if constexpr (std::is_same_v<A, ConnectTcp>) {
                const TcpId id = a.id;
                if (a.target.port != kWebPort && a.target.port != kEchoPort) {
                    at(now_ + 1ms, [this, &h, id] {
                        h.core->on_tcp_connect_failed(id, ConnectFailure::kRefused,
                                                      "connection refused", now_);
                        drain(h);
                    });
                    return;
                }
                auto t = std::make_unique<Tcp>();
                t->id = id;
                t->app = a.target.port == kWebPort ? Tcp::App::kWeb : Tcp::App::kEcho;
                h.tcps[id] = std::move(t);
                at(now_ + 200us, [this, &h, id] {
                    h.core->on_tcp_connected(id, now_);
                    drain(h);
                });
            } else if constexpr (std::is_same_v<A, TcpFlush>) {
                const TcpId id = a.id;
                at(now_, [this, &h, id] {
                    if (auto it = h.tcps.find(id); it != h.tcps.end()) flush(h, *it->second);
                });
            } else if constexpr (std::is_same_v<A, TcpPauseReading>) {
                if (auto it = h.tcps.find(a.id); it != h.tcps.end()) it->second->reading = false;
            } else if constexpr (std::is_same_v<A, TcpResumeReading>) {
                const TcpId id = a.id;
                if (auto it = h.tcps.find(id); it != h.tcps.end()) it->second->reading = true;
                at(now_, [this, &h, id] {
                    if (auto it = h.tcps.find(id); it != h.tcps.end()) pump(h, *it->second);
                });
            } else if constexpr (std::is_same_v<A, TcpShutdown>) {
                const TcpId id = a.id;
                at(now_, [this, &h, id] {
                    auto it = h.tcps.find(id);
                    if (it == h.tcps.end()) return;
                    it->second->agent_fin = true;
                    on_app_bytes(h, *it->second);
                    h.core->on_tcp_shutdown_done(id, now_);
                    drain(h);
                });
            } else if constexpr (std::is_same_v<A, TcpFinish> || std::is_same_v<A, TcpClose> ||
                                 std::is_same_v<A, TcpReset>) {
                auto it = h.tcps.find(a.id);
                if (it == h.tcps.end()) return;
                Tcp& t = *it->second;
                if (t.client && !t.client->finished && !t.client->failed) {
                    t.client->failed = true;
                    t.client->failure =
                        std::string(std::is_same_v<A, TcpReset>    ? "reset"
                                    : std::is_same_v<A, TcpFinish> ? "refused (clean end)"
                                                                   : "closed") +
                        " after " + std::to_string(t.client->received) + " of " +
                        std::to_string(t.client->expect) + " bytes";
                }
                const TcpId id = a.id;
                at(now_, [this, &h, id] { close_tcp(h, id); });
            }
        },
        action);
}

void AgentWorld::close_tcp(Host& h, TcpId id) {
    auto it = h.tcps.find(id);
    if (it == h.tcps.end()) return;
    h.tcps.erase(it);
    h.core->on_tcp_closed(id, now_);
    drain(h);
}

// --- the applications ----------------------------------------------------------------------------

WorldClient& AgentWorld::open(const std::string& service, uint64_t bytes, bool hold) {
    auto c = std::make_unique<WorldClient>();
    c->service = service;
    c->stream = next_stream_++;
    c->opened = now_;
    c->expect = bytes;
    WorldClient& client = *c;
    clients_.push_back(std::move(c));
    Host& laptop = *hosts_[1];
    const std::string forward = service == "web" ? "127.0.0.1:8080" : "127.0.0.1:8007";
    std::optional<TcpId> id = laptop.core->on_tcp_accepted(forward, now_);
    if (!id) {
        client.failed = true;
        client.failure = "the forward did not accept";
        return client;
    }
    auto t = std::make_unique<Tcp>();
    t->id = *id;
    t->client = &client;
    if (service == "web") {
        const std::string request = std::to_string(client.stream) + " " + std::to_string(bytes);
        t->to_core.assign(request.begin(), request.end());
    } else {
        t->to_core.resize(bytes);
        fill_content(config_.seed, client.stream, 0, t->to_core);
        client.echo_of = t->to_core;
    }
    t->app_fin = !hold;  // the request is all the client sends
    laptop.tcps[*id] = std::move(t);
    drain(laptop);
    return client;
}

void AgentWorld::release(WorldClient& client) {
    Host& laptop = *hosts_[1];
    for (auto& [id, t] : laptop.tcps) {
        if (t->client != &client) continue;
        t->app_fin = true;
        pump(laptop, *t);
        return;
    }
}

// The agent reads what the application wrote, as far as the stream has room.
void AgentWorld::pump(Host& h, Tcp& t) {
    const TcpId id = t.id;
    while (t.reading && t.to_core_at < t.to_core.size()) {
        const size_t space = h.core->tcp_read_space(id);
        if (space == 0) break;
        const size_t n = std::min({space, t.to_core.size() - t.to_core_at, kChunk});
        h.core->on_tcp_data(id, ByteView(t.to_core.data() + t.to_core_at, n), now_);
        t.to_core_at += n;
        drain(h);
        if (!h.tcps.contains(id)) return;
    }
    if (t.reading && t.to_core_at == t.to_core.size() && t.app_fin && !t.fin_given) {
        t.fin_given = true;
        h.core->on_tcp_eof(id, now_);
        drain(h);
    }
}

// The agent writes the stream's bytes to the application (an unbounded socket queue).
void AgentWorld::flush(Host& h, Tcp& t) {
    uint8_t buf[kChunk];
    const size_t before = t.request.size();
    while (size_t n = h.core->tcp_output(t.id, MutableByteView(buf, sizeof buf), now_)) {
        t.request.insert(t.request.end(), buf, buf + n);
    }
    drain(h);
    auto it = h.tcps.find(t.id);
    if (it != h.tcps.end() && it->second->request.size() != before) on_app_bytes(h, t);
}

void AgentWorld::on_app_bytes(Host& h, Tcp& t) {
    if (t.client) {
        WorldClient& c = *t.client;
        const ByteView got(t.request.data() + c.received, t.request.size() - c.received);
        if (!got.empty() && c.first_byte == kNever) c.first_byte = now_;
        const size_t bad =
            c.service == "web"
                ? first_content_mismatch(config_.seed, c.stream, c.received, got)
                : static_cast<size_t>(
                      std::mismatch(
                          got.begin(), got.end(),
                          c.echo_of.begin() + static_cast<std::ptrdiff_t>(
                                                  std::min<uint64_t>(c.received, c.echo_of.size())),
                          c.echo_of.end())
                          .first -
                      got.begin());
        if (!c.failed && (c.received + got.size() > c.expect || bad != got.size())) {
            c.failed = true;
            c.failure = "byte " + std::to_string(c.received + bad) + " differs";
        }
        c.received += got.size();
        if (t.agent_fin && !c.failed && !c.finished) {
            if (c.received == c.expect) {
                c.finished = true;
                c.done_at = now_;
            } else {
                c.failed = true;
                c.failure = "FIN after " + std::to_string(c.received) + " of " +
                            std::to_string(c.expect) + " bytes";
            }
        }
        return;
    }
    if (t.app == Tcp::App::kEcho) {
        t.to_core.insert(t.to_core.end(), t.request.begin(), t.request.end());
        t.request.clear();
        if (t.agent_fin) t.app_fin = true;
        pump(h, t);
        return;
    }
    // web: the request is "<stream> <bytes>", whole once the client's FIN arrived.
    if (!t.agent_fin || t.app_fin) return;
    const std::string text(t.request.begin(), t.request.end());
    char* end = nullptr;
    const uint64_t stream = std::strtoull(text.c_str(), &end, 10);
    const uint64_t bytes = std::strtoull(end, nullptr, 10);
    t.to_core.resize(bytes);
    fill_content(config_.seed, stream, 0, t.to_core);
    t.app_fin = true;
    pump(h, t);
}

// --- the server's executor and the network -------------------------------------------------------

AgentWorld::Host* AgentWorld::host_by_conn(ConnId conn) {
    for (auto& h : hosts_) {
        if (h->conn == conn) return h.get();
    }
    return nullptr;
}

void AgentWorld::execute_server(std::vector<ServerAction> actions) {
    const Duration d = config_.server_one_way;
    for (ServerAction& action : actions) {
        std::visit(
            [&](auto& a) {
                using A = std::decay_t<decltype(a)>;
                if constexpr (std::is_same_v<A, SendControl>) {
                    Host* h = host_by_conn(a.conn);
                    if (!h) return;
                    if (config_.trace)
                        log("server",
                            std::string("sends ") + message_name(a.message) + " to " + h->name);
                    const ConnId conn = a.conn;
                    const Duration lag =
                        h == hosts_[0].get() ? config_.nas_control_lag : Duration(0);
                    at(now_ + d + lag, [this, h, conn, bytes = encode_control(a.message)] {
                        if (h->conn != conn) return;
                        h->core->on_control_bytes(bytes, now_);
                        drain(*h);
                    });
                } else if constexpr (std::is_same_v<A, CloseConnection>) {
                    Host* h = host_by_conn(a.conn);
                    if (!h) return;
                    const ConnId conn = a.conn;
                    log("server", "closes connection " + std::to_string(conn) + ": " + a.reason);
                    at(now_ + d, [this, h, conn] {
                        if (h->conn != conn) return;
                        h->conn.reset();
                        h->core->on_control_closed("closed by the server", now_);
                        drain(*h);
                    });
                } else if constexpr (std::is_same_v<A, SendDatagram>) {
                    send_udp(with_port(a.to.v6 ? kSimServer6 : kServerIp,
                                       kStunPorts[static_cast<size_t>(a.from)]),
                             a.to, std::move(a.bytes), false);
                } else if constexpr (std::is_same_v<A, LogEvent>) {
                    log("server", a.line);
                }
            },
            action);
    }
}

void AgentWorld::send_udp(const SocketAddress& from, const SocketAddress& to, Bytes data,
                          bool direct) {
    stats_.udp_sent++;
    if (config_.trace) {
        log("net", "udp " + to_string(from) + " -> " + to_string(to) + " " +
                       std::to_string(data.size()) + " bytes");
    }
    if (config_.loss > 0 && rng_.chance(config_.loss)) {
        stats_.udp_lost++;
        return;
    }
    Duration delay = direct ? config_.direct_one_way : config_.server_one_way;
    if (config_.jitter > Duration(0)) {
        delay += Duration(
            static_cast<int64_t>(rng_.uniform(static_cast<uint64_t>(config_.jitter.count()) + 1)));
    }
    if (config_.reorder > 0 && rng_.chance(config_.reorder)) delay += config_.reorder_delay;
    if (direct && config_.direct_rate_mbit > 0) {
        // bits / (Mbit/s) = microseconds on the wire
        const Duration serialize(static_cast<int64_t>(
            static_cast<double>(data.size() * 8) / config_.direct_rate_mbit));
        Time& free_at = wire_free_at_[with_port(to, 0)];
        const Time start = std::max(now_, free_at);
        if (start - now_ > config_.direct_queue) {
            stats_.udp_queue_dropped++;
            return;
        }
        free_at = start + serialize;
        delay += free_at - now_;
    }
    at(now_ + delay, [this, from, to, data = std::move(data)] { arrive_udp(from, to, data); });
}

void AgentWorld::restart_server(Duration down) {
    log("server", "restarts (down for " + std::to_string(static_cast<long long>(to_ms(down))) + " ms)");
    server_ = std::make_unique<ServerCore>(server_config_, *Acl::create(acl_config_, nullptr), rng_);
    server_floor_ = now_;
    server_down_until_ = now_ + down;
    for (auto& h : hosts_) {
        if (!h->conn || h->exited) continue;
        h->conn.reset();
        h->core->on_control_closed("connection reset by peer", now_);
        drain(*h);
    }
}

void AgentWorld::send_to_forward(const SocketAddress& listen, const SocketAddress& from,
                                 Bytes data) {
    Host& laptop = *hosts_[1];
    auto route = laptop.udp_binds.find(listen);
    if (route == laptop.udp_binds.end()) return;
    laptop.core->on_udp(route->second, from, data, now_);
    drain(laptop);
}

void AgentWorld::arrive_udp(const SocketAddress& from, const SocketAddress& to, const Bytes& data) {
    if (to == kSimStunServer) {
        std::optional<StunMessage> m = is_stun(data) ? decode_stun(data) : std::nullopt;
        if (!config_.stun_server || config_.stun_server_silent || !m ||
            m->type != kStunBindingRequest) {
            stats_.udp_undeliverable++;
            return;
        }
        send_udp(to, from, encode_binding_success(m->transaction_id, from, "sim-stun"), false);
        return;
    }
    if (is_server(to)) {
        if (now_ < server_down_until_ || (config_.block_server_stun && is_stun(data))) {
            stats_.udp_undeliverable++;
            return;
        }
        for (size_t i = 0; i < kStunPorts.size(); ++i) {
            if (to.port != kStunPorts[i]) continue;
            if (auto action = server_->on_udp(static_cast<UdpPort>(i), from, data, now_)) {
                execute_server({std::move(*action)});
            }
            return;
        }
        stats_.udp_undeliverable++;
        return;
    }
    for (auto& h : hosts_) {
        if (h->exited) continue;
        if (to.v6 ? !h->v6 || !same_ip(*h->v6, to) : !same_ip(h->public_ip, to)) continue;
        std::optional<SocketAddress> local = to;
        if (h->nat && !to.v6) local = h->nat->inbound(to, from, now_);
        if (!local) break;
        for (const auto& [route, port] : h->sockets) {
            if (port != local->port) continue;
            h->core->on_udp(route, from, data, now_);
            drain(*h);
            return;
        }
        break;
    }
    stats_.udp_undeliverable++;
}

// --- direct TCP paths between the agents (WorldConfig::direct_tcp) ------------------------------

void AgentWorld::connect_peer_tcp(Host& h, const ConnectPeerTcp& c) {
    const int side = side_of(h);
    PeerTcpEnd& e = peer_tcps_[{side, c.route}];
    e.side = side;
    e.route = c.route;
    e.to = c.to;
    e.started = now_;
    e.deadline = now_ + c.timeout;
    const RouteId route = c.route;
    if (side == 0 && config_.nas_tcp_out_refused) {
        at(now_ + 1ms, [this, side, route] { close_peer_tcp(side, route, "connection refused"); });
        return;
    }
    at(now_ + config_.direct_one_way, [this, side, route] { syn_arrives(side, route, 1s); });
    at(e.deadline, [this, side, route] {
        auto it = peer_tcps_.find({side, route});
        if (it == peer_tcps_.end() || it->second.other) return;
        close_peer_tcp(side, route, "timed out");
    });
}

// Our SYN reaches the peer's address: accepted (no NAT), crossed with the peer's own SYN to us
// (a simultaneous open), or dropped by its NAT and sent again by our kernel after `retry`.
void AgentWorld::syn_arrives(int side, RouteId route, Duration retry) {
    auto it = peer_tcps_.find({side, route});
    if (it == peer_tcps_.end() || it->second.other) return;
    PeerTcpEnd& e = it->second;
    Host& h = *hosts_[side];
    const int other = 1 - side;
    Host& peer = *hosts_[other];
    const Duration d = config_.direct_one_way;
    const bool to_peer = e.to == with_port(peer.public_ip, kSimTcpPort) ||
                         (!peer.nat && e.to == with_port(peer.lan, kSimTcpPort));
    if (!to_peer || config_.tcp_peer_blocked || peer.exited) {
        return;  // dropped on the way; the connect times out
    }
    // The peer's connect to our address that left before our SYN arrived: the crossing.
    const SocketAddress ours = with_port(h.public_ip, kSimTcpPort);
    for (auto& [key, o] : peer_tcps_) {
        if (config_.tcp_no_crossing) break;
        if (o.side != other || o.other || o.to != ours || o.started > now_) continue;
        const RouteId other_route = o.route;
        e.other = std::make_pair(other, other_route);
        o.other = std::make_pair(side, route);
        at(now_ + d, [this, side, route, other, other_route] {
            if (!hosts_[side]->exited) {
                hosts_[side]->core->on_peer_tcp_connected(route, now_);
                drain(*hosts_[side]);
            }
            if (!hosts_[other]->exited) {
                hosts_[other]->core->on_peer_tcp_connected(other_route, now_);
                drain(*hosts_[other]);
            }
        });
        return;
    }
    if (!peer.nat) {  // the peer's listener accepts
        const std::optional<RouteId> accepted = peer.core->on_peer_tcp_accepted(ours, now_);
        drain(peer);
        if (!accepted) return close_peer_tcp(side, route, "connection reset");
        PeerTcpEnd& a = peer_tcps_[{other, *accepted}];
        a.side = other;
        a.route = *accepted;
        a.to = ours;
        a.started = now_;
        a.other = std::make_pair(side, route);
        e.other = std::make_pair(other, *accepted);
        at(now_ + d, [this, side, route] {
            if (hosts_[side]->exited) return;
            hosts_[side]->core->on_peer_tcp_connected(route, now_);
            drain(*hosts_[side]);
        });
        return;
    }
    // Our kernel sends it again `retry` after this one left: it arrives `retry` from now.
    at(now_ + retry, [this, side, route, retry] { syn_arrives(side, route, retry * 2); });
}

void AgentWorld::send_peer_tcp(Host& h, RouteId route, const Bytes& datagram) {
    auto it = peer_tcps_.find({side_of(h), route});
    if (it == peer_tcps_.end() || !it->second.other) return;
    auto [other, other_route] = *it->second.other;
    auto frame = frame_for_tcp_path(datagram);
    if (!frame) return;
    // Reliable and in order; each frame handed over in two reads, to exercise reassembly.
    it->second.deliver_at = std::max(it->second.deliver_at, now_ + config_.direct_one_way);
    const size_t cut = frame->size() / 2;
    Bytes first(frame->begin(), frame->begin() + static_cast<std::ptrdiff_t>(cut));
    Bytes second(frame->begin() + static_cast<std::ptrdiff_t>(cut), frame->end());
    at(it->second.deliver_at, [this, other, other_route, first = std::move(first),
                               second = std::move(second)] {
        if (!peer_tcps_.contains({other, other_route}) || hosts_[other]->exited) return;
        hosts_[other]->core->on_peer_tcp_data(other_route, first, now_);
        hosts_[other]->core->on_peer_tcp_data(other_route, second, now_);
        drain(*hosts_[other]);
    });
}

void AgentWorld::close_peer_tcp(int side, RouteId route, const std::string& why) {
    auto it = peer_tcps_.find({side, route});
    if (it == peer_tcps_.end()) return;
    const auto other = it->second.other;
    const Time last = it->second.deliver_at;
    peer_tcps_.erase(it);
    if (!hosts_[side]->exited) {
        hosts_[side]->core->on_peer_tcp_closed(route, why, now_);
        drain(*hosts_[side]);
    }
    if (other) {  // the FIN reaches the peer after what was sent before it
        at(std::max(last, now_ + config_.direct_one_way), [this, other] {
            close_peer_tcp(other->first, other->second, "closed by the peer");
        });
    }
}

void AgentWorld::reset_peer_tcps() {
    std::vector<std::pair<int, RouteId>> ends;
    for (const auto& [key, e] : peer_tcps_) {
        if (e.other) ends.push_back(key);
    }
    for (const auto& [side, route] : ends) {
        if (peer_tcps_.contains({side, route})) {
            peer_tcps_[{side, route}].other.reset();  // no FIN: each end sees its own reset
            close_peer_tcp(side, route, "connection reset by peer");
        }
    }
}

size_t AgentWorld::peer_tcp_connections() const {
    size_t ends = 0;
    for (const auto& [key, e] : peer_tcps_) ends += e.other ? 1 : 0;
    return ends / 2;
}

}  // namespace burrow::sim
