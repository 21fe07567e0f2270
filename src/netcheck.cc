#include "src/netcheck.h"

#include <uv.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <deque>
#include <optional>
#include <thread>
#include <variant>

#include "config/agent_config.h"
#include "signal/host_port.h"
#include "signal/nat_probe.h"
#include "signal/stun_servers.h"
#include "src/clock.h"
#include "src/config_file.h"
#include "src/core_timer.h"
#include "src/netcheck_report.h"
#include "src/netcheck_tcp.h"
#include "src/port_mapping.h"
#include "src/resolve.h"
#include "src/sockaddr.h"
#include "src/system_rng.h"
#include "src/udp_socket.h"
#include "src/version.h"
#include "tunnel/port_prediction.h"

namespace burrow {
namespace {

constexpr int kExitUsage = 2;
constexpr int kExitOsError = 1;
// examples/server.toml: the server's STUN ports unless its operator chose others.
constexpr std::array<uint16_t, 2> kDefaultStunPorts = {3478, 3479};

int fail(int status, const std::string& line) {
    std::fprintf(stderr, "burrow: netcheck: %s\n", line.c_str());
    return status;
}

// The burrow server's two STUN ports of one family, and the probe asking them.
struct FamilyProbe {
    std::array<SocketAddress, 2> to;
    NatProbe probe;
    std::deque<ServerDatagram> out;
};

// The socket's mapped ports in the order its mappings were made: the STUN servers' first
// requests go out first, in list order, then the server's two ports (Netcheck::start), and a
// mapping is made by a destination's first request. A destination asked twice (--stun given
// once names one port twice) made one mapping: counted once.
std::vector<uint16_t> mapped_in_order(const std::vector<StunServerStatus>& stun,
                                      const std::optional<std::array<SocketAddress, 2>>& servers,
                                      const NatProbeResult& probe) {
    std::vector<uint16_t> ports;
    std::vector<SocketAddress> asked;
    auto add = [&](const std::optional<SocketAddress>& to,
                   const std::optional<SocketAddress>& mapped) {
        if (!to || !mapped || std::find(asked.begin(), asked.end(), *to) != asked.end()) return;
        asked.push_back(*to);
        ports.push_back(mapped->port);
    };
    for (const StunServerStatus& st : stun) add(st.address, st.mapped);
    if (servers) {
        for (size_t i = 0; i < servers->size(); ++i) add((*servers)[i], probe.mapped[i]);
    }
    return ports;
}

class Netcheck {
  public:
    // servers: the burrow server's two STUN ports per family ([0] IPv4, [1] IPv6), where
    // asked; stun: standard STUN servers, with the addresses resolved (or the errors) already
    // set. local: the socket's address (an IPv6 wildcard is dual-stack).
    Netcheck(uv_loop_t* loop, SocketAddress local,
             std::array<std::optional<std::array<SocketAddress, 2>>, 2> servers, StunServerSet stun)
        : loop_(loop), local_(local), stun_(std::move(stun)) {
        for (size_t f = 0; f < 2; ++f) {
            if (servers[f]) {
                probes_[f].emplace(FamilyProbe{*servers[f],
                                               NatProbe(std::string("burrow/") + version_string()),
                                               {}});
            }
        }
    }

