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

std::string describe(const std::optional<SocketAddress>& a, uint16_t port) {
    return (a ? to_string(*a) : std::string("no answer")) + " (port " + std::to_string(port) + ")";
}

void print_server_report(const NatProbeResult& r, const std::array<SocketAddress, 2>& servers) {
    const bool any = r.mapped[0] || r.mapped[1];
    const bool both = r.mapped[0] && r.mapped[1];
    if (both) {
        std::printf("udp            reachable: both STUN ports answered\n");
    } else if (any) {
        std::printf("udp            partly reachable: one STUN port answered\n");
    } else {
        std::printf("udp            blocked: no STUN answer in %.1f s; burrow will relay inside "
                    "the TLS connection\n",
                    3.1);
    }
    std::printf("reflexive      %s, %s\n", describe(r.mapped[0], servers[0].port).c_str(),
                describe(r.mapped[1], servers[1].port).c_str());
}

// One line per [agent] stun_servers / --stun-server entry: what it saw, or that it was silent.
void print_stun_servers(const std::vector<StunServerStatus>& servers) {
    for (const StunServerStatus& st : servers) {
        if (st.mapped) {
            std::printf("stun server    %s answered: %s (rtt %.1f ms)\n", st.server.c_str(),
                        to_string(*st.mapped).c_str(), to_ms(st.rtt));
        } else if (!st.error.empty()) {
            std::printf("stun server    %s not asked: %s\n", st.server.c_str(), st.error.c_str());
        } else {
            std::printf("stun server    %s no answer to %d requests\n", st.server.c_str(),
                        st.requests);
        }
    }
}

void print_mapping(NatMapping mapping) {
    switch (mapping) {
        case NatMapping::kEndpointIndependent:
            std::printf("mapping        endpoint-independent: direct paths can be punched\n");
            break;
        case NatMapping::kPerDestination:
            std::printf("mapping        per destination (symmetric NAT): direct paths only with a "
                        "peer whose NAT is not symmetric too; otherwise the relay\n");
            break;
        case NatMapping::kUnknown:
            std::printf("mapping        unknown: needs answers from both ports or two STUN "
                        "servers\n");
            break;
    }
}

