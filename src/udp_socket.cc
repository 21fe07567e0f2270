#include "src/udp_socket.h"

#include <netinet/in.h>
#include <netinet/udp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <utility>

#include "src/log.h"
#include "src/sockaddr.h"

namespace burrow {

namespace {

// One GRO receive returns at most one coalesced super-packet: 64 KiB, the most the kernel
// merges (and more than one UDP datagram can carry).
constexpr size_t kGroBufferBytes = 64 * 1024;

// libuv's error code for the errno of a failed call, for uv_error_text.
int last_error() {
    return uv_translate_sys_error(errno);
}

bool would_block(int error) {
    return error == EAGAIN || error == EWOULDBLOCK;
}

// The errors a multi-segment send gets when GSO itself is the problem, not the datagrams:
// EIO when the route's device cannot checksum in hardware (or goes through xfrm), EINVAL when
// the segment does not fit the path MTU or the socket sends without checksums (SO_NO_CHECK),
// EMSGSIZE when the run is longer than the device's GSO limit.
bool refuses_gso(int error) {
    return error == EIO || error == EINVAL || error == EMSGSIZE;
}

socklen_t sockaddr_length(const sockaddr_storage& sa) {
    return sa.ss_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
}

// One receive area per thread, shared by every socket: a receive's datagrams are handed out and
// done with before libuv runs the next callback. One per socket would cost 128 KiB for each of
// a birthday attack's 256 sockets.
// Not zeroed (new[] of a byte array default-initialises): a large area is mapped lazily, and
// only the pages the kernel writes into count against the agent's memory. The GRO slots are
// 1 MiB together; zeroing them cost every agent 1 MiB of RSS it never used.
uint8_t* receive_area(size_t bytes) {
    thread_local std::unique_ptr<uint8_t[]> area;
    thread_local size_t size = 0;
    if (size < bytes) {
        area.reset(new uint8_t[bytes]);
        size = bytes;
    }
    return area.get();
}

ssize_t sendmsg_retrying(int fd, const msghdr* msg) {
    ssize_t rc;
    do {
        rc = ::sendmsg(fd, msg, 0);
    } while (rc < 0 && errno == EINTR);
    return rc;
}

}  // namespace

std::string_view to_string(UdpMode mode) {
    switch (mode) {
        case UdpMode::kGso:
            return "gso";
        case UdpMode::kMmsg:
            return "mmsg";
        case UdpMode::kSingle:
            return "single";
    }
    return "single";
}

std::string_view receive_mode_name(UdpMode mode) {
    return mode == UdpMode::kGso ? "gro" : to_string(mode);
}

std::optional<UdpMode> parse_udp_mode(std::string_view name) {
    for (UdpMode m : {UdpMode::kGso, UdpMode::kMmsg, UdpMode::kSingle}) {
        if (name == to_string(m)) return m;
    }
    return std::nullopt;
}

std::optional<UdpMode> udp_mode_from_environment() {
    static const std::optional<UdpMode> mode = []() -> std::optional<UdpMode> {
        const char* value = std::getenv("BURROW_UDP_MODE");
        if (value == nullptr || *value == '\0') return std::nullopt;
        const std::optional<UdpMode> m = parse_udp_mode(value);
        if (!m) {
            spdlog::warn("BURROW_UDP_MODE={}: not gso, mmsg or single; ignored", value);
        } else {
            spdlog::info("BURROW_UDP_MODE={}: UDP sockets start in that mode", value);
        }
        return m;
    }();
    return mode;
}

size_t UdpSocket::Batch::unsent_bytes() const {
    size_t bytes = 0;
    for (size_t i = next; i < datagrams.size(); ++i) bytes += datagrams[i].size;
    return bytes;
}

void UdpSocket::Batch::clear() {
    datagrams.clear();
    used = 0;
    next = 0;
}

std::variant<std::shared_ptr<UdpSocket>, OsError> UdpSocket::bind(uv_loop_t* loop,
                                                                  const LoopClock& clock,
                                                                  const SocketAddress& local,
                                                                  UdpHandlers handlers,
                                                                  UdpOptions options) {
    std::shared_ptr<UdpSocket> s(new UdpSocket(clock, std::move(handlers), options));
    auto fail = [&](const char* what, int status) {
        s->close();  // the destructor closes a socket that never had handles
        return OsError{std::string(what) + "udp " + to_string(local) + ": " +
                       uv_error_text(status)};
    };
    s->fd_ = ::socket(local.v6 ? AF_INET6 : AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s->fd_ < 0) return fail("", last_error());
    if (local.v6) {
        // Dual-stack whatever net.ipv6.bindv6only says, as the header promises, unless asked
        // for IPv6 only (an IPv4 socket on the same port takes the IPv4 side).
        const int v6_only = options.v6_only ? 1 : 0;
        ::setsockopt(s->fd_, IPPROTO_IPV6, IPV6_V6ONLY, &v6_only, sizeof v6_only);
    }

    const sockaddr_storage sa = to_sockaddr(local);
    int rc = ::bind(s->fd_, reinterpret_cast<const sockaddr*>(&sa), sockaddr_length(sa)) == 0
                 ? 0
                 : last_error();
    if (rc != 0) return fail("bind ", rc);

    sockaddr_storage bound{};
    socklen_t len = sizeof bound;
    if (::getsockname(s->fd_, reinterpret_cast<sockaddr*>(&bound), &len) != 0) {
        return fail("bind ", last_error());
    }
    s->local_ = from_sockaddr(reinterpret_cast<const sockaddr*>(&bound)).value_or(local);

    s->set_buffer_sizes(options.socket_buffer_bytes);
    const std::optional<UdpMode> asked = options.mode ? options.mode : udp_mode_from_environment();
    s->choose_modes(asked.value_or(UdpMode::kGso), asked == UdpMode::kGso);

    rc = uv_poll_init(loop, &s->poll_, s->fd_);
    if (rc != 0) return fail("", rc);
    uv_prepare_init(loop, &s->prepare_);  // cannot fail: it only links the handle into the loop
    // The poll handle keeps the loop alive while the socket is open; the flush before the loop
    // blocks must not keep it alive on its own.
    uv_unref(reinterpret_cast<uv_handle_t*>(&s->prepare_));
    s->poll_.data = s.get();
    s->prepare_.data = s.get();
    s->open_handles_ = 2;
    s->self_ = s;
    rc = uv_poll_start(&s->poll_, UV_READABLE, &UdpSocket::on_poll);
    if (rc != 0) return fail("receive on ", rc);
    s->poll_events_ = UV_READABLE;

    spdlog::debug("udp {}: send {}, receive {}, socket buffers {} B in, {} B out",
                  to_string(s->local_), to_string(s->stats_.send_mode),
                  receive_mode_name(s->stats_.receive_mode), s->stats_.receive_buffer_bytes,
                  s->stats_.send_buffer_bytes);
    return s;
}

UdpSocket::UdpSocket(const LoopClock& clock, UdpHandlers handlers, UdpOptions options)
    : clock_(clock), handlers_(std::move(handlers)), options_(options) {
    batch_.datagrams.reserve(kMaxBatchDatagrams);
}

UdpSocket::~UdpSocket() {
    if (fd_ >= 0) ::close(fd_);  // only when the handles never existed; else on_closed did
}

void UdpSocket::set_buffer_sizes(int bytes) {
    // Larger buffers are an optimisation: a kernel that refuses them still gives a working
    // socket, so a refusal is not an error. The FORCE options need CAP_NET_ADMIN.
    if (::setsockopt(fd_, SOL_SOCKET, SO_RCVBUFFORCE, &bytes, sizeof bytes) != 0) {
        ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof bytes);
    }
    if (::setsockopt(fd_, SOL_SOCKET, SO_SNDBUFFORCE, &bytes, sizeof bytes) != 0) {
        ::setsockopt(fd_, SOL_SOCKET, SO_SNDBUF, &bytes, sizeof bytes);
    }
    socklen_t len = sizeof stats_.receive_buffer_bytes;
    ::getsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &stats_.receive_buffer_bytes, &len);
    len = sizeof stats_.send_buffer_bytes;
    ::getsockopt(fd_, SOL_SOCKET, SO_SNDBUF, &stats_.send_buffer_bytes, &len);
}

