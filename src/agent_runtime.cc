#include "src/agent_runtime.h"

#include <spdlog/spdlog.h>
#include <uv.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <variant>
#include <vector>

#include "signal/agent_core.h"
#include "signal/happy_eyeballs.h"
#include "signal/udp_messages.h"
#include "src/admin_server.h"
#include "src/doctor_json.h"
#include "src/agent_metrics.h"
#include "src/agent_status_json.h"
#include "src/clock.h"
#include "src/config_file.h"
#include "src/core_timer.h"
#include "src/defer.h"
#include "src/heap_trimmer.h"
#include "src/log.h"
#include "src/open_files.h"
#include "src/port_mapping.h"
#include "src/prometheus_text.h"
#include "src/resolve.h"
#include "src/signals.h"
#include "src/sockaddr.h"
#include "src/status_page.h"
#include "src/system_rng.h"
#include "src/tcp.h"
#include "src/udp_socket.h"
#include "src/version.h"
#include "tunnel/stream_framer.h"

namespace burrow {
namespace {

constexpr int kExitOsError = 1;  // docs/architecture.md §7: the OS refused (a port in use)
// A direct TCP path's socket (issue 15). The kernel keeps at most this much unsent
// (TCP_NOTSENT_LOWAT), so what waits to be sent waits in the session's streams, where an
// interactive stream is scheduled ahead of a bulk one, not in the kernel behind it; enough to
// keep a 100 Mbit/s, 50 ms path busy between two wakes.
constexpr int kPeerTcpNotSentLowat = 128 * 1024;
// Above this much in our own queue the session is told the path is not writable (it then
// builds no stream data, docs/architecture.md §4), and writable again once half of it is gone.
// The queue itself takes more (ACKs and probes still go), and refuses only past kPeerTcpQueue.
constexpr size_t kPeerTcpHighWater = 256 * 1024;
constexpr size_t kPeerTcpQueue = 4 * 1024 * 1024;
const std::vector<int> kAgentSignals = {SIGINT, SIGTERM, SIGHUP};

// Test only (./run.sh soak): BURROW_TEST_REKEY_AFTER_MESSAGES=N makes the initiator rekey
// after N packets under one keypair instead of KeyLimits' 2^22, so a soak of a few minutes
// rekeys many times under load (the 120 s timer alone gives one rekey per two minutes).
// Values outside 1 .. kRejectAfterMessages - 1 are ignored with one warning line.
std::optional<uint64_t> rekey_after_messages_from_environment() {
    const char* value = std::getenv("BURROW_TEST_REKEY_AFTER_MESSAGES");
    if (value == nullptr || *value == '\0') return std::nullopt;
    char* end = nullptr;
    errno = 0;
    const unsigned long long n = std::strtoull(value, &end, 10);
    if (errno != 0 || *end != '\0' || value[0] == '-' || n == 0 || n >= kRejectAfterMessages) {
        spdlog::warn("BURROW_TEST_REKEY_AFTER_MESSAGES={}: not a number from 1 to {}; ignored",
                     value, kRejectAfterMessages - 1);
        return std::nullopt;
    }
    spdlog::warn("BURROW_TEST_REKEY_AFTER_MESSAGES={}: sessions we initiate rekey after {} "
                 "packets (a test setting)", value, n);
    return n;
}

AgentCoreConfig core_config(const AgentRuntimeOptions& o, const LoopClock& clock) {
    AgentCoreConfig c;
    c.name = o.config.name;
    c.key = o.key;
    c.server = o.config.server;
    c.servers = o.config.servers;
    c.server_order = o.config.server_order;
    c.software = std::string("burrow/") + version_string();
    c.expose = o.config.expose;
    c.forward = o.config.forward;
    c.session.connection.max_incoming_streams = o.config.max_streams;
    c.keepalive = o.config.keepalive;
    c.stun_servers = o.config.stun_servers;
    c.udp_idle_timeout = o.config.udp_idle_timeout;
    c.port_mapping = o.config.port_mapping;
    if (auto n = rekey_after_messages_from_environment()) {
        c.session.key_limits.rekey_after_messages = *n;
    }
    c.wall_clock_at_zero_us = wall_clock_us() - to_us(clock.now());
    return c;
}

// Carries out the core's actions on libuv; every decision is the core's.
class Agent {
  public:
    Agent(uv_loop_t* loop, AgentRuntimeOptions options)
        : loop_(loop),
          options_(std::move(options)),
          core_(core_config(options_, clock_), rng_, clock_.now()) {}

