#include <catch2/catch.hpp>

#include <malloc.h>
#include <spdlog/sinks/ringbuffer_sink.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "tests/support/temp_dir.h"
#include "src/cert.h"
#include "src/log.h"
#include "src/tls.h"
#include "tests/unit/uv_test_loop.h"

using namespace burrow;
using burrow::test::TempDir;
using burrow::test::mode_of;
using namespace std::chrono_literals;
using burrow::test::TestLoop;
namespace fs = std::filesystem;

namespace {

// Collects the log lines written while it lives.
class LogCapture {
  public:
    LogCapture() : sink_(std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(kLines)) {
        sink_->set_pattern("%v");
        spdlog::default_logger()->sinks().push_back(sink_);
    }
    ~LogCapture() {
        auto& sinks = spdlog::default_logger()->sinks();
        sinks.erase(std::remove(sinks.begin(), sinks.end(), sink_), sinks.end());
    }
    std::vector<std::string> lines_containing(const std::string& text) const {
        std::vector<std::string> out;
        for (auto line : sink_->last_formatted()) {
            while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
            if (line.find(text) != std::string::npos) out.push_back(line);
        }
        return out;
    }

  private:
    static constexpr size_t kLines = 256;
    std::shared_ptr<spdlog::sinks::ringbuffer_sink_mt> sink_;
};

SocketAddress loopback4(uint16_t port = 0) {
    return SocketAddress::ipv4({127, 0, 0, 1}, port);
}

Bytes pattern(size_t offset, size_t n) {
    Bytes b(n);
    for (size_t i = 0; i < n; ++i) b[i] = static_cast<uint8_t>((offset + i) % 251);
    return b;
}

// One TLS endpoint as a test sees it. With echo set it writes back what it reads, holding
// the rest (and pausing its reads) while its peer is slow.
struct Endpoint {
    std::shared_ptr<TlsConnection> conn;
    bool connected = false;
    std::string received;
    std::optional<std::string> closed;
    bool echo = false;
    std::string outbox;
    int writable = 0;

    TlsCallbacks callbacks() {
        TlsCallbacks c;
        c.on_connected = [this] { connected = true; };
        c.on_data = [this](ByteView d) {
            received.append(as_chars(d));
            if (echo) {
                outbox.append(as_chars(d));
                flush();
            }
        };
        c.on_writable = [this] {
            ++writable;
            if (!echo) return;
            flush();
            if (outbox.empty()) conn->resume_reading();
        };
        c.on_closed = [this](const std::string& r) { closed = r; };
        return c;
    }
    void flush() {
        constexpr size_t kChunk = 16 * 1024;
        while (!outbox.empty()) {
            const size_t n = std::min(kChunk, outbox.size());
            if (!conn->write(as_bytes(std::string_view(outbox).substr(0, n)))) {
                conn->pause_reading();
                return;
            }
            outbox.erase(0, n);
        }
    }
};

// A TLS server on 127.0.0.1 with a fresh self-signed certificate.
struct Server {
    TestLoop& loop;
    TempDir dir;
    std::string cert = dir.file("server.crt");
    std::string key = dir.file("server.key");
    std::shared_ptr<TlsContext> context;
    std::shared_ptr<TcpListener> listener;
    std::vector<std::unique_ptr<Endpoint>> accepted;
    TlsOptions options;
    bool echo = false;

