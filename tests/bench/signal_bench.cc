// burrow-bench signal --agents N: N simulated agents register with a real `burrow server` over
// TLS on loopback; prints registrations per second and the server's RSS per idle agent (issue 4:
// target at most 16 KiB per idle agent).
//
// The server is the real binary, found beside burrow-bench, started as a child with N generated
// agent keys in its configuration (tests/bench/server_child.h). This process runs one libuv loop
// with N AgentClients (signal/agent_client.h), each driven the way an agent drives its own: a
// TlsConnection pinned to the server's fingerprint, a CoreTimer at next_deadline(), and a UDP
// socket for the NAT probe and the Bind.
//
// Choices, and why:
// - One CoreTimer per agent, as the agent binary has: a libuv timer is a heap node of about a
//   hundred bytes and the heap costs O(log N) per re-arm, nothing next to a TLS connection's two
//   16 KiB record buffers, and a shared scanning timer would bench code the agent never runs.
// - A UDP socket per agent, because the client registers only once its NAT probe has finished:
//   without UDP every registration would wait out the probe's 3.1 s of retries. The socket is
//   closed once the agent is registered and its Bind answered, so the bench needs ~N + window
//   descriptors instead of 2N. The server keeps the binding (it never learns the socket is gone);
//   the agent's next Bind round, 25 s later, goes unanswered, after which it would relay over
//   TLS, which an idle agent never does.
// - Each UDP socket binds its own loopback address (127.1.0.1 + i): a port freed by a closed
//   socket is often handed to a later one, and the server moves a binding whose address another
//   agent binds, which would make earlier agents' bindings vanish from the server's memory.
// - Dials go out in a window: at most --window agents between their dial and their Registered,
//   so the server's listen backlog and its pre-auth limit (1024) never overflow.
//
// --servers 2 (issue 21): a redis-server and two servers of one cluster ([cluster], one shared
// configuration and certificate), agent i registering with server i % 2; registrations/s counts
// both, and the RSS figures are the two servers' sums (Redis's own RSS is printed beside them).
// Each registration there also writes the agent's presence to Redis.
//
// RSS is VmRSS from /proc: the server's before any agent connects (its configuration, with the
// N keys, already loaded) and after all N have registered and sat idle for 2 s. The difference
// over N is the per-agent cost, allocator slack included, which is what an operator pays.
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <uv.h>

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <variant>
#include <vector>

#include "signal/agent_client.h"
#include "src/clock.h"
#include "src/core_timer.h"
#include "src/system_rng.h"
#include "src/tls.h"
#include "src/udp_socket.h"
#include "tests/bench/bench_registry.h"
#include "tests/bench/server_child.h"

