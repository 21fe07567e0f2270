#include "tests/bench/server_child.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cctype>
#include <cstdio>
#include <cstring>
#include <deque>
#include <fstream>
#include <sstream>
#include <thread>

#include "src/key_file.h"

namespace burrow::bench {
namespace {

using namespace std::chrono_literals;

// The server opens its sockets and logs "listening on" well within this, even with 100k agents
// in its configuration; longer means it is stuck.
constexpr auto kStartTimeout = 20s;
// --print-fingerprint only loads or creates a certificate.
constexpr auto kFingerprintTimeout = 10s;
// How often a waiting parent looks at the child again.
constexpr auto kPollInterval = 20ms;
// SIGTERM makes the server close every connection and exit; with 10k connections that takes
// well under a second, so this is a server that does not stop.
constexpr auto kStopGrace = 10s;
constexpr size_t kLogTailLines = 5;
constexpr size_t kBytesPerKiB = 1024;
constexpr uint8_t kLoopback[4] = {127, 0, 0, 1};

// A port that is free on 127.0.0.1 now (the kernel picks it; the socket is closed again, so
// another process could take it before the server does, as in tests/e2e).
std::optional<uint16_t> free_port(int type) {
    const int fd = ::socket(AF_INET, type, 0);
    if (fd < 0) return std::nullopt;
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    std::memcpy(&sa.sin_addr, kLoopback, sizeof kLoopback);
    socklen_t len = sizeof sa;
    std::optional<uint16_t> port;
    if (::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0 &&
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len) == 0) {
        port = ntohs(sa.sin_port);
    }
    ::close(fd);
    return port;
}

std::string describe_status(int status) {
    if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
    if (WIFSIGNALED(status)) return "was killed by signal " + std::to_string(WTERMSIG(status));
    return "ended with wait status " + std::to_string(status);
}

// fork + exec with stdout and stderr going to out_fd. The child dies with us (PDEATHSIG).
pid_t spawn(const std::vector<std::string>& argv, int out_fd) {
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    const pid_t parent = ::getpid();
    const pid_t pid = ::fork();
    if (pid != 0) return pid;
    // Child: only async-signal-safe calls from here to exec.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);  // the parent died before prctl took effect
    ::dup2(out_fd, STDOUT_FILENO);
    ::dup2(out_fd, STDERR_FILENO);
    ::execv(args[0], args.data());
    ::_exit(127);
}

// Waits for pid with a deadline; nullopt if it is still running then.
std::optional<int> wait_until(pid_t pid, std::chrono::steady_clock::duration limit) {
    const auto end = std::chrono::steady_clock::now() + limit;
    for (;;) {
        int status = 0;
        const pid_t r = ::waitpid(pid, &status, WNOHANG);
        if (r == pid) return status;
        if (r < 0) return -1;
        if (std::chrono::steady_clock::now() >= end) return std::nullopt;
        std::this_thread::sleep_for(kPollInterval);
    }
}

std::string read_file(const std::filesystem::path& path) {
    std::ifstream in(path);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

std::string file_stem(const ServerChildConfig& config) {
    return config.cluster_name.empty() ? "server" : config.cluster_name;
}

std::string write_config(const ServerChildConfig& config, uint16_t tcp, uint16_t stun_a,
                         uint16_t stun_b) {
    std::ostringstream toml;
    toml << "# written by burrow-bench signal\n"
         << "[server]\n"
         << "listen = \"127.0.0.1:" << tcp << "\"\n"
         << "stun = [\"127.0.0.1:" << stun_a << "\", \"127.0.0.1:" << stun_b << "\"]\n"
         << "cert_file = \"server.crt\"\n"
         << "key_file = \"server.key\"\n"
         << "identity_key = \"server-identity.key\"\n"
         << "max_agents = " << config.max_agents << "\n";
    if (!config.cluster_name.empty()) {
        toml << "\n[cluster]\nredis = \"redis://127.0.0.1:" << config.redis_port << "\"\n"
             << "name = \"" << config.cluster_name << "\"\n";
    }
    for (const auto& a : config.agents) {
        toml << "\n[[agents]]\nname = \"" << a.name << "\"\npublic_key = \""
             << key_to_base64(a.key) << "\"\n";
    }
    const std::filesystem::path path = config.dir / (file_stem(config) + ".toml");
    std::ofstream out(path);
    out << toml.str();
    out.close();
    return out ? path.string() : std::string();
}

}  // namespace

std::variant<std::unique_ptr<ServerChild>, std::string> ServerChild::start(
    const ServerChildConfig& config) {
    if (::access(config.burrow.c_str(), X_OK) != 0) {
        return "no burrow binary at " + config.burrow.string() + ": build it (ninja -C build)";
    }
    const auto tcp = free_port(SOCK_STREAM);
    const auto stun_a = free_port(SOCK_DGRAM);
    const auto stun_b = free_port(SOCK_DGRAM);
    if (!tcp || !stun_a || !stun_b) return std::string("no free port on 127.0.0.1");
    const std::string config_path = write_config(config, *tcp, *stun_a, *stun_b);
    if (config_path.empty()) return "cannot write a config in " + config.dir.string();

    // The fingerprint first: it also creates the certificate, which the server then loads.
    const std::filesystem::path fp_path = config.dir / (file_stem(config) + ".fingerprint");
    const int fp_fd = ::open(fp_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fp_fd < 0) return "cannot create " + fp_path.string() + ": " + std::strerror(errno);
    const pid_t fp_pid = spawn(
        {config.burrow.string(), "server", "-c", config_path, "--print-fingerprint"}, fp_fd);
    ::close(fp_fd);
    if (fp_pid < 0) return std::string("fork failed: ") + std::strerror(errno);
    const std::optional<int> fp_status = wait_until(fp_pid, kFingerprintTimeout);
    if (!fp_status) {
        ::kill(fp_pid, SIGKILL);
        ::waitpid(fp_pid, nullptr, 0);
        return std::string("burrow server --print-fingerprint did not finish");
    }
    std::string fingerprint = read_file(fp_path);
    while (!fingerprint.empty() && std::isspace(static_cast<unsigned char>(fingerprint.back()))) {
        fingerprint.pop_back();
    }
    if (*fp_status != 0 || fingerprint.rfind("sha256:", 0) != 0) {
        return "burrow server --print-fingerprint " + describe_status(*fp_status) + ": " +
               fingerprint;
    }

    std::unique_ptr<ServerChild> child(new ServerChild());
    child->fingerprint_ = fingerprint;
    child->listen_ = SocketAddress::ipv4({127, 0, 0, 1}, *tcp);
    child->log_ = config.dir / (file_stem(config) + ".log");
    const int log_fd = ::open(child->log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (log_fd < 0) return "cannot create " + child->log_.string() + ": " + std::strerror(errno);
    child->pid_ = spawn({config.burrow.string(), "server", "-c", config_path}, log_fd);
    ::close(log_fd);
    if (child->pid_ < 0) return std::string("fork failed: ") + std::strerror(errno);

    const auto end = std::chrono::steady_clock::now() + kStartTimeout;
    while (read_file(child->log_).find("listening on") == std::string::npos) {
        if (auto ended = child->ended()) {
            return "burrow server " + *ended + "; its log ends: " +
                   file_tail(child->log_, kLogTailLines);
        }
        if (std::chrono::steady_clock::now() >= end) {
            return "burrow server did not start listening within " +
                   std::to_string(kStartTimeout.count()) + " s; its log ends: " +
                   file_tail(child->log_, kLogTailLines);
        }
        std::this_thread::sleep_for(kPollInterval);
    }
    return child;
}

std::variant<std::unique_ptr<RedisChild>, std::string> RedisChild::start(
    const std::filesystem::path& dir) {
    const char* const kRedis = "/usr/bin/redis-server";
    if (::access(kRedis, X_OK) != 0) {
        return std::string("no redis-server: apt-get install redis-server (in run.sh PACKAGES)");
    }
    const auto port = free_port(SOCK_STREAM);
    if (!port) return std::string("no free port on 127.0.0.1");
    const std::filesystem::path log = dir / "redis.log";
    const int log_fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (log_fd < 0) return "cannot create " + log.string() + ": " + std::strerror(errno);
    std::unique_ptr<RedisChild> child(new RedisChild());
    child->port_ = *port;
    child->pid_ = spawn({kRedis, "--port", std::to_string(*port), "--bind", "127.0.0.1",
                         "--save", "", "--appendonly", "no", "--daemonize", "no"},
                        log_fd);
    ::close(log_fd);
    if (child->pid_ < 0) return std::string("fork failed: ") + std::strerror(errno);
    const auto end = std::chrono::steady_clock::now() + kStartTimeout;
    while (read_file(log).find("Ready to accept connections") == std::string::npos) {
        if (std::chrono::steady_clock::now() >= end) {
            return "redis-server did not start; its log ends: " + file_tail(log, kLogTailLines);
        }
        std::this_thread::sleep_for(kPollInterval);
    }
    return child;
}

RedisChild::~RedisChild() {
    if (pid_ > 0) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, nullptr, 0);
    }
}

