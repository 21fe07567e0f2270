#include "src/udp_socket.h"

#include <utility>

#include "src/log.h"
#include "src/sockaddr.h"

namespace burrow {

struct UdpSocket::SendRequest {
    uv_udp_send_t req;
    UdpSocket* socket;  // alive: libuv cancels pending sends before the close callback
    Bytes data;
};

std::variant<std::shared_ptr<UdpSocket>, OsError> UdpSocket::bind(uv_loop_t* loop,
                                                                  const LoopClock& clock,
                                                                  const SocketAddress& local,
                                                                  ReceiveFn receive,
                                                                  UdpOptions options) {
    std::shared_ptr<UdpSocket> s(new UdpSocket(clock, std::move(receive), options));
    auto fail = [&](const char* what, int status) {
        s->close();
        return OsError{std::string(what) + " udp " + to_string(local) + ": " +
                       uv_error_text(status)};
    };
    int rc = uv_udp_init(loop, &s->udp_);
    if (rc != 0) return OsError{"udp " + to_string(local) + ": " + uv_error_text(rc)};
    s->udp_.data = s.get();
    s->self_ = s;

    const sockaddr_storage sa = to_sockaddr(local);
    rc = uv_udp_bind(&s->udp_, reinterpret_cast<const sockaddr*>(&sa), 0);
    if (rc != 0) return fail("bind", rc);

    sockaddr_storage bound;
    int len = sizeof bound;
    rc = uv_udp_getsockname(&s->udp_, reinterpret_cast<sockaddr*>(&bound), &len);
    if (rc != 0) return fail("bind", rc);
    s->local_ = from_sockaddr(reinterpret_cast<const sockaddr*>(&bound)).value_or(local);

    // Larger buffers are an optimisation: a kernel that refuses them still gives a working
    // socket, so this is not an error.
    auto* handle = reinterpret_cast<uv_handle_t*>(&s->udp_);
    int receive_size = options.socket_buffer_bytes;
    int send_size = options.socket_buffer_bytes;
    if (uv_recv_buffer_size(handle, &receive_size) != 0 ||
        uv_send_buffer_size(handle, &send_size) != 0) {
        spdlog::debug("udp {}: could not enlarge the socket buffers", to_string(s->local_));
    }

    rc = uv_udp_recv_start(&s->udp_, &UdpSocket::on_alloc, &UdpSocket::on_receive);
    if (rc != 0) return fail("receive on", rc);
    return s;
}

UdpSocket::UdpSocket(const LoopClock& clock, ReceiveFn receive, UdpOptions options)
    : clock_(clock),
      receive_(std::move(receive)),
      options_(options),
      receive_buffer_(options.max_datagram_size) {}

UdpSocket::~UdpSocket() = default;

bool UdpSocket::send(const SocketAddress& to, ByteView datagram) {
    if (closed_) return false;
    const bool v6_socket = local_.v6;
    if (to.v6 && !v6_socket) {
        ++stats_.send_failures;  // an IPv4 socket cannot reach an IPv6 address
        return false;
    }
    const sockaddr_storage sa = to_sockaddr(to, v6_socket);
    const auto* addr = reinterpret_cast<const sockaddr*>(&sa);
    // libuv's buffers are not const, but it only reads from them when sending.
    uv_buf_t buf = uv_buf_init(const_cast<char*>(reinterpret_cast<const char*>(datagram.data())),
                               static_cast<unsigned>(datagram.size()));

    const int rc = uv_udp_try_send(&udp_, &buf, 1, addr);
    if (rc >= 0) {
        ++stats_.datagrams_sent;
        stats_.bytes_sent += datagram.size();
        return true;
    }
    if (rc != UV_EAGAIN) {  // EAGAIN: kernel buffer full, or datagrams already queued
        ++stats_.send_failures;
        spdlog::trace("udp {}: send to {}: {}", to_string(local_), to_string(to),
                      uv_error_text(rc));
        return false;
    }
    if (queued_bytes_ + datagram.size() > options_.max_send_queue_bytes) {
        ++stats_.send_queue_full;
        return false;
    }
    auto* request = new SendRequest{{}, this, Bytes(datagram.begin(), datagram.end())};
    request->req.data = request;
    buf = uv_buf_init(reinterpret_cast<char*>(request->data.data()),
                      static_cast<unsigned>(request->data.size()));
    const int queued = uv_udp_send(&request->req, &udp_, &buf, 1, addr, &UdpSocket::on_sent);
    if (queued != 0) {
        delete request;
        ++stats_.send_failures;
        return false;
    }
    queued_bytes_ += datagram.size();
    ++stats_.datagrams_sent;
    stats_.bytes_sent += datagram.size();
    return true;
}

void UdpSocket::close() {
    if (closed_) return;
    closed_ = true;
    receive_ = nullptr;
    if (self_ == nullptr) return;  // never opened
    uv_close(reinterpret_cast<uv_handle_t*>(&udp_), &UdpSocket::on_closed);
}

int UdpSocket::receive_buffer_size() const {
    int size = 0;  // 0 asks rather than sets
    uv_recv_buffer_size(reinterpret_cast<uv_handle_t*>(const_cast<uv_udp_t*>(&udp_)), &size);
    return size;
}

int UdpSocket::send_buffer_size() const {
    int size = 0;
    uv_send_buffer_size(reinterpret_cast<uv_handle_t*>(const_cast<uv_udp_t*>(&udp_)), &size);
    return size;
}

void UdpSocket::on_alloc(uv_handle_t* handle, size_t, uv_buf_t* buf) {
    // One buffer per socket is enough: libuv hands it back through on_receive before it asks
    // for the next one, and we are done with the bytes when on_receive returns.
    auto* self = static_cast<UdpSocket*>(handle->data);
    *buf = uv_buf_init(reinterpret_cast<char*>(self->receive_buffer_.data()),
                       static_cast<unsigned>(self->receive_buffer_.size()));
}

void UdpSocket::on_receive(uv_udp_t* handle, ssize_t nread, const uv_buf_t* buf,
                           const sockaddr* addr, unsigned flags) {
    auto* self = static_cast<UdpSocket*>(handle->data);
    if (nread == 0 && addr == nullptr) return;  // the socket had nothing after all (EAGAIN)
    if (nread < 0) {
        ++self->stats_.receive_errors;
        spdlog::debug("udp {}: receive: {}", to_string(self->local_),
                      uv_error_text(static_cast<int>(nread)));
        return;
    }
    if ((flags & UV_UDP_PARTIAL) != 0) {
        ++self->stats_.truncated;
        return;
    }
    const auto from = from_sockaddr(addr);
    if (!from || !self->receive_) return;
    ++self->stats_.datagrams_received;
    self->stats_.bytes_received += static_cast<uint64_t>(nread);
    const ByteView datagram(reinterpret_cast<const uint8_t*>(buf->base),
                            static_cast<size_t>(nread));
    self->receive_(*from, datagram, self->clock_.now());
}

void UdpSocket::on_sent(uv_udp_send_t* req, int status) {
    auto* request = static_cast<SendRequest*>(req->data);
    UdpSocket* self = request->socket;
    self->queued_bytes_ -= request->data.size();
    if (status < 0 && status != UV_ECANCELED) ++self->stats_.send_failures;
    delete request;
}

void UdpSocket::on_closed(uv_handle_t* handle) {
    auto* self = static_cast<UdpSocket*>(handle->data);
    auto keep = std::move(self->self_);  // may free this object when it goes out of scope
}

}  // namespace burrow
