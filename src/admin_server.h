// The agent's local admin endpoint: HTTP/1.1 on a loopback address, read by `burrow status` and
// scraped by Prometheus; the server's metrics listener is the same small server.
//
//   GET /         ->  200, Content-Type: text/html, the agent's status page (src/status_page.html)
//   GET /status   ->  200, Content-Type: application/json, the handler's body
//   GET /metrics  ->  200, Content-Type: text/plain; version=0.0.4 (src/prometheus_text.h)
//   GET /doctor/PEER -> 200, application/json: `burrow doctor PEER` (answered asynchronously,
//                    once the signalling server has; see AsyncHandler)
//
// Deliberately small, because anything local can reach it:
//   - GET and HEAD only (405 otherwise); a path the handler does not know is 404;
//   - one request per connection: every response says Connection: close and the connection
//     closes after it, so no keep-alive state, no pipelining;
//   - the request line and headers fit in 8 KiB (431 otherwise), the request arrives within
//     5 s (closed otherwise), and at most 32 connections are open at once (more are closed as
//     soon as they are accepted); anything the parser rejects is 400.
// Requests are parsed by nodejs/http-parser (Debian's libhttp-parser), not by hand.
// Every rejection is counted in AdminStats.
#pragma once

#include <uv.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <variant>

#include "tunnel/socket_address.h"
#include "src/os_error.h"
#include "src/tcp.h"
#include "tunnel/time.h"

namespace burrow {

// Where `burrow agent` serves and `burrow status` asks when no config says otherwise:
// 127.0.0.1:7070 (the admin key of agent_config.h).
inline constexpr uint16_t kDefaultAdminPort = 7070;
SocketAddress default_admin_address();

struct AdminServerOptions {
    // A request must be complete this long after its connection was accepted: a client that
    // connects and sends nothing must not hold one of the few connection slots for ever.
    Duration request_timeout = std::chrono::seconds(5);
    // Far more than `burrow status` or a monitoring script needs at once; bounds the memory
    // and file descriptors a local process can make the agent spend.
    size_t max_connections = 32;
    // A status request is a request line and a handful of headers; 8 KiB is what nginx's
    // large_client_header_buffers and Apache's LimitRequestLine allow per line by default.
    size_t max_header_bytes = 8 * 1024;
    // After the response, how long the client has to read it and close before we do
    // (TcpConnection::finish: closing with unread bytes would send an RST, which can destroy
    // the response before the client has read it; RFC 9112 §9.6). A status response is a few
    // KiB on loopback, read in well under a millisecond.
    Duration linger = std::chrono::seconds(1);
};

// Each rejected request or connection, by reason.
struct AdminStats {
    uint64_t served = 0;              // 200 responses
    uint64_t not_found = 0;           // 404
    uint64_t method_not_allowed = 0;  // 405
    uint64_t bad_request = 0;         // 400: the parser refused the bytes
    uint64_t headers_too_large = 0;   // 431
    uint64_t timed_out = 0;           // closed without a response after request_timeout
    uint64_t over_capacity = 0;       // closed on accept: max_connections were open
};

// A 200 response: its body, Content-Type and any other headers ("Name: value\r\n" each).
struct AdminResponse {
    AdminResponse(std::string body_text, std::string type = "application/json",
                  std::string extra_headers = {})
        : body(std::move(body_text)), content_type(std::move(type)),
          headers(std::move(extra_headers)) {}
    std::string body;
    std::string content_type;
    std::string headers;
};

class AdminServer : public std::enable_shared_from_this<AdminServer> {
  public:
    // The response to a GET of path ("/status"), or nullopt for 404. Called on the loop.
    using Handler = std::function<std::optional<AdminResponse>(std::string_view path)>;
    // For a path the Handler does not serve: true takes the request, to be answered later by
    // calling reply once (a reply after the connection closed, or after request_timeout, is
    // dropped); false is 404.
    using AsyncReply = std::function<void(AdminResponse)>;
    using AsyncHandler = std::function<bool(std::string_view path, AsyncReply reply)>;
    void set_async_handler(AsyncHandler handler) { async_handler_ = std::move(handler); }

    // Listens on local (port 0 picks one). Errors read "listen 127.0.0.1:7070: address already
    // in use".
    static std::variant<std::shared_ptr<AdminServer>, OsError> listen(
        uv_loop_t* loop, const SocketAddress& local, Handler handler,
        AdminServerOptions options = {});

    ~AdminServer();
    AdminServer(const AdminServer&) = delete;
    AdminServer& operator=(const AdminServer&) = delete;

    // Stops listening and closes every open connection; in-flight responses are dropped.
    void close();

    const SocketAddress& local_address() const { return local_; }
    const AdminStats& stats() const { return stats_; }
    size_t open_connections() const { return exchanges_.size(); }

  private:
    struct Exchange;

    AdminServer(Handler handler, AdminServerOptions options);
    void on_accept(std::shared_ptr<TcpConnection> connection);
    void on_data(Exchange& exchange, ByteView data);
    // The parser has the request line and headers: answer, then close.
    void answer(Exchange& exchange);
    void respond(Exchange& exchange, int status, std::string_view reason, std::string_view body,
                 bool head_only, std::string_view extra_headers = {},
                 std::string_view content_type = "application/json");

    Handler handler_;
    AsyncHandler async_handler_;
    uint64_t next_serial_ = 1;  // names exchanges, so a late reply cannot reach a new one
    AdminServerOptions options_;
    AdminStats stats_;
    SocketAddress local_;
    std::shared_ptr<TcpListener> listener_;
    std::unordered_map<TcpConnection*, std::unique_ptr<Exchange>> exchanges_;
};

}  // namespace burrow
