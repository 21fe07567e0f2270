// StreamPipe: one forwarded TCP connection on one stream. Two Connections on a perfect
// in-memory pipe; a pipe on each side; the test plays the two TCP applications and checks the
// actions each pipe asks of its socket.
#include <catch2/catch.hpp>

#include <vector>

#include "tunnel/connection.h"
#include "tunnel/stream_pipe.h"

using namespace burrow;
using namespace std::chrono_literals;

namespace {

struct Side {
    Side(Role role, const ConnectionConfig& c) : conn(role, c, prot, Time{}) {}
    NullProtection prot{7};
    Connection conn;
    std::optional<StreamPipe> pipe;
    std::vector<PipeAction> actions;
    Bytes to_app;  // what the pipe wrote to its socket
    bool reading = false;

    void take_actions() {
        while (auto a = pipe->poll_action()) {
            actions.push_back(*a);
            if (*a == PipeAction::kResumeReading) reading = true;
            if (*a == PipeAction::kPauseReading) reading = false;
            if (*a == PipeAction::kFlush) flush();
        }
    }
    void flush() {
        uint8_t buf[4096];
        while (size_t n = pipe->read_output(conn, MutableByteView(buf, sizeof buf))) {
            to_app.insert(to_app.end(), buf, buf + n);
        }
    }
    bool saw(PipeAction a) const {
        return std::find(actions.begin(), actions.end(), a) != actions.end();
    }
};

struct World {
    explicit World(ConnectionConfig c = {}) : a(Role::kInitiator, c), b(Role::kResponder, c) {}
    Side a, b;
    Time now{};

    // Moves packets both ways and hands each side's stream events to its pipe.
    void run(Duration limit = 1s) {
        const Time end = now + limit;
        for (int round = 0; round < 10000 && now < end; ++round) {
            bool moved = false;
            for (Side* from : {&a, &b}) {
                Side* to = from == &a ? &b : &a;
                while (auto d = from->conn.poll_transmit(now)) {
                    to->conn.on_datagram(*d, now);
                    moved = true;
                }
            }
            for (Side* s : {&a, &b}) {
                while (auto e = s->conn.poll_event()) {
                    moved = true;
                    if (const auto* o = std::get_if<StreamOpened>(&*e)) {
                        s->pipe.emplace(o->id, false);  // the target is being connected
                    } else if (s->pipe) {
                        std::visit(
                            [&](const auto& ev) {
                                using E = std::decay_t<decltype(ev)>;
                                if constexpr (std::is_same_v<E, StreamReadable>) {
                                    s->pipe->on_readable();
                                } else if constexpr (std::is_same_v<E, StreamWritable>) {
                                    s->pipe->on_writable(s->conn);
                                } else if constexpr (std::is_same_v<E, StreamFinished>) {
                                    s->pipe->on_finished();
                                } else if constexpr (std::is_same_v<E, StreamReset>) {
                                    s->pipe->on_reset(ev.reason);
                                } else if constexpr (std::is_same_v<E, StreamClosed>) {
                                    s->pipe->on_closed();
                                }
                            },
                            *e);
                    }
                }
                if (s->pipe) s->take_actions();
            }
            if (!moved) {
                const Time next = std::min(a.conn.next_deadline(), b.conn.next_deadline());
                if (next == kNever || next > end) break;
                now = std::max(now, next);
                a.conn.on_timer(now);
                b.conn.on_timer(now);
            }
        }
    }

    // The target side's connect succeeds (b's pipe exists once a's stream reached it); then
    // everything moves for `limit`.
    void connect_target(Duration limit = 1s) {
        REQUIRE(b.pipe);
        b.pipe->on_tcp_connected(b.conn);
        b.take_actions();
        run(limit);
    }

    // The forward side: an accepted connection on a new stream of a.
    void open() {
        auto id = a.conn.open_stream("web");
        REQUIRE(id);
        a.pipe.emplace(*id, true);
    }
};

Bytes bytes_of(const std::string& s) {
    return Bytes(s.begin(), s.end());
}

}  // namespace

TEST_CASE("bytes and half-closes cross both ways, then both sockets close cleanly") {
    World w;
    w.open();
    w.a.pipe->on_tcp_data(w.a.conn, bytes_of("GET /"));
    w.a.pipe->on_tcp_eof(w.a.conn);  // the client half-closes after its request
    w.a.take_actions();
    w.run();
    w.connect_target();
    CHECK(w.b.to_app == bytes_of("GET /"));
    // The request's FIN reached the target: its socket is shut for writing.
    CHECK(w.b.saw(PipeAction::kShutdown));
    w.b.pipe->on_tcp_shutdown_done();
    w.b.pipe->on_tcp_data(w.b.conn, bytes_of("200 OK"));
    w.b.pipe->on_tcp_eof(w.b.conn);
    w.b.take_actions();
    CHECK(w.b.saw(PipeAction::kClose));  // both directions finished on b's socket
    w.run();
    CHECK(w.a.to_app == bytes_of("200 OK"));
    CHECK(w.a.saw(PipeAction::kShutdown));
    w.a.pipe->on_tcp_shutdown_done();
    w.a.take_actions();
    CHECK(w.a.saw(PipeAction::kClose));
    w.a.pipe->on_tcp_closed(&w.a.conn);
    w.b.pipe->on_tcp_closed(&w.b.conn);
    w.run();
    CHECK(w.a.pipe->done());
    CHECK(w.b.pipe->done());
    CHECK_FALSE(w.a.saw(PipeAction::kReset));
    CHECK_FALSE(w.b.saw(PipeAction::kReset));
    CHECK(w.a.pipe->bytes_to_stream() == 5);
    CHECK(w.a.pipe->bytes_to_tcp() == 6);
}

