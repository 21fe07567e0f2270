#include "src/agent_runtime.h"

#include <spdlog/spdlog.h>
#include <uv.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <deque>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <utility>
#include <variant>
#include <vector>

#include "signal/agent_client.h"
#include "src/admin_server.h"
#include "src/clock.h"
#include "src/config_file.h"
#include "src/core_timer.h"
#include "src/defer.h"
#include "src/key_file.h"
#include "src/log.h"
#include "src/resolve.h"
#include "src/sockaddr.h"
#include "src/stream_bridge.h"
#include "src/system_rng.h"
#include "src/tcp.h"
#include "src/udp_socket.h"
#include "src/version.h"
#include "tunnel/path_manager.h"
#include "tunnel/session.h"

namespace burrow {
namespace {

constexpr int kExitOsError = 1;  // DESIGN.md §6: the OS refused (a port in use)
constexpr int kExitAuthFailed = 1;

// A target that has not accepted within this is treated as unreachable; the client behind the
// forward sees a clean close instead of hanging on a stream that never starts.
constexpr Duration kTargetConnectTimeout = std::chrono::seconds(10);
// Forwarded connections that wait for one session to be set up. A burst beyond this (a
// misbehaving client on the forward's port) is closed rather than held without bound.
constexpr size_t kMaxWaitingPerPeerService = 256;

std::string path_name(bool udp_bound) {
    return udp_bound ? "relay-udp" : "relay-tcp";
}

std::string forward_label(const ForwardConfig& f) {
    return "forward " + to_string(f.listen) + " -> " + f.peer + "/" + f.service;
}

// config/ checked that listen addresses are IP literals.
SocketAddress literal_address(const HostPort& hp) {
    return literal_socket_address(hp).value_or(SocketAddress{});
}

// The addresses of this machine's non-loopback interfaces, with the agent's UDP port: the
// host candidates that let two agents behind one NAT reach each other directly.
std::vector<SocketAddress> host_addresses(uint16_t port) {
    std::vector<SocketAddress> out;
    uv_interface_address_t* list = nullptr;
    int count = 0;
    if (uv_interface_addresses(&list, &count) != 0) return out;
    for (int i = 0; i < count; ++i) {
        if (list[i].is_internal) continue;
        auto a = from_sockaddr(reinterpret_cast<const sockaddr*>(&list[i].address));
        if (!a || a->v6) continue;  // IPv4 only until direct paths exist for IPv6 (issue 6)
        a->port = port;
        out.push_back(*a);
    }
    uv_free_interface_addresses(list, count);
    return out;
}

class Agent;

// One session with a peer and the forwarded connections on it.
class PeerSession final : public StreamBridge::Host {
  public:
    PeerSession(Agent& agent, const PeerInfo& info, Role role, std::unique_ptr<Session> session,
                Rng& rng)
        : agent_(agent),
          id_(info.session_id),
          peer_(info.peer),
          role_(role),
          session_(std::move(session)),
          paths_(rng) {
        services_.insert(info.service);
        for (const auto& c : info.candidates) {
            remote_candidates_.push_back(c.address);
            if (c.kind == CandidateKind::kServerReflexive) remote_reflexive_ = c.address;
        }
        remote_nat_ = info.nat;
    }
    ~PeerSession() override { close_birthday_sockets(nullptr); }