void UdpSocket::choose_modes(UdpMode start, bool gso_send_asked) {
    stats_.send_mode = start;
    stats_.receive_mode = start;
    if (start != UdpMode::kGso) return;
    if (!gso_send_asked) {
        // Segmented sends are opt-in (BURROW_UDP_MODE=gso). In the NAT lab, a GSO super-packet
        // that a NAT on the same host forwards (network namespaces; Docker bridges are the
        // same) was lost: with GSO sends 4 of 7 runs of portrestricted/portrestricted lost
        // the direct path right after it was validated, with sendmmsg 0 of 7. A send path
        // that silently loses every batch behind a common kind of NAT costs more than the
        // syscalls it saves; GRO receiving is unaffected and stays on.
        stats_.send_mode = UdpMode::kMmsg;
    }
    // UDP_SEGMENT as a socket option came with the control message (Linux 4.18): asking for it
    // tells whether this kernel segments at all.
    int segment = 0;
    socklen_t len = sizeof segment;
    if (::getsockopt(fd_, SOL_UDP, UDP_SEGMENT, &segment, &len) != 0) {
        spdlog::debug("udp {}: no UDP_SEGMENT ({}); sending with sendmmsg", to_string(local_),
                      uv_error_text(last_error()));
        stats_.send_mode = UdpMode::kMmsg;
    }
    const int on = 1;
    if (::setsockopt(fd_, SOL_UDP, UDP_GRO, &on, sizeof on) != 0) {
        spdlog::debug("udp {}: no UDP_GRO ({}); receiving with recvmmsg", to_string(local_),
                      uv_error_text(last_error()));
        stats_.receive_mode = UdpMode::kMmsg;
    }
}