    std::optional<OsError> start() {
        // Dual-stack (issue 17): one socket for both families, IPv4 peers as ::ffff:a.b.c.d
        // (src/sockaddr.h turns them back into IPv4), so a session's paths of either family
        // share the port every candidate names. A machine without IPv6 gets an IPv4 socket.
        auto udp = bind_udp(kRouteMain, SocketAddress::ipv6({}, options_.config.udp_port),
                            UdpOptions{});
        if (auto* err = std::get_if<OsError>(&udp)) {
            auto v4 = bind_udp(kRouteMain,
                               SocketAddress::ipv4({0, 0, 0, 0}, options_.config.udp_port),
                               UdpOptions{});
            if (std::holds_alternative<OsError>(v4)) return *err;
            spdlog::info("no IPv6 ({}): udp IPv4 only", err->message);
            udp = std::move(v4);
        }
        udp_ = std::get<std::shared_ptr<UdpSocket>>(udp);
        const UdpStats& io = udp_->stats();
        spdlog::info("udp {}: send {}, receive {}, socket buffers {} B in, {} B out",
                     to_string(udp_->local_address()), to_string(io.send_mode),
                     receive_mode_name(io.receive_mode), io.receive_buffer_bytes,
                     io.send_buffer_bytes);
        if (auto err = start_admin()) return err;
        // Before the forwards listen: their listeners read the limit.
        raise_and_log_open_files_limit();
        CoreTimer::Hooks hooks;
        hooks.on_timer = [this](Time now) { core_.on_timer(now); };
        hooks.transmit_one = [this](Time now) { return step(now); };
        hooks.next_deadline = [this] { return core_.next_deadline(); };
        hooks.flush = [this] { flush_sockets(); };
        timer_ = CoreTimer::create(loop_, clock_, std::move(hooks));
        if (!timer_) return OsError{timer_error_text()};
        trimmer_ = HeapTrimmer::create(loop_);
        start_peer_listener();
        const bool dual_stack = udp_->local_address().v6;
        core_.start(interface_addresses(udp_->local_address().port, dual_stack), clock_.now(),
                    dual_stack);
        drain();
        return std::nullopt;
    }

    void stop() {
        core_.stop(clock_.now());
        drain();
    }

    void reload() {
        auto loaded = load_agent_config(options_.config_path);
        if (auto* err = std::get_if<ConfigError>(&loaded)) {
            spdlog::error("reload: {}; keeping the running configuration", err->message);
            return;
        }
        AgentConfig next = std::get<AgentConfig>(std::move(loaded));
        if (needs_restart(options_.config, next)) {
            spdlog::warn(
                "reload: changes to [agent] other than log_level need a restart; "
                "applying [[expose]] and [[forward]] only");
        }
        if (options_.verbosity == 0) set_log_level(next.log_level);
        options_.config.log_level = next.log_level;
        core_.reload(next.expose, next.forward, clock_.now());
        spdlog::info("reloaded {}", options_.config_path);
        drain();
    }

    int exit_status() const { return exit_status_; }

  private:
    // The local status endpoint (`burrow status`, GET /metrics, the status page). An address
    // set in the config must work; the default one is a convenience, and a second agent on the
    // machine goes without it.
    std::optional<OsError> start_admin() {
        const auto& admin = options_.config.admin;
        const SocketAddress where = admin ? literal_socket_address(*admin).value_or(SocketAddress{})
                                          : default_admin_address();
        auto server = AdminServer::listen(
            loop_, where, [this](std::string_view path) -> std::optional<AdminResponse> {
                if (path == "/") return status_page_response();
                const UdpStats udp = udp_ ? udp_->stats() : UdpStats{};
                if (path == "/status") {
                    return AdminResponse(agent_status_json(core_.status(clock_.now()), udp).dump());
                }
                if (path == "/metrics") {
                    return AdminResponse(agent_metrics_text(core_.status(clock_.now()), udp),
                                         std::string(kPrometheusContentType));
                }
                return std::nullopt;
            });
        if (auto* ok = std::get_if<std::shared_ptr<AdminServer>>(&server)) {
            (*ok)->set_async_handler([this](std::string_view path, AdminServer::AsyncReply reply) {
                constexpr std::string_view kDoctorPrefix = "/doctor/";
                if (path.substr(0, kDoctorPrefix.size()) != kDoctorPrefix) return false;
                std::string peer(path.substr(kDoctorPrefix.size()));
                const uint32_t id = core_.doctor(peer, clock_.now());
                doctor_waiting_[id] = {std::move(peer), std::move(reply)};
                drain();
                return true;
            });
        }
        if (auto* err = std::get_if<OsError>(&server)) {
            if (admin) return *err;
            spdlog::warn("no status endpoint ({}); set [agent] admin to another port",
                         err->message);
            return std::nullopt;
        }
        admin_ = std::get<std::shared_ptr<AdminServer>>(server);
        spdlog::info("status endpoint on {} (burrow status; status page http://{}/)",
                     to_string(where), to_string(where));
        if (options_.config.admin_remote) {
            spdlog::warn("status endpoint on {} is not limited to this machine (admin_remote): "
                         "anyone who reaches it can read this agent's status",
                         to_string(where));
        }
        return std::nullopt;
    }