    // Closes the birthday sockets but keep (the one a path was found through).
    void close_birthday_sockets(const UdpSocket* keep) {
        for (auto& sock : birthday_) {
            if (sock.get() != keep) sock->close();
        }
        std::erase_if(birthday_, [keep](auto& sock) { return sock.get() != keep; });
        std::erase_if(routes_, [keep](auto& route) { return route.second.get() != keep; });
        if (birthday_timer_) {
            uv_close(reinterpret_cast<uv_handle_t*>(birthday_timer_.release()),
                     [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
        }
    }

    Connection& connection() override { return session_->connection(); }
    void kick() override {
        if (timer_ && !dead_) timer_->kick();
    }
    void bridge_done(StreamId id) override { bridges_.erase(id); }

    Agent& agent_;
    uint64_t id_;
    std::string peer_;
    Role role_;
    std::set<std::string> services_;  // what the server approved for initiator -> responder
    std::unique_ptr<Session> session_;
    std::shared_ptr<CoreTimer> timer_;
    struct Entry {
        std::shared_ptr<StreamBridge> bridge;
        std::string origin;  // "forward 127.0.0.1:8080" or "expose web"
    };
    std::map<StreamId, Entry> bridges_;
    PathManager paths_;
    std::vector<SocketAddress> remote_candidates_;
    std::optional<SocketAddress> remote_reflexive_;
    NatMapping remote_nat_ = NatMapping::kUnknown;
    // Our NAT maps per destination and the peer's does not: the birthday technique's many
    // sockets (tunnel/path_manager.h), each sending towards the peer's reflexive address.
    std::vector<std::shared_ptr<UdpSocket>> birthday_;
    std::unique_ptr<uv_timer_t> birthday_timer_;
    int birthday_rounds_ = 0;
    // Direct paths found through a socket other than the agent's main one.
    std::map<SocketAddress, std::shared_ptr<UdpSocket>> routes_;
    bool probing_ = false;  // punching starts once the session has keys to seal probes with
    bool dead_ = false;
    bool announced_up_ = false;
};

struct ForwardState {
    ForwardConfig config;
    std::shared_ptr<TcpListener> listener;
    uint64_t connections = 0;
    uint64_t refused = 0;
};

struct ExposeStats {
    uint64_t streams = 0;
    uint64_t refused = 0;
};

struct Waiter {
    std::shared_ptr<TcpConnection> tcp;
    std::string forward;  // the listen address it came in on
};

struct AgentCounters {
    uint64_t udp_from_unknown = 0;  // datagrams from anyone but the server that no session owns
    uint64_t relay_unknown_session = 0;
    uint64_t streams_refused = 0;
};

class Agent {
  public:
    Agent(uv_loop_t* loop, AgentRuntimeOptions options)
        : loop_(loop),
          options_(std::move(options)),
          config_(options_.config),
          client_(AgentClientConfig{options_.key, std::nullopt, std::string("burrow/") +
                                                                    version_string()},
                  rng_, clock_.now()),
          started_at_(clock_.now()) {}

    std::optional<OsError> start() {
        SocketAddress udp_local = SocketAddress::ipv4({0, 0, 0, 0}, config_.udp_port);
        auto udp = UdpSocket::bind(loop_, clock_, udp_local,
                                   [this](const SocketAddress& from, ByteView data, Time now) {
                                       on_udp(from, data, now);
                                   });
        if (auto* err = std::get_if<OsError>(&udp)) return *err;
        udp_ = std::get<std::shared_ptr<UdpSocket>>(udp);
        for (const auto& f : config_.forward) {
            if (auto err = start_forward(f)) return err;
        }
        CoreTimer::Hooks hooks;
        hooks.on_timer = [this](Time now) {
            client_.on_timer(now);
            after_client();
        };
        hooks.transmit_one = [](Time) { return false; };  // output is drained in after_client
        hooks.next_deadline = [this] { return client_.next_deadline(); };
        client_timer_ = CoreTimer::create(loop_, clock_, std::move(hooks));
        reaper_ = std::make_unique<uv_idle_t>();
        uv_idle_init(loop_, reaper_.get());
        reaper_->data = this;
        if (auto err = start_admin()) return err;
        client_.set_host_candidates(host_addresses(udp_->local_address().port), clock_.now());
        spdlog::info("agent {} ({}), udp port {}", config_.name,
                     key_to_base64(public_key(options_.key)), udp_->local_address().port);
        after_client();
        return std::nullopt;
    }

    void stop() {
        if (stopping_) return;
        stopping_ = true;
        if (admin_) admin_->close();
        for (auto& [key, f] : forwards_) {
            if (f.listener) f.listener->close();
        }
        forwards_.clear();
        for (auto& [key, waiters] : waiting_) {
            for (auto& w : waiters) w.tcp->close();
        }
        waiting_.clear();
        std::vector<uint64_t> ids;
        for (auto& [id, s] : sessions_) ids.push_back(id);
        for (uint64_t id : ids) {
            auto it = sessions_.find(id);
            if (it == sessions_.end()) continue;
            it->second->connection().close(ConnectionError::kApplicationClose, "agent stopping",
                                           clock_.now());
            it->second->kick();
            end_session(id, "agent stopping", false);
        }
        flush_client_output();
        if (tls_) tls_->close();
        tls_.reset();
        if (client_timer_) client_timer_->close();
        if (udp_) udp_->close();
        reap();
        if (reaper_) {
            uv_close(reinterpret_cast<uv_handle_t*>(reaper_.release()),
                     [](uv_handle_t* h) { delete reinterpret_cast<uv_idle_t*>(h); });
        }
    }

    void reload() {
        auto loaded = load_agent_config(options_.config_path);
        if (auto* err = std::get_if<ConfigError>(&loaded)) {
            spdlog::error("reload: {}; keeping the running configuration", err->message);
            return;
        }
        AgentConfig next = std::get<AgentConfig>(std::move(loaded));
        if (next.name != config_.name || next.key_file != config_.key_file ||
            next.server != config_.server || next.server_fingerprint != config_.server_fingerprint ||
            next.server_ca != config_.server_ca || next.udp_port != config_.udp_port ||
            next.admin != config_.admin) {
            spdlog::warn("reload: changes to [agent] other than log_level need a restart; "
                         "applying [[expose]] and [[forward]] only");
        }
        if (options_.verbosity == 0) set_log_level(next.log_level);
        int added = 0, removed = 0;
        std::set<std::string> keep;
        for (const auto& f : next.forward) keep.insert(to_string(f.listen));
        for (auto it = forwards_.begin(); it != forwards_.end();) {
            if (keep.contains(it->first)) {
                ++it;
                continue;
            }
            // Connections already accepted stay up; only the listener goes.
            if (it->second.listener) it->second.listener->close();
            spdlog::info("{} stopped", forward_label(it->second.config));
            it = forwards_.erase(it);
            ++removed;
        }
        for (const auto& f : next.forward) {
            auto it = forwards_.find(to_string(f.listen));
            if (it != forwards_.end()) {
                if (!(it->second.config == f)) {
                    spdlog::info("{} now goes to {}/{}", forward_label(it->second.config), f.peer,
                                 f.service);
                    it->second.config = f;
                }
                continue;
            }
            if (auto err = start_forward(f)) {
                spdlog::error("reload: {}", err->message);
                continue;
            }
            ++added;
        }
        config_.expose = next.expose;
        config_.forward = next.forward;
        config_.log_level = next.log_level;
        spdlog::info("reloaded {}: {} forwards added, {} removed, {} services exposed",
                     options_.config_path, added, removed, config_.expose.size());
    }

    int exit_status() const { return exit_status_; }
    nlohmann::json status_json() const;

  private:
    friend class PeerSession;

    // The local status endpoint (`burrow status`). An address set in the config must work; the
    // default one is a convenience, and a second agent on the machine goes without it.
    std::optional<OsError> start_admin() {
        const SocketAddress where =
            config_.admin ? literal_address(*config_.admin) : default_admin_address();
        auto admin = AdminServer::listen(loop_, where, [this](std::string_view path) {
            return path == "/status" ? std::optional<std::string>(status_json().dump())
                                     : std::nullopt;
        });
        if (auto* err = std::get_if<OsError>(&admin)) {
            if (config_.admin) return *err;
            spdlog::warn("no status endpoint ({}); set [agent] admin to another port",
                         err->message);
            return std::nullopt;
        }
        admin_ = std::get<std::shared_ptr<AdminServer>>(admin);
        spdlog::info("status endpoint on {} (burrow status)", to_string(where));
        return std::nullopt;
    }

    // --- forwards ------------------------------------------------------------------------------

    std::optional<OsError> start_forward(const ForwardConfig& f) {
        const std::string key = to_string(f.listen);
        auto listener = TcpListener::listen(
            loop_, literal_address(f.listen),
            [this, key](std::shared_ptr<TcpConnection> tcp) { on_accept(key, std::move(tcp)); });
        if (auto* err = std::get_if<OsError>(&listener)) return *err;
        ForwardState state;
        state.config = f;
        state.listener = std::get<std::shared_ptr<TcpListener>>(listener);
        forwards_[key] = std::move(state);
        spdlog::info("{} listening", forward_label(f));
        return std::nullopt;
    }

    void on_accept(const std::string& key, std::shared_ptr<TcpConnection> tcp) {
        auto it = forwards_.find(key);
        if (it == forwards_.end() || stopping_) {
            tcp->close();
            return;
        }
        ForwardState& fw = it->second;
        fw.connections++;
        const ForwardConfig& f = fw.config;
        if (PeerSession* ps = session_for(f.peer, f.service)) {
            open_forward_stream(*ps, key, f, std::move(tcp));
            return;
        }
        auto& queue = waiting_[{f.peer, f.service}];
        if (queue.size() >= kMaxWaitingPerPeerService) {
            spdlog::warn("{}: {} connections already wait for the session; closing this one",
                         forward_label(f), queue.size());
            tcp->close();
            return;
        }
        const bool first = queue.empty();
        queue.push_back(Waiter{std::move(tcp), key});
        if (first) {
            spdlog::debug("{}: asking the server for a session", forward_label(f));
            client_.connect(f.peer, f.service, clock_.now());
            after_client();
        }
    }

    // The newest live session on which we may open streams to peer/service.
    PeerSession* session_for(const std::string& peer, const std::string& service) {
        PeerSession* best = nullptr;
        for (auto& [id, s] : sessions_) {
            if (s->dead_ || s->peer_ != peer || s->role_ != Role::kInitiator) continue;
            if (!s->services_.contains(service)) continue;
            if (s->connection().is_closed()) continue;
            best = s.get();
        }
        return best;
    }

    void open_forward_stream(PeerSession& ps, const std::string& key, const ForwardConfig& f,
                             std::shared_ptr<TcpConnection> tcp) {
        std::optional<StreamId> id = ps.connection().open_stream(f.service);
        if (!id) {
            spdlog::warn("{}: the session with {} takes no more streams; closing the connection",
                         forward_label(f), f.peer);
            tcp->close();
            return;
        }
        auto bridge = std::make_shared<StreamBridge>(ps, *id, forward_label(f));
        ps.bridges_[*id] = PeerSession::Entry{bridge, "forward " + key};
        bridge->attach(std::move(tcp));
        ps.kick();
    }

    // --- incoming streams -------------------------------------------------------------------

    void on_stream_opened(PeerSession& ps, StreamId id, const std::string& service) {
        auto refuse = [&](ResetReason reason, const std::string& why) {
            counters_.streams_refused++;
            spdlog::warn("refused stream from {} to {}: {}", ps.peer_, service, why);
            ps.connection().reset_stream(id, reason);
            ps.kick();
        };
        const ExposeConfig* expose = nullptr;
        for (const auto& e : config_.expose) {
            if (e.service == service) expose = &e;
        }
        if (!expose) return refuse(ResetReason::kUnknownService, "no such service is exposed");
        ExposeStats& stats = expose_stats_[service];
        if (std::find(expose->allow.begin(), expose->allow.end(), ps.peer_) == expose->allow.end()) {
            stats.refused++;
            return refuse(ResetReason::kNotAllowed, ps.peer_ + " is not in its allow list");
        }
        if (ps.role_ != Role::kResponder || !ps.services_.contains(service)) {
            stats.refused++;
            return refuse(ResetReason::kNotAllowed,
                          "the server did not approve it for this session");
        }
        stats.streams++;
        auto bridge = std::make_shared<StreamBridge>(
            ps, id, "expose " + service + " for " + ps.peer_ + " -> " + to_string(expose->target));
        ps.bridges_[id] = PeerSession::Entry{bridge, "expose " + service};
        std::weak_ptr<StreamBridge> weak = bridge;
        const std::string peer = ps.peer_;
        resolve(loop_, expose->target,
                [this, weak, peer, service](std::optional<SocketAddress> addr,
                                            const std::string& error) {
                    auto b = weak.lock();
                    if (!b) return;
                    if (!addr) {
                        spdlog::warn("refused stream from {} to {}: {}", peer, service, error);
                        counters_.streams_refused++;
                        b->refuse(ResetReason::kUnreachable);
                        return;
                    }
                    tcp_connect(loop_, *addr, kTargetConnectTimeout,
                                [this, weak, peer, service](std::shared_ptr<TcpConnection> tcp,
                                                            OsError err) {
                                    auto b = weak.lock();
                                    if (!tcp) {
                                        spdlog::warn("refused stream from {} to {}: {}", peer,
                                                     service, err.message);
                                        counters_.streams_refused++;
                                        if (b) b->refuse(ResetReason::kRefused);
                                        return;
                                    }
                                    if (!b) {
                                        tcp->close();
                                        return;
                                    }
                                    b->attach(std::move(tcp));
                                });
                });
    }

    // --- sessions -----------------------------------------------------------------------------

    void on_peer_ready(const PeerReady& ready) {
        const PeerInfo& info = ready.info;
        if (sessions_.contains(info.session_id)) return;
        const Role role =
            info.role == SessionRole::kInitiator ? Role::kInitiator : Role::kResponder;
        const Time now = clock_.now();
        auto session = std::make_unique<Session>(role, options_.key, info.peer_pub,
                                                 SessionConfig{}, rng_, now,
                                                 wall_clock_us() - to_us(now));
        auto ps = std::make_unique<PeerSession>(*this, info, role, std::move(session), rng_);
        PeerSession* raw = ps.get();
        CoreTimer::Hooks hooks;
        hooks.on_timer = [this, raw](Time t) {
            if (raw->dead_) return;
            raw->session_->on_timer(t);
            if (raw->probing_) raw->paths_.on_timer(t);
            process_session(*raw);
        };
        hooks.transmit_one = [this, raw](Time t) {
            if (raw->dead_) return false;
            if (auto probe = raw->paths_.poll_probe()) {
                if (auto sealed = raw->session_->seal_probe(probe->probe, t)) {
                    send_to(*raw, probe->to, *sealed);
                }
                return true;
            }
            auto datagram = raw->session_->poll_transmit(t);
            if (!datagram) return false;
            send_datagram(*raw, *datagram, t);
            return true;
        };
        hooks.next_deadline = [raw] {
            if (raw->dead_) return kNever;
            Time t = raw->session_->next_deadline();
            if (raw->probing_) t = std::min(t, raw->paths_.next_deadline());
            return t;
        };
        ps->timer_ = CoreTimer::create(loop_, clock_, std::move(hooks));
        sessions_[info.session_id] = std::move(ps);
        spdlog::debug("session {} with {} for {} ({})", info.session_id, info.peer, info.service,
                      role == Role::kInitiator ? "initiator" : "responder");
        // Relay first (DESIGN.md §4): the handshake goes through the server at once.
        raw->session_->start(now);
        if (role == Role::kInitiator) {
            auto it = waiting_.find({info.peer, info.service});
            if (it != waiting_.end()) {
                std::deque<Waiter> waiters = std::move(it->second);
                waiting_.erase(it);
                for (auto& w : waiters) {
                    auto fw = forwards_.find(w.forward);
                    if (fw == forwards_.end()) {
                        w.tcp->close();
                        continue;
                    }
                    open_forward_stream(*raw, w.forward, fw->second.config, std::move(w.tcp));
                }
            }
        }
        raw->kick();
    }

    void on_connect_refused(const ConnectRefusedEvent& refused) {
        auto it = waiting_.find({refused.peer, refused.service});
        if (it == waiting_.end()) {
            spdlog::warn("connect to {}/{} refused: {}", refused.peer, refused.service,
                         refused.reason);
            return;
        }
        std::deque<Waiter> waiters = std::move(it->second);
        waiting_.erase(it);
        for (auto& w : waiters) {
            auto fw = forwards_.find(w.forward);
            if (fw != forwards_.end()) fw->second.refused++;
            w.tcp->finish();
        }
        auto fw = forwards_.find(waiters.front().forward);
        const std::string label = fw != forwards_.end()
                                      ? forward_label(fw->second.config)
                                      : "forward -> " + refused.peer + "/" + refused.service;
        spdlog::warn("{}: refused by the server: {} ({} connection{} closed)", label,
                     refused.reason, waiters.size(), waiters.size() == 1 ? "" : "s");
    }

    // A session packet goes on the direct path once one is validated, else through the relay.
    void send_datagram(PeerSession& ps, ByteView datagram, Time now) {
        if (const auto& direct = ps.paths_.active()) {
            send_to(ps, *direct, datagram);
            return;
        }
        client_.send_relay(ps.id_, datagram, now);
        flush_client_output();
    }

    void send_to(PeerSession& ps, const SocketAddress& to, ByteView datagram) {
        auto route = ps.routes_.find(to);
        if (route != ps.routes_.end()) {
            route->second->send(to, datagram);
        } else {
            udp_->send(to, datagram);
        }
    }

    // Punching starts: plain probes to every candidate, plus the birthday technique when
    // exactly one side's NAT maps per destination.
    void start_probing(PeerSession& ps, Time now) {
        ps.probing_ = true;
        ps.paths_.add_candidates(ps.remote_candidates_, now);
        const NatMapping ours = nat_ ? nat_->mapping : NatMapping::kUnknown;
        if (ps.remote_reflexive_ && ours == NatMapping::kEndpointIndependent &&
            ps.remote_nat_ == NatMapping::kPerDestination) {
            spdlog::debug("{} is behind a symmetric NAT: spraying {} ports", ps.peer_,
                          kSprayPorts);
            ps.paths_.start_spray(*ps.remote_reflexive_, now);
        } else if (ps.remote_reflexive_ && ours == NatMapping::kPerDestination &&
                   ps.remote_nat_ == NatMapping::kEndpointIndependent) {
            open_birthday_sockets(ps);
        }
        ps.paths_.on_timer(now);
    }

    void open_birthday_sockets(PeerSession& ps) {
        spdlog::debug("our NAT is symmetric: opening {} sockets towards {}", kBirthdaySockets,
                      to_string(*ps.remote_reflexive_));
        const uint64_t id = ps.id_;
        for (size_t i = 0; i < kBirthdaySockets; ++i) {
            UdpOptions small;
            small.socket_buffer_bytes = 64 * 1024;  // probes only, until one becomes the path
            // The socket is known only once bound; the callback finds it through this cell.
            auto cell = std::make_shared<const UdpSocket*>(nullptr);
            auto sock = UdpSocket::bind(
                loop_, clock_, SocketAddress::ipv4({0, 0, 0, 0}, 0),
                [this, id, cell](const SocketAddress& from, ByteView data, Time now) {
                    auto it = sessions_.find(id);
                    if (it == sessions_.end()) return;
                    for (auto& via : it->second->birthday_) {
                        if (via.get() == *cell) return on_direct_datagram(from, data, now, via);
                    }
                },
                small);
            if (auto* err = std::get_if<OsError>(&sock)) {
                spdlog::warn("birthday sockets: {}; using {}", err->message, ps.birthday_.size());
                break;
            }
            auto socket = std::get<std::shared_ptr<UdpSocket>>(sock);
            *cell = socket.get();
            ps.birthday_.push_back(std::move(socket));
        }
        ps.birthday_timer_ = std::make_unique<uv_timer_t>();
        uv_timer_init(loop_, ps.birthday_timer_.get());
        ps.birthday_timer_->data = &ps;
        // Each socket's mapping must exist when the peer's spray arrives and stay open while it
        // sprays (kSprayRounds x kSprayInterval): one opening probe per socket every second.
        uv_timer_start(
            ps.birthday_timer_.get(),
            [](uv_timer_t* h) {
                auto* session = static_cast<PeerSession*>(h->data);
                session->agent_.send_birthday_round(*session);
            },
            0, 1000);
    }

    void send_birthday_round(PeerSession& ps) {
        constexpr int kOpeningRounds = 16;  // > kSprayRounds x kSprayInterval in seconds
        if (ps.paths_.active() || ++ps.birthday_rounds_ > kOpeningRounds) {
            if (!ps.paths_.active() || !ps.routes_.contains(*ps.paths_.active())) {
                ps.close_birthday_sockets(nullptr);
            } else if (ps.birthday_timer_) {
                uv_timer_stop(ps.birthday_timer_.get());
            }
            return;
        }
        const Time now = clock_.now();
        for (auto& sock : ps.birthday_) {
            const Probe opening{ProbeKind::kChallenge, random_path_data(rng_)};
            if (auto sealed = ps.session_->seal_probe(opening, now)) {
                sock->send(*ps.remote_reflexive_, *sealed);
            }
        }
    }

    std::string path_of(const PeerSession& ps) const {
        if (const auto& direct = ps.paths_.active()) return "direct " + to_string(*direct);
        return path_name(client_.udp_bound());
    }

    // After any input to a session: its stream events, then its output.
    void process_session(PeerSession& ps) {
        while (!ps.dead_) {
            std::optional<ConnectionEvent> event = ps.connection().poll_event();
            if (!event) break;
            std::visit([&](auto& e) { on_connection_event(ps, e); }, *event);
        }
        if (ps.dead_) return;
        if (!ps.announced_up_ && ps.session_->established()) {
            ps.announced_up_ = true;
            spdlog::info("session with {} up ({}, {})", ps.peer_, path_of(ps),
                         ps.role_ == Role::kInitiator ? "we connected" : "they connected");
        }
        if (!ps.probing_ && ps.session_->established()) {
            // Relay first, then punch (DESIGN.md §4): both sides probe every candidate now.
            start_probing(ps, clock_.now());
        }
        while (auto change = ps.paths_.poll_change()) {
            if (change->direct && !ps.birthday_.empty()) {
                auto route = ps.routes_.find(*change->direct);
                ps.close_birthday_sockets(route != ps.routes_.end() ? route->second.get()
                                                                     : nullptr);
            }
            if (change->direct) {
                spdlog::info("path to {}: direct {} (rtt {:.1f} ms, {})", ps.peer_,
                             to_string(*change->direct), to_ms(change->rtt), change->reason);
            } else {
                spdlog::info("path to {}: {} ({})", ps.peer_, path_name(client_.udp_bound()),
                             change->reason);
            }
        }
        if (ps.session_->state() == SessionState::kDead) {
            end_session(ps.id_, std::string(ps.session_->dead_reason()), true);
            return;
        }
        ps.kick();
    }

    template <class Fn>
    void with_bridge(PeerSession& ps, StreamId id, Fn fn) {
        auto it = ps.bridges_.find(id);
        if (it == ps.bridges_.end()) return;
        auto bridge = it->second.bridge;  // may leave the map during fn
        fn(*bridge);
    }

    void on_connection_event(PeerSession& ps, const StreamOpened& e) {
        on_stream_opened(ps, e.id, e.service);
    }
    void on_connection_event(PeerSession& ps, const StreamReadable& e) {
        with_bridge(ps, e.id, [](StreamBridge& b) { b.on_readable(); });
    }
    void on_connection_event(PeerSession& ps, const StreamWritable& e) {
        with_bridge(ps, e.id, [](StreamBridge& b) { b.on_writable(); });
    }
    void on_connection_event(PeerSession& ps, const StreamFinished& e) {
        with_bridge(ps, e.id, [](StreamBridge& b) { b.on_finished(); });
    }
    void on_connection_event(PeerSession& ps, const StreamReset& e) {
        with_bridge(ps, e.id, [&](StreamBridge& b) { b.on_reset(e.reason); });
    }
    void on_connection_event(PeerSession& ps, const StreamClosed& e) {
        with_bridge(ps, e.id, [](StreamBridge& b) { b.on_closed(); });
    }
    void on_connection_event(PeerSession& ps, const ConnectionClosed& e) {
        end_session(ps.id_, e.by_peer ? "closed by " + ps.peer_ + ": " + e.reason : e.reason,
                    true);
    }

    // Ends a session: its forwarded connections are reset, the relay forgets it. The object
    // itself is freed on the next loop iteration, since this may run inside its own callbacks.
    void end_session(uint64_t id, const std::string& reason, bool log) {
        auto it = sessions_.find(id);
        if (it == sessions_.end()) return;
        std::unique_ptr<PeerSession> ps = std::move(it->second);
        sessions_.erase(it);
        ps->dead_ = true;
        if (log) {
            spdlog::info("session with {} closed: {} ({} forwarded connection{} reset)", ps->peer_,
                         reason, ps->bridges_.size(), ps->bridges_.size() == 1 ? "" : "s");
        }
        auto bridges = std::move(ps->bridges_);
        ps->bridges_.clear();
        for (auto& [sid, entry] : bridges) entry.bridge->session_gone();
        client_.forget_session(id);
        graveyard_.push_back(std::move(ps));
        if (reaper_ && !uv_is_active(reinterpret_cast<uv_handle_t*>(reaper_.get()))) {
            uv_idle_start(reaper_.get(), [](uv_idle_t* h) {
                auto* self = static_cast<Agent*>(h->data);
                uv_idle_stop(h);
                self->reap();
            });
        }
    }

    void reap() {
        for (auto& ps : graveyard_) {
            if (ps->timer_) ps->timer_->close();
        }
        graveyard_.clear();
    }


    // --- the signalling client -----------------------------------------------------------------

    void on_udp(const SocketAddress& from, ByteView data, Time now) {
        if (server_ip_ && from.ip == server_ip_->ip && from.v6 == server_ip_->v6) {
            for (UdpPort port : {UdpPort::kMain, UdpPort::kSecondary}) {
                if (client_.server_udp_port(port) == from.port) {
                    client_.on_udp(port, data, now);
                    after_client();
                    return;
                }
            }
        }
        on_direct_datagram(from, data, now);
    }

    // A datagram from anyone but the server: a peer's probe or packet on a direct path. via is
    // the birthday socket it came in on (null: the main socket).
    void on_direct_datagram(const SocketAddress& from, ByteView data, Time now,
                            const std::shared_ptr<UdpSocket>& via = nullptr) {
        PeerSession* ps = nullptr;
        if (auto index = Session::receiver_index(data)) {
            for (auto& [id, s] : sessions_) {
                if (!s->dead_ && s->session_->owns_index(*index)) ps = s.get();
            }
        } else if (!data.empty()) {
            // A handshake message (a rekey) names no index of ours: it belongs to the session
            // that knows the address it came from (the peer's direct path may be one we have
            // not validated ourselves yet).
            for (auto& [id, s] : sessions_) {
                if (!s->dead_ && s->paths_.knows(from)) ps = s.get();
            }
        }
        if (!ps) {
            counters_.udp_from_unknown++;
            return;
        }
        if (data[0] == kPacketTypeProbe) {
            if (auto probe = ps->session_->open_probe(data, now)) {
                // Authenticated: answers and later packets to `from` leave by the socket whose
                // NAT mapping it reached.
                if (via) ps->routes_[from] = via;
                ps->paths_.on_probe(from, *probe, now);
            }
            process_session(*ps);
            return;
        }
        const uint64_t before = ps->connection().stats().packets_received;
        ps->session_->on_datagram(data, now);
        if (ps->connection().stats().packets_received != before) {
            ps->paths_.on_authenticated(from, now);
        }
        process_session(*ps);
    }

    void dial() {
        const Time now = clock_.now();
        client_.on_dial_started(now);
        const uint64_t attempt = ++dial_attempt_;
        spdlog::debug("connecting to the server {}", to_string(config_.server));
        resolve(loop_, config_.server,
                [this, attempt](std::optional<SocketAddress> addr, const std::string& error) {
                    if (attempt != dial_attempt_ || stopping_) return;
                    if (!addr) {
                        client_.on_disconnected(error, clock_.now());
                        after_client();
                        return;
                    }
                    server_ip_ = addr;
                    auto tls = TlsConnection::connect(loop_, *addr, options_.tls);
                    tls_ = tls;
                    std::weak_ptr<TlsConnection> weak = tls;
                    tls->start(TlsCallbacks{
                        .on_connected =
                            [this, weak] {
                                if (weak.lock() != tls_) return;
                                client_.on_connected(clock_.now());
                                after_client();
                            },
                        .on_data =
                            [this, weak](ByteView data) {
                                if (weak.lock() != tls_) return;
                                client_.on_control_bytes(data, clock_.now());
                                after_client();
                            },
                        .on_writable = {},
                        .on_closed =
                            [this, weak](const std::string& reason) {
                                if (!tls_ || weak.lock() != tls_) return;
                                tls_.reset();
                                client_.on_disconnected(reason, clock_.now());
                                after_client();
                            },
                    });
                });
    }

    void flush_client_output() {
        while (auto bytes = client_.poll_control()) {
            if (tls_ && !tls_->write(*bytes)) {
                // The control connection is paced by the server's pings and holds relay
                // traffic only when UDP is blocked; a full buffer means the server stopped
                // reading. The session's loss recovery resends what is lost here.
                spdlog::debug("control connection buffer full; dropped {} bytes", bytes->size());
            }
        }
        while (auto datagram = client_.poll_udp()) {
            auto port = client_.server_udp_port(datagram->to);
            if (!server_ip_ || !port || !udp_) continue;
            SocketAddress to = *server_ip_;
            to.port = *port;
            udp_->send(to, datagram->bytes);
        }
    }

    // After every input to the client: its output, its events, a dial if one is due, the timer.
    void after_client() {
        if (stopping_ || in_after_client_) {
            pending_after_client_ = true;
            return;
        }
        in_after_client_ = true;
        do {
            pending_after_client_ = false;
            flush_client_output();
            while (auto event = client_.poll_event()) {
                std::visit([&](auto& e) { on_client_event(e); }, *event);
                flush_client_output();
                if (stopping_) break;
            }
            if (!stopping_ && client_.want_connect(clock_.now())) dial();
        } while (pending_after_client_ && !stopping_);
        in_after_client_ = false;
        if (client_timer_ && !stopping_) client_timer_->kick();
    }

    void on_client_event(const Registered& e) {
        spdlog::info("registered with the server as {} (nat {}, {})", e.name, to_string(e.nat),
                     client_.udp_bound() ? "udp relay" : "udp not confirmed yet");
    }
    void on_client_event(const AuthFailed& e) {
        spdlog::error("the server refused this agent: {}", e.reason);
        exit_status_ = kExitAuthFailed;
        // Not from here: this may run inside the client timer's own callback, which stop()
        // closes. The loop calls it next.
        defer(loop_, [this] { stop(); });
    }
    void on_client_event(const PeerReady& e) { on_peer_ready(e); }
    void on_client_event(const ConnectRefusedEvent& e) { on_connect_refused(e); }
    void on_client_event(RelayReceived& e) {
        auto it = sessions_.find(e.session_id);
        if (it == sessions_.end()) {
            counters_.relay_unknown_session++;
            return;
        }
        PeerSession& ps = *it->second;
        ps.session_->on_datagram(e.payload, clock_.now());
        process_session(ps);
    }
    void on_client_event(const Disconnected& e) {
        const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(
            e.retry_at - clock_.now());
        spdlog::warn("signalling server {}: {}; retrying in {:.1f} s", to_string(config_.server),
                     e.reason, std::max<double>(0, static_cast<double>(wait.count()) / 1000.0));
        if (tls_) {
            auto tls = std::move(tls_);
            tls->close();
        }
        // Relayed sessions cannot go on: the server forgets its relays with the connection.
        // Sessions on a direct path do not need the server and stay up.
        std::vector<uint64_t> relayed;
        for (auto& [id, s] : sessions_) {
            if (!s->paths_.active()) relayed.push_back(id);
        }
        for (uint64_t id : relayed) {
            end_session(id, "the relay went away with the server connection", true);
        }
        for (auto& [key, waiters] : waiting_) {
            for (auto& w : waiters) w.tcp->close();
        }
        waiting_.clear();
    }
    void on_client_event(const NatDiscovered& e) {
        spdlog::debug("nat: {} (main {}, secondary {})", to_string(e.mapping),
                      e.mapped[0] ? to_string(*e.mapped[0]) : "-",
                      e.mapped[1] ? to_string(*e.mapped[1]) : "-");
        nat_ = e;
    }
    void on_client_event(const UdpBound&) { spdlog::debug("udp relay confirmed by the server"); }
    void on_client_event(const UdpBlocked& e) {
        spdlog::warn("no UDP answer from the server after {} tries: relaying inside the TLS "
                     "connection (slower)",
                     e.tries);
    }

    uv_loop_t* loop_;
    LoopClock clock_;
    SystemRng rng_;
    AgentRuntimeOptions options_;
    AgentConfig config_;
    AgentClient client_;
    Time started_at_;
    std::shared_ptr<CoreTimer> client_timer_;
    std::shared_ptr<UdpSocket> udp_;
    std::shared_ptr<TlsConnection> tls_;
    std::shared_ptr<AdminServer> admin_;
    std::optional<SocketAddress> server_ip_;
    uint64_t dial_attempt_ = 0;
    std::map<std::string, ForwardState> forwards_;  // by listen address
    std::map<std::string, ExposeStats> expose_stats_;
    std::map<std::pair<std::string, std::string>, std::deque<Waiter>> waiting_;
    std::map<uint64_t, std::unique_ptr<PeerSession>> sessions_;
    std::vector<std::unique_ptr<PeerSession>> graveyard_;
    std::unique_ptr<uv_idle_t> reaper_;

    std::optional<NatDiscovered> nat_;
    AgentCounters counters_;

    bool stopping_ = false;
    bool in_after_client_ = false;
    bool pending_after_client_ = false;
    int exit_status_ = 0;
};

nlohmann::json Agent::status_json() const {
    using nlohmann::json;
    const Time now = clock_.now();
    json out;
    out["agent"] = {{"name", config_.name},
                    {"public_key", key_to_base64(public_key(options_.key))},
                    {"version", version_string()},
                    {"uptime_s", to_ms(now - started_at_) / 1000.0}};
    std::string udp = "unknown";
    if (client_.udp_bound()) udp = "bound";
    const uint64_t registrations = client_.stats().registrations;
    json server = {{"address", to_string(config_.server)},
                   {"state", to_string(client_.state())},
                   {"registered", client_.registered()},
                   {"udp", udp},
                   {"reconnects", registrations > 0 ? registrations - 1 : 0}};
    if (nat_) {
        server["nat"] = to_string(nat_->mapping);
        if (nat_->mapped[0]) server["reflexive"] = to_string(*nat_->mapped[0]);
    }
    out["server"] = server;
    json peers = json::array();
    for (const auto& [id, ps] : sessions_) {
        const Connection& c = ps->session_->connection();
        const ConnectionStats& cs = c.stats();
        const SessionStats ss = ps->session_->stats();
        json p = {
            {"peer", ps->peer_},
            {"session_id", id},
            {"role", ps->role_ == Role::kInitiator ? "initiator" : "responder"},
            {"state", session_state_name(ps->session_->state())},
            {"path", path_of(*ps)},
            {"rtt_ms", to_ms(c.rtt().smoothed())},
            {"loss", cs.packets_sent ? static_cast<double>(cs.packets_lost) /
                                           static_cast<double>(cs.packets_sent)
                                     : 0.0},
            {"bytes_sent", cs.bytes_sent},
            {"bytes_received", cs.bytes_received},
            {"streams", ps->bridges_.size()},
            {"probes",
             {{"challenges_sent", ps->paths_.stats().challenges_sent},
              {"responses_sent", ps->paths_.stats().responses_sent},
              {"paths_validated", ps->paths_.stats().paths_validated},
              {"fallbacks", ps->paths_.stats().fallbacks}}},
            {"services", ps->services_},
            {"drops",
             {{"malformed", ss.drop_malformed + cs.drop_malformed},
              {"bad_mac1", ss.drop_bad_mac1},
              {"unknown_peer", ss.drop_unknown_peer},
              {"replayed_initiation", ss.drop_replayed_initiation},
              {"decrypt_failed", ss.drop_decrypt_failed},
              {"unknown_index", ss.drop_unknown_index},
              {"key_expired", ss.drop_key_expired},
              {"duplicate", cs.drop_duplicate},
              {"too_old", cs.drop_too_old},
              {"bad_probe", ss.drop_bad_probe}}},
        };
        peers.push_back(p);
    }
    out["peers"] = peers;
    std::map<std::string, uint64_t> active;
    for (const auto& [id, ps] : sessions_) {
        for (const auto& [sid, e] : ps->bridges_) active[e.origin]++;
    }
    json forwards = json::array();
    for (const auto& [key, f] : forwards_) {
        forwards.push_back({{"listen", key},
                            {"peer", f.config.peer},
                            {"service", f.config.service},
                            {"connections", f.connections},
                            {"active", active["forward " + key]},
                            {"refused", f.refused}});
    }
    out["forwards"] = forwards;
    json exposes = json::array();
    for (const auto& e : config_.expose) {
        auto it = expose_stats_.find(e.service);
        const ExposeStats st = it != expose_stats_.end() ? it->second : ExposeStats{};
        exposes.push_back({{"service", e.service},
                           {"target", to_string(e.target)},
                           {"allow", e.allow},
                           {"streams", st.streams},
                           {"active", active["expose " + e.service]},
                           {"refused", st.refused}});
    }
    out["exposes"] = exposes;
    const AgentClientStats& s = client_.stats();
    const UdpStats us = udp_ ? udp_->stats() : UdpStats{};
    out["drops"] = {{"relay_offline", s.drop_relay_offline},
                    {"relay_unknown_session",
                     s.drop_relay_unknown_session + counters_.relay_unknown_session},
                    {"relay_too_large", s.drop_relay_too_large},
                    {"relay_queue_full", s.drop_relay_queue_full},
                    {"relay_bad_token", s.drop_relay_bad_token},
                    {"udp_malformed", s.drop_udp_malformed},
                    {"udp_unexpected", s.drop_udp_unexpected},
                    {"udp_from_unknown", counters_.udp_from_unknown},
                    {"udp_truncated", us.truncated},
                    {"udp_send_queue_full", us.send_queue_full},
                    {"stun_malformed", s.drop_stun_malformed},
                    {"stun_unmatched", s.drop_stun_unmatched},
                    {"control_unexpected", s.drop_control_unexpected},
                    {"connects_refused_locally", s.connects_refused_locally},
                    {"streams_refused", counters_.streams_refused}};
    return out;
}

struct SignalWatch {
    uv_signal_t handle;
    Agent* agent = nullptr;
};

void on_signal(uv_signal_t* handle, int signum) {
    auto* watch = static_cast<SignalWatch*>(handle->data);
    if (signum == SIGHUP) {
        spdlog::info("SIGHUP: reloading the configuration");
        watch->agent->reload();
        return;
    }
    spdlog::info("{}: stopping", signum == SIGINT ? "SIGINT" : "SIGTERM");
    watch->agent->stop();
}

}  // namespace

int run_agent_loop(AgentRuntimeOptions options) {
    uv_loop_t loop;
    uv_loop_init(&loop);
    int exit_status = 0;
    {
        Agent agent(&loop, std::move(options));
        std::array<SignalWatch, 3> watches;
        const std::array<int, 3> signals{SIGINT, SIGTERM, SIGHUP};
        for (size_t i = 0; i < watches.size(); ++i) {
            watches[i].agent = &agent;
            uv_signal_init(&loop, &watches[i].handle);
            watches[i].handle.data = &watches[i];
            uv_signal_start(&watches[i].handle, on_signal, signals[i]);
            // Only the sockets keep the loop running; a stop() lets it end.
            uv_unref(reinterpret_cast<uv_handle_t*>(&watches[i].handle));
        }
        if (auto err = agent.start()) {
            std::fprintf(stderr, "burrow: %s\n", err->message.c_str());
            exit_status = kExitOsError;
            agent.stop();
        }
        uv_run(&loop, UV_RUN_DEFAULT);
        if (exit_status == 0) exit_status = agent.exit_status();
        for (auto& w : watches) uv_close(reinterpret_cast<uv_handle_t*>(&w.handle), nullptr);
        uv_run(&loop, UV_RUN_DEFAULT);
    }
    uv_loop_close(&loop);
    return exit_status;
}

}  // namespace burrow