// --- sending ---------------------------------------------------------------------------------

MutableByteView UdpSocket::send_buffer(size_t max) {
    if (closed_ || max > kMaxBatchBytes) return {};
    if (batch_.datagrams.size() >= kMaxBatchDatagrams || batch_.used + max > kMaxBatchBytes) {
        flush();
    }
    if (batch_.bytes.size() < batch_.used + max) batch_.bytes.resize(batch_.used + max);
    offered_ = max;
    return MutableByteView(batch_.bytes.data() + batch_.used, max);
}

bool UdpSocket::commit_send(const SocketAddress& to, size_t len) {
    if (closed_) return false;
    const size_t offered = std::exchange(offered_, 0);
    if (len > offered || !reaches(to)) {
        // More than send_buffer() gave is a caller's bug; an IPv4 socket cannot reach an IPv6
        // address (nor an IPv6-only one an IPv4 address). Either way the datagram does not go.
        ++stats_.send_failures;
        return false;
    }
    batch_.datagrams.push_back(Datagram{to, batch_.used, len});
    batch_.used += len;
    if (batch_.datagrams.size() >= kMaxBatchDatagrams) {
        flush();
    } else if (!uv_is_active(reinterpret_cast<uv_handle_t*>(&prepare_))) {
        uv_prepare_start(&prepare_, &UdpSocket::on_prepare);
    }
    return true;
}

bool UdpSocket::send(const SocketAddress& to, ByteView datagram) {
    const MutableByteView room = send_buffer(datagram.size());
    if (room.size() < datagram.size()) {  // closed, or larger than any UDP datagram
        if (!closed_) ++stats_.send_failures;
        return false;
    }
    std::copy(datagram.begin(), datagram.end(), room.begin());
    return commit_send(to, datagram.size());
}

void UdpSocket::flush() {
    if (closed_ || open_handles_ == 0) return;
    uv_prepare_stop(&prepare_);
    if (batch_.empty()) {
        batch_.clear();
        return;
    }
    // With batches already waiting for the kernel, this one waits behind them: datagrams to
    // one peer leave in the order they were made.
    if (queue_.empty() && transmit(batch_)) {
        batch_.clear();
        return;
    }
    enqueue();
}

