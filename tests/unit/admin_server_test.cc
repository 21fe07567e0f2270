#include <catch2/catch.hpp>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "src/admin_server.h"
#include "src/status_client.h"
#include "src/tcp.h"
#include "tests/unit/uv_test_loop.h"

using namespace burrow;
using namespace std::chrono_literals;
using burrow::test::TestLoop;

namespace {

const std::string kBody = R"({"agent":{"name":"laptop"}})";

SocketAddress loopback4(uint16_t port = 0) {
    return SocketAddress::ipv4({127, 0, 0, 1}, port);
}

// Serves kBody at /status and nothing else.
std::optional<std::string> status_only(std::string_view path) {
    if (path == "/status") return kBody;
    return std::nullopt;
}

std::shared_ptr<AdminServer> start_server(TestLoop& loop, AdminServerOptions options = {},
                                          AdminServer::Handler handler = status_only) {
    auto r = AdminServer::listen(loop.get(), loopback4(), std::move(handler), options);
    REQUIRE(std::holds_alternative<std::shared_ptr<AdminServer>>(r));
    return std::get<std::shared_ptr<AdminServer>>(r);
}

// A client connection on the test loop that records what the server sends.
struct Client {
    std::shared_ptr<TcpConnection> conn;
    std::string received;
    bool eof = false;
    std::optional<std::string> closed;

    Client(TestLoop& loop, const SocketAddress& server) {
        std::optional<OsError> error;
        tcp_connect(loop.get(), server, 2s, [&](std::shared_ptr<TcpConnection> c, OsError e) {
            if (!c) {
                error = e;
                return;
            }
            conn = std::move(c);
            conn->start(TcpCallbacks{
                .on_data = [this](ByteView d) { received.append(as_chars(d)); },
                .on_eof =
                    [this] {
                        eof = true;
                        conn->close();  // as a client does once it has the response
                    },
                .on_drained = nullptr,
                .on_closed = [this](const std::string& r) { closed = r; },
            });
        });
        REQUIRE(loop.run_until([&] { return conn || error; }));
        REQUIRE_FALSE(error);
    }
    ~Client() {
        if (conn) conn->close();
    }
    bool done() const { return eof || closed.has_value(); }
};

// Sends request on a new connection; returns everything the server sent before closing.
std::string exchange(TestLoop& loop, const AdminServer& server, const std::string& request) {
    Client client(loop, server.local_address());
    REQUIRE(client.conn->write(as_bytes(request)));
    REQUIRE(loop.run_until([&] { return client.done(); }));
    CHECK(client.eof);  // the server closed the connection after its one response
    return client.received;
}

std::string get(const std::string& target) {
    return "GET " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
}

bool starts_with(const std::string& s, const std::string& prefix) {
    return s.rfind(prefix, 0) == 0;
}
bool contains(const std::string& s, const std::string& part) {
    return s.find(part) != std::string::npos;
}

// A port where nothing listens but which no one else can take while this lives: bound,
// never listening, so a connect to it is refused.
struct ClosedPort {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    uint16_t port = 0;
    ClosedPort() {
        sockaddr_in sa{};
        sa.sin_family = AF_INET;
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
        socklen_t len = sizeof sa;
        REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len) == 0);
        port = ntohs(sa.sin_port);
    }
    ~ClosedPort() { ::close(fd); }
};

// Runs the loop on another thread while the blocking fetch_status runs on this one.
std::variant<std::string, std::string> fetch_while_serving(TestLoop& loop,
                                                           const SocketAddress& admin,
                                                           Duration timeout) {
    std::atomic<bool> fetched{false};
    std::thread serve([&] { loop.run_until([&] { return fetched.load(); }, 10s); });
    auto result = fetch_status(admin, timeout);
    fetched = true;
    serve.join();
    return result;
}

}  // namespace