    explicit Server(TestLoop& l) : loop(l) {
        REQUIRE_FALSE(create_self_signed_cert(cert, key));
        auto ctx = TlsContext::server(cert, key);
        if (auto* e = std::get_if<OsError>(&ctx)) FAIL(e->message);
        context = std::get<std::shared_ptr<TlsContext>>(ctx);
        auto r = TcpListener::listen(loop.get(), loopback4(), [this](auto tcp) {
            auto ep = std::make_unique<Endpoint>();
            ep->echo = echo;
            ep->conn = TlsConnection::accept(std::move(tcp), context, options);
            ep->conn->start(ep->callbacks());
            accepted.push_back(std::move(ep));
        });
        REQUIRE(std::holds_alternative<std::shared_ptr<TcpListener>>(r));
        listener = std::get<std::shared_ptr<TcpListener>>(r);
    }
    ~Server() {
        listener->close();
        for (auto& ep : accepted) ep->conn->close();
        loop.run_until([&] {
            return std::all_of(accepted.begin(), accepted.end(),
                               [](auto& ep) { return ep->closed.has_value(); });
        });
        loop.settle();
    }
    SocketAddress address() const { return listener->local_address(); }
    std::string fingerprint() const { return context->fingerprint(); }
    Endpoint& first() {
        REQUIRE_FALSE(accepted.empty());
        return *accepted.front();
    }
};

std::shared_ptr<TlsContext> client_context(TlsClientConfig config) {
    auto ctx = TlsContext::client(config);
    if (auto* e = std::get_if<OsError>(&ctx)) FAIL(e->message);
    return std::get<std::shared_ptr<TlsContext>>(ctx);
}

std::shared_ptr<TlsContext> pinned(const std::string& fingerprint) {
    TlsClientConfig config;
    config.pinned_fingerprint = fingerprint;
    return client_context(config);
}

struct Client : Endpoint {
    Client(TestLoop& loop, const SocketAddress& server, std::shared_ptr<TlsContext> ctx,
           TlsOptions options = {}) {
        conn = TlsConnection::connect(loop.get(), server, std::move(ctx), options);
        conn->start(callbacks());
    }
};

// A plain TCP client for talking nonsense to the TLS server.
struct RawClient {
    std::shared_ptr<TcpConnection> conn;
    std::string received;
    bool eof = false;
    std::optional<std::string> closed;

    RawClient(TestLoop& loop, const SocketAddress& server) {
        tcp_connect(loop.get(), server, 2s, [this](std::shared_ptr<TcpConnection> c, OsError) {
            conn = std::move(c);
            if (!conn) return;
            TcpCallbacks cb;
            cb.on_data = [this](ByteView d) { received.append(as_chars(d)); };
            cb.on_eof = [this] { eof = true; };
            cb.on_closed = [this](const std::string& r) { closed = r; };
            conn->start(cb);
        });
        REQUIRE(loop.run_until([&] { return conn != nullptr; }));
    }
    ~RawClient() {
        if (conn) conn->close();
    }
};

}  // namespace

TEST_CASE("tls: handshake with the pinned fingerprint, then data both ways") {
    TestLoop loop;
    Server server(loop);
    Client client(loop, server.address(), pinned(server.fingerprint()));
    REQUIRE(client.conn->write(as_bytes("hello before the handshake")));  // held, then sent
    REQUIRE(loop.run_until(
        [&] { return client.connected && !server.accepted.empty() && server.first().connected; }));
    CHECK(client.conn->is_established());
    CHECK(client.conn->protocol().rfind("TLSv1.2 TLS-ECDHE-ECDSA-WITH-", 0) == 0);
    REQUIRE(
        loop.run_until([&] { return server.first().received == "hello before the handshake"; }));
    REQUIRE(server.first().conn->write(as_bytes("hello client")));
    REQUIRE(loop.run_until([&] { return client.received == "hello client"; }));
    CHECK_FALSE(client.closed);
}

// Writes total bytes of pattern, waiting for on_writable whenever write() refuses.
int write_all(TestLoop& loop, Endpoint& ep, size_t total) {
    constexpr size_t kChunk = 10000;  // not a multiple of the record size
    size_t sent = 0;
    int refusals = 0;
    while (sent < total) {
        const size_t n = std::min(kChunk, total - sent);
        if (ep.conn->write(pattern(sent, n))) {
            sent += n;
            continue;
        }
        ++refusals;
        const int seen = ep.writable;
        REQUIRE(loop.run_until([&] { return ep.writable > seen; }));
    }
    return refusals;
}

