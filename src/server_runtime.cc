#include "src/server_runtime.h"

#include <sodium.h>
#include <spdlog/spdlog.h>
#include <uv.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "signal/acl.h"
#include "signal/server_core.h"
#include "src/admin_server.h"
#include "src/clock.h"
#include "src/core_timer.h"
#include "src/prometheus_text.h"
#include "src/redis_link.h"
#include "src/server_metrics.h"
#include "src/signals.h"
#include "src/stun_tcp_service.h"
#include "src/system_rng.h"
#include "src/tcp.h"
#include "src/udp_socket.h"
#include "tunnel/rng.h"

namespace burrow {
namespace {

constexpr int kExitOsError = 1;  // docs/architecture.md §7: the OS refused (a port in use)
constexpr int kExitUsage = 2;    // docs/architecture.md §7: bad input

ServerCoreConfig make_core_config(const ServerRuntimeConfig& config) {
    ServerCoreConfig core;
    core.static_key = config.identity;
    // config/ checked that every address of one STUN list shares its port.
    core.stun_ports = {config.stun[0].front().port, config.stun[1].front().port};
    core.relay_udp_port = config.stun[0].front().port;
    core.limits.max_agents = config.max_agents;
    core.limits.relay.bytes_per_second = config.relay_bytes_per_second;
    core.limits.relay.packets_per_second = config.relay_packets_per_second;
    core.stun_standard_clients = config.stun_standard_clients;
    if (config.cluster) core.cluster = ClusterConfig{.name = config.cluster->name};
    return core;
}

// Whether `a` is bound IPv6-only: an IPv6 address whose port an IPv4 address of the same list
// also takes (config/server_config.h). Otherwise an IPv6 socket is dual-stack.
bool v6_only_in(const std::vector<SocketAddress>& list, const SocketAddress& a) {
    return a.v6 && std::any_of(list.begin(), list.end(), [&](const SocketAddress& other) {
               return !other.v6 && other.port == a.port;
           });
}

std::string describe(const std::vector<SocketAddress>& list) {
    std::string out;
    for (const auto& a : list) {
        if (!out.empty()) out += ", ";
        out += to_string(a);
    }
    return out;
}

std::optional<Acl> make_acl(const ServerRuntimeConfig& config, std::string* error) {
    AclConfig acl;
    for (const auto& a : config.agents) acl.agents.push_back(AclAgent{a.name, a.key});
    for (const auto& r : config.allow) acl.allow.push_back(AclRule{r.from, r.to, r.services});
    return Acl::create(std::move(acl), error);
}

class Server {
  public:
    Server(uv_loop_t* loop, ServerCoreConfig core_config, Acl acl, std::shared_ptr<TlsContext> tls)
        : loop_(loop),
          stun_tcp_(loop, clock_, core_config.software,
                    [this] {
                        if (timer_) timer_->kick();
                    }),
          core_(std::move(core_config), std::move(acl), rng_),
          tls_(std::move(tls)) {}