ServerChild::~ServerChild() {
    stop();
}

std::optional<std::string> ServerChild::ended() {
    if (!wait_status_ && pid_ > 0) {
        int status = 0;
        if (::waitpid(pid_, &status, WNOHANG) == pid_) wait_status_ = status;
    }
    if (!wait_status_) return std::nullopt;
    return describe_status(*wait_status_);
}

std::optional<uint64_t> ServerChild::rss_bytes() const {
    return vm_rss_bytes(std::to_string(pid_));
}

std::optional<double> ServerChild::cpu_seconds() const {
    return bench::cpu_seconds(std::to_string(pid_));
}

bool ServerChild::stop() {
    if (pid_ <= 0) return false;
    if (!ended()) {
        ::kill(pid_, SIGTERM);
        wait_status_ = wait_until(pid_, kStopGrace);
        if (!wait_status_) {
            ::kill(pid_, SIGKILL);
            int status = 0;
            ::waitpid(pid_, &status, 0);
            wait_status_ = status;
        }
    }
    return WIFEXITED(*wait_status_) && WEXITSTATUS(*wait_status_) == 0;
}

std::optional<uint64_t> vm_rss_bytes(const std::string& pid) {
    std::ifstream in("/proc/" + pid + "/status");
    std::string line;
    while (std::getline(in, line)) {
        // "VmRSS:     12345 kB"
        if (line.rfind("VmRSS:", 0) == 0) {
            std::istringstream fields(line.substr(std::strlen("VmRSS:")));
            uint64_t kib = 0;
            if (fields >> kib) return kib * kBytesPerKiB;
        }
    }
    return std::nullopt;
}