TEST_CASE("tls: 1 MiB each way through an echo server") {
    TestLoop loop;
    Server server(loop);
    server.echo = true;
    Client client(loop, server.address(), pinned(server.fingerprint()));
    REQUIRE(loop.run_until([&] { return client.connected; }));
    constexpr size_t kTotal = 1024 * 1024;
    write_all(loop, client, kTotal);
    REQUIRE(loop.run_until([&] { return client.received.size() == kTotal; }, 10s));
    CHECK(server.first().received.size() == kTotal);
    const Bytes expected = pattern(0, kTotal);
    CHECK(client.received == std::string(as_chars(expected)));
    CHECK(server.first().received == client.received);
}

TEST_CASE("tls: a reader that pauses pushes back on the writer; nothing is lost") {
    TestLoop loop;
    Server server(loop);
    TlsOptions small;
    small.max_write_buffer = 64 * 1024;
    Client client(loop, server.address(), pinned(server.fingerprint()), small);
    REQUIRE(loop.run_until(
        [&] { return client.connected && !server.accepted.empty() && server.first().connected; }));
    Endpoint& reader = server.first();
    reader.conn->pause_reading();

    // Fill the kernel buffers on both sides, then our bounded buffer.
    constexpr size_t kChunk = 16 * 1024;
    constexpr size_t kLimit = 256 * 1024 * 1024;  // a bound in case nothing pushes back
    size_t written = 0;
    bool refused = false;
    while (written < kLimit && !refused) {
        if (client.conn->write(pattern(written, kChunk))) {
            written += kChunk;
            if (written % (1024 * 1024) == 0) uv_run(loop.get(), UV_RUN_NOWAIT);
        } else {
            refused = true;
        }
    }
    REQUIRE(refused);
    CHECK(client.conn->buffered_bytes() <= small.max_write_buffer);
    const size_t before = reader.received.size();
    loop.run_for(50ms);
    CHECK(reader.received.size() == before);  // paused: nothing delivered

    reader.conn->resume_reading();
    REQUIRE(loop.run_until([&] { return client.writable > 0; }));
    REQUIRE(loop.run_until([&] { return reader.received.size() == written; }, 10s));
    const Bytes expected = pattern(0, written);
    CHECK(reader.received == std::string(as_chars(expected)));
}

TEST_CASE("tls: a wrong pinned fingerprint fails the handshake with one clear line") {
    TestLoop loop;
    Server server(loop);
    LogCapture log;
    const std::string wrong = "sha256:" + std::string(64, '0');
    Client client(loop, server.address(), pinned(wrong));
    REQUIRE(loop.run_until([&] { return client.closed.has_value(); }));
    const std::string expected = "server certificate fingerprint " + server.fingerprint() +
                                 " does not match the pinned " + wrong;
    CHECK(*client.closed == expected);
    CHECK_FALSE(client.connected);
    const auto lines = log.lines_containing("does not match the pinned");
    REQUIRE(lines.size() == 1);
    CHECK(lines[0] == "tls " + to_string(server.address()) + ": " + expected);
    // The server never saw a finished handshake either.
    REQUIRE(loop.run_until([&] { return !server.accepted.empty() && server.first().closed; }));
    CHECK_FALSE(server.first().connected);
}

TEST_CASE("tls: a plaintext client is rejected and disconnected") {
    TestLoop loop;
    Server server(loop);
    RawClient raw(loop, server.address());
    REQUIRE(raw.conn->write(as_bytes("GET / HTTP/1.0\r\n\r\n")));
    REQUIRE(loop.run_until([&] { return raw.eof || raw.closed; }));
    REQUIRE(loop.run_until([&] { return !server.accepted.empty() && server.first().closed; }));
    CHECK_FALSE(server.first().connected);
    CHECK(server.first().closed->rfind("TLS handshake failed: ", 0) == 0);
    // Nothing but (at most) a TLS alert came back: never an HTTP answer or plaintext.
    if (!raw.received.empty()) CHECK(static_cast<uint8_t>(raw.received[0]) == 0x15);
}