    std::optional<OsError> start(const ServerRuntimeConfig& config) {
        for (const auto& where : config.listen) {
            TcpOptions options;
            options.v6_only = v6_only_in(config.listen, where);
            auto listener = TcpListener::listen(
                loop_, where, [this](auto tcp) { on_accept(std::move(tcp)); }, options);
            if (auto* err = std::get_if<OsError>(&listener)) return *err;
            listeners_.push_back(std::get<std::shared_ptr<TcpListener>>(listener));
        }
        for (size_t i = 0; i < udp_.size(); ++i) {
            const auto port = static_cast<UdpPort>(i);
            for (const auto& where : config.stun[i]) {
                // The timer is kicked (and the relayed datagrams flushed) once per receive
                // batch.
                UdpHandlers handlers{
                    .datagram = [this, port](const SocketAddress& from, ByteView datagram,
                                             Time now) { on_udp(port, from, datagram, now); },
                    .batch_end = [this] { timer_->kick(); },
                };
                UdpOptions options;
                options.v6_only = v6_only_in(config.stun[i], where);
                auto socket =
                    UdpSocket::bind(loop_, clock_, where, std::move(handlers), options);
                if (auto* err = std::get_if<OsError>(&socket)) return *err;
                udp_[i].push_back(std::get<std::shared_ptr<UdpSocket>>(socket));
                // The same address over TCP (RFC 8489 §6.2.2), for netcheck's TCP mapping
                // test. Optional: a port that TCP cannot have (the control port or another
                // program on it) costs only that test, so it is logged, not fatal.
                if (auto err = stun_tcp_.listen(where, options.v6_only)) {
                    spdlog::warn("stun over TCP not served on {}: {}", to_string(where),
                                 err->message);
                }
            }
        }
        CoreTimer::Hooks hooks;
        hooks.on_timer = [this](Time now) {
            stun_tcp_.on_timer(now);
            execute(core_.on_timer(now));
        };
        hooks.transmit_one = [](Time) { return false; };  // the core's output comes as actions
        hooks.next_deadline = [this] {
            return std::min(core_.next_deadline(), stun_tcp_.next_deadline());
        };
        hooks.flush = [this] {
            for (auto& sockets : udp_) {
                for (auto& socket : sockets) socket->flush();
            }
        };
        timer_ = CoreTimer::create(loop_, clock_, std::move(hooks));
        if (!timer_) return OsError{timer_error_text()};
        if (config.metrics) {
            if (auto err = start_metrics(*config.metrics)) return err;
        }
        if (config.cluster) start_cluster(*config.cluster);
        timer_->kick();
        std::vector<SocketAddress> tls, stun0, stun1;
        for (const auto& l : listeners_) tls.push_back(l->local_address());
        for (const auto& s : udp_[0]) stun0.push_back(s->local_address());
        for (const auto& s : udp_[1]) stun1.push_back(s->local_address());
        std::vector<SocketAddress> stun_tcp;
        for (const auto& l : stun_tcp_.listeners()) stun_tcp.push_back(l->local_address());
        spdlog::info("listening on {} (TLS), stun {} and {} (UDP), {} (TCP)", describe(tls),
                     describe(stun0), describe(stun1), describe(stun_tcp));
        const UdpStats& io = udp_[0].front()->stats();
        spdlog::info("udp: send {}, receive {}, socket buffers {} B in, {} B out",
                     to_string(io.send_mode), receive_mode_name(io.receive_mode),
                     io.receive_buffer_bytes, io.send_buffer_bytes);
        return std::nullopt;
    }

    // Closes every socket; uv_run returns once their handles have closed.
    void stop() {
        if (redis_) redis_->close();
        for (auto& listener : listeners_) listener->close();
        stun_tcp_.stop();
        if (metrics_) metrics_->close();
        for (auto& sockets : udp_) {
            for (auto& socket : sockets) socket->close();
        }
        if (timer_) timer_->close();
        std::vector<std::shared_ptr<TlsConnection>> open;
        for (auto& [id, c] : conns_) open.push_back(c.tls);
        for (auto& tls : open) tls->close();
        log_drops();
    }

  private:
    struct Conn {
        std::shared_ptr<TlsConnection> tls;
        bool in_core = false;    // the core has been told it opened and has not forgotten it
        bool connected = false;  // its TLS handshake finished
    };

    // GET /metrics on `where` ([server] metrics), the admin endpoint's small HTTP server.
    std::optional<OsError> start_metrics(const SocketAddress& where) {
        const Time started = clock_.now();
        auto server = AdminServer::listen(
            loop_, where, [this, started](std::string_view path) -> std::optional<AdminResponse> {
                if (path != "/metrics") return std::nullopt;
                const double uptime_s = to_ms(clock_.now() - started) / 1000.0;
                return AdminResponse(
                    server_metrics_text(core_, tls_handshakes_, stun_tcp_.stats(), uptime_s),
                    std::string(kPrometheusContentType));
            });
        if (auto* err = std::get_if<OsError>(&server)) {
            return OsError{"metrics: " + err->message + "; set [server] metrics to a free port"};
        }
        metrics_ = std::get<std::shared_ptr<AdminServer>>(server);
        spdlog::info("metrics on http://{}/metrics", to_string(metrics_->local_address()));
        return std::nullopt;
    }