    // After every input (a receive batch counts as one): the core's actions and datagrams, then
    // its timer.
    void drain() {
        if (timer_) {
            timer_->kick();
        } else {
            while (step(clock_.now())) {
            }
        }
        flush_sockets();
        if (exiting_) finish();
    }

    // The datagrams of one drain go to the kernel together: a run to one peer is one GSO send.
    void flush_sockets() {
        for (auto& socket : unflushed_) socket->flush();
        unflushed_.clear();
        flush_peer_tcps();
    }

    // One unit of the core's output: every pending action, then one datagram. A datagram for
    // the relay inside TLS comes out as an action, so actions are drained again after.
    bool step(Time now) {
        const bool acted = run_actions();
        // The core builds the datagram straight into the main socket's batch, where nearly
        // every datagram goes; one for another route (a birthday socket) is copied there, and
        // the main socket's room, left uncommitted, is simply reused.
        const MutableByteView room =
            udp_ ? udp_->send_buffer(kMaxUdpDatagram) : MutableByteView(scratch_);
        if (auto t = core_.write_transmit(now, room)) {
            if (t->tcp) {
                queue_peer_tcp(t->route, ByteView(room.data(), t->size));
                return true;
            }
            std::shared_ptr<UdpSocket> socket = t->route == kRouteMain ? udp_ : nullptr;
            if (auto it = sockets_.find(t->route); it != sockets_.end()) socket = it->second;
            if (!socket) return true;  // its socket is gone: dropped, like any lost datagram
            if (socket == udp_) {
                socket->commit_send(t->to, t->size);
            } else {
                socket->send(t->to, ByteView(room.data(), t->size));
            }
            if (std::find(unflushed_.begin(), unflushed_.end(), socket) == unflushed_.end()) {
                unflushed_.push_back(std::move(socket));
            }
            return true;
        }
        return run_actions() || acted;
    }
    bool run_actions() {
        bool any = false;
        while (auto action = core_.poll_action()) {
            std::visit([this](auto& a) { execute(a); }, *action);
            any = true;
        }
        return any;
    }