void UdpSocket::enqueue() {
    size_t keep = batch_.next;
    size_t bytes = 0;
    while (keep < batch_.datagrams.size() &&
           queued_bytes_ + bytes + batch_.datagrams[keep].size <= options_.max_send_queue_bytes) {
        bytes += batch_.datagrams[keep].size;
        ++keep;
    }
    stats_.send_queue_full += batch_.datagrams.size() - keep;
    batch_.datagrams.erase(batch_.datagrams.begin() + static_cast<std::ptrdiff_t>(keep),
                           batch_.datagrams.end());
    if (batch_.empty()) {
        batch_.clear();
        return;
    }
    queued_bytes_ += bytes;
    queue_.push_back(std::move(batch_));
    batch_ = spare_batch();
    set_poll_events(UV_READABLE | UV_WRITABLE);
}

UdpSocket::Batch UdpSocket::spare_batch() {
    if (spares_.empty()) {
        Batch b;
        b.datagrams.reserve(kMaxBatchDatagrams);
        return b;
    }
    Batch b = std::move(spares_.back());
    spares_.pop_back();
    return b;
}

void UdpSocket::on_writable() {
    // A full queue holds max_send_queue_bytes in batches of up to kMaxBatchBytes; keeping that
    // many buffers means a socket that keeps hitting a full kernel buffer allocates nothing.
    const size_t max_spares = options_.max_send_queue_bytes / kMaxBatchBytes + 1;
    while (!queue_.empty()) {
        Batch& front = queue_.front();
        const size_t before = front.unsent_bytes();
        const bool done = transmit(front);
        queued_bytes_ -= before - front.unsent_bytes();
        if (!done) return;  // still full: wait for the next writable event
        front.clear();
        if (spares_.size() < max_spares) spares_.push_back(std::move(front));
        queue_.pop_front();
    }
    set_poll_events(UV_READABLE);
}

bool UdpSocket::transmit(Batch& batch) {
    while (!batch.empty()) {
        bool progress = false;
        switch (stats_.send_mode) {
            case UdpMode::kGso:
                progress = send_gso(batch);
                break;
            case UdpMode::kMmsg:
                progress = send_mmsg(batch);
                break;
            case UdpMode::kSingle:
                progress = send_single(batch);
                break;
        }
        if (!progress) return false;
    }
    return true;
}

// One sendmsg for the run that starts at batch.next: datagrams to one destination, all of the
// first one's size but the last, which may be shorter (what UDP_SEGMENT can cut). False when
// the kernel's buffer is full.
bool UdpSocket::send_gso(Batch& batch) {
    const Datagram& first = batch.datagrams[batch.next];
    const size_t segment = first.size;
    size_t count = 1;
    size_t bytes = segment;
    while (segment > 0 && count < kMaxBatchDatagrams &&
           batch.next + count < batch.datagrams.size()) {
        const Datagram& d = batch.datagrams[batch.next + count];
        const Datagram& previous = batch.datagrams[batch.next + count - 1];
        if (d.to != first.to || d.size == 0 || d.size > segment || previous.size != segment ||
            bytes + d.size > kMaxBatchBytes) {
            break;
        }
        bytes += d.size;
        ++count;
    }

    sockaddr_storage to = to_sockaddr(first.to, local_.v6);
    iovec iov{batch.bytes.data() + first.offset, bytes};
    msghdr msg{};
    msg.msg_name = &to;
    msg.msg_namelen = sockaddr_length(to);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    union {
        cmsghdr align;
        char buf[CMSG_SPACE(sizeof(uint16_t))];
    } control{};
    if (count > 1) {  // one datagram needs no segmenting, and cannot trip over it
        msg.msg_control = control.buf;
        msg.msg_controllen = sizeof control.buf;
        cmsghdr* c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_UDP;
        c->cmsg_type = UDP_SEGMENT;
        c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
        const auto size16 = static_cast<uint16_t>(segment);
        std::memcpy(CMSG_DATA(c), &size16, sizeof size16);
    }
    if (sendmsg_retrying(fd_, &msg) >= 0) {
        sent(batch, count, bytes);
        return true;
    }
    const int error = errno;
    if (would_block(error)) return false;
    if (count > 1 && refuses_gso(error)) {
        // Nothing of the run went out: it goes again, one datagram each, in the next mode.
        spdlog::info("udp {}: the kernel refused a segmented send ({}); using sendmmsg",
                     to_string(local_), uv_error_text(uv_translate_sys_error(error)));
        stats_.send_mode = UdpMode::kMmsg;
        ++stats_.mode_fallbacks;
        return true;
    }
    failed(batch, count, error);
    return true;
}