namespace burrow::bench {
namespace {

using namespace std::chrono_literals;

constexpr size_t kDefaultAgents = 1000;
constexpr size_t kQuickAgents = 200;
// One loopback source address gives one TCP connection per ephemeral port (Linux's default
// range 32768-60999); the server's own cap is 1'000'000.
constexpr size_t kMaxAgents = 28000;
// In flight = dialed but not yet registered. Loopback handshakes are CPU-bound, so a larger
// window only queues them in the kernel; 200 stays far below the server's pre-auth limit (1024)
// and the listen backlog (net.core.somaxconn, 4096 here).
constexpr size_t kDefaultWindow = 200;
constexpr size_t kMaxWindow = 1000;
// How long the agents sit idle before the server's RSS is read: lets the server finish what
// registration left pending (log lines, close callbacks of handshake state), and lets every
// connection pass one whole idle period, after which the server gives its TLS record buffers
// back (TlsOptions::release_buffers_after, 1 s: released between 1 and 2 s after the last
// record).
constexpr auto kIdleTime = 3s;
// No new registration for this long means something is stuck: above kDialTimeout (15 s) plus
// kAuthTimeout (10 s), so a slow dial or auth has timed out and been counted by then.
constexpr auto kStallTimeout = 30s;
// How often the loop wakes to check the server is alive and the run is progressing.
constexpr uint64_t kTickMs = 100;
// Descriptors besides one per agent: the loop, the server pipe, the window's UDP sockets, stdio.
constexpr rlim_t kSpareFds = 100;
constexpr double kBytesPerKiB = 1024;
constexpr double kMsPerSecond = 1000;
constexpr double kPercent = 100;
constexpr double kBytesPerMiB = 1024 * 1024;
constexpr double kIssueTargetKiB = 16;  // issue 4: at most 16 KiB per idle agent
// Per-agent UDP addresses: 127.1.0.1 upwards (127/8 is all loopback on Linux).
constexpr uint32_t kAgentUdpBase = 0x7f010001;

struct BenchAgent {
    size_t index = 0;
    std::unique_ptr<AgentClient> client;
    std::shared_ptr<TlsConnection> tls;
    std::shared_ptr<UdpSocket> udp;
    std::shared_ptr<CoreTimer> timer;
    bool in_flight = false;  // counts against the window
    bool queued = false;     // waiting for a dial slot
    bool registered = false;
    bool udp_settled = false;  // the Bind round was answered or gave up
    bool failed = false;       // AuthFailed: never dials again
};

struct Counters {
    size_t registered = 0;  // online and registered now
    size_t auth_failed = 0;
    size_t disconnects = 0;        // Disconnected events (dial failures included)
    size_t udp_blocked = 0;        // UdpBlocked while the agent's socket was open
    size_t udp_bind_failures = 0;  // no UDP socket: the agent registers after the probe times out
    size_t udp_dropped = 0;        // datagrams for a closed socket or an unknown port
    size_t write_refused = 0;      // TlsConnection::write said no (should not happen)
};

class SignalBench {
  public:
    SignalBench(uv_loop_t* loop, std::shared_ptr<TlsContext> tls,
                std::vector<SocketAddress> servers, const std::vector<PrivateKey>& keys,
                size_t window)
        : loop_(loop), tls_(std::move(tls)), servers_(std::move(servers)), window_(window) {
        const Time now = clock_.now();
        for (size_t i = 0; i < keys.size(); ++i) {
            auto a = std::make_unique<BenchAgent>();
            a->index = i;
            AgentClientConfig config;
            config.key = keys[i];
            a->client = std::make_unique<AgentClient>(std::move(config), rng_, now);
            BenchAgent* agent = a.get();
            CoreTimer::Hooks hooks;
            hooks.on_timer = [this, agent](Time t) { on_timer(*agent, t); };
            hooks.transmit_one = [this, agent](Time) {
                auto d = agent->client->poll_udp();
                if (!d) return false;
                send_udp(*agent, *d);
                return true;
            };
            hooks.next_deadline = [agent] { return agent->client->next_deadline(); };
            a->timer = CoreTimer::create(loop_, clock_, std::move(hooks));
            agents_.push_back(std::move(a));
        }
        uv_idle_init(loop_, &dialer_);
        dialer_.data = this;
    }

    // Queues every agent for its first dial; the window lets them out.
    void start() {
        started_ = clock_.now();
        for (auto& a : agents_) enqueue(*a);
    }

    bool all_settled() const {
        return counters_.registered + counters_.auth_failed == agents_.size();
    }
    const Counters& counters() const { return counters_; }
    Time started() const { return started_; }
    Time last_registration() const { return last_registration_; }
    Time now() const { return clock_.now(); }

    // Stops everything; callbacks after this are ignored. Handles close through the loop.
    void close_all() {
        stopping_ = true;
        uv_close(reinterpret_cast<uv_handle_t*>(&dialer_), nullptr);
        for (auto& a : agents_) {
            a->timer->close();
            if (a->udp) a->udp->close();
            if (a->tls) a->tls->close();
            a->udp.reset();
            a->tls.reset();
        }
    }

  private:
    void enqueue(BenchAgent& a) {
        if (a.queued || a.failed) return;
        a.queued = true;
        queue_.push_back(&a);
        schedule_dials();
    }

    // Dials run from an idle handle, never from inside an agent's own callbacks, so a client is
    // never re-entered; the idle handle also keeps the loop from blocking while dials are due.
    void schedule_dials() {
        if (stopping_ || queue_.empty() || in_flight_ >= window_) return;
        uv_idle_start(&dialer_,
                      [](uv_idle_t* h) { static_cast<SignalBench*>(h->data)->dial_some(); });
    }