    // --- the server ---
    // Happy Eyeballs (RFC 8305, signal/happy_eyeballs.h): one TLS attempt per address of the
    // server, IPv6 first, the next kConnectionAttemptDelay later or as soon as one fails; the
    // first handshake to finish is the control connection and the others are closed.
    void execute(const DialServer& d) {
        const uint64_t attempt = ++dial_attempt_;
        // Each new control connection leaves from a fresh shared port: a NAT that still holds
        // the previous connection's state (a server that vanished without a FIN) would
        // otherwise swallow every SYN of the same four addresses until its entry expires.
        // The new registration offers the new port; established peer connections stay.
        if (attempt > 1 && peer_listener_) {
            peer_listener_->close();
            peer_listener_.reset();
            start_peer_listener();
        }
        abandon_race();
        resolve_all(loop_, d.server,
                    [this, attempt](std::vector<SocketAddress> found, const std::string& error) {
                        if (attempt != dial_attempt_ || exiting_) return;
                        if (found.empty()) {
                            return report([&] { core_.on_control_closed(error, clock_.now()); });
                        }
                        race_ = DialRace{attempt, happy_eyeballs_order(found), 0, {}, {}};
                        dial_next(attempt);
                    });
    }
    void dial_next(uint64_t attempt) {
        if (attempt != dial_attempt_ || race_.attempt != attempt || exiting_ || finished_) return;
        if (race_.next >= race_.order.size()) {
            if (race_.trying.empty()) {  // every address failed: the last reason is the one
                const std::string why = race_.last_error;
                race_ = {};
                report([&] { core_.on_control_closed(why, clock_.now()); });
            }
            return;
        }
        const SocketAddress server = race_.order[race_.next++];
        TlsOptions tls_options;
        tls_options.local_port = tcp_port_;  // the peer listener's (0: none)
        auto tls = TlsConnection::connect(loop_, server, options_.tls, tls_options);
        race_.trying.push_back(tls);
        const TlsConnection* self = tls.get();
        std::weak_ptr<TlsConnection> weak = tls;
        tls->start(TlsCallbacks{
            .on_connected =
                [this, weak, server, attempt] {
                    auto won = weak.lock();
                    if (!won || race_.attempt != attempt || attempt != dial_attempt_) return;
                    std::vector<std::shared_ptr<TlsConnection>> losers;
                    for (auto& other : race_.trying) {
                        if (other != won) losers.push_back(other);
                    }
                    const std::vector<SocketAddress> resolved = std::move(race_.order);
                    race_ = {};
                    for (auto& l : losers) l->close();
                    tls_ = won;
                    report([&] { core_.on_control_connected(server, resolved, clock_.now()); });
                },
            .on_data =
                [this, weak](ByteView data) {
                    if (!tls_ || weak.lock() != tls_) return;
                    report([&] { core_.on_control_bytes(data, clock_.now()); });
                },
            .on_writable = {},
            .on_closed =
                [this, weak, self, attempt](const std::string& reason) {
                    if (tls_ && tls_.get() == self) {
                        tls_.reset();
                        report([&] { core_.on_control_closed(reason, clock_.now()); });
                        return;
                    }
                    // An attempt that failed before its handshake: try the next address now.
                    if (race_.attempt != attempt || attempt != dial_attempt_) return;
                    auto& t = race_.trying;
                    t.erase(std::remove_if(t.begin(), t.end(),
                                           [self](const auto& c) { return c.get() == self; }),
                            t.end());
                    race_.last_error = reason;
                    dial_next(attempt);
                },
        });
        if (race_.next < race_.order.size()) {
            const size_t due = race_.next;
            defer(loop_, static_cast<uint64_t>(to_ms(kConnectionAttemptDelay)),
                  [this, attempt, due] {
                      // Not if a failure already started that one, or the race is over.
                      if (race_.attempt == attempt && race_.next == due) dial_next(attempt);
                  });
        }
    }
    void abandon_race() {
        auto trying = std::move(race_.trying);
        race_ = {};
        for (auto& t : trying) t->close();
    }
    void execute(const WriteControl& w) {
        // A full buffer means the server stopped reading; the session's loss recovery resends
        // relayed packets lost here.
        if (tls_ && !tls_->write(w.bytes)) spdlog::debug("control connection buffer full");
    }
    void execute(const ResolveStunServer& r) {
        const size_t index = r.index;
        resolve(loop_, r.server,
                [this, index](std::optional<SocketAddress> addr, const std::string& error) {
                    if (exiting_) return;
                    report([&] {
                        core_.on_stun_server_resolved(index, addr, error, clock_.now());
                    });
                });
    }
    // UPnP IGD, PCP and NAT-PMP block: the request runs on libuv's thread pool. uv_run does not
    // return while it is out, so a delete queued as the agent stops still reaches the gateway.
    struct PortMapWork {
        uv_work_t req{};
        Agent* agent = nullptr;
        PortMapRequest request;
        PortMappingResult result;
    };
    void execute(const MapPort& m) {
        auto* work = new PortMapWork;
        work->req.data = work;
        work->agent = this;
        work->request = m.request;
        const int rc = uv_queue_work(
            loop_, &work->req,
            [](uv_work_t* req) {
                auto* w = static_cast<PortMapWork*>(req->data);
                w->result = w->agent->gateway_.run(w->request);
            },
            [](uv_work_t* req, int) {
                std::unique_ptr<PortMapWork> w(static_cast<PortMapWork*>(req->data));
                if (w->request.op == PortMapRequest::Op::kMap) w->agent->port_mapped(*w);
            });
        if (rc != 0) {
            std::unique_ptr<PortMapWork> w(work);
            w->result.detail = std::string("cannot start the request: ") + uv_strerror(rc);
            if (m.request.op == PortMapRequest::Op::kMap) port_mapped(*w);
        }
    }
    void port_mapped(PortMapWork& w) {
        if (!finished_) {
            report([&] { core_.on_port_mapping_result(std::move(w.result), clock_.now()); });
            return;
        }
        // Answered after the loop began to close: the core (stopped) answers with a delete, the
        // only action it can still have; carry it out so nothing stays mapped for us.
        core_.on_port_mapping_result(std::move(w.result), clock_.now());
        while (auto a = core_.poll_action()) {
            if (auto* map = std::get_if<MapPort>(&*a)) execute(*map);
        }
    }
    void execute(const CloseControl&) {
        ++dial_attempt_;  // a resolve in flight is stale now
        abandon_race();
        if (auto tls = std::move(tls_)) tls->close();
    }