bool UdpSocket::send_mmsg(Batch& batch) {
    const size_t n = std::min(batch.datagrams.size() - batch.next, kMaxBatchDatagrams);
    std::array<mmsghdr, kMaxBatchDatagrams> msgs;
    std::array<iovec, kMaxBatchDatagrams> iov;
    std::array<sockaddr_storage, kMaxBatchDatagrams> to;
    for (size_t i = 0; i < n; ++i) {
        const Datagram& d = batch.datagrams[batch.next + i];
        to[i] = to_sockaddr(d.to, local_.v6);
        iov[i] = iovec{batch.bytes.data() + d.offset, d.size};
        msgs[i] = mmsghdr{};
        msgs[i].msg_hdr.msg_name = &to[i];
        msgs[i].msg_hdr.msg_namelen = sockaddr_length(to[i]);
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    int rc;
    do {
        rc = ::sendmmsg(fd_, msgs.data(), static_cast<unsigned>(n), 0);
    } while (rc < 0 && errno == EINTR);
    if (rc < 0) {
        const int error = errno;
        if (would_block(error)) return false;
        if (error == ENOSYS) {
            spdlog::info("udp {}: no sendmmsg; one sendmsg per datagram", to_string(local_));
            stats_.send_mode = UdpMode::kSingle;
            ++stats_.mode_fallbacks;
            return true;
        }
        failed(batch, 1, error);  // sendmmsg reports the first datagram's error
        return true;
    }
    size_t bytes = 0;
    for (int i = 0; i < rc; ++i) bytes += msgs[static_cast<size_t>(i)].msg_len;
    sent(batch, static_cast<size_t>(rc), bytes);
    return true;
}

bool UdpSocket::send_single(Batch& batch) {
    const Datagram& d = batch.datagrams[batch.next];
    sockaddr_storage to = to_sockaddr(d.to, local_.v6);
    iovec iov{batch.bytes.data() + d.offset, d.size};
    msghdr msg{};
    msg.msg_name = &to;
    msg.msg_namelen = sockaddr_length(to);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (sendmsg_retrying(fd_, &msg) >= 0) {
        sent(batch, 1, d.size);
        return true;
    }
    const int error = errno;
    if (would_block(error)) return false;
    failed(batch, 1, error);
    return true;
}

void UdpSocket::sent(Batch& batch, size_t count, size_t bytes) {
    ++stats_.send_calls;
    stats_.datagrams_sent += count;
    stats_.bytes_sent += bytes;
    batch.next += count;
}

void UdpSocket::failed(Batch& batch, size_t count, int error) {
    stats_.send_failures += count;
    spdlog::trace("udp {}: send to {}: {}", to_string(local_),
                  to_string(batch.datagrams[batch.next].to),
                  uv_error_text(uv_translate_sys_error(error)));
    batch.next += count;
}

void UdpSocket::set_poll_events(int events) {
    if (events == poll_events_ || closed_) return;
    const int rc = uv_poll_start(&poll_, events, &UdpSocket::on_poll);
    if (rc != 0) {
        // Only for a closed or broken fd; the queue then waits for close().
        spdlog::debug("udp {}: poll: {}", to_string(local_), uv_error_text(rc));
        return;
    }
    poll_events_ = events;
}

// --- receiving -------------------------------------------------------------------------------

void UdpSocket::on_readable() {
    const uint64_t delivered_before = stats_.datagrams_received;
    size_t consumed = 0;
    bool drained = false;
    while (!closed_ && !drained && consumed < kMaxReceivePerWake) {
        const Time now = clock_.now();
        std::optional<size_t> n;
        switch (stats_.receive_mode) {
            case UdpMode::kGso:
            case UdpMode::kMmsg:
                n = receive_mmsg(now, kMaxReceivePerWake - consumed,
                                 stats_.receive_mode == UdpMode::kGso, &drained);
                break;
            case UdpMode::kSingle:
                n = receive_one(now);
                break;
        }
        if (!n) break;  // empty
        consumed += *n;
    }
    if (!closed_ && stats_.datagrams_received != delivered_before && handlers_.batch_end) {
        handlers_.batch_end();
    }
}

// One recvmsg, one datagram: the last resort, for a kernel without recvmmsg.
std::optional<size_t> UdpSocket::receive_one(Time now) {
    const size_t room = options_.max_datagram_size;
    uint8_t* data = receive_area(room);
    sockaddr_storage from{};
    iovec iov{data, room};
    msghdr msg{};
    msg.msg_name = &from;
    msg.msg_namelen = sizeof from;
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    const ssize_t n = ::recvmsg(fd_, &msg, 0);
    if (n < 0) return receive_failed(errno);
    ++stats_.receive_calls;
    if ((msg.msg_flags & MSG_TRUNC) != 0) {
        ++stats_.truncated;
        return 1;
    }
    return deliver(from, data, static_cast<size_t>(n), static_cast<size_t>(n), now);
}

// One recvmmsg. With gro, each slot has room for a whole coalesced run and for the UDP_GRO
// control message that gives its segment size: the kernel coalesces only what arrived as one
// run (a GSO send, or packets that a NIC's GRO merged), and datagrams sent one by one (over
// loopback, from sendmmsg) still come one per slot, so slots are what cut the calls.
// Sets *drained when the kernel returned fewer messages than it had room for: the socket was
// empty then, and asking again would only cost a call that says so (the poll is
// level-triggered, so what arrives meanwhile wakes us again).
std::optional<size_t> UdpSocket::receive_mmsg(Time now, size_t budget, bool gro, bool* drained) {
    const size_t slot = gro ? kGroBufferBytes : options_.max_datagram_size;
    const size_t slots = gro ? kGroSlots : kMaxBatchDatagrams;
    const size_t n = std::min(slots, budget);
    uint8_t* area = receive_area(slot * slots);
    union Control {
        cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int))];
    };
    std::array<mmsghdr, kMaxBatchDatagrams> msgs;
    std::array<iovec, kMaxBatchDatagrams> iov;
    std::array<sockaddr_storage, kMaxBatchDatagrams> from;
    std::array<Control, kGroSlots> control;
    for (size_t i = 0; i < n; ++i) {
        iov[i] = iovec{area + i * slot, slot};
        msgs[i] = mmsghdr{};
        msgs[i].msg_hdr.msg_name = &from[i];
        msgs[i].msg_hdr.msg_namelen = sizeof from[i];
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
        if (gro) {
            msgs[i].msg_hdr.msg_control = control[i].buf;
            msgs[i].msg_hdr.msg_controllen = sizeof control[i].buf;
        }
    }
    const int rc = ::recvmmsg(fd_, msgs.data(), static_cast<unsigned>(n), 0, nullptr);
    if (rc < 0) return receive_failed(errno);
    ++stats_.receive_calls;
    *drained = static_cast<size_t>(rc) < n;
    size_t delivered = 0;
    for (size_t i = 0; i < static_cast<size_t>(rc) && !closed_; ++i) {
        msghdr& msg = msgs[i].msg_hdr;
        if ((msg.msg_flags & MSG_TRUNC) != 0) {
            ++stats_.truncated;
            ++delivered;
            continue;
        }
        // Without the control message the kernel did not coalesce: one datagram.
        size_t segment = msgs[i].msg_len;
        if (gro) {
            for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
                if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO) {
                    int size = 0;
                    std::memcpy(&size, CMSG_DATA(c), sizeof size);
                    if (size > 0) segment = static_cast<size_t>(size);
                }
            }
        }
        delivered += deliver(from[i], area + i * slot, msgs[i].msg_len, segment, now);
    }
    return delivered;
}

