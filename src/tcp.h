// Plain TCP on the libuv loop: a listener, a connector with a timeout, and a connection with
// the controls a forwarded TCP connection needs (docs/architecture.md §4 "TCP semantics").
//
//   read      on_data(bytes) until on_eof (the peer's FIN); pause_reading()/resume_reading()
//             stop and restart the socket reads, so a slow consumer pushes back on the sender
//   write     copies into a bounded queue (several chunks: one writev); write() returns false
//             when the queue is full and on_drained fires once it has emptied to half, so the
//             producer can go on
//   shutdown  our FIN after everything queued has been written (half-close)
//   reset     an RST, which the peer sees as "connection reset by peer"
//   close     now; anything still queued is dropped
//
// Lifetime: a connection holds itself alive while its socket is open. Whatever ends it (our
// close/reset, a read or write error), on_closed(reason) is the last callback, delivered from
// libuv's close callback, never from inside one of our methods; after it the object is inert
// and is freed when the last shared_ptr goes. No callback runs before start().
#pragma once

#include <uv.h>

#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <variant>

#include "tunnel/socket_address.h"
#include "src/os_error.h"
#include "tunnel/bytes.h"
#include "tunnel/time.h"

namespace burrow {

struct TcpOptions {
    // Bytes write() accepts beyond what the kernel has taken. A forwarded connection's sender
    // must stop granting credit when this fills (docs/architecture.md §4: never buffer without bound).
    size_t max_write_queue = 256 * 1024;
    // Listeners: an IPv6 listener that takes IPv6 only (IPV6_V6ONLY=1), for a server that also
    // listens on the same port over IPv4. Unset, an IPv6 listener is dual-stack.
    bool v6_only = false;
    // Issue 15 (TCP hole punching): a listener, or a connect's local socket, shares its port
    // with other sockets of this process (SO_REUSEADDR + SO_REUSEPORT). A connect binds to
    // local_port (0: any) of its remote's family before it connects, so the agent's control
    // connection and its connects to the peer leave from the port its peer listener is on.
    bool reuse_port = false;
    uint16_t local_port = 0;
    // A connect whose shared port is taken for that destination (a connection of the same four
    // addresses still in TIME_WAIT: the kernel refuses with EADDRNOTAVAIL) leaves from any port
    // instead: the control connection must come back after a server restart.
    bool any_port_if_taken = false;
};

struct TcpCallbacks {
    std::function<void(ByteView data)> on_data;
    std::function<void()> on_eof;      // the peer will send nothing more; we may still write
    std::function<void()> on_drained;  // a refused write() may be retried now
    std::function<void(const std::string& reason)> on_closed;  // last call; see reason()
};

class TcpConnection : public std::enable_shared_from_this<TcpConnection> {
  public:
    ~TcpConnection();
    TcpConnection(const TcpConnection&) = delete;
    TcpConnection& operator=(const TcpConnection&) = delete;

    // Sets the callbacks and starts reading. Only the first call counts; a connection that has
    // already finished closing stays silent.
    void start(TcpCallbacks callbacks);

    // Queues a copy of data (or writes it at once when the kernel has room). Accepted whole
    // when the queue is empty or data fits under max_write_queue; otherwise false, nothing is
    // queued, and on_drained follows. Also false after shutdown() or once closing.
    bool write(ByteView data);
    // The same for several chunks, written with one writev (docs/architecture.md §12: one
    // writev for many stream chunks) and accepted or refused as a whole.
    bool write(std::span<const ByteView> chunks);
    size_t write_queue_bytes() const { return queued_bytes_; }
    void set_max_write_queue(size_t bytes) { max_write_queue_ = bytes; }

    void pause_reading();
    void resume_reading();
    bool reading_paused() const { return paused_; }

    // done runs once the FIN has gone out (not if the connection closes first).
    void shutdown(std::function<void()> done = {});
    // Ends the connection as an answer rather than an error: our FIN after what is queued, what
    // the peer still sends is read and discarded (closing with unread bytes would make the
    // kernel send an RST), and the socket closes at the peer's FIN or after linger. Starts the
    // connection if it was not started; on_data, on_eof and on_drained are not called again.
    void finish(Duration linger = std::chrono::seconds(5));
    void close();
    void reset();

    // Asks for one on_drained once the write queue is at or below low_watermark, whether or
    // not a write() was refused: for owners (TLS) that bound their writes themselves.
    void notify_when_drained(size_t low_watermark);

    // One timer per connection for its owner's deadlines (a handshake, a linger). Setting it
    // again replaces the previous one; it is cancelled when the connection closes.
    void set_timer(Duration after, std::function<void()> fire);
    void cancel_timer();

    // TCP_NOTSENT_LOWAT: the kernel holds at most this much unsent data (a direct TCP path's
    // session keeps the rest, docs/architecture.md §4). False if the kernel refused.
    bool set_not_sent_lowat(int bytes);

