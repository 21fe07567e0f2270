// A UDP socket on the libuv loop, in the shape the sans-IO cores want, moving datagrams in
// batches (docs/architecture.md §12: one syscall for many datagrams).
//
// The socket is our own fd driven by a uv_poll handle: libuv's uv_udp has no way to pass or
// read the control messages that segmentation offload needs.
//
// Receive: each readable event reads until the socket is empty or kMaxReceivePerWake datagrams
// were delivered (the rest waits for the next loop iteration, so one busy socket cannot starve
// the other handles). Every datagram becomes one call handlers.datagram(from, bytes, now); after
// the datagrams of one event, handlers.batch_end() runs once, which is where an executor drains
// its core (one ACK per batch instead of one per datagram). Datagrams larger than
// max_datagram_size are counted as truncated and dropped. An empty datagram is delivered: it is
// a datagram. The bytes are only valid during the call; the core copies what it keeps.
//
// Send: datagrams are appended to a batch, either copied by send() or written in place:
//
//   MutableByteView room = socket->send_buffer(max);   // room at the batch's tail
//   size_t n = build_datagram_into(room);
//   socket->commit_send(to, n);
//
// The batch goes to the kernel when it is full (kMaxBatchDatagrams or kMaxBatchBytes), at
// flush(), at close(), and at the latest before the loop next blocks for I/O (a uv_prepare
// handle), so nothing waits longer than the current loop iteration. Nothing blocks and nothing
// fails loudly: when the kernel's buffer is full the batch waits in a queue, up to
// max_send_queue_bytes, until the socket is writable; beyond that datagrams are dropped and
// counted, as a full router queue would drop them. Loss is the congestion controller's business.
//
// Modes (UdpMode), best first; the socket starts at the best the kernel offers (or at the one
// UdpOptions::mode or the environment's BURROW_UDP_MODE names) and moves down at run time when
// the kernel refuses one, resending what was refused. Segmented sends (gso) are used only when
// asked for by name: receiving starts at GRO, sending at mmsg (UdpSocket::choose_modes says
// why):
//   gso     send: one sendmsg per run of equal-size datagrams to one destination (the last may
//           be shorter) with a UDP_SEGMENT control message, which the kernel cuts up;
//           receive: UDP_GRO with recvmmsg, kGroSlots slots of 64 KiB per call; a slot holds
//           one datagram or a coalesced run of one size from one sender, split here
//   mmsg    sendmmsg / recvmmsg, up to 64 datagrams per call
//   single  one sendmsg / recvmsg per datagram
// Send and receive fall back separately; stats() says where each is.
//
// Lifetime: bind() returns a shared_ptr; the handles keep the object alive until close() has
// completed in libuv's close callbacks. No handler is called after close().
#pragma once

#include <sys/socket.h>
#include <uv.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string_view>
#include <variant>
#include <vector>

#include "src/clock.h"
#include "src/os_error.h"
#include "tunnel/bytes.h"
#include "tunnel/socket_address.h"