// nullopt: the socket is empty. Otherwise how much of the wake's budget the failure used.
std::optional<size_t> UdpSocket::receive_failed(int error) {
    if (would_block(error)) return std::nullopt;
    if (error == EINTR) return 0;
    if (error == ENOSYS && stats_.receive_mode == UdpMode::kMmsg) {
        spdlog::info("udp {}: no recvmmsg; one recvmsg per datagram", to_string(local_));
        stats_.receive_mode = UdpMode::kSingle;
        ++stats_.mode_fallbacks;
        return 0;
    }
    ++stats_.receive_errors;
    spdlog::debug("udp {}: receive: {}", to_string(local_),
                  uv_error_text(uv_translate_sys_error(error)));
    return 1;  // counted against the budget, so an error that repeats cannot spin here
}

// Hands out the datagrams in data: one, or several of segment_size bytes (the last may be
// shorter) that GRO coalesced. Returns how many.
size_t UdpSocket::deliver(const sockaddr_storage& from_storage, uint8_t* data, size_t size,
                          size_t segment_size, Time now) {
    const size_t count = segment_size == 0 ? 1 : (size + segment_size - 1) / segment_size;
    const auto from = from_sockaddr(reinterpret_cast<const sockaddr*>(&from_storage));
    if (!from) return count;
    size_t offset = 0;
    do {
        const size_t piece = std::min(segment_size, size - offset);
        // GRO receives whole datagrams of any size: the limit is checked here (the last
        // of a run may be short enough).
        if (piece > options_.max_datagram_size) {
            ++stats_.truncated;
        } else {
            ++stats_.datagrams_received;
            stats_.bytes_received += piece;
            if (handlers_.datagram) handlers_.datagram(*from, MutableByteView(data + offset, piece), now);
        }
        offset += piece;
    } while (offset < size && !closed_);
    return count;
}

