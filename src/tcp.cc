#include "src/tcp.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <csignal>
#include <utility>
#include <vector>

#include "src/log.h"
#include "src/sockaddr.h"

namespace burrow {

namespace {

// One read buffer per thread, shared by every connection: libuv fills it, on_read hands it to
// the owner and is done with it before the next read. A buffer per connection would cost this
// much for each idle one. 256 KiB per read (issue 14): at a gigabit a sender refills the socket
// faster than 64 KiB reads drain it, and each read costs a syscall and a trip through the core.
constexpr size_t kReadBufferSize = 256 * 1024;
thread_local char read_buffer[kReadBufferSize];

constexpr int64_t kUsPerMs = 1000;
// The kernel caps the backlog at net.core.somaxconn; ask for that much.
constexpr int kListenBacklog = SOMAXCONN;

uint64_t ceil_ms(Duration d) {
    const int64_t us = to_us(d);
    return us <= 0 ? 0 : static_cast<uint64_t>((us + kUsPerMs - 1) / kUsPerMs);
}

// libuv writes to sockets with write(2), which raises SIGPIPE when the peer has gone; the
// default action would kill the process. Every libuv program ignores it, so do it before the
// first socket exists rather than rely on main().
void ignore_sigpipe() {
    static const bool done = [] {
        std::signal(SIGPIPE, SIG_IGN);
        return true;
    }();
    (void)done;
}

// A TCP socket of the address's family that shares its port (SO_REUSEADDR + SO_REUSEPORT; the
// same user's sockets only), bound to `local`, for uv_tcp_open. libuv 1.44 has no flag for
// SO_REUSEPORT, so the socket is made here. Returns the descriptor or a negative libuv error.
int reuse_port_socket(const SocketAddress& local, bool v6_only) {
    const int fd =
        ::socket(local.v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return uv_translate_sys_error(errno);
    const int on = 1;
    const int v6only = v6_only ? 1 : 0;
    if (::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) != 0 ||
        ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on) != 0 ||
        (local.v6 && ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof v6only) != 0)) {
        const int err = uv_translate_sys_error(errno);
        ::close(fd);
        return err;
    }
    const sockaddr_storage sa = to_sockaddr(local);
    const socklen_t len = local.v6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
    if (::bind(fd, reinterpret_cast<const sockaddr*>(&sa), len) != 0) {
        const int err = uv_translate_sys_error(errno);
        ::close(fd);
        return err;
    }
    return fd;
}

}  // namespace

struct TcpConnection::WriteRequest {
    uv_write_t req;
    TcpConnection* connection;  // alive: libuv cancels pending writes before the close callback
    Bytes data;
};

std::shared_ptr<TcpConnection> TcpConnection::make(uv_loop_t* loop, const TcpOptions& options) {
    ignore_sigpipe();
    std::shared_ptr<TcpConnection> c(new TcpConnection(options));
    uv_tcp_init(loop, &c->tcp_);  // cannot fail: no flags, no socket yet
    uv_timer_init(loop, &c->timer_);
    c->tcp_.data = c.get();
    c->timer_.data = c.get();
    c->open_handles_ = 2;
    c->self_ = c;
    return c;
}

TcpConnection::TcpConnection(const TcpOptions& options)
    : max_write_queue_(options.max_write_queue) {}

TcpConnection::~TcpConnection() = default;

void TcpConnection::on_established() {
    state_ = State::kOpen;
    // We write whole messages (TLS records, forwarded chunks), several in a row: Nagle's
    // algorithm would hold each small one back until the previous is acknowledged, and with
    // delayed ACKs that costs ~40 ms per round of a TLS handshake.
    uv_tcp_nodelay(&tcp_, 1);
    sockaddr_storage sa;
    int len = sizeof sa;
    if (uv_tcp_getsockname(&tcp_, reinterpret_cast<sockaddr*>(&sa), &len) == 0) {
        local_ = from_sockaddr(reinterpret_cast<const sockaddr*>(&sa)).value_or(local_);
    }
    len = sizeof sa;
    if (uv_tcp_getpeername(&tcp_, reinterpret_cast<sockaddr*>(&sa), &len) == 0) {
        peer_ = from_sockaddr(reinterpret_cast<const sockaddr*>(&sa)).value_or(peer_);
    }
}

