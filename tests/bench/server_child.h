// The real `burrow server` as a child process of a benchmark, on loopback ports of its own.
//
//   ServerChild::start(config)   writes <dir>/server.toml listing the agents, runs
//                                `burrow server -c server.toml --print-fingerprint` (which also
//                                creates the certificate), then starts the server with its log in
//                                <dir>/server.log and waits for its "listening on" line
//   rss_bytes()                  the child's VmRSS, from /proc/<pid>/status
//   stop()                       SIGTERM, then SIGKILL if it lingers; the destructor does the same,
//                                so an early return or a failed run never leaves a server behind
//
// The child also gets PR_SET_PDEATHSIG: if the benchmark itself is killed, so is the server.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "tunnel/socket_address.h"
#include "tunnel/noise.h"

namespace burrow::bench {

struct ServerChildConfig {
    std::filesystem::path burrow;  // the binary
    std::filesystem::path dir;     // an empty directory the server may write to
    struct Agent {
        std::string name;
        PublicKey key{};
    };
    std::vector<Agent> agents;
    uint32_t max_agents = 0;
    // [cluster] (issue 21): this server's name, and Redis on 127.0.0.1:redis_port. Empty: no
    // [cluster]. Servers of one cluster share `dir` (one certificate and identity key); each
    // writes <name>.toml and <name>.log there.
    std::string cluster_name;
    uint16_t redis_port = 0;
};

// redis-server on a free 127.0.0.1 port, no persistence, its log in <dir>/redis.log; SIGKILLed
// by the destructor (and with us, PDEATHSIG).
class RedisChild {
  public:
    static std::variant<std::unique_ptr<RedisChild>, std::string> start(
        const std::filesystem::path& dir);
    ~RedisChild();
    RedisChild(const RedisChild&) = delete;
    RedisChild& operator=(const RedisChild&) = delete;
    uint16_t port() const { return port_; }
    pid_t pid() const { return pid_; }

  private:
    RedisChild() = default;
    pid_t pid_ = -1;
    uint16_t port_ = 0;
};

class ServerChild {
  public:
    // The running server, or one line saying what went wrong (with the log's last lines).
    static std::variant<std::unique_ptr<ServerChild>, std::string> start(
        const ServerChildConfig& config);
    ~ServerChild();
    ServerChild(const ServerChild&) = delete;
    ServerChild& operator=(const ServerChild&) = delete;

    pid_t pid() const { return pid_; }
    const SocketAddress& listen_address() const { return listen_; }
    const std::string& fingerprint() const { return fingerprint_; }
    const std::filesystem::path& log_path() const { return log_; }

    // nullopt while it runs; "exited with status 1" or "was killed by signal 9" once it ended.
    std::optional<std::string> ended();
    std::optional<uint64_t> rss_bytes() const;
    std::optional<double> cpu_seconds() const;
    // Ends the server (SIGTERM, SIGKILL after a grace period); true if it exited with status 0.
    bool stop();

  private:
    ServerChild() = default;
    pid_t pid_ = -1;
    std::optional<int> wait_status_;
    SocketAddress listen_;
    std::string fingerprint_;
    std::filesystem::path log_;
};

// VmRSS of a process ("self" for this one), in bytes.
std::optional<uint64_t> vm_rss_bytes(const std::string& pid);
// User plus system CPU time a process has used so far ("self" for this one), in seconds.
std::optional<double> cpu_seconds(const std::string& pid);
// Udp RcvbufErrors from /proc/net/snmp: datagrams the kernel dropped because a socket's receive
// buffer was full, summed over the network namespace (other processes' sockets included).
std::optional<uint64_t> udp_receive_buffer_errors();
// The directory this executable lives in (/proc/self/exe).
std::filesystem::path executable_dir();
// The last `lines` lines of a text file, for an error message.
std::string file_tail(const std::filesystem::path& path, size_t lines);

}  // namespace burrow::bench