    // --- UDP sockets of the links ---
    void execute(const OpenUdpSocket& o) {
        UdpOptions options;
        options.socket_buffer_bytes = o.buffer_bytes;
        if (o.max_datagram > 0) options.max_datagram_size = o.max_datagram;
        auto sock = bind_udp(o.route, o.bind.value_or(SocketAddress::ipv4({0, 0, 0, 0}, 0)),
                             options);
        if (auto* err = std::get_if<OsError>(&sock)) {
            return core_.on_udp_socket_failed(o.route, err->message);
        }
        sockets_[o.route] = std::get<std::shared_ptr<UdpSocket>>(sock);
    }
    std::variant<std::shared_ptr<UdpSocket>, OsError> bind_udp(RouteId route,
                                                               const SocketAddress& where,
                                                               UdpOptions options) {
        // The core's output is drained once per receive batch, not per datagram: the datagrams
        // of a batch are acknowledged together.
        UdpHandlers handlers{
            .datagram = [this, route](const SocketAddress& from, MutableByteView data,
                                      Time now) { core_.on_udp(route, from, data, now); },
            .batch_end =
                [this] {
                    core_.on_udp_batch_end();
                    drain();
                },
        };
        return UdpSocket::bind(loop_, clock_, where, std::move(handlers), options);
    }
    void execute(const CloseUdpSocket& c) {
        auto it = sockets_.find(c.route);
        if (it == sockets_.end()) return;
        it->second->close();
        sockets_.erase(it);
    }

    // --- forwards ---
    void execute(const ListenTcp& l) {
        const std::string key = l.forward;
        auto listener = TcpListener::listen(loop_, l.address, [this, key](auto tcp) {
            std::optional<TcpId> id = core_.on_tcp_accepted(key, clock_.now());
            if (!id) return tcp->close();
            adopt(*id, std::move(tcp));
            tcps_[*id]->pause_reading();  // until the core has a stream for it
            drain();
        });
        if (auto* err = std::get_if<OsError>(&listener)) {
            return core_.on_listen_failed(key, err->message, clock_.now());
        }
        auto& accepting = listeners_[key] = std::get<std::shared_ptr<TcpListener>>(listener);
        accepting->on_descriptors_low([this, key](int, int limit) {
            report([&] { core_.on_descriptors_low(key, limit, clock_.now()); });
        });
    }
    void execute(const StopListening& s) {
        if (auto it = listeners_.find(s.forward); it != listeners_.end()) {
            it->second->close();
            listeners_.erase(it);
        }
    }
    void execute(const PauseAccepting& p) {
        if (auto it = listeners_.find(p.forward); it != listeners_.end()) it->second->pause();
    }
    void execute(const ResumeAccepting& r) {
        if (auto it = listeners_.find(r.forward); it != listeners_.end()) it->second->resume();
    }

    // --- forwarded TCP connections ---
    // A ConnectTcp whose lookup is under way or done (dials_, oldest first).
    struct Dial {
        TcpId id;
        Duration timeout;
        bool resolved = false;
        std::optional<SocketAddress> address;
        std::string error;
    };
    // Connects start in the order the core asked for them, whatever order their lookups finish
    // in: the peer's connections reach the target in the order they were accepted (a client
    // such as iperf3 --bidir tells its connections apart by that order).
    void execute(const ConnectTcp& c) {
        const uint64_t seq = connects_begun_ + dials_.size();
        dials_.push_back(Dial{c.id, c.timeout, false, std::nullopt, {}});
        resolve(loop_, c.target,
                [this, seq](std::optional<SocketAddress> addr, const std::string& error) {
                    Dial& d = dials_[seq - connects_begun_];
                    d.resolved = true;
                    d.address = addr;
                    d.error = error;
                    start_resolved_dials();
                });
    }
    void start_resolved_dials() {
        while (!dials_.empty() && dials_.front().resolved) {
            const Dial d = std::move(dials_.front());
            dials_.pop_front();
            ++connects_begun_;
            dial(d);
        }
    }
    void dial(const Dial& d) {
        const TcpId id = d.id;
        if (!d.address) {
            return report([&] {
                core_.on_tcp_connect_failed(id, ConnectFailure::kUnresolved, d.error,
                                            clock_.now());
            });
        }
        tcp_connect(loop_, *d.address, d.timeout, [this, id](auto tcp, OsError err) {
            if (!tcp) {
                return report([&] {
                    core_.on_tcp_connect_failed(id, ConnectFailure::kRefused, err.message,
                                                clock_.now());
                });
            }
            adopt(id, std::move(tcp));
            tcps_[id]->pause_reading();
            report([&] { core_.on_tcp_connected(id, clock_.now()); });
        });
    }
    void execute(const TcpFlush& f) {
        TcpConnection* tcp = find_tcp(f.id);
        if (!tcp) return;
        // Never more than the queue takes: write() refuses what does not fit, and the bytes
        // would be gone from the stream. What the stream hands out in one go goes to the
        // socket with one writev.
        const size_t limit = TcpOptions{}.max_write_queue;
        while (tcp->write_queue_bytes() < limit) {
            const size_t room = std::min(buffer_.size(), limit - tcp->write_queue_bytes());
            chunks_.clear();
            size_t used = 0;
            while (used < room) {
                const size_t n = core_.tcp_output(
                    f.id, MutableByteView(buffer_.data() + used, room - used), clock_.now());
                if (n == 0) break;
                chunks_.emplace_back(buffer_.data() + used, n);
                used += n;
            }
            if (chunks_.empty()) return;
            tcp->write(chunks_);
            if (used < room) return;  // the stream has nothing more now
        }
        tcp->notify_when_drained(limit / 2);
    }
    void execute(const TcpPauseReading& p) {
        if (auto* tcp = find_tcp(p.id)) tcp->pause_reading();
    }
    void execute(const TcpResumeReading& r) {
        if (auto* tcp = find_tcp(r.id)) tcp->resume_reading();
    }
    void execute(const TcpShutdown& s) {
        const TcpId id = s.id;
        if (auto* tcp = find_tcp(id)) {
            tcp->shutdown(
                [this, id] { report([&] { core_.on_tcp_shutdown_done(id, clock_.now()); }); });
        }
    }
    void execute(const TcpFinish& f) {
        if (auto* tcp = find_tcp(f.id)) tcp->finish();
    }
    void execute(const TcpClose& c) {
        if (auto* tcp = find_tcp(c.id)) tcp->close();
    }
    void execute(const TcpReset& r) {
        if (auto* tcp = find_tcp(r.id)) tcp->reset();
    }