void TcpConnection::start(TcpCallbacks callbacks) {
    if (started_ || state_ == State::kClosed) return;
    callbacks_ = std::move(callbacks);  // while closing, on_closed is still owed
    started_ = true;
    if (state_ != State::kOpen || paused_) return;
    const int rc = uv_read_start(stream(), &TcpConnection::on_alloc, &TcpConnection::on_read);
    if (rc != 0) begin_close("read: " + uv_error_text(rc), false);
}

bool TcpConnection::write(ByteView data) {
    return write(std::span<const ByteView>(&data, 1));
}

bool TcpConnection::write(std::span<const ByteView> chunks) {
    if (state_ != State::kOpen || shutdown_requested_) return false;
    size_t total = 0;
    for (const ByteView chunk : chunks) total += chunk.size();
    if (total == 0) return true;
    if (queued_bytes_ > 0 && queued_bytes_ + total > max_write_queue_) {
        notify_when_drained(max_write_queue_ / 2);
        return false;
    }
    size_t done = 0;
    if (queued_bytes_ == 0) {  // with writes queued, try_write would reorder (libuv refuses)
        // One writev for every chunk. The array is the thread's, reused: no allocation per write.
        thread_local std::vector<uv_buf_t> bufs;
        bufs.clear();
        for (const ByteView chunk : chunks) {
            // libuv's buffers are not const, but it only reads from them when writing.
            bufs.push_back(
                uv_buf_init(const_cast<char*>(reinterpret_cast<const char*>(chunk.data())),
                            static_cast<unsigned>(chunk.size())));
        }
        const int n = uv_try_write(stream(), bufs.data(), static_cast<unsigned>(bufs.size()));
        if (n >= 0) {
            done = static_cast<size_t>(n);
        } else if (n != UV_EAGAIN) {
            begin_close("write: " + uv_error_text(n), false);
            return false;
        }
    }
    if (done == total) return true;

    // The rest, copied into one request: the caller's buffers are only lent for this call.
    Bytes rest;
    rest.reserve(total - done);
    for (const ByteView chunk : chunks) {
        const size_t skip = std::min(done, chunk.size());
        done -= skip;
        rest.insert(rest.end(), chunk.begin() + static_cast<std::ptrdiff_t>(skip), chunk.end());
    }
    auto* request = new WriteRequest{{}, this, std::move(rest)};
    request->req.data = request;
    uv_buf_t buf = uv_buf_init(reinterpret_cast<char*>(request->data.data()),
                               static_cast<unsigned>(request->data.size()));
    const int rc = uv_write(&request->req, stream(), &buf, 1, &TcpConnection::on_written);
    if (rc != 0) {
        delete request;
        begin_close("write: " + uv_error_text(rc), false);
        return false;
    }
    queued_bytes_ += request->data.size();
    return true;
}

bool TcpConnection::set_not_sent_lowat(int bytes) {
    uv_os_fd_t fd = -1;
    if (uv_fileno(reinterpret_cast<const uv_handle_t*>(&tcp_), &fd) != 0) return false;
    return ::setsockopt(fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &bytes, sizeof bytes) == 0;
}

void TcpConnection::pause_reading() {
    paused_ = true;
    if (state_ == State::kOpen && started_ && !eof_) uv_read_stop(stream());
}

void TcpConnection::resume_reading() {
    if (!paused_) return;
    paused_ = false;
    if (state_ != State::kOpen || !started_ || eof_) return;
    const int rc = uv_read_start(stream(), &TcpConnection::on_alloc, &TcpConnection::on_read);
    if (rc != 0) begin_close("read: " + uv_error_text(rc), false);
}

void TcpConnection::notify_when_drained(size_t low_watermark) {
    drain_threshold_ = std::min(drain_threshold_.value_or(low_watermark), low_watermark);
}

void TcpConnection::shutdown(std::function<void()> done) {
    if (state_ != State::kOpen || shutdown_requested_) return;
    shutdown_requested_ = true;
    shutdown_done_ = std::move(done);
    auto* req = new uv_shutdown_t;
    req->data = this;
    const int rc = uv_shutdown(req, stream(), &TcpConnection::on_shutdown);
    if (rc != 0) {
        delete req;
        begin_close("shutdown: " + uv_error_text(rc), false);
    }
}