    void dial_some() {
        while (!stopping_ && !queue_.empty() && in_flight_ < window_) {
            BenchAgent* a = queue_.front();
            queue_.pop_front();
            a->queued = false;
            dial(*a);
        }
        uv_idle_stop(&dialer_);
    }

    void dial(BenchAgent& a) {
        const Time now = clock_.now();
        if (!a.client->want_connect(now)) return;
        a.in_flight = true;
        ++in_flight_;
        a.client->on_dial_started(now);
        a.udp_settled = false;
        if (!a.udp) open_udp(a);
        a.tls = TlsConnection::connect(loop_, servers_[a.index % servers_.size()], tls_);
        TlsConnection* conn = a.tls.get();
        BenchAgent* agent = &a;
        TlsCallbacks cb;
        cb.on_connected = [this, agent, conn] {
            if (stopping_ || agent->tls.get() != conn) return;
            agent->client->on_connected(clock_.now());
            pump(*agent);
        };
        cb.on_data = [this, agent, conn](ByteView data) {
            if (stopping_ || agent->tls.get() != conn) return;
            agent->client->on_control_bytes(data, clock_.now());
            pump(*agent);
        };
        cb.on_closed = [this, agent, conn](const std::string& reason) {
            if (stopping_ || agent->tls.get() != conn) return;
            agent->tls.reset();
            agent->client->on_disconnected(reason, clock_.now());
            pump(*agent);
        };
        a.tls->start(std::move(cb));
        pump(a);
    }

    void open_udp(BenchAgent& a) {
        const uint32_t ip = kAgentUdpBase + static_cast<uint32_t>(a.index);
        const SocketAddress local = SocketAddress::ipv4(
            {static_cast<uint8_t>(ip >> 24), static_cast<uint8_t>(ip >> 16),
             static_cast<uint8_t>(ip >> 8), static_cast<uint8_t>(ip)},
            0);
        BenchAgent* agent = &a;
        UdpHandlers handlers{
            .datagram =
                [this, agent](const SocketAddress& from, ByteView d, Time now) {
                    if (stopping_) return;
                    const AgentClient& c = *agent->client;
                    if (from.port == c.server_udp_port(UdpPort::kMain)) {
                        agent->client->on_udp(UdpPort::kMain, d, now);
                    } else if (from.port == c.server_udp_port(UdpPort::kSecondary)) {
                        agent->client->on_udp(UdpPort::kSecondary, d, now);
                    } else {
                        return;
                    }
                    pump(*agent);
                },
            .batch_end = {},
        };
        auto bound = UdpSocket::bind(loop_, clock_, local, std::move(handlers));
        if (auto* s = std::get_if<std::shared_ptr<UdpSocket>>(&bound)) {
            a.udp = std::move(*s);
        } else {
            if (counters_.udp_bind_failures++ == 0) {
                std::fprintf(stderr, "burrow-bench signal: UDP socket for a%zu: %s\n", a.index,
                             std::get<OsError>(bound).message.c_str());
            }
        }
    }

    void send_udp(BenchAgent& a, const ServerDatagram& d) {
        const std::optional<uint16_t> port = a.client->server_udp_port(d.to);
        if (!a.udp || !port || !a.udp->send(SocketAddress::ipv4({127, 0, 0, 1}, *port), d.bytes)) {
            counters_.udp_dropped++;
        }
    }

    void on_timer(BenchAgent& a, Time now) {
        if (stopping_) return;
        a.client->on_timer(now);
        drain(a);
        if (a.client->want_connect(now)) enqueue(a);
    }

    // After every input: control bytes to TLS, UDP out and the timer re-armed, then events.
    void pump(BenchAgent& a) {
        drain(a);
        a.timer->kick();
    }

    void drain(BenchAgent& a) {
        while (auto bytes = a.client->poll_control()) {
            if (a.tls && !a.tls->write(*bytes)) counters_.write_refused++;
        }
        while (auto event = a.client->poll_event()) handle(a, *event);
    }