TEST_CASE("tls: a silent client is disconnected at the handshake deadline") {
    TestLoop loop;
    Server server(loop);
    server.options.handshake_timeout = 200ms;
    const auto start = std::chrono::steady_clock::now();
    RawClient raw(loop, server.address());
    REQUIRE(loop.run_until([&] { return raw.eof || raw.closed; }, 3s));
    const auto elapsed = std::chrono::steady_clock::now() - start;
    CHECK(elapsed >= 200ms);
    CHECK(elapsed < 1s);
    REQUIRE(loop.run_until([&] { return !server.accepted.empty() && server.first().closed; }));
    CHECK(*server.first().closed == "TLS handshake did not complete within 200 ms");
}

TEST_CASE("tls: a peer that never finishes its handshake is cut off by the byte limit") {
    TestLoop loop;
    Server server(loop);
    server.options.max_handshake_bytes = 1000;
    RawClient raw(loop, server.address());
    // A handshake record header announcing 4000 bytes, then 2000 of them: mbedTLS waits for
    // the rest, so only the byte limit ends this before the deadline.
    Bytes record = {0x16, 0x03, 0x01, 0x0f, 0xa0};
    record.resize(record.size() + 2000, 0x01);
    REQUIRE(raw.conn->write(record));
    REQUIRE(loop.run_until([&] { return !server.accepted.empty() && server.first().closed; }));
    CHECK(*server.first().closed ==
          "peer sent 2005 bytes without completing the TLS handshake (limit 1000)");
}

TEST_CASE("tls: a TLS 1.1 client is refused") {
    TestLoop loop;
    Server server(loop);
    RawClient raw(loop, server.address());
    // A ClientHello offering only TLS 1.1 (RFC 4346 §7.4.1.2), written by hand because our
    // own client cannot be made to speak it.
    Bytes body = {0x03, 0x02};              // client_version 3.2 = TLS 1.1
    body.resize(body.size() + 32, 0x5a);    // random
    body.push_back(0x00);                   // session_id: empty
    body.insert(body.end(), {0x00, 0x04,    // cipher suites, 4 bytes:
                             0xc0, 0x09,    //   ECDHE_ECDSA_WITH_AES_128_CBC_SHA
                             0x00, 0xff});  //   EMPTY_RENEGOTIATION_INFO_SCSV
    body.insert(body.end(), {0x01, 0x00});  // compression: null only
    Bytes handshake = {0x01, 0x00, 0x00, static_cast<uint8_t>(body.size())};
    handshake.insert(handshake.end(), body.begin(), body.end());
    Bytes record = {0x16, 0x03, 0x01, 0x00, static_cast<uint8_t>(handshake.size())};
    record.insert(record.end(), handshake.begin(), handshake.end());
    REQUIRE(raw.conn->write(record));

    REQUIRE(loop.run_until([&] { return !server.accepted.empty() && server.first().closed; }));
    CHECK_FALSE(server.first().connected);
    INFO("server: " << *server.first().closed);
    CHECK(server.first().closed->find("protocol") != std::string::npos);
    // The answer is a fatal protocol_version alert (RFC 5246 §7.2.2: alert 70).
    REQUIRE(loop.run_until([&] { return raw.received.size() >= 7 || raw.eof; }));
    REQUIRE(raw.received.size() >= 7);
    CHECK(static_cast<uint8_t>(raw.received[0]) == 0x15);  // alert record
    CHECK(static_cast<uint8_t>(raw.received[5]) == 2);     // fatal
    CHECK(static_cast<uint8_t>(raw.received[6]) == 70);    // protocol_version
}

TEST_CASE("tls: the server's fingerprint is its certificate file's, across reloads") {
    TestLoop loop;
    Server server(loop);
    auto from_file = certificate_fingerprint(server.cert);
    REQUIRE(std::holds_alternative<std::string>(from_file));
    CHECK(server.fingerprint() == std::get<std::string>(from_file));
    auto again = TlsContext::server(server.cert, server.key);
    REQUIRE(std::holds_alternative<std::shared_ptr<TlsContext>>(again));
    CHECK(std::get<std::shared_ptr<TlsContext>>(again)->fingerprint() == server.fingerprint());
    // And a client pinning the file's fingerprint gets through.
    Client client(loop, server.address(), pinned(std::get<std::string>(from_file)));
    REQUIRE(loop.run_until([&] { return client.connected; }));
}