    // --- direct TCP paths to peers (issue 15) ---
    // The listener on the port the control connection leaves from: every address, both
    // families when the machine has IPv6. Without it the agent simply offers no TCP candidate.
    void start_peer_listener() {
        TcpOptions o;
        o.reuse_port = true;
        o.max_write_queue = kPeerTcpQueue;
        auto on_accept = [this](std::shared_ptr<TcpConnection> tcp) {
            const auto route = core_.on_peer_tcp_accepted(tcp->peer_address(), clock_.now());
            if (!route) {
                tcp->close();
                return drain();
            }
            adopt_peer_tcp(*route, std::move(tcp));
            drain();
        };
        auto l = TcpListener::listen(loop_, SocketAddress::ipv6({}, 0), on_accept, o);
        if (std::holds_alternative<OsError>(l)) {
            l = TcpListener::listen(loop_, SocketAddress::ipv4({0, 0, 0, 0}, 0), on_accept, o);
        }
        if (auto* err = std::get_if<OsError>(&l)) {
            spdlog::warn("no direct TCP paths ({})", err->message);
            tcp_port_ = 0;
            core_.enable_tcp_paths(0);
            return;
        }
        peer_listener_ = std::get<std::shared_ptr<TcpListener>>(l);
        tcp_port_ = peer_listener_->local_address().port;
        core_.enable_tcp_paths(tcp_port_);
        spdlog::debug("tcp {}: peer listener, shared with the control connection",
                      to_string(peer_listener_->local_address()));
    }
    void execute(const ConnectPeerTcp& c) {
        const RouteId route = c.route;
        if (tcp_port_ == 0) {
            return report([&] { core_.on_peer_tcp_closed(route, "no listener", clock_.now()); });
        }
        TcpOptions o;
        o.reuse_port = true;
        o.local_port = tcp_port_;
        o.max_write_queue = kPeerTcpQueue;
        peer_connecting_[route] = false;
        tcp_connect(
            loop_, c.to, c.timeout,
            [this, route](std::shared_ptr<TcpConnection> tcp, OsError err) {
                auto it = peer_connecting_.find(route);
                const bool cancelled = it == peer_connecting_.end() || it->second;
                if (it != peer_connecting_.end()) peer_connecting_.erase(it);
                if (!tcp) {
                    return report(
                        [&] { core_.on_peer_tcp_closed(route, err.message, clock_.now()); });
                }
                adopt_peer_tcp(route, tcp);
                if (cancelled || finished_) return tcp->close();  // reported as it closes
                report([&] { core_.on_peer_tcp_connected(route, clock_.now()); });
            },
            o);
    }
    void execute(const ClosePeerTcp& c) {
        if (auto it = peer_connecting_.find(c.route); it != peer_connecting_.end()) {
            it->second = true;  // closed as soon as the connect ends
            return;
        }
        if (auto it = peer_tcps_.find(c.route); it != peer_tcps_.end()) it->second->close();
    }
    void adopt_peer_tcp(RouteId route, std::shared_ptr<TcpConnection> tcp) {
        tcp->set_not_sent_lowat(kPeerTcpNotSentLowat);
        peer_tcps_[route] = tcp;
        tcp->start(TcpCallbacks{
            .on_data =
                [this, route](ByteView data) {
                    report([&] { core_.on_peer_tcp_data(route, data, clock_.now()); });
                },
            // The peer sends nothing more: the path is gone; on_closed reports it.
            .on_eof = [this, route] { close_peer_tcp(route); },
            .on_drained =
                [this, route] {
                    if (peer_blocked_.erase(route) == 0) return;
                    report([&] { core_.on_peer_tcp_writable(route, true); });
                },
            .on_closed =
                [this, route](const std::string& reason) {
                    peer_tcps_.erase(route);
                    peer_blocked_.erase(route);
                    peer_unsent_.erase(route);
                    report([&] { core_.on_peer_tcp_closed(route, reason, clock_.now()); });
                },
        });
    }
    void close_peer_tcp(RouteId route) {
        if (auto it = peer_tcps_.find(route); it != peer_tcps_.end()) it->second->close();
    }
    // A session datagram for a TCP path: its length and bytes join the route's batch, which
    // goes to the socket with one write when the drain ends (flush_peer_tcps).
    void queue_peer_tcp(RouteId route, ByteView datagram) {
        if (!peer_tcps_.contains(route)) return;  // gone: dropped, like a lost datagram
        append_tcp_path_frame(datagram, peer_unsent_[route]);
    }
    void flush_peer_tcps() {
        for (auto& [route, bytes] : peer_unsent_) {
            if (bytes.empty()) continue;
            auto it = peer_tcps_.find(route);
            if (it == peer_tcps_.end()) {
                bytes.clear();
                continue;
            }
            TcpConnection& tcp = *it->second;
            tcp.write(ByteView(bytes));  // refused only past kPeerTcpQueue: lost, as on UDP
            bytes.clear();
            if (tcp.write_queue_bytes() > kPeerTcpHighWater && peer_blocked_.insert(route).second) {
                core_.on_peer_tcp_writable(route, false);
                tcp.notify_when_drained(kPeerTcpHighWater / 2);
            }
        }
    }