    // [cluster]: the Redis link; ServerCore decides, the link carries its commands.
    void start_cluster(const ServerRuntimeConfig::Cluster& cluster) {
        spdlog::info("cluster: server \"{}\", Redis at {}", cluster.name,
                     to_string(cluster.redis));
        RedisLink::Handlers handlers{
            .up = [this] { execute(core_.on_redis_up(timer_->now())); },
            .down = [this] { execute(core_.on_redis_down(timer_->now())); },
            .reply = [this](uint64_t tag,
                            const RedisReply& reply) {
                execute(core_.on_redis_reply(tag, reply, timer_->now()));
            },
            .message = [this, redis = cluster.redis](ByteView payload) {
                const DropCounters before = core_.drops();
                execute(core_.on_cluster_message(payload, timer_->now()));
                if (core_.drops().total() != before.total()) {
                    log_drop(before, redis, payload.size());
                }
            },
        };
        redis_ = std::make_unique<RedisLink>(loop_, cluster.redis, core_.cluster()->channel(),
                                             std::move(handlers));
    }

    void on_accept(std::shared_ptr<TcpConnection> tcp) {
        const ConnId id = next_id_++;
        auto tls = TlsConnection::accept(std::move(tcp), tls_);
        spdlog::debug("conn {} from {}: accepted", id, to_string(tls->peer_address()));
        conns_[id] = Conn{tls, false};
        tls->start(TlsCallbacks{
            .on_connected = [this, id] { on_connected(id); },
            .on_data = [this, id](ByteView data) { on_data(id, data); },
            .on_writable = {},
            .on_closed = [this, id](const std::string& reason) { on_closed(id, reason); },
        });
    }

    void on_connected(ConnId id) {
        auto it = conns_.find(id);
        if (it == conns_.end()) return;
        it->second.in_core = true;
        it->second.connected = true;
        tls_handshakes_.completed++;
        spdlog::debug("conn {} from {}: {}", id, to_string(it->second.tls->peer_address()),
                      it->second.tls->protocol());
        execute(core_.on_connection_open(id, timer_->now(), it->second.tls->peer_address()));
    }

    void on_data(ConnId id, ByteView data) {
        auto it = conns_.find(id);
        if (it == conns_.end() || !it->second.in_core) return;
        execute(core_.on_control_bytes(id, data, timer_->now()));
    }

    void on_closed(ConnId id, const std::string& reason) {
        auto it = conns_.find(id);
        if (it == conns_.end()) return;
        const bool in_core = it->second.in_core;
        if (!it->second.connected) tls_handshakes_.failed++;
        spdlog::debug("conn {} from {}: closed: {}", id, to_string(it->second.tls->peer_address()),
                      reason);
        conns_.erase(it);
        if (in_core && timer_) execute(core_.on_connection_closed(id, timer_->now()));
    }

    void on_udp(UdpPort port, const SocketAddress& from, ByteView datagram, Time now) {
        const DropCounters before = core_.drops();
        std::optional<ServerAction> action = core_.on_udp(port, from, datagram, now);
        if (core_.drops().total() != before.total()) log_drop(before, from, datagram.size());
        if (action) execute_one(std::move(*action));
    }

    void log_drop(const DropCounters& before, const SocketAddress& from, size_t size) {
        for (size_t i = 0; i < static_cast<size_t>(DropReason::kCount); ++i) {
            const auto r = static_cast<DropReason>(i);
            if (core_.drops().get(r) != before.get(r)) {
                spdlog::debug("udp {} bytes from {} dropped: {}", size, to_string(from),
                              to_string(r));
            }
        }
    }

    void log_drops() const {
        if (core_.drops().total() == 0) return;
        std::string line;
        for (size_t i = 0; i < static_cast<size_t>(DropReason::kCount); ++i) {
            const auto r = static_cast<DropReason>(i);
            if (core_.drops().get(r) == 0) continue;
            if (!line.empty()) line += ", ";
            line += std::to_string(core_.drops().get(r)) + " " + to_string(r);
        }
        spdlog::info("udp datagrams dropped: {}", line);
    }