TEST_CASE("tls: verification with a CA file checks the server's name") {
    TestLoop loop;
    Server server(loop);
    TlsClientConfig good;
    good.ca_file = server.cert;  // the self-signed certificate is its own trust anchor
    good.server_name = kServerCertCommonName;
    Client ok(loop, server.address(), client_context(good));
    REQUIRE(loop.run_until([&] { return ok.connected; }));

    TlsClientConfig wrong_name = good;
    wrong_name.server_name = "somebody-else";
    Client bad(loop, server.address(), client_context(wrong_name));
    REQUIRE(loop.run_until([&] { return bad.closed.has_value(); }));
    CHECK_FALSE(bad.connected);
    INFO(*bad.closed);
    CHECK(bad.closed->rfind("server certificate verification failed: ", 0) == 0);
    CHECK(bad.closed->find("CN") != std::string::npos);

    // A CA that did not sign the server's certificate.
    TempDir other;
    REQUIRE_FALSE(create_self_signed_cert(other.file("ca.crt"), other.file("ca.key")));
    TlsClientConfig stranger = good;
    stranger.ca_file = other.file("ca.crt");
    Client refused(loop, server.address(), client_context(stranger));
    REQUIRE(loop.run_until([&] { return refused.closed.has_value(); }));
    CHECK_FALSE(refused.connected);
    CHECK(refused.closed->rfind("server certificate verification failed: ", 0) == 0);
}

TEST_CASE("tls: a client must say how it verifies the server") {
    auto error_of = [](const TlsClientConfig& c) {
        auto r = TlsContext::client(c);
        REQUIRE(std::holds_alternative<OsError>(r));
        return std::get<OsError>(r).message;
    };
    TlsClientConfig none;
    CHECK(error_of(none) ==
          "no way to verify the server: give its certificate fingerprint (sha256:...) or a CA "
          "file");
    TlsClientConfig both;
    both.pinned_fingerprint = "sha256:" + std::string(64, 'a');
    both.ca_file = "/nonexistent";
    CHECK(error_of(both) == "give either a pinned server fingerprint or a CA file, not both");
    TlsClientConfig malformed;
    malformed.pinned_fingerprint = "sha1:abcd";
    CHECK(error_of(malformed) ==
          "server fingerprint \"sha1:abcd\" is not sha256: followed by 64 hex digits");
    TlsClientConfig missing_ca;
    missing_ca.ca_file = "/nonexistent/ca.pem";
    CHECK(error_of(missing_ca).rfind("CA file /nonexistent/ca.pem: ", 0) == 0);
}

TEST_CASE("tls: a refused connect arrives as on_closed") {
    TestLoop loop;
    uint16_t port = 0;
    {
        Server gone(loop);
        port = gone.address().port;
    }
    Client client(loop, loopback4(port), pinned("sha256:" + std::string(64, 'a')));
    REQUIRE(loop.run_until([&] { return client.closed.has_value(); }));
    CHECK(*client.closed == "connect 127.0.0.1:" + std::to_string(port) + ": connection refused");
    CHECK_FALSE(client.conn->write(as_bytes("x")));
}

TEST_CASE("tls: close sends close_notify and both sides report it") {
    TestLoop loop;
    Server server(loop);
    Client client(loop, server.address(), pinned(server.fingerprint()));
    REQUIRE(loop.run_until(
        [&] { return client.connected && !server.accepted.empty() && server.first().connected; }));
    REQUIRE(client.conn->write(as_bytes("bye")));
    client.conn->close();
    CHECK_FALSE(client.conn->write(as_bytes("after close")));
    REQUIRE(loop.run_until([&] { return client.closed && server.first().closed; }));
    CHECK(*client.closed == "closed");
    CHECK(*server.first().closed == "closed by peer");
    CHECK(server.first().received == "bye");  // queued data goes out before the close
}