    // --- the process ---
    void execute(const Log& l) {
        switch (l.severity) {
            case Severity::kDebug:
                spdlog::debug("{}", l.line);
                break;
            case Severity::kInfo:
                spdlog::info("{}", l.line);
                break;
            case Severity::kWarn:
                spdlog::warn("{}", l.line);
                break;
            case Severity::kError:
                spdlog::error("{}", l.line);
                break;
        }
    }
    void execute(const DoctorResult& r) {
        auto it = doctor_waiting_.find(r.request_id);
        if (it == doctor_waiting_.end()) return;
        auto [peer, reply] = std::move(it->second);
        doctor_waiting_.erase(it);
        reply(AdminResponse(doctor_json(peer, r).dump() + "\n"));
    }
    void execute(const Exit& e) {
        if (!e.message.empty()) std::fprintf(stderr, "burrow: %s\n", e.message.c_str());
        if (exit_status_ == 0) exit_status_ = e.status;
        exiting_ = true;
        gateway_.cancel();  // a mapping request still out must not hold up the exit
    }

    // Closes every handle once the core's last output is out; uv_run then returns.
    void finish() {
        if (finished_) return;
        finished_ = true;
        unflushed_.clear();  // each socket sends what it holds as it closes
        if (admin_) admin_->close();
        for (auto& [key, l] : listeners_) l->close();
        for (auto& [route, s] : sockets_) s->close();
        std::vector<std::shared_ptr<TcpConnection>> open;
        for (auto& [id, t] : tcps_) open.push_back(t);
        for (auto& [route, t] : peer_tcps_) open.push_back(t);
        if (peer_listener_) peer_listener_->close();
        for (auto& t : open) t->close();
        abandon_race();
        if (auto tls = std::move(tls_)) tls->close();
        if (udp_) udp_->close();
        if (timer_) timer_->close();
        if (trimmer_) trimmer_->close();
    }