void TcpConnection::finish(Duration linger) {
    if (state_ != State::kOpen) {
        close();
        return;
    }
    TcpCallbacks callbacks;
    callbacks.on_closed = std::move(callbacks_.on_closed);
    callbacks.on_eof = [this] {
        if (shutdown_requested_ && queued_bytes_ == 0) close();
    };
    if (!started_) {
        start(std::move(callbacks));
    } else {
        callbacks_ = std::move(callbacks);
    }
    resume_reading();
    shutdown([this] {
        if (eof_) close();
    });
    set_timer(linger, [this] { close(); });
}

void TcpConnection::close() {
    begin_close("closed", false);
}

void TcpConnection::reset() {
    begin_close("reset", true);
}

void TcpConnection::set_timer(Duration after, std::function<void()> fire) {
    if (state_ == State::kClosing || state_ == State::kClosed) return;
    timer_fn_ = std::move(fire);
    // libuv counts from the loop time, cached at the start of the iteration and truncated to
    // the millisecond: refresh it, and add the millisecond, so the timer never fires early.
    uv_update_time(timer_.loop);
    uv_timer_start(&timer_, &TcpConnection::on_timer, ceil_ms(after) + 1, 0);
}

void TcpConnection::cancel_timer() {
    timer_fn_ = nullptr;
    if (state_ == State::kClosing || state_ == State::kClosed) return;
    uv_timer_stop(&timer_);
}

void TcpConnection::begin_close(const std::string& reason, bool reset) {
    if (state_ == State::kClosing || state_ == State::kClosed) return;
    state_ = State::kClosing;
    close_reason_ = reason;
    timer_fn_ = nullptr;
    shutdown_done_ = nullptr;
    uv_timer_stop(&timer_);
    auto* tcp = reinterpret_cast<uv_handle_t*>(&tcp_);
    // close_reset refuses a handle with a shutdown pending; a plain close is all we can do then.
    if (!reset || uv_tcp_close_reset(&tcp_, &TcpConnection::on_handle_closed) != 0) {
        uv_close(tcp, &TcpConnection::on_handle_closed);
    }
    uv_close(reinterpret_cast<uv_handle_t*>(&timer_), &TcpConnection::on_handle_closed);
}

void TcpConnection::finish_close() {
    state_ = State::kClosed;
    auto keep = std::move(self_);  // may free this object when it goes out of scope
    auto callbacks = std::move(callbacks_);
    callbacks_ = {};
    if (connect_done_) {
        auto done = std::move(connect_done_);
        connect_done_ = nullptr;
        done(nullptr, OsError{close_reason_});
    } else if (callbacks.on_closed) {
        callbacks.on_closed(close_reason_);
    }
}

void TcpConnection::on_alloc(uv_handle_t*, size_t, uv_buf_t* buf) {
    *buf = uv_buf_init(read_buffer, kReadBufferSize);
}

void TcpConnection::on_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) {
    auto* self = static_cast<TcpConnection*>(stream->data);
    if (nread > 0) {
        if (self->callbacks_.on_data) {
            self->callbacks_.on_data(
                ByteView(reinterpret_cast<const uint8_t*>(buf->base), static_cast<size_t>(nread)));
        }
        return;
    }
    if (nread == 0) return;  // EAGAIN: nothing after all
    if (nread == UV_EOF) {
        self->eof_ = true;
        uv_read_stop(stream);
        if (self->callbacks_.on_eof) self->callbacks_.on_eof();
        return;
    }
    self->begin_close("read: " + uv_error_text(static_cast<int>(nread)), false);
}

void TcpConnection::on_written(uv_write_t* req, int status) {
    auto* request = static_cast<WriteRequest*>(req->data);
    TcpConnection* self = request->connection;
    self->queued_bytes_ -= request->data.size();
    delete request;
    if (status < 0) {
        if (status != UV_ECANCELED) self->begin_close("write: " + uv_error_text(status), false);
        return;
    }
    if (self->drain_threshold_ && self->state_ == State::kOpen &&
        self->queued_bytes_ <= *self->drain_threshold_) {
        self->drain_threshold_.reset();
        if (self->callbacks_.on_drained) self->callbacks_.on_drained();
    }
}