TEST_CASE("tls: heap cost of an idle connection", "[memory]") {
#if defined(__SANITIZE_ADDRESS__)
    WARN("skipped under AddressSanitizer: mallinfo2 does not see its allocator");
    return;
#else
    // The clients run in a child process, so each side's heap is measured alone:
    // mallinfo2().uordblks is the bytes in use, in every arena.
    constexpr int kConnections = 40;
    struct Cost {
        long server;
        long client;
    };
    auto measure = [&](unsigned max_fragment_length) -> Cost {
        TestLoop loop;
        Server server(loop);
        int up_pipe[2], down_pipe[2];
        REQUIRE(::pipe(up_pipe) == 0);
        REQUIRE(::pipe(down_pipe) == 0);
        loop.settle();
        const size_t server_before = mallinfo2().uordblks;
        const pid_t child = ::fork();
        REQUIRE(child >= 0);
        if (child == 0) {
            // The child: its own loop, kConnections idle clients; reports its own cost, then
            // waits for the parent to finish measuring.
            ::close(up_pipe[0]);
            ::close(down_pipe[1]);
            long per_connection = -1;
            {
                TlsClientConfig config;
                config.pinned_fingerprint = server.fingerprint();
                config.max_fragment_length = max_fragment_length;
                auto ctx = std::get<std::shared_ptr<TlsContext>>(TlsContext::client(config));
                TestLoop child_loop;
                const size_t before = mallinfo2().uordblks;
                std::vector<std::unique_ptr<Client>> clients;
                for (int i = 0; i < kConnections; ++i) {
                    clients.push_back(std::make_unique<Client>(child_loop, server.address(), ctx));
                }
                const bool up = child_loop.run_until([&] {
                    return std::all_of(clients.begin(), clients.end(),
                                       [](auto& c) { return c->connected; });
                });
                child_loop.run_for(100ms);
                if (up) {
                    per_connection =
                        (static_cast<long>(mallinfo2().uordblks) - static_cast<long>(before)) /
                        kConnections;
                }
                (void)!::write(up_pipe[1], &per_connection, sizeof per_connection);
                char go;
                (void)!::read(down_pipe[0], &go, 1);
            }
            ::_exit(0);
        }
        ::close(up_pipe[1]);
        ::close(down_pipe[0]);
        REQUIRE(loop.run_until([&] {
            return server.accepted.size() == kConnections &&
                   std::all_of(server.accepted.begin(), server.accepted.end(),
                               [](auto& ep) { return ep->connected; });
        }));
        loop.run_for(100ms);
        const long server_per_connection =
            (static_cast<long>(mallinfo2().uordblks) - static_cast<long>(server_before)) /
            kConnections;
        long client_per_connection = -1;
        REQUIRE(::read(up_pipe[0], &client_per_connection, sizeof client_per_connection) ==
                sizeof client_per_connection);
        REQUIRE(::write(down_pipe[1], "x", 1) == 1);
        int status = 0;
        ::waitpid(child, &status, 0);
        ::close(up_pipe[0]);
        ::close(down_pipe[1]);
        return {server_per_connection, client_per_connection};
    };

    const Cost plain = measure(0);
    const Cost mfl = measure(512);
    WARN("idle TLS connection heap: server " << plain.server << " B, client " << plain.client
                                             << " B; with max_fragment_length 512: server "
                                             << mfl.server << " B, client " << mfl.client << " B");
    CHECK(plain.client > 0);
    CHECK(mfl.client > 0);  // -1: the clients never came up
    // mbedTLS 2.28 as Debian builds it allocates two fixed 16 KiB record buffers per
    // connection (no MBEDTLS_SSL_VARIABLE_BUFFER_LENGTH), so an idle connection costs well
    // over the 16 KiB goal; this bound catches regressions beyond that.
    CHECK(plain.server < 48 * 1024);
    CHECK(plain.client < 48 * 1024);
    CHECK(mfl.server < 48 * 1024);
    CHECK(mfl.client < 48 * 1024);
    // What src/tls.h says of max_fragment_length: with these fixed buffers asking for 512-byte
    // records saves no memory on either side (measured: within 1%). Should an mbedTLS with
    // variable buffers make it pay off, this fails and the comment there must change.
    CHECK(mfl.server > plain.server * 9 / 10);
    CHECK(mfl.client > plain.client * 9 / 10);
#endif
}