std::optional<double> cpu_seconds(const std::string& pid) {
    std::ifstream in("/proc/" + pid + "/stat");
    std::string stat;
    std::getline(in, stat);
    // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so count fields from
    // the last ')'. utime and stime are fields 14 and 15 (proc(5)), in clock ticks.
    const size_t paren = stat.rfind(')');
    if (paren == std::string::npos) return std::nullopt;
    std::istringstream fields(stat.substr(paren + 1));
    constexpr int kFieldsBeforeUtime = 11;  // state (3) .. cmajflt (13)
    std::string skip;
    for (int i = 0; i < kFieldsBeforeUtime; ++i) fields >> skip;
    uint64_t utime = 0, stime = 0;
    if (!(fields >> utime >> stime)) return std::nullopt;
    return static_cast<double>(utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

std::optional<uint64_t> udp_receive_buffer_errors() {
    // Two "Udp:" lines: the field names, then the values in the same order.
    std::ifstream in("/proc/net/snmp");
    std::string line;
    std::vector<std::string> names;
    while (std::getline(in, line)) {
        if (line.rfind("Udp: ", 0) != 0) continue;
        std::istringstream fields(line.substr(std::strlen("Udp: ")));
        if (names.empty()) {
            for (std::string f; fields >> f;) names.push_back(f);
            continue;
        }
        uint64_t value = 0;
        for (const std::string& name : names) {
            if (!(fields >> value)) return std::nullopt;
            if (name == "RcvbufErrors") return value;
        }
        return std::nullopt;
    }
    return std::nullopt;
}

std::filesystem::path executable_dir() {
    std::error_code ec;
    return std::filesystem::read_symlink("/proc/self/exe", ec).parent_path();
}

std::string file_tail(const std::filesystem::path& path, size_t lines) {
    std::ifstream in(path);
    std::deque<std::string> tail;
    std::string line;
    while (std::getline(in, line)) {
        tail.push_back(line);
        if (tail.size() > lines) tail.pop_front();
    }
    std::string out;
    for (const std::string& l : tail) out += (out.empty() ? "" : " | ") + l;
    return out.empty() ? "(empty)" : out;
}

}  // namespace burrow::bench