    std::optional<OsError> start() {
        UdpHandlers handlers{
            .datagram =
                [this](const SocketAddress& from, ByteView data, Time now) {
                    if (stun_.expects(from, data)) {
                        stun_.on_datagram(from, data, now);
                    } else {
                        for (auto& p : probes_) {
                            if (!p) continue;
                            for (size_t i = 0; i < p->to.size(); ++i) {
                                if (from == p->to[i]) p->probe.on_stun(static_cast<UdpPort>(i), data);
                            }
                        }
                    }
                    check_done();
                },
            .batch_end = {},
        };
        auto udp = UdpSocket::bind(loop_, clock_, local_, std::move(handlers));
        if (auto* err = std::get_if<OsError>(&udp)) return *err;
        udp_ = std::get<std::shared_ptr<UdpSocket>>(udp);
        CoreTimer::Hooks hooks;
        hooks.on_timer = [this](Time now) {
            for (auto& p : probes_) {
                if (p) p->probe.on_timer(now, p->out);
            }
            stun_.on_timer(now);
        };
        hooks.transmit_one = [this](Time) {
            if (auto d = stun_.poll_transmit()) {
                udp_->send(d->to, d->bytes);
                return true;
            }
            for (auto& p : probes_) {
                if (!p || p->out.empty()) continue;
                ServerDatagram d = std::move(p->out.front());
                p->out.pop_front();
                udp_->send(p->to[static_cast<size_t>(d.to)], d.bytes);
                return true;
            }
            return false;
        };
        hooks.next_deadline = [this] {
            Time next = stun_.next_deadline();
            for (const auto& p : probes_) {
                if (p) next = std::min(next, p->probe.next_deadline());
            }
            return next;
        };
        hooks.flush = [this] { udp_->flush(); };
        timer_ = CoreTimer::create(loop_, clock_, std::move(hooks));
        if (!timer_) return OsError{timer_error_text()};
        for (auto& p : probes_) {
            if (p) p->probe.start(rng_, clock_.now(), p->out);
        }
        stun_.start(rng_, clock_.now());
        timer_->kick();
        return std::nullopt;
    }

    // Every question answered or given up: the server's ports, and each STUN server's round.
    bool finished() const {
        return std::all_of(probes_.begin(), probes_.end(),
                           [](const auto& p) { return !p || p->probe.finished(); }) &&
               stun_.next_deadline() == kNever;
    }
    void check_done() {
        if (!finished() || done_) return;
        done_ = true;
        for (size_t f = 0; f < 2; ++f) {
            if (probes_[f]) results_[f] = probes_[f]->probe.result();
        }
        local_port_ = udp_->local_address().port;
        timer_->close();
        udp_->close();
    }

    // Called from the loop: the timer path finishes through on_timer giving up.
    bool done() const { return done_; }
    // [0] IPv4, [1] IPv6: what the server's ports of that family answered.
    const std::array<NatProbeResult, 2>& results() const { return results_; }
    const StunServerSet& stun() const { return stun_; }
    uint16_t local_port() const { return local_port_; }
    void poll() {
        if (!done_ && finished()) check_done();
    }

