#include <catch2/catch.hpp>

#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <memory>
#include <string>
#include <vector>

#include "src/tcp.h"
#include "tests/unit/uv_test_loop.h"

using namespace burrow;
using namespace std::chrono_literals;
using burrow::test::TestLoop;

namespace {

SocketAddress loopback4(uint16_t port = 0) {
    return SocketAddress::ipv4({127, 0, 0, 1}, port);
}

// One end of a connection as a test sees it.
struct Peer {
    std::shared_ptr<TcpConnection> conn;
    std::string received;
    bool eof = false;
    int drained = 0;
    std::optional<std::string> closed;

    TcpCallbacks callbacks() {
        return TcpCallbacks{
            .on_data = [this](ByteView d) { received.append(as_chars(d)); },
            .on_eof = [this] { eof = true; },
            .on_drained = [this] { ++drained; },
            .on_closed = [this](const std::string& r) { closed = r; },
        };
    }
};

// A listener and one connection to it, both started.
struct Pair {
    TestLoop& loop;
    std::shared_ptr<TcpListener> listener;
    Peer server;
    Peer client;

    explicit Pair(TestLoop& l, TcpOptions options = {}) : loop(l) {
        auto r = TcpListener::listen(
            loop.get(), loopback4(),
            [this](std::shared_ptr<TcpConnection> c) {
                server.conn = std::move(c);
                server.conn->start(server.callbacks());
            },
            options);
        REQUIRE(std::holds_alternative<std::shared_ptr<TcpListener>>(r));
        listener = std::get<std::shared_ptr<TcpListener>>(r);
        std::optional<OsError> error;
        tcp_connect(
            loop.get(), listener->local_address(), 2s,
            [this, &error](std::shared_ptr<TcpConnection> c, OsError e) {
                if (!c) {
                    error = e;
                    return;
                }
                client.conn = std::move(c);
                client.conn->start(client.callbacks());
            },
            options);
        REQUIRE(loop.run_until([&] { return (client.conn && server.conn) || error; }));
        REQUIRE_FALSE(error);
    }
    ~Pair() {
        listener->close();
        if (client.conn) client.conn->close();
        if (server.conn) server.conn->close();
        loop.settle();
    }
};

// A port with nothing listening: bind, read the port, close.
uint16_t free_port() {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
    socklen_t len = sizeof sa;
    REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len) == 0);
    ::close(fd);
    return ntohs(sa.sin_port);
}

Bytes pattern(size_t offset, size_t n) {
    Bytes b(n);
    for (size_t i = 0; i < n; ++i) b[i] = static_cast<uint8_t>((offset + i) % 251);
    return b;
}

bool matches_pattern(const std::string& s) {
    for (size_t i = 0; i < s.size(); ++i) {
        if (static_cast<uint8_t>(s[i]) != static_cast<uint8_t>(i % 251)) return false;
    }
    return true;
}

}  // namespace

TEST_CASE("tcp: connect, echo, addresses") {
    TestLoop loop;
    Pair p(loop);
    CHECK(p.client.conn->peer_address() == p.listener->local_address());
    CHECK(p.server.conn->peer_address() == p.client.conn->local_address());
    p.server.conn->start({});  // a second start() changes nothing
    REQUIRE(p.client.conn->write(as_bytes("ping")));
    REQUIRE(loop.run_until([&] { return p.server.received == "ping"; }));
    REQUIRE(p.server.conn->write(as_bytes("pong")));
    REQUIRE(loop.run_until([&] { return p.client.received == "pong"; }));
}

TEST_CASE("tcp: listening on a port in use says so in one line") {
    TestLoop loop;
    auto first = std::get<std::shared_ptr<TcpListener>>(
        TcpListener::listen(loop.get(), loopback4(), [](auto c) { c->close(); }));
    auto second =
        TcpListener::listen(loop.get(), first->local_address(), [](auto c) { c->close(); });
    REQUIRE(std::holds_alternative<OsError>(second));
    CHECK(std::get<OsError>(second).message ==
          "listen 127.0.0.1:" + std::to_string(first->local_address().port) +
              ": address already in use");
    first->close();
    loop.settle();
}

TEST_CASE("tcp: a refused connect says so in one line") {
    TestLoop loop;
    const uint16_t port = free_port();
    std::optional<OsError> error;
    bool called = false;
    tcp_connect(loop.get(), loopback4(port), 2s, [&](std::shared_ptr<TcpConnection> c, OsError e) {
        called = true;
        CHECK(c == nullptr);
        error = e;
    });
    CHECK_FALSE(called);  // never from inside tcp_connect
    REQUIRE(loop.run_until([&] { return called; }));
    REQUIRE(error);
    CHECK(error->message == "connect 127.0.0.1:" + std::to_string(port) + ": connection refused");
}

