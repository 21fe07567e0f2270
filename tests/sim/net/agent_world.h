// A whole deployment in virtual time: a ServerCore and two AgentCores (a NAS exposing services,
// a laptop forwarding to them), each agent behind its own simulated NAT (nat.h), joined by a
// lossy, reordering internet. The cores are the objects that ship; what this file plays is the
// operating system around them, as src/agent_runtime.cc and src/server_runtime.cc are on a
// real machine: it carries out their actions (sockets, TLS bytes, TCP connections), hands their
// datagrams to the network, and calls their timers. It decides nothing for them.
//
//          TLS (reliable, in order, server_one_way)            UDP (lossy, reordered)
//   nas  <==================================> server <==================================> laptop
//    |  \__ NAT (nas_nat) ____ internet ______________________________ NAT (laptop_nat) __/  |
//    |                                                                                       |
//   targets: "web" answers a request "N" with N pattern bytes; "echo" echoes     clients on the
//                                                                                 forwards
//
// Like Network (network.h), nothing sleeps: run_until() jumps to the next event, equal times
// run in the order they were scheduled, and a seed replays exactly.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "signal/agent_core.h"
#include "signal/server_core.h"
#include "tests/sim/net/nat.h"
#include "tunnel/rng.h"

namespace burrow::sim {

enum class WorldSide : uint8_t { kNas = 0, kLaptop = 1 };

struct WorldConfig {
    uint64_t seed = 1;
    NatKind nas_nat = NatKind::kPortRestricted;
    NatKind laptop_nat = NatKind::kPortRestricted;
    Duration server_one_way = std::chrono::milliseconds(15);  // either agent <-> the server
    Duration direct_one_way = std::chrono::milliseconds(8);   // agent <-> agent
    Duration jitter = std::chrono::milliseconds(0);           // uniform, added per datagram
    double loss = 0;                                          // per UDP datagram
    double reorder = 0;  // chance a datagram is held back reorder_delay
    Duration reorder_delay = std::chrono::milliseconds(5);
    // A bottleneck on the agents' direct datagrams, each direction its own (0: none): they
    // queue at this rate, and one that would wait longer than direct_queue is dropped (a
    // drop-tail router queue). Makes a bulk transfer last long enough to see its path change.
    double direct_rate_mbit = 0;
    Duration direct_queue = std::chrono::milliseconds(50);
    // Added to what the server writes to the NAS's control connection (TCP retransmissions): its
    // PeerInfo then comes after the laptop's streams.
    Duration nas_control_lag = std::chrono::milliseconds(0);
    // The NAS's [agent] max_streams: how many streams the laptop may have open on it at once.
    uint64_t nas_max_streams = ConnectionConfig{}.max_incoming_streams;
    bool trace = false;  // log every datagram and control message (log_tail shows them)
    // Both NATs forget a mapping unused this long (nullopt: the kind's default, 30 s).
    std::optional<Duration> nat_timeout;
    // Both NATs' step between sequential ports (kSeqSym; nullopt: the kind's default, 1).
    std::optional<uint16_t> sequential_delta;
    // Both agents' [agent] keepalive (nullopt: learned).
    std::optional<Duration> keepalive;
    // A standard STUN server on the internet (kSimStunServer, the agents' [agent] stun_servers
    // name it "stun.sim:3478", which the simulated resolver answers after server_one_way);
    // silent: it never answers.
    bool stun_server = false;
    bool stun_server_silent = false;
    // The burrow server's STUN ports drop every STUN request (Bind and relay still pass): the
    // agents' reflexive addresses can only come from the STUN server.
    bool block_server_stun = false;
    // Dual stack (issue 17): the side also has a public IPv6 address (no NAT, no firewall) and
    // a dual-stack main socket, and its control connection goes to the server's IPv6 address
    // (kSimServer6; Happy Eyeballs tries IPv6 first). Its IPv4 stays behind its NAT. A side
    // without it cannot send to or be reached at an IPv6 address.
    bool nas_ipv6 = false;
    bool laptop_ipv6 = false;
    // A UDP service "dns" on the NAS (target kDnsTarget) and a UDP forward to it on the laptop
    // (kDnsForward): datagrams sent to loopback addresses are kept in local_udp(), not routed.
    bool udp_service = false;
    // The NAS asks its gateway for a port mapping ([agent] port_mapping), which grants it (UPnP
    // IGD, the public port the socket's own, as miniupnpd does) this long after the request;
    // nullopt: the NAS does not ask. Its NAT then lets anyone in at that port (SimNat::map_port).
    std::optional<Duration> nas_port_mapping_delay;
    // Direct TCP paths (issue 15): both agents listen on kSimTcpPort, shared with their control
    // connection, which their NATs map to the same port of their public address (what the
    // server reports as tcp-srflx). A connect to the peer's address and port reaches it when
    // the peer has no NAT (its listener accepts), or when the peer's own connect to us left
    // before our SYN arrives (the SYNs cross: one connection, a simultaneous open); otherwise
    // the peer's NAT drops the SYN and the kernel sends it again after 1 s, 3 s, ... until the
    // connect's timeout. tcp_peer_blocked: the routers let TCP reach only the server.
    bool direct_tcp = false;
    bool tcp_peer_blocked = false;
    // The NAS's own connects to the laptop are refused at once (a firewall of its own): a
    // direct TCP path can then only come from the laptop's connect, which its listener accepts.
    bool nas_tcp_out_refused = false;
    // SYNs never cross: a side without NAT accepts each connect on its listener, so when both
    // sides have none, both connects succeed and the pair holds two connections (as with two
    // addresses each): the agents must keep one.
    bool tcp_no_crossing = false;
};

inline constexpr uint16_t kSimTcpPort = 45000;

inline const SocketAddress kDnsTarget = SocketAddress::ipv4({127, 0, 0, 1}, 5353);
inline const SocketAddress kDnsForward = SocketAddress::ipv4({127, 0, 0, 1}, 5300);

// A datagram an agent sent to a local address (a UDP service's target, a forward's client).
struct LocalDatagram {
    WorldSide side;
    SocketAddress to;
    Bytes data;
    Time at;
};

// The server's IPv6 address (its IPv4 one is 192.0.2.1): the server's name resolves to both.
inline const SocketAddress kSimServer6 =
    SocketAddress::ipv6({0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, 0);

// The simulated STUN server's address.
inline const SocketAddress kSimStunServer = SocketAddress::ipv4({192, 0, 2, 99}, 3478);

// One connection a test opened through the laptop's forward, as its client sees it.
struct WorldClient {
    std::string service;
    uint64_t expect = 0;  // bytes the answer must have
    uint64_t stream = 0;  // which pattern the answer follows (fill_content's stream)
    Bytes echo_of;        // "echo": the answer must be these bytes
    uint64_t received = 0;
    bool finished = false;  // the answer ended with a FIN
    bool failed = false;
    std::string failure;
    Time opened{};
    Time first_byte = kNever;
    Time done_at = kNever;
};

struct WorldStats {
    uint64_t events = 0;
    uint64_t udp_sent = 0;
    uint64_t udp_lost = 0;
    uint64_t udp_undeliverable = 0;  // no socket at that address, or a NAT dropped it
    uint64_t udp_queue_dropped = 0;  // the direct bottleneck's queue was full
    uint64_t livelock_steps = 0;
};

class AgentWorld {
  public:
    explicit AgentWorld(WorldConfig config);
    ~AgentWorld();
    AgentWorld(const AgentWorld&) = delete;
    AgentWorld& operator=(const AgentWorld&) = delete;

    // Runs events in time order until done() or the next event lies beyond limit.
    bool run_until(const std::function<bool()>& done, Time limit);
    Time now() const { return now_; }

    // Opens a connection to the laptop's forward for `service`: "web" asks for `bytes` pattern
    // bytes, "echo" sends `bytes` pattern bytes and expects them back. hold: the client does not
    // half-close after its bytes (an echo connection then stays open) until release().
    WorldClient& open(const std::string& service, uint64_t bytes, bool hold = false);
    void release(WorldClient& client);

    bool registered(WorldSide side) const;
    // run_until() both agents are registered with the server.
    bool run_until_registered(Time limit);
    AgentCore& core(WorldSide side);
    // The side's path to its peer as `burrow status` words it ("direct ADDR", "relay-udp", ...;
    // "none" before the session): for failure messages.
    std::string path_of(WorldSide side);
    const PeerLink* link(WorldSide side) const;
    // `burrow doctor PEER` on the side: AgentCore::doctor, its actions carried out at once.
    uint32_t doctor(WorldSide side, const std::string& peer);
    // The DoctorResults the side's core gave (AgentCore::doctor), in order.
    const std::vector<DoctorResult>& doctor_results(WorldSide side) const;
    ServerCore& server() { return *server_; }
    // The server process restarts: every control connection drops at once, and a new ServerCore
    // with the same identity key and ACL (and nothing else) answers from now + down on; until
    // then dials fail and datagrams to the server are lost.
    void restart_server(Duration down);
    const WorldStats& stats() const { return stats_; }
    // The last log lines of every core, for a failure message.
    std::string log_tail(size_t lines = 30) const;

    // A client at from sends data to the laptop's UDP forward at listen (WorldConfig::udp_service).
    void send_to_forward(const SocketAddress& listen, const SocketAddress& from, Bytes data);
    // Every direct TCP connection between the agents is reset at once (a router that lost its
    // state, a peer's kernel that dropped the connection): both sides see it close.
    void reset_peer_tcps();
    // Direct TCP connections (each counted once, by its two ends) connected now.
    size_t peer_tcp_connections() const;
    const std::vector<LocalDatagram>& local_udp() const { return local_udp_; }

  private:
    struct Host;
    struct Tcp;
    struct Event;

    void at(Time t, std::function<void()> fn);
    void drain(Host& h);
    void execute(Host& h, AgentAction& a);
    void execute_server(std::vector<ServerAction> actions);
    void send_udp(const SocketAddress& from, const SocketAddress& to, Bytes data, bool direct);
    void arrive_udp(const SocketAddress& from, const SocketAddress& to, const Bytes& data);
    void pump(Host& h, Tcp& t);
    void flush(Host& h, Tcp& t);
    void on_app_bytes(Host& h, Tcp& t);
    void close_tcp(Host& h, TcpId id);
    // Direct TCP paths between the agents (WorldConfig::direct_tcp).
    struct PeerTcpEnd {
        int side = 0;
        RouteId route = 0;
        SocketAddress to;
        Time started{};
        Time deadline{};
        std::optional<std::pair<int, RouteId>> other;  // the peer's end, once connected
        Time deliver_at{};                              // in order: no frame overtakes another
    };
    void connect_peer_tcp(Host& h, const ConnectPeerTcp& c);
    void syn_arrives(int side, RouteId route, Duration retry);
    void send_peer_tcp(Host& h, RouteId route, const Bytes& datagram);
    void close_peer_tcp(int side, RouteId route, const std::string& why);
    int side_of(const Host& h) const { return &h == hosts_[0].get() ? 0 : 1; }
    std::map<std::pair<int, RouteId>, PeerTcpEnd> peer_tcps_;
    Host* host_by_conn(ConnId conn);
    Time next_timer(std::string* who) const;
    void log(const std::string& who, const std::string& line);

    WorldConfig config_;
    SeededRng rng_;
    Time now_{};
    std::multimap<Time, std::function<void()>> events_;
    std::map<SocketAddress, Time> wire_free_at_;  // per destination ip: the bottleneck's queue
    std::unique_ptr<ServerCore> server_;
    ServerCoreConfig server_config_;
    AclConfig acl_config_;
    Time server_down_until_{};
    Time server_floor_{};
    std::unique_ptr<Host> hosts_[2];
    std::vector<std::unique_ptr<WorldClient>> clients_;
    std::vector<LocalDatagram> local_udp_;
    uint64_t next_conn_ = 1;
    uint64_t next_stream_ = 1;
    std::vector<std::string> log_;
    WorldStats stats_;
};

}  // namespace burrow::sim