  private:
    uv_loop_t* loop_;
    LoopClock clock_;
    SystemRng rng_;
    SocketAddress local_;
    std::array<std::optional<FamilyProbe>, 2> probes_;
    StunServerSet stun_;
    uint16_t local_port_ = 0;
    std::shared_ptr<UdpSocket> udp_;
    std::shared_ptr<CoreTimer> timer_;
    std::array<NatProbeResult, 2> results_;
    bool done_ = false;
};

std::vector<SocketAddress> resolve_all_now(uv_loop_t* loop, const HostPort& hp,
                                           std::string* error) {
    std::vector<SocketAddress> out;
    resolve_all(loop, hp, [&](std::vector<SocketAddress> a, const std::string& e) {
        out = std::move(a);
        *error = e;
    });
    uv_run(loop, UV_RUN_DEFAULT);
    return out;
}

// Whether this machine can open an IPv6 UDP socket (a dual-stack one then reaches both).
bool have_ipv6(uv_loop_t* loop) {
    LoopClock clock;
    auto udp = UdpSocket::bind(loop, clock, SocketAddress::ipv6({}, 0), UdpHandlers{});
    if (std::holds_alternative<OsError>(udp)) return false;
    std::get<std::shared_ptr<UdpSocket>>(udp)->close();
    uv_run(loop, UV_RUN_DEFAULT);
    return true;
}

std::optional<SocketAddress> resolve_now(uv_loop_t* loop, const HostPort& hp, std::string* error) {
    std::optional<SocketAddress> out;
    resolve(loop, hp, [&](std::optional<SocketAddress> a, const std::string& e) {
        out = a;
        *error = e;
    });
    uv_run(loop, UV_RUN_DEFAULT);
    return out;
}

}  // namespace

int run_netcheck(const NetcheckOptions& options) {
    std::vector<HostPort> targets;
    if (options.stun.size() > 2) return fail(kExitUsage, "give at most two --stun addresses");
    for (const auto& s : options.stun) {
        auto hp = parse_host_port(s);
        if (auto* err = std::get_if<std::string>(&hp)) return fail(kExitUsage, s + ": " + *err);
        targets.push_back(std::get<HostPort>(hp));
    }
    std::vector<HostPort> stun_servers;
    if (options.stun_servers.size() > kMaxStunServers) {
        return fail(kExitUsage, "give at most " + std::to_string(kMaxStunServers) +
                                    " --stun-server addresses");
    }
    for (const auto& s : options.stun_servers) {
        auto hp = parse_host_port(s);
        if (auto* err = std::get_if<std::string>(&hp)) return fail(kExitUsage, s + ": " + *err);
        stun_servers.push_back(std::get<HostPort>(hp));
    }
    bool ask_gateway = !options.no_port_mapping;
    if (!options.config_path.empty()) {
        auto loaded = load_agent_config(options.config_path);
        if (auto* err = std::get_if<ConfigError>(&loaded)) return fail(kExitUsage, err->message);
        if (stun_servers.empty()) stun_servers = std::get<AgentConfig>(loaded).stun_servers;
        if (!std::get<AgentConfig>(loaded).port_mapping) ask_gateway = false;
        if (targets.empty()) {
            const HostPort server = std::get<AgentConfig>(loaded).server;
            for (uint16_t port : kDefaultStunPorts) {
                HostPort hp = server;
                hp.port = port;
                targets.push_back(hp);
            }
        }
    }
    if (targets.empty() && stun_servers.empty()) {
        return fail(kExitUsage, "give -c agent.toml, --stun HOST:PORT or --stun-server HOST:PORT");
    }
    if (targets.size() == 1) targets.push_back(targets[0]);

    uv_loop_t loop;
    uv_loop_init(&loop);
    const bool ipv6 = have_ipv6(&loop);
    // One socket for every question, as the agent has: dual-stack where the machine has IPv6.
    const SocketAddress local =
        ipv6 ? SocketAddress::ipv6({}, 0) : SocketAddress::ipv4({0, 0, 0, 0}, 0);
    NetcheckReport report;
    report.families.resize(2);
    report.families[1].v6 = true;
    // A family this machine has no usable address of is not asked (its probe could only wait
    // out its 3.1 s), as the agent does not probe it either.
    const std::vector<SocketAddress> own = interface_addresses(0, ipv6);
    for (NetcheckFamily& f : report.families) {
        if (std::none_of(own.begin(), own.end(),
                         [&](const SocketAddress& a) { return a.v6 == f.v6; })) {
            f.not_asked = std::string("this machine has no ") + (f.v6 ? "IPv6" : "IPv4") +
                          " address";
        }
    }
    std::array<std::optional<std::array<SocketAddress, 2>>, 2> servers;
    if (targets.empty()) {
        for (NetcheckFamily& f : report.families) {
            if (f.not_asked.empty()) f.not_asked = "no burrow server given (-c or --stun)";
        }
    } else {
        // The server's two ports, per family: both must have an address of it.
        std::array<std::vector<SocketAddress>, 2> found;
        for (size_t i = 0; i < 2; ++i) {
            std::string error;
            found[i] = resolve_all_now(&loop, targets[i], &error);
            if (found[i].empty()) {
                uv_loop_close(&loop);
                return fail(kExitOsError, error);
            }
        }
        for (size_t f = 0; f < 2; ++f) {
            const bool v6 = f == 1;
            auto of = [v6](const std::vector<SocketAddress>& list) -> std::optional<SocketAddress> {
                for (const SocketAddress& a : list) {
                    if (a.v6 == v6) return a;
                }
                return std::nullopt;
            };
            const auto a = of(found[0]);
            const auto b = of(found[1]);
            if (!report.families[f].not_asked.empty()) continue;
            if (a && b) {
                servers[f] = std::array<SocketAddress, 2>{*a, *b};
                report.families[f].server = servers[f];
            } else if (report.families[f].not_asked.empty()) {
                report.families[f].not_asked =
                    std::string("the server has no ") + (v6 ? "IPv6" : "IPv4") + " address";
            }
        }
    }
    StunServerSet stun(stun_servers, std::string("burrow/") + version_string());
    for (size_t i = 0; i < stun_servers.size(); ++i) {
        std::string error;
        auto a = resolve_now(&loop, stun_servers[i], &error);
        if (a && a->v6 && !ipv6) {
            a.reset();
            error = "resolved to an IPv6 address; this machine has no IPv6";
        }
        stun.set_address(i, a, error);
    }
    // The TCP mapping test asks the server's IPv4 ports, where a NAT is (IPv6 is not
    // translated), else its IPv6 ones; on the same loop, beside the UDP probe.
    std::optional<std::array<SocketAddress, 2>> tcp_to = servers[0] ? servers[0] : servers[1];
    if (!tcp_to) {
        report.tcp.not_asked = targets.empty() ? "no burrow server given (-c or --stun)"
                                               : "the server's STUN ports were not asked";
    } else if ((*tcp_to)[0] == (*tcp_to)[1]) {
        report.tcp.not_asked = "needs the server's two STUN ports (one --stun was given)";
        tcp_to.reset();
    }
    SystemRng tcp_rng;
    std::optional<NetcheckTcpTest> tcp_test;
    if (tcp_to) tcp_test.emplace(&loop, *tcp_to, tcp_rng);
    int status = 0;
    {
        Netcheck check(&loop, local, servers, std::move(stun));
        // The gateway's port mapping protocols (src/port_mapping.h) block: asked on a thread of
        // their own while the loop runs the STUN probe.
        PortMappingProbe gateway;
        std::thread gateway_probe([&gateway, ask_gateway] {
            if (ask_gateway) gateway = probe_port_mapping();
        });
        if (auto err = check.start()) {
            status = fail(kExitOsError, err->message);
        } else {
            if (tcp_test) tcp_test->start();
            // The probe gives up by itself (signal/agent_udp.h: 3.1 s) inside the CoreTimer's
            // callback, where the timer cannot be closed; a slow watch notices and ends the run.
            uv_timer_t watch;
            uv_timer_init(&loop, &watch);
            watch.data = &check;
            constexpr uint64_t kWatchMs = 50;
            uv_timer_start(
                &watch, [](uv_timer_t* h) { static_cast<Netcheck*>(h->data)->poll(); }, kWatchMs,
                kWatchMs);
            uv_unref(reinterpret_cast<uv_handle_t*>(&watch));
            uv_run(&loop, UV_RUN_DEFAULT);
            uv_close(reinterpret_cast<uv_handle_t*>(&watch), nullptr);
            uv_run(&loop, UV_RUN_DEFAULT);
            for (size_t f = 0; f < 2; ++f) report.families[f].probe = check.results()[f];
            report.stun_servers = check.stun().status();
            if (tcp_test) report.tcp = tcp_test->result();
            report.host_addresses = interface_addresses(check.local_port(), ipv6);
            // The IPv4 NAT's allocation: IPv6 behind a firewall is not translated.
            std::vector<StunServerStatus> stun_v4;
            for (const StunServerStatus& st : report.stun_servers) {
                if (st.address && !st.address->v6) stun_v4.push_back(st);
            }
            report.allocation = measure_allocation(
                mapped_in_order(stun_v4, servers[0], check.results()[0]));
        }
        gateway_probe.join();
        if (ask_gateway) {
            report.upnp = gateway.upnp;
            report.pcp = gateway.pcp;
            report.natpmp = gateway.natpmp;
        }
        if (status == 0) {
            if (options.json) {
                std::printf("%s\n", netcheck_json(report).dump(2).c_str());
            } else {
                std::fputs(netcheck_text(report).c_str(), stdout);
            }
        }
    }
    uv_loop_close(&loop);
    return status;
}

}  // namespace burrow