void TcpConnection::on_shutdown(uv_shutdown_t* req, int status) {
    auto* self = static_cast<TcpConnection*>(req->data);
    delete req;
    if (status == UV_ECANCELED) return;
    if (status < 0) {
        self->begin_close("shutdown: " + uv_error_text(status), false);
        return;
    }
    auto done = std::move(self->shutdown_done_);
    self->shutdown_done_ = nullptr;
    if (done) done();
}

void TcpConnection::on_timer(uv_timer_t* timer) {
    auto* self = static_cast<TcpConnection*>(timer->data);
    auto fire = std::move(self->timer_fn_);
    self->timer_fn_ = nullptr;
    if (fire) fire();
}

void TcpConnection::on_connected(uv_connect_t* req, int status) {
    auto* self = static_cast<TcpConnection*>(req->data);
    if (status == UV_ECANCELED || self->state_ != State::kConnecting) return;
    if (status < 0) {
        self->begin_close("connect " + to_string(self->peer_) + ": " + uv_error_text(status),
                          false);
        return;
    }
    self->cancel_timer();
    self->on_established();
    auto done = std::move(self->connect_done_);
    self->connect_done_ = nullptr;
    done(self->shared_from_this(), OsError{});
}

void TcpConnection::on_handle_closed(uv_handle_t* handle) {
    auto* self = static_cast<TcpConnection*>(handle->data);
    if (--self->open_handles_ == 0) self->finish_close();
}

void tcp_connect(uv_loop_t* loop, const SocketAddress& remote, Duration timeout,
                 std::function<void(std::shared_ptr<TcpConnection>, OsError)> done,
                 TcpOptions options) {
    auto c = TcpConnection::make(loop, options);
    c->peer_ = remote;
    c->connect_done_ = std::move(done);
    c->connect_req_.data = c.get();
    if (options.reuse_port) {
        const SocketAddress local = remote.v6
                                        ? SocketAddress::ipv6({}, options.local_port)
                                        : SocketAddress::ipv4({0, 0, 0, 0}, options.local_port);
        const int fd = reuse_port_socket(local, false);
        const int opened = fd < 0 ? fd : uv_tcp_open(&c->tcp_, fd);
        if (opened != 0) {
            if (fd >= 0) ::close(fd);
            c->begin_close("connect " + to_string(remote) + " from port " +
                               std::to_string(options.local_port) + ": " + uv_error_text(opened),
                           false);
            return;
        }
    }
    const sockaddr_storage sa = to_sockaddr(remote);
    const int rc =
        uv_tcp_connect(&c->connect_req_, &c->tcp_, reinterpret_cast<const sockaddr*>(&sa),
                       &TcpConnection::on_connected);
    if (options.reuse_port && options.any_port_if_taken &&
        (rc == UV_EADDRNOTAVAIL || rc == UV_EADDRINUSE)) {
        auto retry = std::move(c->connect_done_);
        c->connect_done_ = nullptr;
        c->begin_close("shared port taken", false);  // silent: no callbacks are set
        options.reuse_port = false;
        options.local_port = 0;
        return tcp_connect(loop, remote, timeout, std::move(retry), options);
    }
    if (rc != 0) {
        // Reported from the close callback, so never from inside this call.
        c->begin_close("connect " + to_string(remote) + ": " + uv_error_text(rc), false);
        return;
    }
    const std::string timed_out = "connect " + to_string(remote) + ": timed out after " +
                                  std::to_string(to_us(timeout) / kUsPerMs) + " ms";
    TcpConnection* raw = c.get();  // the timer dies with the connection
    c->set_timer(timeout, [raw, timed_out] { raw->begin_close(timed_out, false); });
}

// --- listener ---------------------------------------------------------------------------------