TEST_CASE("tcp: a connect that gets no answer times out") {
    // A listener whose accept queue is full drops further SYNs (Linux), so the connect hangs
    // exactly as towards a host that does not answer.
    TestLoop loop;
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
    REQUIRE(::listen(fd, 0) == 0);
    socklen_t len = sizeof sa;
    REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len) == 0);
    const uint16_t port = ntohs(sa.sin_port);
    // Fill the queue (a backlog of 0 holds one connection).
    std::vector<std::shared_ptr<TcpConnection>> fillers;
    for (int i = 0; i < 2; ++i) {
        tcp_connect(loop.get(), loopback4(port), 300ms,
                    [&](std::shared_ptr<TcpConnection> c, OsError) {
                        if (c) fillers.push_back(c);
                    });
    }
    std::optional<OsError> error;
    loop.run_for(100ms);
    tcp_connect(loop.get(), loopback4(port), 300ms,
                [&](std::shared_ptr<TcpConnection> c, OsError e) {
                    CHECK(c == nullptr);
                    error = e;
                });
    REQUIRE(loop.run_until([&] { return error.has_value(); }, 3s));
    CHECK(error->message ==
          "connect 127.0.0.1:" + std::to_string(port) + ": timed out after 300 ms");
    for (auto& c : fillers) c->close();
    loop.settle();
    ::close(fd);
}

TEST_CASE("tcp: half-close carries FIN one way while the other way still flows") {
    TestLoop loop;
    Pair p(loop);
    REQUIRE(p.client.conn->write(as_bytes("last words")));
    p.client.conn->shutdown();
    CHECK_FALSE(p.client.conn->write(as_bytes("too late")));
    REQUIRE(loop.run_until([&] { return p.server.eof; }));
    CHECK(p.server.received == "last words");
    CHECK(p.server.conn->eof_received());
    // The server can still answer, and the client still reads.
    REQUIRE(p.server.conn->write(as_bytes("reply after your FIN")));
    REQUIRE(loop.run_until([&] { return p.client.received == "reply after your FIN"; }));
    CHECK_FALSE(p.client.eof);
    p.server.conn->shutdown();
    REQUIRE(loop.run_until([&] { return p.client.eof; }));
    CHECK_FALSE(p.client.closed);  // EOF both ways is not a close: the owner decides
}

TEST_CASE("tcp: a reset is seen by the peer") {
    TestLoop loop;
    Pair p(loop);
    p.client.conn->reset();
    REQUIRE(loop.run_until([&] { return p.server.closed && p.client.closed; }));
    CHECK(*p.client.closed == "reset");
    CHECK(*p.server.closed == "read: connection reset by peer");
    CHECK_FALSE(p.server.eof);  // an RST, not a FIN
}

TEST_CASE("tcp: close delivers on_closed later, once, and the peer sees EOF") {
    TestLoop loop;
    Pair p(loop);
    p.client.conn->close();
    CHECK_FALSE(p.client.closed);  // from libuv's close callback, not from close()
    p.client.conn->close();
    REQUIRE(loop.run_until([&] { return p.client.closed && p.server.eof; }));
    CHECK(*p.client.closed == "closed");
    CHECK_FALSE(p.client.conn->write(as_bytes("x")));
}

TEST_CASE("tcp: pause stops reading, the writer's queue fills, resume delivers everything") {
    TestLoop loop;
    TcpOptions options;
    options.max_write_queue = 64 * 1024;
    Pair p(loop, options);
    p.server.conn->pause_reading();
    CHECK(p.server.conn->reading_paused());

    // Write until the kernel buffers on both sides and our queue are full.
    constexpr size_t kChunk = 16 * 1024;
    constexpr size_t kLimit = 256 * 1024 * 1024;  // a bound in case nothing pushes back
    size_t written = 0;
    bool refused = false;
    while (written < kLimit) {
        if (!p.client.conn->write(pattern(written, kChunk))) {
            refused = true;
            break;
        }
        written += kChunk;
        if (written % (1024 * 1024) == 0) uv_run(loop.get(), UV_RUN_NOWAIT);
    }
    REQUIRE(refused);
    CHECK(p.client.conn->write_queue_bytes() <= options.max_write_queue);
    const size_t before = p.server.received.size();
    loop.run_for(50ms);
    CHECK(p.server.received.size() == before);  // paused: nothing read

    p.server.conn->resume_reading();
    REQUIRE(loop.run_until([&] { return p.client.drained > 0; }));
    // Keep writing after each drain until the total is reached.
    const size_t total = written + 4 * kChunk;
    while (written < total) {
        if (p.client.conn->write(pattern(written, kChunk))) {
            written += kChunk;
        } else {
            const int seen = p.client.drained;
            REQUIRE(loop.run_until([&] { return p.client.drained > seen; }));
        }
    }
    REQUIRE(loop.run_until([&] { return p.server.received.size() == total; }, 10s));
    CHECK(matches_pattern(p.server.received));
}