    // --- helpers ---
    void adopt(TcpId id, std::shared_ptr<TcpConnection> tcp) {
        tcps_[id] = tcp;
        tcp->start(TcpCallbacks{
            .on_data =
                [this, id](ByteView data) {
                    report([&] { core_.on_tcp_data(id, data, clock_.now()); });
                },
            .on_eof = [this, id] { report([&] { core_.on_tcp_eof(id, clock_.now()); }); },
            .on_drained = [this, id] { report([&] { core_.on_tcp_drained(id, clock_.now()); }); },
            .on_closed =
                [this, id](const std::string&) {
                    tcps_.erase(id);
                    if (trimmer_) trimmer_->on_connection_closed();
                    report([&] { core_.on_tcp_closed(id, clock_.now()); });
                },
        });
    }
    TcpConnection* find_tcp(TcpId id) {
        auto it = tcps_.find(id);
        return it == tcps_.end() ? nullptr : it->second.get();
    }
    template <class Fn>
    void report(Fn fn) {
        if (finished_) return;
        fn();
        drain();
    }

    uv_loop_t* loop_;
    LoopClock clock_;
    SystemRng rng_;
    AgentRuntimeOptions options_;
    AgentCore core_;
    std::shared_ptr<CoreTimer> timer_;
    std::shared_ptr<HeapTrimmer> trimmer_;
    std::shared_ptr<UdpSocket> udp_;
    std::map<RouteId, std::shared_ptr<UdpSocket>> sockets_;
    PortMappingGateway gateway_;  // used from the thread pool (src/port_mapping.h)
    // Where a datagram is built before the main socket exists (it is dropped: no route).
    Bytes scratch_ = Bytes(kMaxUdpDatagram);
    std::vector<std::shared_ptr<UdpSocket>> unflushed_;  // sent on since the last flush
    std::shared_ptr<TlsConnection> tls_;
    // The control connection's attempts while none has won (Happy Eyeballs).
    struct DialRace {
        uint64_t attempt = 0;  // dial_attempt_ it belongs to; 0: no race
        std::vector<SocketAddress> order;
        size_t next = 0;  // order[next] is the next to try
        std::vector<std::shared_ptr<TlsConnection>> trying;
        std::string last_error;
    };
    DialRace race_;
    std::shared_ptr<AdminServer> admin_;
    // GET /doctor/PEER requests waiting for the core's DoctorResult, by request id.
    std::map<uint32_t, std::pair<std::string, AdminServer::AsyncReply>> doctor_waiting_;
    std::map<std::string, std::shared_ptr<TcpListener>> listeners_;
    std::map<TcpId, std::shared_ptr<TcpConnection>> tcps_;
    // Direct TCP paths (issue 15): the listener, the port it shares with the control
    // connection, connections by route, connects under way (true: closed meanwhile), and
    // each route's framed datagrams of this drain and whether the session was told to wait.
    std::shared_ptr<TcpListener> peer_listener_;
    uint16_t tcp_port_ = 0;
    std::map<RouteId, std::shared_ptr<TcpConnection>> peer_tcps_;
    std::map<RouteId, bool> peer_connecting_;
    std::map<RouteId, Bytes> peer_unsent_;
    std::set<RouteId> peer_blocked_;
    // One socket write's worth of stream bytes: as much as the write queue holds, so one flush
    // can fill it with one writev.
    Bytes buffer_ = Bytes(TcpOptions{}.max_write_queue);
    std::vector<ByteView> chunks_;  // the pieces of buffer_ tcp_output filled, reused
    uint64_t dial_attempt_ = 0;
    std::deque<Dial> dials_;  // ConnectTcp actions not yet dialled, in the order asked
    uint64_t connects_begun_ = 0;  // sequence number of dials_.front()
    int exit_status_ = 0;
    bool exiting_ = false;
    bool finished_ = false;
};

}  // namespace

int run_agent_loop(AgentRuntimeOptions options) {
    // The agent logs its first lines while it starts; a SIGTERM sent on seeing them waits for
    // the loop's handler instead of killing it (e2e/agent_badconfig does just that).
    hold_signals(kAgentSignals);
    uv_loop_t loop;
    uv_loop_init(&loop);
    int exit_status = 0;
    {
        Agent agent(&loop, std::move(options));
        if (auto err = agent.start()) {
            std::fprintf(stderr, "burrow: %s\n", err->message.c_str());
            exit_status = kExitOsError;
            agent.stop();
        }
        run_with_signals(&loop, kAgentSignals, [&agent](int signum) {
            if (signum == SIGHUP) {
                spdlog::info("SIGHUP: reloading the configuration");
                return agent.reload();
            }
            spdlog::info("{}: stopping", signum == SIGINT ? "SIGINT" : "SIGTERM");
            agent.stop();
        });
        if (exit_status == 0) exit_status = agent.exit_status();
    }
    uv_loop_close(&loop);
    return exit_status;
}

}  // namespace burrow