    void handle(BenchAgent& a, const AgentEvent& event) {
        if (std::holds_alternative<Registered>(event)) {
            if (!a.registered) {
                a.registered = true;
                counters_.registered++;
                last_registration_ = clock_.now();
            }
            leave_window(a);
            release_udp(a);
        } else if (std::holds_alternative<UdpBound>(event)) {
            a.udp_settled = true;
            release_udp(a);
        } else if (std::holds_alternative<UdpBlocked>(event)) {
            // Once its socket is closed an agent's 25 s Bind refresh goes unanswered by design;
            // only a round the server left unanswered while the socket was open counts.
            if (a.udp) counters_.udp_blocked++;
            a.udp_settled = true;
            release_udp(a);
        } else if (std::holds_alternative<Disconnected>(event)) {
            if (counters_.disconnects++ == 0) {
                std::fprintf(stderr, "burrow-bench signal: a%zu (first disconnect): %s\n",
                             a.index, std::get<Disconnected>(event).reason.c_str());
            }
            lose(a);
        } else if (std::holds_alternative<AuthFailed>(event)) {
            if (counters_.auth_failed++ == 0) {
                std::fprintf(stderr, "burrow-bench signal: a%zu: %s\n", a.index,
                             std::get<AuthFailed>(event).reason.c_str());
            }
            a.failed = true;
            lose(a);
        }
    }

    // The connection ended (the client wrote its last words already, in drain()).
    void lose(BenchAgent& a) {
        if (a.tls) a.tls->close();
        a.tls.reset();
        if (a.registered) {
            a.registered = false;
            counters_.registered--;
        }
        leave_window(a);
    }

    void leave_window(BenchAgent& a) {
        if (!a.in_flight) return;
        a.in_flight = false;
        --in_flight_;
        schedule_dials();
    }

    // The socket has done its work once the agent is registered and the Bind round is over.
    void release_udp(BenchAgent& a) {
        if (!a.udp || !a.client->registered() || !a.udp_settled) return;
        a.udp->close();
        a.udp.reset();
    }

    uv_loop_t* loop_;
    LoopClock clock_;
    SystemRng rng_;
    std::shared_ptr<TlsContext> tls_;
    std::vector<SocketAddress> servers_;  // agent i registers with servers_[i % size]
    size_t window_;
    std::vector<std::unique_ptr<BenchAgent>> agents_;
    std::deque<BenchAgent*> queue_;
    size_t in_flight_ = 0;
    uv_idle_t dialer_;
    bool stopping_ = false;
    Counters counters_;
    Time started_{};
    Time last_registration_{};
};

// Runs the loop until done() or stop() says why not; wakes every kTickMs to ask.
class LoopRunner {
  public:
    explicit LoopRunner(uv_loop_t* loop) : loop_(loop) {
        uv_timer_init(loop_, &tick_);
        uv_timer_start(&tick_, [](uv_timer_t*) {}, kTickMs, kTickMs);
    }
    LoopRunner(const LoopRunner&) = delete;
    LoopRunner& operator=(const LoopRunner&) = delete;
    // Before the loop runs to completion: a ticking timer would keep it alive for ever.
    void close() { uv_close(reinterpret_cast<uv_handle_t*>(&tick_), nullptr); }
    template <class Done, class Stop>
    std::optional<std::string> run(Done done, Stop stop) {
        while (!done()) {
            if (auto why = stop()) return why;
            uv_run(loop_, UV_RUN_ONCE);
        }
        return std::nullopt;
    }