TEST_CASE("tcp: chunks written together arrive in order, also when the kernel takes part") {
    TestLoop loop;
    TcpOptions options;
    options.max_write_queue = 1024 * 1024;
    Pair p(loop, options);
    p.server.conn->pause_reading();  // so the kernel's buffers fill and writes stop midway

    // Uneven chunks: where the kernel stops taking bytes falls inside one, and the rest of
    // it and the chunks after it must be queued in order.
    const std::array<size_t, 3> sizes = {5000, 70001, 12345};
    size_t written = 0;
    while (true) {
        std::array<Bytes, 3> data;
        std::array<ByteView, 3> chunks;
        size_t offset = written;
        for (size_t i = 0; i < sizes.size(); ++i) {
            data[i] = pattern(offset, sizes[i]);
            chunks[i] = data[i];
            offset += sizes[i];
        }
        if (!p.client.conn->write(chunks)) break;
        written = offset;
    }
    CHECK(p.client.conn->write_queue_bytes() > 0);  // the kernel took only part of them
    p.server.conn->resume_reading();
    REQUIRE(loop.run_until([&] { return p.server.received.size() == written; }, 10s));
    CHECK(matches_pattern(p.server.received));
}

TEST_CASE("tcp: the connection's timer fires once and is replaced by a new one") {
    TestLoop loop;
    Pair p(loop);
    int first = 0, second = 0;
    p.client.conn->set_timer(10ms, [&] { ++first; });
    p.client.conn->set_timer(20ms, [&] { ++second; });
    loop.run_for(60ms);
    CHECK(first == 0);
    CHECK(second == 1);
    p.client.conn->set_timer(10ms, [&] { ++first; });
    p.client.conn->cancel_timer();
    loop.run_for(30ms);
    CHECK(first == 0);
}

TEST_CASE("tcp: closing from inside on_data is safe") {
    TestLoop loop;
    Pair p(loop);
    int data_calls = 0;
    std::optional<std::string> closed;
    p.server.conn->close();
    loop.settle();
    // A fresh accepted connection whose on_data closes it.
    std::shared_ptr<TcpConnection> accepted;
    auto listener = std::get<std::shared_ptr<TcpListener>>(
        TcpListener::listen(loop.get(), loopback4(), [&](std::shared_ptr<TcpConnection> c) {
            accepted = c;
            TcpCallbacks callbacks;
            callbacks.on_data = [&](ByteView) {
                ++data_calls;
                accepted->close();
            };
            callbacks.on_closed = [&](const std::string& r) { closed = r; };
            c->start(callbacks);
        }));
    std::shared_ptr<TcpConnection> client;
    tcp_connect(loop.get(), listener->local_address(), 2s,
                [&](std::shared_ptr<TcpConnection> c, OsError) {
                    client = c;
                    c->start({});
                    c->write(Bytes(200000, 1));
                });
    REQUIRE(loop.run_until([&] { return closed.has_value(); }));
    CHECK(data_calls == 1);
    CHECK(*closed == "closed");
    listener->close();
    client->close();
    loop.settle();
}

TEST_CASE("tcp: a listener short of descriptors says so, and paused leaves connections waiting") {
    TestLoop loop;
    // A soft limit that leaves only the reserve above the next descriptor: every connection
    // accepted from here on finds the process short.
    rlimit saved{};
    REQUIRE(getrlimit(RLIMIT_NOFILE, &saved) == 0);
    const int next_fd = dup(0);
    REQUIRE(next_fd >= 0);
    ::close(next_fd);
    rlimit tight = saved;
    tight.rlim_cur = static_cast<rlim_t>(next_fd + TcpListener::kDescriptorReserve);
    REQUIRE(setrlimit(RLIMIT_NOFILE, &tight) == 0);
    struct Restore {
        rlimit limit;
        ~Restore() { setrlimit(RLIMIT_NOFILE, &limit); }
    } restore{saved};

    std::vector<std::shared_ptr<TcpConnection>> accepted;
    auto r = TcpListener::listen(loop.get(), loopback4(), [&](std::shared_ptr<TcpConnection> c) {
        accepted.push_back(std::move(c));
    });
    REQUIRE(std::holds_alternative<std::shared_ptr<TcpListener>>(r));
    auto listener = std::get<std::shared_ptr<TcpListener>>(r);
    int lows = 0;
    int free_left = -1, limit_seen = 0;
    listener->on_descriptors_low([&](int free, int limit) {
        ++lows;
        free_left = free;
        limit_seen = limit;
        listener->pause();
    });
    std::vector<std::shared_ptr<TcpConnection>> clients;
    auto connect = [&] {
        tcp_connect(loop.get(), listener->local_address(), 2s,
                    [&](std::shared_ptr<TcpConnection> c, OsError) {
                        if (c) clients.push_back(std::move(c));
                    });
    };

    connect();
    REQUIRE(loop.run_until([&] { return accepted.size() == 1 && lows == 1; }));
    CHECK(limit_seen == next_fd + TcpListener::kDescriptorReserve);
    CHECK(free_left >= 0);
    CHECK(free_left < TcpListener::kDescriptorReserve);

    // Paused: the second client's handshake completes in the kernel's backlog, but nothing is
    // accepted until resume().
    connect();
    REQUIRE(loop.run_until([&] { return clients.size() == 2; }));
    loop.run_for(200ms);
    CHECK(accepted.size() == 1);
    listener->resume();
    REQUIRE(loop.run_until([&] { return accepted.size() == 2; }));
    CHECK(lows == 2);  // still short: it paused again

    for (auto& c : clients) c->close();
    for (auto& c : accepted) c->close();
    listener->close();
    loop.settle();
}