// --- the loop --------------------------------------------------------------------------------

void UdpSocket::on_poll(uv_poll_t* handle, int status, int events) {
    auto* self = static_cast<UdpSocket*>(handle->data);
    if (status < 0) {
        ++self->stats_.receive_errors;
        spdlog::debug("udp {}: poll: {}", to_string(self->local_), uv_error_text(status));
        return;
    }
    if ((events & UV_WRITABLE) != 0 && !self->closed_) self->on_writable();
    if ((events & UV_READABLE) != 0 && !self->closed_) self->on_readable();
}

void UdpSocket::on_prepare(uv_prepare_t* handle) {
    static_cast<UdpSocket*>(handle->data)->flush();
}

void UdpSocket::close() {
    if (closed_) return;
    flush();  // the core's last datagrams (a CLOSE) still go out
    closed_ = true;
    queue_.clear();
    queued_bytes_ = 0;
    if (open_handles_ == 0) return;  // never opened: the destructor closes the fd
    uv_close(reinterpret_cast<uv_handle_t*>(&poll_), &UdpSocket::on_closed);
    uv_close(reinterpret_cast<uv_handle_t*>(&prepare_), &UdpSocket::on_closed);
}

void UdpSocket::on_closed(uv_handle_t* handle) {
    auto* self = static_cast<UdpSocket*>(handle->data);
    if (--self->open_handles_ > 0) return;
    // libuv has stopped watching the fd; closing it earlier would let epoll see a reused one.
    ::close(self->fd_);
    self->fd_ = -1;
    // The handlers go only now: close() may have been called from inside one of them.
    self->handlers_ = {};
    auto keep = std::move(self->self_);  // may free this object when it goes out of scope
}

}  // namespace burrow