  private:
    uv_loop_t* loop_;
    uv_timer_t tick_;
};

// Raises the soft descriptor limit to the hard one; says so when even that is too low.
void raise_fd_limit(size_t agents, size_t window) {
    rlimit lim{};
    if (::getrlimit(RLIMIT_NOFILE, &lim) != 0) return;
    lim.rlim_cur = lim.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &lim);
    const rlim_t needed = static_cast<rlim_t>(agents + window) + kSpareFds;
    if (lim.rlim_max != RLIM_INFINITY && lim.rlim_max < needed) {
        std::fprintf(stderr,
                     "burrow-bench signal: RLIMIT_NOFILE hard limit %ju is below the ~%ju "
                     "descriptors %zu agents need; expect failed dials (raise it: ulimit -Hn)\n",
                     static_cast<uintmax_t>(lim.rlim_max), static_cast<uintmax_t>(needed), agents);
    }
}

double seconds_between(Time a, Time b) {
    return static_cast<double>(to_us(b - a)) / 1e6;
}

struct TempDir {
    std::filesystem::path path;
    bool keep = false;
    TempDir() {
        std::string tmpl =
            (std::filesystem::temp_directory_path() / "burrow-bench-XXXXXX").string();
        if (::mkdtemp(tmpl.data())) path = tmpl;
    }
    ~TempDir() {
        std::error_code ec;
        if (!path.empty() && !keep) std::filesystem::remove_all(path, ec);
    }
};

// The servers' summed VmRSS, CPU seconds, or the first that ended.
struct Servers {
    std::vector<std::unique_ptr<ServerChild>> list;
    std::optional<uint64_t> rss_bytes() const {
        uint64_t sum = 0;
        for (const auto& s : list) {
            auto r = s->rss_bytes();
            if (!r) return std::nullopt;
            sum += *r;
        }
        return sum;
    }
    std::optional<double> cpu_seconds() const {
        double sum = 0;
        for (const auto& s : list) {
            auto c = s->cpu_seconds();
            if (!c) return std::nullopt;
            sum += *c;
        }
        return sum;
    }
    std::optional<std::string> ended() {
        for (auto& s : list) {
            if (auto e = s->ended()) return e;
        }
        return std::nullopt;
    }
    void stop() {
        for (auto& s : list) s->stop();
    }
};

int run_signal(size_t n, size_t window, size_t server_count) {
    // TlsConnection logs every failed client handshake; with N agents that is N lines when the
    // server goes away. The counters and the first reason of each kind (above) say enough.
    spdlog::set_level(spdlog::level::off);
    raise_fd_limit(n, window);
    TempDir dir;
    if (dir.path.empty()) {
        std::fprintf(stderr, "burrow-bench signal: cannot create a temporary directory\n");
        return 1;
    }

    SystemRng rng;
    std::vector<PrivateKey> keys;
    ServerChildConfig config;
    config.burrow = executable_dir() / "burrow";
    config.dir = dir.path;
    config.max_agents = static_cast<uint32_t>(n);
    for (size_t i = 0; i < n; ++i) {
        keys.push_back(PrivateKey::generate(rng));
        config.agents.push_back({"a" + std::to_string(i), public_key(keys.back())});
    }
    std::unique_ptr<RedisChild> redis;
    if (server_count > 1) {
        auto r = RedisChild::start(dir.path);
        if (auto* err = std::get_if<std::string>(&r)) {
            std::fprintf(stderr, "burrow-bench signal: %s\n", err->c_str());
            return 1;
        }
        redis = std::move(std::get<0>(r));
        config.redis_port = redis->port();
    }
    auto servers_owner = std::make_unique<Servers>();
    Servers* server = servers_owner.get();
    std::vector<SocketAddress> addresses;
    for (size_t i = 0; i < server_count; ++i) {
        if (server_count > 1) config.cluster_name = "s" + std::to_string(i + 1);
        auto started = ServerChild::start(config);
        if (auto* err = std::get_if<std::string>(&started)) {
            std::fprintf(stderr, "burrow-bench signal: %s\n", err->c_str());
            return 1;
        }
        server->list.push_back(std::move(std::get<0>(started)));
        addresses.push_back(server->list.back()->listen_address());
    }
    const std::optional<uint64_t> rss_before = server->rss_bytes();

    TlsClientConfig tls_config;
    tls_config.pinned_fingerprint = server->list.front()->fingerprint();
    auto context = TlsContext::client(tls_config);
    if (auto* err = std::get_if<OsError>(&context)) {
        std::fprintf(stderr, "burrow-bench signal: %s\n", err->message.c_str());
        return 1;
    }

    uv_loop_t loop;
    uv_loop_init(&loop);
    std::optional<std::string> failure;
    std::optional<uint64_t> rss_idle, client_rss;
    Counters counters;
    double wall = 0;
    // CPU spent registering, per side: the rate depends on how busy the machine is, this less.
    double server_cpu = 0, bench_cpu = 0;
    double server_idle_cpu = 0;  // share of one core while the agents sit idle
    // Explains unanswered Binds and STUN retries: a receive buffer overflowed while registering.
    uint64_t kernel_udp_drops = 0;
    size_t registered_at_end = 0;
    {
        SignalBench bench(&loop, std::get<std::shared_ptr<TlsContext>>(context), addresses,
                          keys, window);
        LoopRunner runner(&loop);
        auto server_gone = [&]() -> std::optional<std::string> {
            if (auto ended = server->ended()) return "the server " + *ended;
            return std::nullopt;
        };
        const std::optional<double> server_cpu_before = server->cpu_seconds();
        const std::optional<double> bench_cpu_before = cpu_seconds("self");
        const std::optional<uint64_t> udp_drops_before = udp_receive_buffer_errors();
        bench.start();
        Time last_progress = bench.now();
        size_t last_count = 0;
        failure = runner.run([&] { return bench.all_settled(); },
                             [&]() -> std::optional<std::string> {
                                 if (auto gone = server_gone()) return gone;
                                 const Time now = bench.now();
                                 if (bench.counters().registered != last_count) {
                                     last_count = bench.counters().registered;
                                     last_progress = now;
                                 }
                                 if (now - last_progress >= kStallTimeout) {
                                     return "no registration for " +
                                            std::to_string(kStallTimeout.count()) + " s";
                                 }
                                 return std::nullopt;
                             });
        wall = seconds_between(bench.started(), bench.last_registration());
        registered_at_end = bench.counters().registered;
        if (auto after = server->cpu_seconds(); after && server_cpu_before) {
            server_cpu = *after - *server_cpu_before;
        }
        if (auto after = cpu_seconds("self"); after && bench_cpu_before) {
            bench_cpu = *after - *bench_cpu_before;
        }
        if (auto after = udp_receive_buffer_errors(); after && udp_drops_before) {
            kernel_udp_drops = *after - *udp_drops_before;
        }
        if (!failure) {
            const Time idle_from = bench.now();
            const Time idle_until = idle_from + kIdleTime;
            const std::optional<double> cpu_before_idle = server->cpu_seconds();
            failure = runner.run([&] { return bench.now() >= idle_until; }, server_gone);
            if (auto after = server->cpu_seconds(); after && cpu_before_idle) {
                server_idle_cpu =
                    (*after - *cpu_before_idle) / seconds_between(idle_from, bench.now());
            }
            rss_idle = server->rss_bytes();
            client_rss = vm_rss_bytes("self");
        }
        counters = bench.counters();
        server->stop();
        bench.close_all();
        runner.close();
        uv_run(&loop, UV_RUN_DEFAULT);
    }
    uv_loop_close(&loop);

    const bool complete = !failure && counters.registered == n && counters.auth_failed == 0;
    const double rate = wall > 0 ? static_cast<double>(registered_at_end) / wall : 0;
    const double per_agent =
        (rss_before && rss_idle && n > 0)
            ? (static_cast<double>(*rss_idle) - static_cast<double>(*rss_before)) / n
            : 0;

    std::printf("signal: %zu agents over TLS on loopback to %zu server(s)%s, at most %zu between "
                "dial and Registered\n",
                n, server_count, server_count > 1 ? " of one cluster with Redis" : "", window);
    std::printf("  registered     %zu of %zu in %.3f s: %.0f registrations/s\n", registered_at_end,
                n, wall, rate);
    if (registered_at_end > 0) {
        std::printf("  CPU            %.2f ms server, %.2f ms bench per registration\n",
                    server_cpu * kMsPerSecond / registered_at_end,
                    bench_cpu * kMsPerSecond / registered_at_end);
    }
    std::printf("  failures       %zu auth failed, %zu disconnects, %zu UDP bind failures, "
                "%zu UDP blocked\n",
                counters.auth_failed, counters.disconnects, counters.udp_bind_failures,
                counters.udp_blocked);
    std::printf("  kernel drops   %" PRIu64
                " UDP datagrams for full receive buffers while registering (whole network "
                "namespace)\n",
                kernel_udp_drops);
    if (rss_before && rss_idle) {
        std::printf(
            "  server RSS     %.1f MiB before, %.1f MiB with %zu idle agents (after %lld s)\n",
            *rss_before / kBytesPerMiB, *rss_idle / kBytesPerMiB, counters.registered,
            static_cast<long long>(kIdleTime.count()));
        std::printf("  per idle agent %.0f B = %.1f KiB (issue 4 target: at most %.0f KiB)\n",
                    per_agent, per_agent / kBytesPerKiB, kIssueTargetKiB);
        std::printf("  server CPU     %.1f%% of a core while idle\n",
                    server_idle_cpu * kPercent);
    }
    std::optional<uint64_t> redis_rss;
    if (redis) {
        redis_rss = vm_rss_bytes(std::to_string(redis->pid()));
        if (redis_rss) std::printf("  redis RSS      %.1f MiB\n", *redis_rss / kBytesPerMiB);
    }
    if (client_rss) {
        std::printf("  bench RSS      %.1f MiB (the %zu clients, for context)\n",
                    *client_rss / kBytesPerMiB, n);
    }
    if (failure) std::printf("  FAILED         %s\n", failure->c_str());

    nlohmann::ordered_json j = {{"bench", "signal"},
                        {"agents", n},
                        {"servers", server_count},
                        {"window", window},
                        {"registered", registered_at_end},
                        {"seconds", wall},
                        {"registrations_per_sec", rate},
                        {"server_cpu_seconds", server_cpu},
                        {"bench_cpu_seconds", bench_cpu},
                        {"server_rss_before_bytes", rss_before.value_or(0)},
                        {"server_rss_idle_bytes", rss_idle.value_or(0)},
                        {"server_rss_per_idle_agent_bytes", per_agent},
                        {"server_idle_cpu_fraction", server_idle_cpu},
                        {"client_rss_bytes", client_rss.value_or(0)},
                        {"redis_rss_bytes", redis_rss.value_or(0)},
                        {"auth_failed", counters.auth_failed},
                        {"disconnects", counters.disconnects},
                        {"udp_bind_failures", counters.udp_bind_failures},
                        {"udp_blocked", counters.udp_blocked},
                        {"kernel_udp_rcvbuf_drops", kernel_udp_drops},
                        {"ok", complete}};
    if (failure) j["error"] = *failure;
    std::printf("%s\n", j.dump().c_str());

    if (!complete) {
        dir.keep = true;
        std::fprintf(stderr, "burrow-bench signal: server log kept in %s\n",
                     server->list.front()->log_path().c_str());
    }
    return complete ? 0 : 1;
}

const BenchRegistration kSignal{
    "signal",
    "N agents register with a real burrow server over TLS on loopback: registrations/s and "
    "server RSS per idle agent",
    [](CLI::App& cmd) {
        auto agents = std::make_shared<size_t>(kDefaultAgents);
        auto window = std::make_shared<size_t>(kDefaultWindow);
        auto quick = std::make_shared<bool>(false);
        auto servers = std::make_shared<size_t>(1);
        cmd.add_option("--agents", *agents, "simulated agents (default 1000)")
            ->check(CLI::Range(size_t{1}, kMaxAgents));
        cmd.add_option("--window", *window, "agents between dial and Registered at once (200)")
            ->check(CLI::Range(size_t{1}, kMaxWindow));
        cmd.add_flag("--quick", *quick, "200 agents");
        cmd.add_option("--servers", *servers,
                       "servers (default 1); 2: one cluster sharing a redis-server (issue 21)")
            ->check(CLI::Range(size_t{1}, size_t{2}));
        return std::function<int()>([=] {
            return run_signal(*quick ? kQuickAgents : *agents, *window, *servers);
        });
    }};

}  // namespace
}  // namespace burrow::bench