    bool is_open() const { return state_ == State::kOpen; }
    bool eof_received() const { return eof_; }
    const SocketAddress& local_address() const { return local_; }
    const SocketAddress& peer_address() const { return peer_; }

  private:
    friend class TcpListener;
    friend void tcp_connect(uv_loop_t*, const SocketAddress&, Duration,
                            std::function<void(std::shared_ptr<TcpConnection>, OsError)>,
                            TcpOptions);
    enum class State { kConnecting, kOpen, kClosing, kClosed };
    struct WriteRequest;

    static std::shared_ptr<TcpConnection> make(uv_loop_t* loop, const TcpOptions& options);
    explicit TcpConnection(const TcpOptions& options);
    void on_established();
    void begin_close(const std::string& reason, bool reset);
    void finish_close();
    static void on_alloc(uv_handle_t* handle, size_t suggested, uv_buf_t* buf);
    static void on_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf);
    static void on_written(uv_write_t* req, int status);
    static void on_shutdown(uv_shutdown_t* req, int status);
    static void on_timer(uv_timer_t* timer);
    static void on_connected(uv_connect_t* req, int status);
    static void on_handle_closed(uv_handle_t* handle);
    uv_stream_t* stream() { return reinterpret_cast<uv_stream_t*>(&tcp_); }

    uv_tcp_t tcp_;
    uv_timer_t timer_;
    uv_connect_t connect_req_;
    State state_ = State::kConnecting;
    TcpCallbacks callbacks_;
    std::function<void()> timer_fn_;
    size_t max_write_queue_;
    size_t queued_bytes_ = 0;
    std::optional<size_t> drain_threshold_;  // on_drained is owed once the queue gets here
    bool started_ = false;
    bool paused_ = false;
    bool eof_ = false;
    bool shutdown_requested_ = false;
    int open_handles_ = 0;
    std::function<void()> shutdown_done_;
    std::string close_reason_;
    SocketAddress local_;
    SocketAddress peer_;
    // Connector state: the result callback until the connect completes.
    std::function<void(std::shared_ptr<TcpConnection>, OsError)> connect_done_;
    std::shared_ptr<TcpConnection> self_;  // held while the uv handles are open
};

class TcpListener : public std::enable_shared_from_this<TcpListener> {
  public:
    using AcceptFn = std::function<void(std::shared_ptr<TcpConnection>)>;

    // Listens on local (port 0 picks one). Errors read "listen 127.0.0.1:8080: address already
    // in use". Each accepted connection goes to on_accept, which must start() or close() it.
    static std::variant<std::shared_ptr<TcpListener>, OsError> listen(uv_loop_t* loop,
                                                                      const SocketAddress& local,
                                                                      AcceptFn on_accept,
                                                                      TcpOptions options = {});
    ~TcpListener();
    void close();
    const SocketAddress& local_address() const { return local_; }

    // Descriptors left free for everything but this listener's connections: the exposing side's
    // connects, the server's TLS connection, the status endpoint, the resolver. An accepted
    // connection that leaves fewer calls on_descriptors_low, before accept() itself fails (then
    // libuv closes waiting connections at once to get out of its loop).
    static constexpr int kDescriptorReserve = 64;
    // free: descriptors left below the soft RLIMIT_NOFILE (limit) after the last accept.
    using LowFn = std::function<void(int free, int limit)>;
    void on_descriptors_low(LowFn fn) { on_low_ = std::move(fn); }
    // New connections wait in the kernel's backlog until resume(): libuv stops polling the
    // listening socket while a connection it accepted waits for uv_accept(), and we hold that
    // one back. No handle is closed; resume() takes the held connection and polls again.
    void pause() { paused_ = true; }
    void resume();

  private:
    TcpListener(AcceptFn on_accept, TcpOptions options);
    static void on_connection(uv_stream_t* server, int status);
    static void on_closed(uv_handle_t* handle);
    void accept_one();

    uv_tcp_t tcp_;
    AcceptFn on_accept_;
    LowFn on_low_;
    TcpOptions options_;
    SocketAddress local_;
    int open_files_limit_ = 0;  // the soft RLIMIT_NOFILE when we started listening
    bool paused_ = false;
    bool holding_ = false;  // libuv accepted a connection we have not taken yet
    bool closed_ = false;
    std::shared_ptr<TcpListener> self_;
};

// Connects to remote. done(connection, {}) on success (start() it); done(nullptr, error) on
// failure, with messages like "connect 127.0.0.1:9: connection refused" or
// "connect 10.0.0.1:80: timed out after 5000 ms". done is always called later from the loop,
// never from inside tcp_connect.
void tcp_connect(uv_loop_t* loop, const SocketAddress& remote, Duration timeout,
                 std::function<void(std::shared_ptr<TcpConnection>, OsError)> done,
                 TcpOptions options = {});

}  // namespace burrow