// Issue 21: an idle connection gives its record buffers' pages back to the kernel, and keeps
// working afterwards.
TEST_CASE("tls: idle record buffers are given back and the connection still works") {
    TestLoop loop;
    Server server(loop);
    server.echo = true;
    server.options.release_buffers_after = 50ms;
    TlsOptions options;
    options.release_buffers_after = 50ms;
    Client client(loop, server.address(), pinned(server.fingerprint()), options);
    REQUIRE(loop.run_until([&] { return client.connected; }));
    // Full-size records touch every page of both buffers on both sides.
    constexpr size_t kTotal = 256 * 1024;
    write_all(loop, client, kTotal);
    REQUIRE(loop.run_until([&] { return client.received.size() == kTotal; }, 10s));
    auto& peer = *server.first().conn;
    const size_t busy = client.conn->resident_record_bytes();
    CHECK(busy > 2 * 16 * 1024);  // both buffers, faulted in by the transfer
    REQUIRE(loop.run_until([&] { return client.conn->buffer_releases() >= 1; }, 2s));
    REQUIRE(loop.run_until([&] { return peer.buffer_releases() >= 1; }, 2s));
    const long page = sysconf(_SC_PAGESIZE);
    // Each buffer keeps its first partial page and the page holding its tail at most.
    CHECK(client.conn->resident_record_bytes() <= 4 * static_cast<size_t>(page));
    CHECK(peer.resident_record_bytes() <= 4 * static_cast<size_t>(page));
    INFO("resident record bytes: busy " << busy << ", idle "
                                        << client.conn->resident_record_bytes());
    // The sequence numbers survived: records still decrypt byte for byte, both ways.
    client.received.clear();
    server.first().received.clear();
    write_all(loop, client, kTotal);
    REQUIRE(loop.run_until([&] { return client.received.size() == kTotal; }, 10s));
    const Bytes expected = pattern(0, kTotal);
    CHECK(client.received == std::string(as_chars(expected)));
    // And the next idle period gives them back again.
    const uint64_t releases = client.conn->buffer_releases();
    REQUIRE(loop.run_until([&] { return client.conn->buffer_releases() > releases; }, 2s));
    CHECK_FALSE(client.closed);
}

TEST_CASE("tls: a busy connection keeps its record buffers") {
    TestLoop loop;
    Server server(loop);
    server.echo = true;
    TlsOptions options;
    options.release_buffers_after = 100ms;
    Client client(loop, server.address(), pinned(server.fingerprint()), options);
    REQUIRE(loop.run_until([&] { return client.connected; }));
    // A record every 20 ms for 600 ms: never idle for a whole period.
    for (int i = 0; i < 30; ++i) {
        REQUIRE(client.conn->write(as_bytes("tick")));
        loop.run_for(20ms);
    }
    CHECK(client.conn->buffer_releases() == 0);
    REQUIRE(loop.run_until([&] { return client.received.size() == 30 * 4; }));
    // Quiet from here: released within two periods.
    REQUIRE(loop.run_until([&] { return client.conn->buffer_releases() == 1; }, 1s));
}

TEST_CASE("tls: release_buffers_after zero keeps the buffers resident") {
    TestLoop loop;
    Server server(loop);
    server.echo = true;
    TlsOptions options;
    options.release_buffers_after = 0ms;
    Client client(loop, server.address(), pinned(server.fingerprint()), options);
    REQUIRE(loop.run_until([&] { return client.connected; }));
    constexpr size_t kTotal = 64 * 1024;
    write_all(loop, client, kTotal);
    REQUIRE(loop.run_until([&] { return client.received.size() == kTotal; }, 10s));
    loop.run_for(300ms);
    CHECK(client.conn->buffer_releases() == 0);
    CHECK(client.conn->resident_record_bytes() > 2 * 16 * 1024);
}