void print_allocation(const PortAllocation& a) {
    const std::string what = describe(a);
    switch (a.kind) {
        case PortAllocationKind::kUnknown:
            std::printf("allocation     unknown: needs mapped ports from %zu or more STUN "
                        "destinations (the server's two ports and --stun-server)\n",
                        kMinAllocationSamples);
            break;
        case PortAllocationKind::kSame:
            std::printf("allocation     one port for every destination\n");
            break;
        case PortAllocationKind::kSequential:
            std::printf("allocation     %s: the next mappings' ports can be predicted\n",
                        what.c_str());
            break;
        case PortAllocationKind::kBlock:
            std::printf("allocation     %s (random in a per-subscriber block): predictable "
                        "within the block\n",
                        what.c_str());
            break;
        case PortAllocationKind::kRandom:
            std::printf("allocation     random: no prediction\n");
            break;
    }
}

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
    // servers: the burrow server's two STUN ports, if asked; stun: standard STUN servers, with
    // the addresses resolved (or the errors) already set.
    Netcheck(uv_loop_t* loop, std::optional<std::array<SocketAddress, 2>> servers,
             StunServerSet stun)
        : loop_(loop),
          servers_(servers),
          probe_(std::string("burrow/") + version_string()),
          stun_(std::move(stun)) {}

    std::optional<OsError> start() {
        UdpHandlers handlers{
            .datagram =
                [this](const SocketAddress& from, ByteView data, Time now) {
                    if (stun_.expects(from, data)) {
                        stun_.on_datagram(from, data, now);
                    } else if (servers_) {
                        for (size_t i = 0; i < servers_->size(); ++i) {
                            if (from == (*servers_)[i]) {
                                probe_.on_stun(static_cast<UdpPort>(i), data);
                            }
                        }
                    }
                    check_done();
                },
            .batch_end = {},
        };
        auto udp = UdpSocket::bind(loop_, clock_, SocketAddress::ipv4({0, 0, 0, 0}, 0),
                                   std::move(handlers));
        if (auto* err = std::get_if<OsError>(&udp)) return *err;
        udp_ = std::get<std::shared_ptr<UdpSocket>>(udp);
        CoreTimer::Hooks hooks;
        hooks.on_timer = [this](Time now) {
            probe_.on_timer(now, out_);
            stun_.on_timer(now);
        };
        hooks.transmit_one = [this](Time) {
            if (auto d = stun_.poll_transmit()) {
                udp_->send(d->to, d->bytes);
                return true;
            }
            if (out_.empty() || !servers_) return false;
            ServerDatagram d = std::move(out_.front());
            out_.pop_front();
            udp_->send((*servers_)[static_cast<size_t>(d.to)], d.bytes);
            return true;
        };
        hooks.next_deadline = [this] {
            return std::min(probe_.next_deadline(), stun_.next_deadline());
        };
        hooks.flush = [this] { udp_->flush(); };
        timer_ = CoreTimer::create(loop_, clock_, std::move(hooks));
        if (!timer_) return OsError{timer_error_text()};
        if (servers_) probe_.start(rng_, clock_.now(), out_);
        stun_.start(rng_, clock_.now());
        timer_->kick();
        return std::nullopt;
    }

    // Every question answered or given up: the server's ports, and each STUN server's round.
    bool finished() const {
        return (!servers_ || probe_.finished()) && stun_.next_deadline() == kNever;
    }
    void check_done() {
        if (!finished() || done_) return;
        done_ = true;
        result_ = probe_.result();
        local_port_ = udp_->local_address().port;
        timer_->close();
        udp_->close();
    }

    // Called from the loop: the timer path finishes through on_timer giving up.
    bool done() const { return done_; }
    const NatProbeResult& result() const { return result_; }
    const StunServerSet& stun() const { return stun_; }
    uint16_t local_port() const { return local_port_; }
    void poll() {
        if (!done_ && finished()) check_done();
    }

  private:
    uv_loop_t* loop_;
    LoopClock clock_;
    SystemRng rng_;
    std::optional<std::array<SocketAddress, 2>> servers_;
    NatProbe probe_;
    StunServerSet stun_;
    uint16_t local_port_ = 0;
    std::deque<ServerDatagram> out_;
    std::shared_ptr<UdpSocket> udp_;
    std::shared_ptr<CoreTimer> timer_;
    NatProbeResult result_;
    bool done_ = false;
};

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
    std::optional<std::array<SocketAddress, 2>> servers;
    if (!targets.empty()) {
        servers.emplace();
        for (size_t i = 0; i < 2; ++i) {
            std::string error;
            auto a = resolve_now(&loop, targets[i], &error);
            if (!a) {
                uv_loop_close(&loop);
                return fail(kExitOsError, error);
            }
            (*servers)[i] = *a;
        }
    }
    StunServerSet stun(stun_servers, std::string("burrow/") + version_string());
    for (size_t i = 0; i < stun_servers.size(); ++i) {
        std::string error;
        auto a = resolve_now(&loop, stun_servers[i], &error);
        if (a && a->v6) {
            a.reset();
            error = "IPv6 is not supported yet";
        }
        stun.set_address(i, a, error);
    }
    int status = 0;
    {
        Netcheck check(&loop, servers, std::move(stun));
        // The gateway's port mapping protocols (src/port_mapping.h) block: asked on a thread of
        // their own while the loop runs the STUN probe.
        PortMappingProbe gateway;
        std::thread gateway_probe([&gateway, ask_gateway] {
            if (ask_gateway) gateway = probe_port_mapping();
        });
        if (auto err = check.start()) {
            status = fail(kExitOsError, err->message);
        } else {
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
            NatMapping mapping = NatMapping::kUnknown;
            std::optional<SocketAddress> main;
            if (servers) {
                print_server_report(check.result(), *servers);
                mapping = check.result().mapping;
                main = check.result().mapped[0];
            }
            print_stun_servers(check.stun().status());
            const std::vector<SocketAddress> seen = check.stun().mapped();
            const std::vector<SocketAddress> host = interface_addresses(check.local_port());
            print_mapping(refine_mapping(mapping, main, seen, host));
            print_allocation(measure_allocation(
                mapped_in_order(check.stun().status(), servers, check.result())));
        }
        gateway_probe.join();
        if (ask_gateway) {
            std::printf("upnp igd       %s\n", gateway.upnp.c_str());
            std::printf("pcp            %s\n", gateway.pcp.c_str());
            std::printf("nat-pmp        %s\n", gateway.natpmp.c_str());
        } else {
            std::printf("port mapping   not asked (port_mapping = false or --no-port-mapping)\n");
        }
    }
    uv_loop_close(&loop);
    return status;
}

}  // namespace burrow