TEST_CASE("admin: GET /status returns the handler's body with the right headers") {
    TestLoop loop;
    auto server = start_server(loop);
    const std::string response = exchange(loop, *server, get("/status"));
    CHECK(starts_with(response, "HTTP/1.1 200 OK\r\n"));
    CHECK(contains(response, "\r\nContent-Type: application/json\r\n"));
    CHECK(contains(response, "\r\nContent-Length: " + std::to_string(kBody.size()) + "\r\n"));
    CHECK(contains(response, "\r\nConnection: close\r\n"));
    CHECK(response.substr(response.find("\r\n\r\n") + 4) == kBody);
    CHECK(server->stats().served == 1);
    server->close();
    loop.settle();
}

TEST_CASE("admin: a response names its own content type (GET /metrics is Prometheus text)") {
    TestLoop loop;
    const std::string text = "# HELP x One.\n# TYPE x gauge\nx 1\n";
    auto server =
        start_server(loop, {}, [&](std::string_view path) -> std::optional<AdminResponse> {
            if (path != "/metrics") return std::nullopt;
            return AdminResponse(text, "text/plain; version=0.0.4; charset=utf-8");
        });
    const std::string response = exchange(loop, *server, get("/metrics"));
    CHECK(starts_with(response, "HTTP/1.1 200 OK\r\n"));
    CHECK(contains(response, "\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
    CHECK_FALSE(contains(response, "application/json"));
    CHECK(response.substr(response.find("\r\n\r\n") + 4) == text);
    server->close();
    loop.settle();
}

TEST_CASE("admin: the handler sees the path without the query") {
    TestLoop loop;
    std::string seen;
    auto server = start_server(loop, {}, [&](std::string_view path) {
        seen = path;
        return std::optional<std::string>("{}");
    });
    CHECK(starts_with(exchange(loop, *server, get("/status?verbose=1")), "HTTP/1.1 200 OK\r\n"));
    CHECK(seen == "/status");
    server->close();
    loop.settle();
}

TEST_CASE("admin: HEAD gets the headers of GET and no body") {
    TestLoop loop;
    auto server = start_server(loop);
    const std::string response =
        exchange(loop, *server, "HEAD /status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    CHECK(starts_with(response, "HTTP/1.1 200 OK\r\n"));
    CHECK(contains(response, "\r\nContent-Length: " + std::to_string(kBody.size()) + "\r\n"));
    CHECK(response.size() == response.find("\r\n\r\n") + 4);  // nothing after the headers
    server->close();
    loop.settle();
}

TEST_CASE("admin: an unknown path is 404") {
    TestLoop loop;
    auto server = start_server(loop);
    const std::string response = exchange(loop, *server, get("/nope"));
    CHECK(starts_with(response, "HTTP/1.1 404 Not Found\r\n"));
    CHECK(contains(response, "\r\nContent-Type: application/json\r\n"));
    CHECK(contains(response, "\r\nConnection: close\r\n"));
    CHECK(server->stats().not_found == 1);
    CHECK(server->stats().served == 0);
    server->close();
    loop.settle();
}

TEST_CASE("admin: POST is 405 and says what is allowed") {
    TestLoop loop;
    bool called = false;
    auto server = start_server(loop, {}, [&](std::string_view) {
        called = true;
        return std::optional<std::string>("{}");
    });
    const std::string response = exchange(
        loop, *server, "POST /status HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}");
    CHECK(starts_with(response, "HTTP/1.1 405 Method Not Allowed\r\n"));
    CHECK(contains(response, "\r\nAllow: GET, HEAD\r\n"));
    CHECK_FALSE(called);
    CHECK(server->stats().method_not_allowed == 1);
    server->close();
    loop.settle();
}

TEST_CASE("admin: garbage gets 400 and a close") {
    TestLoop loop;
    auto server = start_server(loop);
    SECTION("binary") {
        // The first bytes of a TLS ClientHello: someone pointed the wrong client at the port.
        const std::string hello("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11);
        CHECK(starts_with(exchange(loop, *server, hello), "HTTP/1.1 400 Bad Request\r\n"));
    }
    SECTION("a bad request line") {
        CHECK(starts_with(exchange(loop, *server, "GET /status HTTP/9\r\n\r\n"),
                          "HTTP/1.1 400 Bad Request\r\n"));
    }
    SECTION("a request cut short by the client's FIN") {
        Client client(loop, server->local_address());
        REQUIRE(client.conn->write(as_bytes("GET /sta")));
        client.conn->shutdown();
        REQUIRE(loop.run_until([&] { return client.done(); }));
        CHECK(starts_with(client.received, "HTTP/1.1 400 Bad Request\r\n"));
    }
    CHECK(server->stats().bad_request == 1);
    CHECK(server->stats().served == 0);
    server->close();
    loop.settle();
}

TEST_CASE("admin: request headers are capped at 8 KiB") {
    TestLoop loop;
    auto server = start_server(loop);
    const std::string head = "GET /status HTTP/1.1\r\nX-Pad: ";
    const std::string tail = "\r\n\r\n";
    const size_t limit = AdminServerOptions{}.max_header_bytes;
    REQUIRE(limit == 8 * 1024);
    // Exactly at the limit is fine; one byte more is not.
    const std::string at_limit = head + std::string(limit - head.size() - tail.size(), 'a') + tail;
    REQUIRE(at_limit.size() == limit);
    CHECK(starts_with(exchange(loop, *server, at_limit), "HTTP/1.1 200 OK\r\n"));
    const std::string over = head + std::string(limit - head.size() - tail.size() + 1, 'a') + tail;
    CHECK(starts_with(exchange(loop, *server, over),
                      "HTTP/1.1 431 Request Header Fields Too Large\r\n"));
    // Far over, in many small writes: refused at the limit, not after reading it all.
    Client client(loop, server->local_address());
    REQUIRE(client.conn->write(as_bytes(head)));
    const std::string chunk(1000, 'b');
    for (int i = 0; i < 64 && !client.done(); ++i) {
        client.conn->write(as_bytes(chunk));
        loop.run_until([&] { return client.conn->write_queue_bytes() == 0 || client.done(); });
    }
    REQUIRE(loop.run_until([&] { return client.done(); }));
    CHECK(starts_with(client.received, "HTTP/1.1 431 "));
    CHECK(server->stats().headers_too_large == 2);
    CHECK(server->stats().served == 1);
    server->close();
    loop.settle();
}

TEST_CASE("admin: a client that sends nothing is closed after the request timeout") {
    TestLoop loop;
    const auto timeout = 200ms;
    auto server = start_server(loop, AdminServerOptions{.request_timeout = timeout});
    const auto started = std::chrono::steady_clock::now();
    Client silent(loop, server->local_address());
    Client partial(loop, server->local_address());
    REQUIRE(partial.conn->write(as_bytes("GET /status HTTP/1.1\r\nHost:")));
    REQUIRE(loop.run_until([&] { return silent.done() && partial.done(); }, 3s));
    CHECK(std::chrono::steady_clock::now() - started >= timeout);
    CHECK(silent.received.empty());
    CHECK(partial.received.empty());
    CHECK(server->stats().timed_out == 2);
    REQUIRE(loop.run_until([&] { return server->open_connections() == 0; }));
    server->close();
    loop.settle();
}

TEST_CASE("admin: connections beyond the limit are closed at once") {
    TestLoop loop;
    auto server = start_server(loop, AdminServerOptions{.max_connections = 2});
    Client first(loop, server->local_address());
    Client second(loop, server->local_address());
    REQUIRE(loop.run_until([&] { return server->open_connections() == 2; }));
    Client third(loop, server->local_address());
    REQUIRE(loop.run_until([&] { return third.done(); }));
    CHECK(third.received.empty());
    CHECK(server->stats().over_capacity == 1);
    CHECK(server->open_connections() == 2);
    CHECK_FALSE(first.done());
    // The slots still serve.
    REQUIRE(first.conn->write(as_bytes(get("/status"))));
    REQUIRE(loop.run_until([&] { return first.done(); }));
    CHECK(starts_with(first.received, "HTTP/1.1 200 OK\r\n"));
    server->close();
    loop.settle();
}

TEST_CASE("admin: close() stops listening and closes open connections") {
    TestLoop loop;
    auto server = start_server(loop);
    const SocketAddress address = server->local_address();
    Client idle(loop, address);
    REQUIRE(loop.run_until([&] { return server->open_connections() == 1; }));
    server->close();
    REQUIRE(loop.run_until([&] { return idle.done() && server->open_connections() == 0; }));
    std::optional<OsError> error;
    tcp_connect(loop.get(), address, 2s, [&](std::shared_ptr<TcpConnection> c, OsError e) {
        if (c) c->close();
        error = e;
    });
    REQUIRE(loop.run_until([&] { return error.has_value(); }));
    CHECK(contains(error->message, "connection refused"));
    loop.settle();
}

TEST_CASE("admin: listening on a port in use says so in one line") {
    TestLoop loop;
    auto first = start_server(loop);
    auto second = AdminServer::listen(loop.get(), first->local_address(), status_only);
    REQUIRE(std::holds_alternative<OsError>(second));
    CHECK(std::get<OsError>(second).message ==
          "listen " + to_string(first->local_address()) + ": address already in use");
    first->close();
    loop.settle();
}

TEST_CASE("status client: fetch_status returns the body") {
    TestLoop loop;
    auto server = start_server(loop);
    auto result = fetch_while_serving(loop, server->local_address(), 2s);
    REQUIRE(result.index() == 0);
    CHECK(std::get<0>(result) == kBody);
    CHECK(server->stats().served == 1);
    server->close();
    loop.settle();
}

TEST_CASE("status client: a non-200 answer is an error naming the status") {
    TestLoop loop;
    auto server = start_server(loop, {}, [](std::string_view) { return std::nullopt; });
    auto result = fetch_while_serving(loop, server->local_address(), 2s);
    REQUIRE(result.index() == 1);
    CHECK(std::get<1>(result) == "the agent's admin endpoint " +
                                     to_string(server->local_address()) +
                                     " answered 404 Not Found");
    server->close();
    loop.settle();
}

TEST_CASE("status client: a refused connection says to start the agent") {
    ClosedPort closed;
    auto result = fetch_status(loopback4(closed.port), 2s);
    REQUIRE(result.index() == 1);
    CHECK(std::get<1>(result) == "cannot reach the agent's admin endpoint 127.0.0.1:" +
                                     std::to_string(closed.port) +
                                     ": connection refused (is `burrow agent` running?)");
}

TEST_CASE("status client: a server that never answers times out") {
    // Listening but never accepting: the kernel completes the connect, nobody reads.
    ClosedPort port;
    REQUIRE(::listen(port.fd, 1) == 0);
    const auto started = std::chrono::steady_clock::now();
    auto result = fetch_status(loopback4(port.port), 200ms);
    const auto took = std::chrono::steady_clock::now() - started;
    REQUIRE(result.index() == 1);
    CHECK(std::get<1>(result) == "the agent's admin endpoint 127.0.0.1:" +
                                     std::to_string(port.port) +
                                     " sent no complete answer within 200 ms");
    CHECK(took >= 200ms);
    CHECK(took < 2s);
}

TEST_CASE("status client: something that is not HTTP is a malformed response") {
    TestLoop loop;
    std::vector<std::shared_ptr<TcpConnection>> accepted;
    auto r = TcpListener::listen(loop.get(), loopback4(), [&](std::shared_ptr<TcpConnection> c) {
        c->start({});
        c->write(as_bytes("SSH-2.0-OpenSSH_9.2\r\n"));
        c->shutdown();
        accepted.push_back(std::move(c));
    });
    REQUIRE(std::holds_alternative<std::shared_ptr<TcpListener>>(r));
    auto listener = std::get<std::shared_ptr<TcpListener>>(r);
    auto result = fetch_while_serving(loop, listener->local_address(), 2s);
    REQUIRE(result.index() == 1);
    CHECK(starts_with(std::get<1>(result), "the agent's admin endpoint " +
                                               to_string(listener->local_address()) +
                                               " sent a malformed HTTP response ("));
    listener->close();
    for (auto& c : accepted) c->close();
    loop.settle();
}

// --- the asynchronous route (GET /doctor/PEER) -------------------------------------------------

TEST_CASE("admin: an async handler answers later; a second reply changes nothing") {
    TestLoop loop;
    auto server = start_server(loop);
    std::string seen;
    AdminServer::AsyncReply held;
    server->set_async_handler([&](std::string_view path, AdminServer::AsyncReply reply) {
        if (path.substr(0, 8) != "/doctor/") return false;
        seen = path;
        held = std::move(reply);
        return true;
    });
    Client client(loop, server->local_address());
    REQUIRE(client.conn->write(as_bytes(get("/doctor/nas"))));
    REQUIRE(loop.run_until([&] { return static_cast<bool>(held); }));
    CHECK(seen == "/doctor/nas");
    // Nothing is sent until the reply, and more bytes from the client are ignored meanwhile.
    REQUIRE(client.conn->write(as_bytes(get("/status"))));
    loop.run_until([] { return false; }, 100ms);
    CHECK(client.received.empty());
    held(AdminResponse(R"({"ok":true})"));
    REQUIRE(loop.run_until([&] { return client.done(); }));
    CHECK(starts_with(client.received, "HTTP/1.1 200 OK\r\n"));
    CHECK(client.received.substr(client.received.find("\r\n\r\n") + 4) == R"({"ok":true})");
    held(AdminResponse("again"));  // already answered: dropped
    loop.run_until([] { return false; }, 50ms);
    CHECK_FALSE(contains(client.received, "again"));
    CHECK(server->stats().served == 1);
    // The status route is still the synchronous handler's.
    CHECK(starts_with(exchange(loop, *server, get("/status")), "HTTP/1.1 200 OK\r\n"));
    server->close();
    loop.settle();
}

TEST_CASE("admin: an async reply given inside the handler, a declined path, a reply too late") {
    TestLoop loop;
    AdminServerOptions options;
    options.request_timeout = 300ms;
    auto server = start_server(loop, options);
    AdminServer::AsyncReply late;
    server->set_async_handler([&](std::string_view path, AdminServer::AsyncReply reply) {
        if (path == "/doctor/now") {
            reply(AdminResponse(R"({"now":1})"));
            return true;
        }
        if (path == "/doctor/late") {
            late = std::move(reply);
            return true;
        }
        return false;
    });
    const std::string now = exchange(loop, *server, get("/doctor/now"));
    CHECK(starts_with(now, "HTTP/1.1 200 OK\r\n"));
    CHECK(contains(now, R"({"now":1})"));
    CHECK(starts_with(exchange(loop, *server, get("/doctor/x")), "HTTP/1.1 404 Not Found\r\n"));
    {
        Client client(loop, server->local_address());
        REQUIRE(client.conn->write(as_bytes(get("/doctor/late"))));
        REQUIRE(loop.run_until([&] { return static_cast<bool>(late); }));
        client.conn->close();
        // A client's EOF may be a half-close (the request sent, the answer still wanted): the
        // exchange waits, bounded by the request timeout like any other.
        REQUIRE(loop.run_until([&] { return server->open_connections() == 0; }, 2s));
        CHECK(server->stats().timed_out == 1);
    }
    const uint64_t served = server->stats().served;
    late(AdminResponse("{}"));  // its connection is gone: nothing to answer, no crash
    CHECK(server->stats().served == served);
    server->close();
    loop.settle();
}