TEST_CASE("read_space bounds what is read; a full stream pauses reading until it drains") {
    ConnectionConfig c;
    c.stream_send_buffer = 16 * 1024;
    World w(c);
    w.open();
    CHECK(w.a.pipe->read_space(w.a.conn) == c.stream_send_buffer);
    Bytes chunk(c.stream_send_buffer, 0x5a);
    w.a.pipe->on_tcp_data(w.a.conn, chunk);
    w.a.take_actions();
    CHECK(w.a.saw(PipeAction::kPauseReading));
    CHECK(w.a.pipe->read_space(w.a.conn) == 0);
    w.a.actions.clear();
    w.run();  // the stream's bytes are sent and acknowledged: room again
    w.connect_target();
    CHECK(w.a.saw(PipeAction::kResumeReading));
    CHECK(w.a.pipe->read_space(w.a.conn) > 0);
    CHECK(w.b.to_app.size() == chunk.size());
}

TEST_CASE("more than read_space is kept in order, not lost") {
    ConnectionConfig c;
    c.stream_send_buffer = 8 * 1024;
    World w(c);
    w.open();
    Bytes data(20 * 1024);
    for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i * 7);
    w.a.pipe->on_tcp_data(w.a.conn, data);  // a socket that read before it paused
    w.a.pipe->on_tcp_eof(w.a.conn);
    w.a.take_actions();
    w.run();
    w.connect_target(5s);
    CHECK(w.b.to_app == data);
    CHECK(w.b.saw(PipeAction::kShutdown));
}

TEST_CASE("bytes read while earlier ones still wait go after them, once the stream took part") {
    // The stream takes waiting bytes a part at a time (StreamWritable); more read from the socket
    // in between join the queue behind what is still waiting, not behind what was taken.
    ConnectionConfig c;
    c.stream_send_buffer = 8 * 1024;
    c.stream_receive_window = kInitialStreamWindow;  // b reads nothing: its target is not up
    World w(c);
    w.open();
    Bytes data(kInitialStreamWindow + 44 * 1024);
    for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i * 13 + i / 251);
    const ByteView all(data);
    const size_t first = kInitialStreamWindow + 14 * 1024;
    w.a.pipe->on_tcp_data(w.a.conn, all.first(first));  // the stream takes 8 KiB, the rest waits
    w.a.take_actions();
    w.run();  // the window's bytes go, and the send buffer takes 8 KiB more: 6 KiB still wait
    CHECK(w.a.pipe->bytes_to_stream() == kInitialStreamWindow + c.stream_send_buffer);
    w.a.pipe->on_tcp_data(w.a.conn, all.subspan(first, 10 * 1024));
    w.run();
    w.a.pipe->on_tcp_data(w.a.conn, all.subspan(first + 10 * 1024));
    w.a.pipe->on_tcp_eof(w.a.conn);
    w.a.take_actions();
    w.run();
    w.connect_target(10s);
    CHECK(w.a.pipe->bytes_to_stream() == data.size());
    CHECK(w.b.to_app == data);
    CHECK(w.b.saw(PipeAction::kShutdown));
}

TEST_CASE("a refused target ends the client's connection cleanly, with the reason") {
    World w;
    w.open();
    w.a.pipe->on_tcp_data(w.a.conn, bytes_of("hello"));
    w.run();
    REQUIRE(w.b.pipe);
    w.b.pipe->refuse(&w.b.conn, ResetReason::kRefused);
    CHECK(w.b.pipe->done());
    w.run();
    CHECK(w.a.saw(PipeAction::kFinish));
    CHECK_FALSE(w.a.saw(PipeAction::kReset));
    REQUIRE(w.a.pipe->note());
    CHECK(*w.a.pipe->note() == PipeNote::kRefusedByPeer);
    CHECK(w.a.pipe->reset_reason() == ResetReason::kRefused);
}

TEST_CASE("a client that goes away early resets the stream; the target sees an RST") {
    World w;
    w.open();
    w.a.pipe->on_tcp_data(w.a.conn, bytes_of("partial"));
    w.run();
    REQUIRE(w.b.pipe);
    w.b.pipe->on_tcp_connected(w.b.conn);
    w.b.take_actions();
    w.a.pipe->on_tcp_closed(&w.a.conn);  // no FIN: the client crashed
    CHECK(w.a.pipe->note() == PipeNote::kClientAborted);
    w.run();
    CHECK(w.b.saw(PipeAction::kReset));
    CHECK(w.b.pipe->note() == PipeNote::kResetByPeer);
}

TEST_CASE("when the session goes, the socket is reset and the connection never touched") {
    World w;
    w.open();
    w.a.pipe->session_gone();
    w.a.take_actions();
    CHECK(w.a.saw(PipeAction::kReset));
    CHECK(w.a.pipe->read_space(w.a.conn) == 0);
    uint8_t buf[16];
    CHECK(w.a.pipe->read_output(w.a.conn, MutableByteView(buf, sizeof buf)) == 0);
    w.a.pipe->on_tcp_closed(nullptr);
    CHECK(w.a.pipe->done());
}

TEST_CASE("reset reasons that answer end cleanly; the others abort") {
    for (ResetReason r :
         {ResetReason::kRefused, ResetReason::kUnknownService, ResetReason::kNotAllowed,
          ResetReason::kUnreachable, ResetReason::kTooManyStreams}) {
        CHECK(is_refusal(r));
    }
    CHECK_FALSE(is_refusal(ResetReason::kAborted));
    CHECK_FALSE(is_refusal(ResetReason::kSessionClosing));
    CHECK(std::string(reset_reason_text(ResetReason::kRefused)) ==
          "the target refused the connection");
}