    void execute(std::vector<ServerAction> actions) {
        for (auto& a : actions) execute_one(std::move(a));
        if (timer_) timer_->kick();
    }

    void execute_one(ServerAction&& action) {
        if (auto* send = std::get_if<SendControl>(&action)) {
            auto it = conns_.find(send->conn);
            if (it == conns_.end()) return;
            if (!it->second.tls->write(encode_control(send->message))) {
                // The control channel is small and paced by pings; an agent that does not read
                // it is not one we can serve.
                spdlog::info("conn {} from {}: closed: not reading its control messages",
                             send->conn, to_string(it->second.tls->peer_address()));
                close(it, true);
            }
        } else if (auto* close_action = std::get_if<CloseConnection>(&action)) {
            auto it = conns_.find(close_action->conn);
            if (it == conns_.end()) return;
            spdlog::info("conn {} from {}: closed: {}", close_action->conn,
                         to_string(it->second.tls->peer_address()), close_action->reason);
            it->second.in_core = false;  // the core has already forgotten it
            it->second.tls->close();
        } else if (auto* datagram = std::get_if<SendDatagram>(&action)) {
            if (auto* socket = socket_for(datagram->from, datagram->to)) {
                socket->send(datagram->to, datagram->bytes);
            }
        } else if (auto* event = std::get_if<LogEvent>(&action)) {
            spdlog::info("{}", event->line);
        } else if (auto* command = std::get_if<RedisCommand>(&action)) {
            if (redis_) redis_->send(*command);
        }
    }

    // The socket of `port` that reaches `to`: the one of its family, else a dual-stack one.
    // nullptr when the port serves no socket of that family (config/ makes both ports serve the
    // same families, and an agent only registers over a family we serve).
    UdpSocket* socket_for(UdpPort port, const SocketAddress& to) {
        UdpSocket* fallback = nullptr;
        for (auto& socket : udp_[static_cast<size_t>(port)]) {
            if (socket->local_address().v6 == to.v6) return socket.get();
            if (!fallback && socket->reaches(to)) fallback = socket.get();
        }
        return fallback;
    }

    void close(std::map<ConnId, Conn>::iterator it, bool tell_core) {
        const ConnId id = it->first;
        auto tls = it->second.tls;
        const bool in_core = it->second.in_core;
        it->second.in_core = false;
        tls->close();
        if (tell_core && in_core) execute(core_.on_connection_closed(id, timer_->now()));
    }

    uv_loop_t* loop_;
    LoopClock clock_;
    SystemRng rng_;
    StunTcpService stun_tcp_;
    ServerCore core_;
    std::shared_ptr<TlsContext> tls_;
    std::vector<std::shared_ptr<TcpListener>> listeners_;
    std::shared_ptr<AdminServer> metrics_;
    TlsHandshakeStats tls_handshakes_;
    std::array<std::vector<std::shared_ptr<UdpSocket>>, 2> udp_;
    std::shared_ptr<CoreTimer> timer_;
    std::unique_ptr<RedisLink> redis_;
    std::map<ConnId, Conn> conns_;
    ConnId next_id_ = 1;
};

}  // namespace

int run_server_loop(const ServerRuntimeConfig& config, std::shared_ptr<TlsContext> tls) {
    std::string acl_error;
    std::optional<Acl> acl = make_acl(config, &acl_error);
    if (!acl) {
        std::fprintf(stderr, "burrow: access list: %s\n", acl_error.c_str());
        return kExitUsage;
    }
    uv_loop_t loop;
    uv_loop_init(&loop);
    int exit_status = 0;
    {
        Server server(&loop, make_core_config(config), std::move(*acl), std::move(tls));
        if (auto err = server.start(config)) {
            std::fprintf(stderr, "burrow: %s\n", err->message.c_str());
            exit_status = kExitOsError;
            server.stop();
        }
        run_with_signals(&loop, {SIGINT, SIGTERM}, [&server](int signum) {
            spdlog::info("{}: stopping", signum == SIGINT ? "SIGINT" : "SIGTERM");
            server.stop();
        });
    }
    uv_loop_close(&loop);
    return exit_status;
}

}  // namespace burrow
