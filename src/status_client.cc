#include "src/status_client.h"

#include <fcntl.h>
#include <http_parser.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <optional>
#include <string_view>
#include <utility>

#include "src/os_error.h"
#include "src/sockaddr.h"

namespace burrow {

namespace {

using Clock = std::chrono::steady_clock;
using Result = std::variant<std::string, std::string>;

// Far above any real status (a few hundred bytes per peer), low enough that a wrong program
// listening on the admin port cannot make us buffer without bound.
constexpr size_t kMaxResponseBytes = 16 * 1024 * 1024;
constexpr size_t kReadChunk = 16 * 1024;
constexpr int kHttpOk = 200;

Result body(std::string b) {
    return Result(std::in_place_index<0>, std::move(b));
}
Result error(std::string line) {
    return Result(std::in_place_index<1>, std::move(line));
}

// libuv's words for errno values ("connection refused"), the ones the rest of burrow prints;
// on Unix a libuv status is the negated errno.
std::string errno_text(int err) {
    return uv_error_text(-err);
}

class Fd {
  public:
    explicit Fd(int fd) : fd_(fd) {}
    ~Fd() {
        if (fd_ >= 0) ::close(fd_);
    }
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;
    int get() const { return fd_; }

  private:
    int fd_;
};

// Waits for events on fd until deadline. 0 when ready, ETIMEDOUT, or an errno.
int wait_for(int fd, short events, Clock::time_point deadline) {
    for (;;) {
        const auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
        if (left.count() <= 0) return ETIMEDOUT;
        pollfd p{fd, events, 0};
        // Round up so we never wake a millisecond early and spin.
        const int n = ::poll(&p, 1, static_cast<int>(left.count()) + 1);
        if (n > 0) return 0;
        if (n == 0) continue;  // re-check the deadline
        if (errno != EINTR) return errno;
    }
}

struct ResponseState {
    std::string body;
    bool complete = false;
    bool too_large = false;
};

int on_body(http_parser* parser, const char* at, size_t length) {
    auto* state = static_cast<ResponseState*>(parser->data);
    if (state->body.size() + length > kMaxResponseBytes) {
        state->too_large = true;
        return 1;
    }
    state->body.append(at, length);
    return 0;
}

int on_message_complete(http_parser* parser) {
    static_cast<ResponseState*>(parser->data)->complete = true;
    // One response is all we asked for; ignore anything after it.
    http_parser_pause(parser, 1);
    return 0;
}

const http_parser_settings& response_settings() {
    static const http_parser_settings settings = [] {
        http_parser_settings s;
        http_parser_settings_init(&s);
        s.on_body = on_body;
        s.on_message_complete = on_message_complete;
        return s;
    }();
    return settings;
}

}  // namespace

Result fetch_status(const SocketAddress& admin, Duration timeout) {
    return fetch_admin(admin, kStatusPath, timeout);
}

Result fetch_admin(const SocketAddress& admin, std::string_view path, Duration timeout) {
    const std::string where = "the agent's admin endpoint " + to_string(admin);
    const auto timeout_ms = std::chrono::duration_cast<std::chrono::milliseconds>(timeout);
    const auto unreachable = [&](const std::string& why) {
        return error("cannot reach " + where + ": " + why + " (is `burrow agent` running?)");
    };
    const std::string within = "within " + std::to_string(timeout_ms.count()) + " ms";
    const Clock::time_point deadline = Clock::now() + timeout;

    Fd fd(::socket(admin.v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (fd.get() < 0) return error("socket: " + errno_text(errno));
    const sockaddr_storage sa = to_sockaddr(admin);
    const socklen_t sa_len = admin.v6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
    if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&sa), sa_len) != 0) {
        if (errno != EINPROGRESS) return unreachable(errno_text(errno));
        if (const int rc = wait_for(fd.get(), POLLOUT, deadline); rc != 0) {
            return unreachable(rc == ETIMEDOUT ? "no answer " + within : errno_text(rc));
        }
        int so_error = 0;
        socklen_t len = sizeof so_error;
        ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &so_error, &len);
        if (so_error != 0) return unreachable(errno_text(so_error));
    }

    const std::string request = "GET " + std::string(path) +
                                " HTTP/1.1\r\nHost: " + to_string(admin) +
                                "\r\nAccept: application/json\r\nConnection: close\r\n\r\n";
    std::string_view unsent = request;
    while (!unsent.empty()) {
        const ssize_t n = ::send(fd.get(), unsent.data(), unsent.size(), MSG_NOSIGNAL);
        if (n >= 0) {
            unsent.remove_prefix(static_cast<size_t>(n));
            continue;
        }
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            return error("sending to " + where + ": " + errno_text(errno));
        }
        if (const int rc = wait_for(fd.get(), POLLOUT, deadline); rc != 0) {
            return error(where + " took no request " + within);
        }
    }

    ResponseState state;
    http_parser parser;
    http_parser_init(&parser, HTTP_RESPONSE);
    parser.data = &state;
    char buffer[kReadChunk];
    while (!state.complete) {
        const ssize_t n = ::recv(fd.get(), buffer, sizeof buffer, 0);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                return error("reading from " + where + ": " + errno_text(errno));
            }
            if (const int rc = wait_for(fd.get(), POLLIN, deadline); rc != 0) {
                return error(where + " sent no complete answer " + within);
            }
            continue;
        }
        // n == 0 is the end of the stream, which the parser is told with an empty buffer: it
        // completes a response without Content-Length, and is an error anywhere else.
        http_parser_execute(&parser, &response_settings(), buffer, static_cast<size_t>(n));
        const auto err = static_cast<http_errno>(parser.http_errno);
        if (state.too_large) {
            return error(where + " sent more than " + std::to_string(kMaxResponseBytes) +
                         " bytes");
        }
        if (err != HPE_OK && err != HPE_PAUSED) {
            return error(where + " sent a malformed HTTP response (" +
                         http_errno_description(err) + ")");
        }
        if (n == 0 && !state.complete) return error(where + " closed before answering in full");
    }
    if (parser.status_code != kHttpOk) {
        return error(where + " answered " + std::to_string(parser.status_code) + " " +
                     http_status_str(static_cast<http_status>(parser.status_code)));
    }
    return body(std::move(state.body));
}

}  // namespace burrow