namespace burrow {

enum class UdpMode { kGso, kMmsg, kSingle };

// "gso", "mmsg", "single": the names BURROW_UDP_MODE takes.
std::string_view to_string(UdpMode mode);
std::optional<UdpMode> parse_udp_mode(std::string_view name);
// "gro", "mmsg", "single": how `burrow status` names a receive mode (GSO's receive side is GRO).
std::string_view receive_mode_name(UdpMode mode);

// The mode BURROW_UDP_MODE names, read once per process; nullopt when unset (a value that is
// not a mode is reported once and ignored).
std::optional<UdpMode> udp_mode_from_environment();

struct UdpOptions {
    // The largest datagram we accept. burrow's datagrams are at most 1350 bytes
    // (ConnectionConfig) and STUN messages smaller; anything beyond 2048 is not ours and is
    // counted as truncated.
    size_t max_datagram_size = 2048;
    // Requested SO_RCVBUF / SO_SNDBUF. A burst at a gigabit arrives faster than one loop
    // iteration drains it, and the Linux default (~208 KiB) drops it; wireguard-go asks for
    // 7 MiB for the same reason. Asked with SO_RCVBUFFORCE/SO_SNDBUFFORCE first (root, or
    // CAP_NET_ADMIN: beyond net.core.rmem_max), else the plain options, which the kernel caps
    // at net.core.rmem_max / wmem_max. UdpStats says what was granted.
    int socket_buffer_bytes = 8 * 1024 * 1024;
    // Datagrams (bytes) waiting for the socket to become writable when the kernel buffer is full.
    size_t max_send_queue_bytes = 1024 * 1024;
    // The mode to start in (tests; troubleshooting). Unset: BURROW_UDP_MODE, else the best.
    std::optional<UdpMode> mode;
    // An IPv6 socket that takes IPv6 only (IPV6_V6ONLY=1): for a server that binds the same
    // port on an IPv4 address too. Unset, an IPv6 socket is dual-stack.
    bool v6_only = false;
};

struct UdpStats {
    uint64_t datagrams_received = 0;
    uint64_t bytes_received = 0;
    uint64_t datagrams_sent = 0;  // taken by the kernel
    uint64_t bytes_sent = 0;
    uint64_t receive_calls = 0;    // recvmsg/recvmmsg calls that returned datagrams
    uint64_t send_calls = 0;       // sendmsg/sendmmsg calls the kernel accepted
    uint64_t truncated = 0;        // larger than max_datagram_size: dropped
    uint64_t receive_errors = 0;   // the receive call failed
    uint64_t send_failures = 0;    // the kernel refused the datagram (unreachable, too big...)
    uint64_t send_queue_full = 0;  // dropped: max_send_queue_bytes reached
    uint64_t mode_fallbacks = 0;   // the kernel refused a mode at run time; we moved down
    UdpMode send_mode = UdpMode::kSingle;
    UdpMode receive_mode = UdpMode::kSingle;
    // As the kernel reports them after our request (Linux reports twice what it was asked, the
    // second half being its bookkeeping).
    int receive_buffer_bytes = 0;
    int send_buffer_bytes = 0;
};

struct UdpHandlers {
    // The bytes are the socket's receive buffer, writable so that a core can open a packet in
    // place (tunnel/session.h); they are scratch after the call.
    std::function<void(const SocketAddress& from, MutableByteView datagram, Time now)> datagram;
    std::function<void()> batch_end;  // optional: after the datagrams of one readable event
};

class UdpSocket : public std::enable_shared_from_this<UdpSocket> {
  public:
    // GSO carries at most 64 segments per call (UDP_MAX_SEGMENTS in the kernel); recvmmsg and
    // sendmmsg get the same count, which is also what quic-go and msquic batch.
    static constexpr size_t kMaxBatchDatagrams = 64;
    // The largest UDP payload in one IPv4 packet (65535 - 20 - 8): the most one GSO send takes.
    static constexpr size_t kMaxBatchBytes = 65507;
    // Datagrams delivered per readable event before the loop gets to its other handles:
    // four full receive batches, about 350 kB of burrow's datagrams.
    static constexpr size_t kMaxReceivePerWake = 4 * kMaxBatchDatagrams;
    // Slots per recvmmsg under GRO, each with room for a 64 KiB coalesced run: 1 MiB of
    // receive area, shared by every socket of the thread. Uncoalesced datagrams (loopback,
    // sendmmsg senders) still come 16 per call instead of one.
    static constexpr size_t kGroSlots = 16;

    // Binds to local (port 0 picks a free port) and starts receiving. An IPv6 wildcard socket
    // is dual-stack: it also receives IPv4, reported as IPv4 addresses.
    static std::variant<std::shared_ptr<UdpSocket>, OsError> bind(uv_loop_t* loop,
                                                                  const LoopClock& clock,
                                                                  const SocketAddress& local,
                                                                  UdpHandlers handlers,
                                                                  UdpOptions options = {});
    ~UdpSocket();

