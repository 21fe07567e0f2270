// A UDP socket on the libuv loop, in the shape the sans-IO cores want.
//
// Receive: every datagram becomes one call receive(from, bytes, now). libuv's other receive
// cases never reach the core: "nothing to read" (nread 0, no address) is ignored, errors and
// datagrams larger than the receive buffer (UV_UDP_PARTIAL: the kernel cut them) are counted and
// dropped. An empty datagram (nread 0 with an address) is delivered: it is a datagram.
// The bytes are only valid during the call; the core copies what it keeps.
//
// Send: never blocks and never fails loudly. The datagram goes straight to the kernel when it
// has room (uv_udp_try_send, no copy); otherwise a copy waits in libuv's queue, up to
// max_send_queue_bytes, and beyond that it is dropped and counted, as a full router queue
// would. Loss is the congestion controller's business.
//
// Lifetime: bind() returns a shared_ptr; the handle keeps the object alive until close() has
// completed in libuv's close callback. receive is never called after close().
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <variant>

#include "tunnel/socket_address.h"
#include "src/clock.h"
#include "src/os_error.h"
#include "tunnel/bytes.h"

namespace burrow {

struct UdpOptions {
    // The receive buffer. burrow's datagrams are at most 1350 bytes (ConnectionConfig) and
    // STUN messages smaller; anything beyond 2048 is not ours and is counted as truncated.
    size_t max_datagram_size = 2048;
    // Requested SO_RCVBUF / SO_SNDBUF. Bursts arrive faster than one loop iteration drains them
    // at high rates; the Linux default (~208 KiB) drops them. The kernel caps the request at
    // net.core.rmem_max / wmem_max; the granted size is in receive_buffer_size().
    int socket_buffer_bytes = 4 * 1024 * 1024;
    // Datagrams (bytes) waiting in libuv's queue when the kernel buffer is full.
    size_t max_send_queue_bytes = 1024 * 1024;
};

struct UdpStats {
    uint64_t datagrams_received = 0;
    uint64_t bytes_received = 0;
    uint64_t datagrams_sent = 0;  // accepted for sending (by the kernel or libuv's queue)
    uint64_t bytes_sent = 0;
    uint64_t truncated = 0;        // larger than max_datagram_size: dropped
    uint64_t receive_errors = 0;   // recvmsg failed
    uint64_t send_failures = 0;    // the kernel refused the datagram (unreachable, too big...)
    uint64_t send_queue_full = 0;  // dropped: max_send_queue_bytes reached
};

class UdpSocket : public std::enable_shared_from_this<UdpSocket> {
  public:
    using ReceiveFn = std::function<void(const SocketAddress& from, ByteView datagram, Time now)>;

    // Binds to local (port 0 picks a free port) and starts receiving. An IPv6 wildcard socket
    // is dual-stack: it also receives IPv4, reported as IPv4 addresses.
    static std::variant<std::shared_ptr<UdpSocket>, OsError> bind(uv_loop_t* loop,
                                                                  const LoopClock& clock,
                                                                  const SocketAddress& local,
                                                                  ReceiveFn receive,
                                                                  UdpOptions options = {});
    ~UdpSocket();

    // False when the datagram was dropped (counted in stats()).
    bool send(const SocketAddress& to, ByteView datagram);
    void close();

    // The bound address, with the port the OS picked.
    const SocketAddress& local_address() const { return local_; }
    // The kernel's buffer sizes as it reports them (Linux reports twice what it grants).
    int receive_buffer_size() const;
    int send_buffer_size() const;
    size_t send_queue_bytes() const { return queued_bytes_; }
    const UdpStats& stats() const { return stats_; }

  private:
    struct SendRequest;
    UdpSocket(const LoopClock& clock, ReceiveFn receive, UdpOptions options);
    static void on_alloc(uv_handle_t* handle, size_t suggested, uv_buf_t* buf);
    static void on_receive(uv_udp_t* handle, ssize_t nread, const uv_buf_t* buf,
                           const sockaddr* addr, unsigned flags);
    static void on_sent(uv_udp_send_t* req, int status);
    static void on_closed(uv_handle_t* handle);

    uv_udp_t udp_;
    LoopClock clock_;
    ReceiveFn receive_;
    UdpOptions options_;
    Bytes receive_buffer_;
    SocketAddress local_;
    UdpStats stats_;
    size_t queued_bytes_ = 0;
    bool closed_ = false;
    std::shared_ptr<UdpSocket> self_;  // held while the uv handle is open
};

}  // namespace burrow