std::variant<std::shared_ptr<TcpListener>, OsError> TcpListener::listen(uv_loop_t* loop,
                                                                        const SocketAddress& local,
                                                                        AcceptFn on_accept,
                                                                        TcpOptions options) {
    ignore_sigpipe();
    std::shared_ptr<TcpListener> l(new TcpListener(std::move(on_accept), options));
    if (rlimit files{}; getrlimit(RLIMIT_NOFILE, &files) == 0) {
        l->open_files_limit_ = static_cast<int>(std::min<rlim_t>(files.rlim_cur, INT_MAX));
    }
    uv_tcp_init(loop, &l->tcp_);
    l->tcp_.data = l.get();
    l->self_ = l;
    auto fail = [&](int rc) {
        l->close();
        return OsError{"listen " + to_string(local) + ": " + uv_error_text(rc)};
    };
    const sockaddr_storage sa = to_sockaddr(local);
    int rc = 0;
    if (options.reuse_port) {
        const int fd = reuse_port_socket(local, options.v6_only);
        rc = fd < 0 ? fd : uv_tcp_open(&l->tcp_, fd);
        if (rc != 0 && fd >= 0) ::close(fd);
    } else {
        rc = uv_tcp_bind(&l->tcp_, reinterpret_cast<const sockaddr*>(&sa),
                         local.v6 && options.v6_only ? UV_TCP_IPV6ONLY : 0);
    }
    if (rc != 0) return fail(rc);
    // libuv reports a bind's EADDRINUSE here, at listen time.
    rc = uv_listen(reinterpret_cast<uv_stream_t*>(&l->tcp_), kListenBacklog,
                   &TcpListener::on_connection);
    if (rc != 0) return fail(rc);
    sockaddr_storage bound;
    int len = sizeof bound;
    l->local_ = local;
    if (uv_tcp_getsockname(&l->tcp_, reinterpret_cast<sockaddr*>(&bound), &len) == 0) {
        l->local_ = from_sockaddr(reinterpret_cast<const sockaddr*>(&bound)).value_or(local);
    }
    return l;
}

TcpListener::TcpListener(AcceptFn on_accept, TcpOptions options)
    : on_accept_(std::move(on_accept)), options_(options) {}

TcpListener::~TcpListener() = default;

void TcpListener::close() {
    if (closed_) return;
    closed_ = true;
    on_accept_ = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), &TcpListener::on_closed);
}

void TcpListener::on_connection(uv_stream_t* server, int status) {
    auto* self = static_cast<TcpListener*>(server->data);
    if (status < 0) {
        spdlog::warn("accept on {}: {}", to_string(self->local_), uv_error_text(status));
        if ((status == UV_EMFILE || status == UV_ENFILE) && self->on_low_) {
            self->on_low_(0, self->open_files_limit_);
        }
        return;
    }
    if (self->paused_) {
        self->holding_ = true;  // returning without uv_accept() stops libuv's polling
        return;
    }
    self->accept_one();
}

void TcpListener::resume() {
    paused_ = false;
    if (!holding_ || closed_) return;
    holding_ = false;
    accept_one();  // uv_accept() starts libuv's polling again
}

void TcpListener::accept_one() {
    uv_stream_t* server = reinterpret_cast<uv_stream_t*>(&tcp_);
    auto c = TcpConnection::make(server->loop, options_);
    const int rc = uv_accept(server, c->stream());
    if (rc != 0) {
        spdlog::debug("accept on {}: {}", to_string(local_), uv_error_text(rc));
        c->close();
        return;
    }
    c->on_established();
    // Descriptors are handed out lowest first, so every number below this one is in use.
    uv_os_fd_t fd = -1;
    const bool low = uv_fileno(reinterpret_cast<uv_handle_t*>(c->stream()), &fd) == 0 &&
                     open_files_limit_ > 0 && fd >= open_files_limit_ - kDescriptorReserve;
    if (on_accept_) {
        on_accept_(std::move(c));
    } else {
        c->close();
    }
    if (low && on_low_ && !closed_) on_low_(open_files_limit_ - fd - 1, open_files_limit_);
}

void TcpListener::on_closed(uv_handle_t* handle) {
    auto* self = static_cast<TcpListener*>(handle->data);
    auto keep = std::move(self->self_);  // may free this object when it goes out of scope
}

}  // namespace burrow