    // Room for one datagram of up to max bytes at the tail of the batch; the batch goes out
    // first when it cannot take one more. Empty when closed or max > kMaxBatchBytes.
    MutableByteView send_buffer(size_t max);
    // Sends the first len bytes written into the last send_buffer() to `to`. False when the
    // datagram was refused at once (closed, an IPv6 address on an IPv4 socket), counted in
    // stats(); later drops (queue full, the kernel refused) are only counted.
    bool commit_send(const SocketAddress& to, size_t len);
    // send_buffer + a copy + commit_send.
    bool send(const SocketAddress& to, ByteView datagram);
    // Hands the batch to the kernel now.
    void flush();
    // Sends what the batch holds (best effort), then closes.
    void close();

    // The bound address, with the port the OS picked.
    const SocketAddress& local_address() const { return local_; }
    // Whether a datagram to `to` can leave this socket: same family, or IPv4 through a
    // dual-stack IPv6 socket.
    bool reaches(const SocketAddress& to) const {
        return to.v6 ? local_.v6 : (!local_.v6 || !options_.v6_only);
    }
    // Bytes waiting for the socket to become writable.
    size_t send_queue_bytes() const { return queued_bytes_; }
    const UdpStats& stats() const { return stats_; }
    // The socket itself, for socket options a caller needs beyond these (tests).
    int native_handle() const { return fd_; }

  private:
    struct Datagram {
        SocketAddress to;
        size_t offset;  // in Batch::bytes
        size_t size;
    };
    // Datagrams back to back in one buffer, which grows to what the socket needs and stays.
    struct Batch {
        Bytes bytes;
        std::vector<Datagram> datagrams;
        size_t used = 0;  // bytes committed
        size_t next = 0;  // the first datagram the kernel has not taken
        bool empty() const { return next == datagrams.size(); }
        size_t unsent_bytes() const;
        void clear();
    };

    UdpSocket(const LoopClock& clock, UdpHandlers handlers, UdpOptions options);
    // gso_send_asked: the caller or BURROW_UDP_MODE named gso (segmented sends are opt-in).
    void choose_modes(UdpMode start, bool gso_send_asked);
    void set_buffer_sizes(int bytes);
    void set_poll_events(int events);
    void on_readable();
    std::optional<size_t> receive_one(Time now);
    std::optional<size_t> receive_mmsg(Time now, size_t budget, bool gro, bool* drained);
    std::optional<size_t> receive_failed(int error);
    size_t deliver(const sockaddr_storage& from, uint8_t* data, size_t size,
                   size_t segment_size, Time now);
    void on_writable();
    bool transmit(Batch& batch);
    bool send_gso(Batch& batch);
    bool send_mmsg(Batch& batch);
    bool send_single(Batch& batch);
    void sent(Batch& batch, size_t count, size_t bytes);
    void failed(Batch& batch, size_t count, int error);
    void enqueue();
    Batch spare_batch();
    static void on_poll(uv_poll_t* handle, int status, int events);
    static void on_prepare(uv_prepare_t* handle);
    static void on_closed(uv_handle_t* handle);

    int fd_ = -1;
    uv_poll_t poll_;
    uv_prepare_t prepare_;
    int open_handles_ = 0;
    int poll_events_ = 0;
    LoopClock clock_;
    UdpHandlers handlers_;
    UdpOptions options_;
    SocketAddress local_;
    UdpStats stats_;
    Batch batch_;                // being filled
    size_t offered_ = 0;         // the room the last send_buffer() gave
    std::deque<Batch> queue_;    // waiting for the socket to become writable
    std::vector<Batch> spares_;  // sent batches, kept for their buffers
    size_t queued_bytes_ = 0;
    bool closed_ = false;
    std::shared_ptr<UdpSocket> self_;  // held while the uv handles are open
};

}  // namespace burrow
