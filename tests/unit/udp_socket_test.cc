#include <catch2/catch.hpp>

#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "src/udp_socket.h"
#include "tests/unit/uv_test_loop.h"

using namespace burrow;
using namespace std::chrono_literals;
using burrow::test::TestLoop;

namespace {

struct Received {
    SocketAddress from;
    Bytes data;
    Time at;
};

SocketAddress loopback4(uint16_t port = 0) {
    return SocketAddress::ipv4({127, 0, 0, 1}, port);
}

SocketAddress loopback6(uint16_t port = 0) {
    std::array<uint8_t, kIpv6Size> ip{};
    ip[15] = 1;
    return SocketAddress::ipv6(ip, port);
}

// Why this kernel cannot bind an IPv6 UDP socket to [::1], or nullopt when it can. Asked with
// plain socket calls, never through UdpSocket: a UdpSocket that fails at IPv6 must fail the
// test below, not pass for a machine without IPv6.
std::optional<std::string> kernel_lacks_ipv6() {
    const int fd = ::socket(AF_INET6, SOCK_DGRAM, 0);
    if (fd < 0) return std::string("socket(AF_INET6): ") + std::strerror(errno);
    sockaddr_in6 at{};
    at.sin6_family = AF_INET6;
    at.sin6_addr = in6addr_loopback;
    const int rc = ::bind(fd, reinterpret_cast<const sockaddr*>(&at), sizeof at);
    const int error = errno;
    ::close(fd);
    if (rc != 0) return std::string("bind [::1]:0: ") + std::strerror(error);
    return std::nullopt;
}

std::shared_ptr<UdpSocket> bind_or_fail(TestLoop& loop, const LoopClock& clock,
                                        const SocketAddress& at, std::vector<Received>* inbox,
                                        UdpOptions options = {}) {
    UdpHandlers handlers{
        .datagram =
            [inbox](const SocketAddress& from, ByteView data, Time now) {
                if (inbox) inbox->push_back({from, Bytes(data.begin(), data.end()), now});
            },
        .batch_end = {},
    };
    auto r = UdpSocket::bind(loop.get(), clock, at, std::move(handlers), options);
    if (auto* e = std::get_if<OsError>(&r)) FAIL(e->message);
    return std::get<std::shared_ptr<UdpSocket>>(r);
}

}  // namespace

TEST_CASE("udp: bind to port 0 reports the port the OS picked") {
    TestLoop loop;
    LoopClock clock;
    auto s = bind_or_fail(loop, clock, loopback4(), nullptr);
    CHECK(s->local_address().port != 0);
    CHECK(s->local_address().ip_bytes()[0] == 127);
    CHECK(s->stats().receive_buffer_bytes > 0);
    CHECK(s->stats().send_buffer_bytes > 0);
    s->close();
    loop.settle();
}

TEST_CASE("udp: datagrams go both ways with the sender's address") {
    TestLoop loop;
    LoopClock clock;
    std::vector<Received> at_a, at_b;
    auto a = bind_or_fail(loop, clock, loopback4(), &at_a);
    auto b = bind_or_fail(loop, clock, loopback4(), &at_b);

    REQUIRE(a->send(b->local_address(), as_bytes("hello b")));
    REQUIRE(b->send(a->local_address(), as_bytes("hello a")));
    REQUIRE(loop.run_until([&] { return !at_a.empty() && !at_b.empty(); }));
    CHECK(as_chars(at_b[0].data) == "hello b");
    CHECK(at_b[0].from == a->local_address());
    CHECK(as_chars(at_a[0].data) == "hello a");
    CHECK(at_a[0].from == b->local_address());
    CHECK(at_b[0].at <= clock.now());
    CHECK(a->stats().datagrams_sent == 1);
    CHECK(b->stats().datagrams_received == 1);
    CHECK(b->stats().bytes_received == 7);
    a->close();
    b->close();
    loop.settle();
}

TEST_CASE("udp: a burst arrives whole and in order on loopback") {
    TestLoop loop;
    LoopClock clock;
    std::vector<Received> inbox;
    auto a = bind_or_fail(loop, clock, loopback4(), nullptr);
    auto b = bind_or_fail(loop, clock, loopback4(), &inbox);
    constexpr int kCount = 100;
    constexpr size_t kSize = 1350;  // ConnectionConfig::max_datagram_size
    for (int i = 0; i < kCount; ++i) {
        Bytes d(kSize, static_cast<uint8_t>(i));
        REQUIRE(a->send(b->local_address(), d));
    }
    REQUIRE(loop.run_until([&] { return inbox.size() == kCount; }));
    for (int i = 0; i < kCount; ++i) {
        REQUIRE(inbox[i].data.size() == kSize);
        CHECK(inbox[i].data[0] == static_cast<uint8_t>(i));
    }
    a->close();
    b->close();
    loop.settle();
}

TEST_CASE("udp: an empty datagram is delivered as one") {
    TestLoop loop;
    LoopClock clock;
    std::vector<Received> inbox;
    auto a = bind_or_fail(loop, clock, loopback4(), nullptr);
    auto b = bind_or_fail(loop, clock, loopback4(), &inbox);
    REQUIRE(a->send(b->local_address(), ByteView{}));
    REQUIRE(a->send(b->local_address(), as_bytes("x")));
    REQUIRE(loop.run_until([&] { return inbox.size() == 2; }));
    CHECK(inbox[0].data.empty());
    CHECK(as_chars(inbox[1].data) == "x");
    a->close();
    b->close();
    loop.settle();
}

TEST_CASE("udp: a datagram larger than the receive buffer is counted and dropped") {
    TestLoop loop;
    LoopClock clock;
    std::vector<Received> inbox;
    UdpOptions small;
    small.max_datagram_size = 100;
    auto a = bind_or_fail(loop, clock, loopback4(), nullptr);
    auto b = bind_or_fail(loop, clock, loopback4(), &inbox, small);
    REQUIRE(a->send(b->local_address(), Bytes(101, 0xaa)));
    REQUIRE(a->send(b->local_address(), Bytes(100, 0xbb)));  // fits exactly
    REQUIRE(loop.run_until([&] { return b->stats().truncated == 1 && inbox.size() == 1; }));
    CHECK(inbox[0].data == Bytes(100, 0xbb));
    CHECK(b->stats().datagrams_received == 1);
    a->close();
    b->close();
    loop.settle();
}

TEST_CASE("udp: IPv6 loopback, and IPv4 peers of a dual-stack socket look like IPv4") {
    TestLoop loop;
    LoopClock clock;
    if (const auto why = kernel_lacks_ipv6()) {
        WARN("SKIP: this kernel has no IPv6 (" << *why << ") " << std::string(40, '!'));
        return;
    }
    std::vector<Received> at_dual, at_v6;
    auto dual = bind_or_fail(loop, clock, SocketAddress::ipv6({}, 0), &at_dual);
    auto v4 = bind_or_fail(loop, clock, loopback4(), nullptr);
    auto v6 = bind_or_fail(loop, clock, loopback6(), &at_v6);

    REQUIRE(v4->send(loopback4(dual->local_address().port), as_bytes("from v4")));
    REQUIRE(loop.run_until([&] { return at_dual.size() == 1; }));
    CHECK(at_dual[0].from == v4->local_address());  // 127.0.0.1, not ::ffff:127.0.0.1

    // And the dual-stack socket answers an IPv4 address given as IPv4.
    std::vector<Received> at_v4;
    v4->close();
    auto v4b = bind_or_fail(loop, clock, loopback4(), &at_v4);
    REQUIRE(dual->send(v4b->local_address(), as_bytes("to v4")));
    REQUIRE(dual->send(v6->local_address(), as_bytes("to v6")));
    REQUIRE(loop.run_until([&] { return at_v4.size() == 1 && at_v6.size() == 1; }));
    CHECK(as_chars(at_v4[0].data) == "to v4");
    CHECK(at_v6[0].from.v6);
    CHECK(as_chars(at_v6[0].data) == "to v6");

    // An IPv4 socket cannot reach an IPv6 address: a counted failure, not a crash.
    CHECK_FALSE(v4b->send(v6->local_address(), as_bytes("nope")));
    CHECK(v4b->stats().send_failures == 1);
    dual->close();
    v4b->close();
    v6->close();
    loop.settle();
}

TEST_CASE("udp: closing from inside the receive callback stops delivery") {
    TestLoop loop;
    LoopClock clock;
    int calls = 0;
    std::shared_ptr<UdpSocket> b;
    auto r = UdpSocket::bind(loop.get(), clock, loopback4(),
                             {.datagram =
                                  [&](const SocketAddress&, ByteView, Time) {
                                      ++calls;
                                      b->close();
                                  },
                              .batch_end = {}});
    b = std::get<std::shared_ptr<UdpSocket>>(r);
    auto a = bind_or_fail(loop, clock, loopback4(), nullptr);
    for (int i = 0; i < 5; ++i) REQUIRE(a->send(b->local_address(), as_bytes("x")));
    loop.run_for(50ms);
    CHECK(calls == 1);
    CHECK_FALSE(b->send(a->local_address(), as_bytes("closed")));
    a->close();
    loop.settle();
}

TEST_CASE("udp: binding an address that is in use is a one-line error") {
    TestLoop loop;
    LoopClock clock;
    auto a = bind_or_fail(loop, clock, loopback4(), nullptr);
    auto r = UdpSocket::bind(loop.get(), clock, a->local_address(),
                             {.datagram = [](const SocketAddress&, ByteView, Time) {},
                              .batch_end = {}});
    REQUIRE(std::holds_alternative<OsError>(r));
    CHECK(std::get<OsError>(r).message ==
          "bind udp " + to_string(a->local_address()) + ": address already in use");
    a->close();
    loop.settle();
}

// --- batching: each mode on loopback ---------------------------------------------------------

namespace {

constexpr size_t kBurrowDatagram = 1350;  // ConnectionConfig::max_datagram_size

UdpOptions in_mode(UdpMode mode) {
    UdpOptions o;
    o.mode = mode;
    return o;
}

// Datagram i of a test stream: its index, then a byte pattern that depends on both, so a
// datagram cut, merged or swapped with another shows.
Bytes numbered(uint32_t i, size_t size) {
    Bytes d(size);
    for (size_t k = 0; k < size; ++k) d[k] = static_cast<uint8_t>(i * 31 + k);
    for (size_t k = 0; k < 4 && k < size; ++k) d[k] = static_cast<uint8_t>(i >> (8 * k));
    return d;
}

// Sizes as a sender of bulk data makes them: runs of full datagrams, a short one ending a run,
// small ones (ACKs) between, and now and then an empty one.
size_t mixed_size(uint32_t i) {
    if (i % 97 == 0) return 4;
    if (i % 13 == 0) return 40 + i % 50;
    if (i % 29 == 0) return 700;
    return kBurrowDatagram;
}

}  // namespace

TEST_CASE("udp: each mode carries mixed sizes to two destinations whole and in order") {
    const UdpMode mode = GENERATE(UdpMode::kGso, UdpMode::kMmsg, UdpMode::kSingle);
    INFO("mode " << to_string(mode));
    TestLoop loop;
    LoopClock clock;
    std::vector<Received> at_b, at_c;
    auto a = bind_or_fail(loop, clock, loopback4(), nullptr, in_mode(mode));
    auto b = bind_or_fail(loop, clock, loopback4(), &at_b, in_mode(mode));
    auto c = bind_or_fail(loop, clock, loopback4(), &at_c, in_mode(mode));
    REQUIRE(a->stats().send_mode == mode);
    REQUIRE(b->stats().receive_mode == mode);

    // Destinations change in blocks of 10 and singly, so GSO runs end for every reason.
    constexpr uint32_t kCount = 600;
    std::vector<Bytes> to_b, to_c;
    for (uint32_t i = 0; i < kCount; ++i) {
        const bool for_c = (i / 10) % 3 == 2 || i % 17 == 0;
        Bytes d = numbered(i, mixed_size(i));
        if (i % 2 == 0) {
            REQUIRE(a->send(for_c ? c->local_address() : b->local_address(), d));
        } else {  // the other half written in place
            MutableByteView room = a->send_buffer(kBurrowDatagram);
            REQUIRE(room.size() == kBurrowDatagram);
            std::copy(d.begin(), d.end(), room.begin());
            REQUIRE(a->commit_send(for_c ? c->local_address() : b->local_address(), d.size()));
        }
        (for_c ? to_c : to_b).push_back(std::move(d));
    }
    a->flush();
    REQUIRE(loop.run_until(
        [&] { return at_b.size() == to_b.size() && at_c.size() == to_c.size(); }));
    for (size_t i = 0; i < to_b.size(); ++i) {
        REQUIRE(at_b[i].data == to_b[i]);
        CHECK(at_b[i].from == a->local_address());
    }
    for (size_t i = 0; i < to_c.size(); ++i) REQUIRE(at_c[i].data == to_c[i]);

    const UdpStats& sent = a->stats();
    CHECK(sent.datagrams_sent == kCount);
    CHECK(sent.send_failures == 0);
    CHECK(sent.mode_fallbacks == 0);
    CHECK(sent.send_mode == mode);
    if (mode == UdpMode::kSingle) {
        CHECK(sent.send_calls == kCount);
        CHECK(b->stats().receive_calls == to_b.size());
    } else {
        // Batched: at most a third of the calls (GSO: one per run, mmsg: one per 64).
        CHECK(sent.send_calls * 3 < kCount);
    }
    a->close();
    b->close();
    c->close();
    loop.settle();
}

TEST_CASE("udp: GRO hands out a coalesced receive as its datagrams, one batch_end per wake") {
    TestLoop loop;
    LoopClock clock;
    std::vector<Received> inbox;
    int batch_ends = 0;
    auto a = bind_or_fail(loop, clock, loopback4(), nullptr, in_mode(UdpMode::kGso));
    auto r = UdpSocket::bind(
        loop.get(), clock, loopback4(),
        {.datagram =
             [&](const SocketAddress& from, ByteView data, Time now) {
                 inbox.push_back({from, Bytes(data.begin(), data.end()), now});
             },
         .batch_end = [&] { ++batch_ends; }},
        in_mode(UdpMode::kGso));
    REQUIRE(std::holds_alternative<std::shared_ptr<UdpSocket>>(r));
    auto b = std::get<std::shared_ptr<UdpSocket>>(r);
    REQUIRE(b->stats().receive_mode == UdpMode::kGso);

    // One GSO run: 40 full datagrams and a shorter last one; the loopback device passes the
    // super-packet to a GRO socket whole.
    constexpr uint32_t kFull = 40;
    std::vector<Bytes> sent;
    for (uint32_t i = 0; i <= kFull; ++i) {
        sent.push_back(numbered(i, i == kFull ? 200 : 1200));
        REQUIRE(a->send(b->local_address(), sent.back()));
    }
    a->flush();
    REQUIRE(a->stats().send_calls == 1);
    REQUIRE(loop.run_until([&] { return inbox.size() == sent.size(); }));
    for (size_t i = 0; i < sent.size(); ++i) REQUIRE(inbox[i].data == sent[i]);
    CHECK(b->stats().receive_calls == 1);
    CHECK(b->stats().datagrams_received == sent.size());
    CHECK(batch_ends == 1);
    a->close();
    b->close();
    loop.settle();
}

TEST_CASE("udp: coalesced datagrams larger than max_datagram_size are counted, not delivered") {
    TestLoop loop;
    LoopClock clock;
    std::vector<Received> inbox;
    UdpOptions small = in_mode(UdpMode::kGso);
    small.max_datagram_size = 1000;
    auto a = bind_or_fail(loop, clock, loopback4(), nullptr, in_mode(UdpMode::kGso));
    auto b = bind_or_fail(loop, clock, loopback4(), &inbox, small);
    for (int i = 0; i < 5; ++i) REQUIRE(a->send(b->local_address(), Bytes(1001, 0xaa)));
    a->flush();
    REQUIRE(a->send(b->local_address(), Bytes(1000, 0xbb)));
    REQUIRE(loop.run_until([&] { return inbox.size() == 1; }));
    CHECK(b->stats().truncated == 5);
    CHECK(inbox[0].data == Bytes(1000, 0xbb));
    a->close();
    b->close();
    loop.settle();
}

TEST_CASE("udp: a socket whose GSO the kernel refuses resends the batch with sendmmsg") {
    TestLoop loop;
    LoopClock clock;
    std::vector<Received> inbox;
    auto a = bind_or_fail(loop, clock, loopback4(), nullptr, in_mode(UdpMode::kGso));
    auto b = bind_or_fail(loop, clock, loopback4(), &inbox);
    REQUIRE(a->stats().send_mode == UdpMode::kGso);
    // A socket that sends without UDP checksums cannot segment (the kernel answers EINVAL):
    // the same refusal a device without checksum offload gives (EIO).
    const int on = 1;
    REQUIRE(::setsockopt(a->native_handle(), SOL_SOCKET, SO_NO_CHECK, &on, sizeof on) == 0);

    std::vector<Bytes> sent;
    for (uint32_t i = 0; i < 50; ++i) {
        sent.push_back(numbered(i, kBurrowDatagram));
        REQUIRE(a->send(b->local_address(), sent.back()));
    }
    a->flush();
    REQUIRE(loop.run_until([&] { return inbox.size() == sent.size(); }));
    for (size_t i = 0; i < sent.size(); ++i) REQUIRE(inbox[i].data == sent[i]);
    CHECK(a->stats().send_mode == UdpMode::kMmsg);
    CHECK(a->stats().mode_fallbacks == 1);
    CHECK(a->stats().send_failures == 0);
    CHECK(a->stats().datagrams_sent == sent.size());
    a->close();
    b->close();
    loop.settle();
}

namespace {

// This thread in a network namespace of its own whose loopback holds datagrams in a slow tbf
// qdisc, charged to the socket that sent them, until open_gate(). On a plain loopback the
// device frees a datagram's memory as it sends it, so a sender's buffer never fills there.
// Needs CAP_SYS_ADMIN (unshare) and iproute2; ok() says whether it is in place.
class SlowLoopback {
  public:
    SlowLoopback() : original_(::open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC)) {
        if (::unshare(CLONE_NEWNET) != 0) {
            why_ = std::string("unshare(CLONE_NEWNET): ") + std::strerror(errno);
            return;
        }
        entered_ = true;
        // 8 kbit/s: about one datagram per second gets through; the rest waits in the qdisc.
        if (std::system("ip link set lo up && tc qdisc add dev lo root tbf rate 8kbit "
                        "burst 1600 limit 1000000") != 0) {
            why_ = "ip link / tc qdisc failed";
            return;
        }
        ok_ = true;
    }
    ~SlowLoopback() {
        if (entered_) ::setns(original_, CLONE_NEWNET);
        if (original_ >= 0) ::close(original_);
    }
    SlowLoopback(const SlowLoopback&) = delete;
    SlowLoopback& operator=(const SlowLoopback&) = delete;

    bool ok() const { return ok_; }
    const std::string& why() const { return why_; }
    // Removes the qdisc: what it held is dropped and its memory returns to the sockets.
    bool open_gate() { return std::system("tc qdisc del dev lo root") == 0; }

  private:
    int original_;
    bool entered_ = false;
    bool ok_ = false;
    std::string why_;
};

uint32_t index_of(const Bytes& d) {
    uint32_t i = 0;
    for (size_t k = 0; k < 4; ++k) i |= static_cast<uint32_t>(d[k]) << (8 * k);
    return i;
}

}  // namespace

TEST_CASE("udp: a full kernel buffer queues datagrams up to the bound, counts the rest, drains") {
    SlowLoopback slow;  // first: the sockets and the loop live and die inside the namespace
    if (!slow.ok()) {
        WARN("SKIP: no private network namespace (" << slow.why() << ") " << std::string(40, '!'));
        return;
    }
    TestLoop loop;
    LoopClock clock;
    std::vector<Received> inbox;
    UdpOptions tight;
    tight.socket_buffer_bytes = 4096;  // the kernel's least: room for a few datagrams
    tight.max_send_queue_bytes = 10 * 1000;
    auto a = bind_or_fail(loop, clock, loopback4(), nullptr, tight);
    auto b = bind_or_fail(loop, clock, loopback4(), &inbox);

    constexpr uint32_t kCount = 40;
    for (uint32_t i = 0; i < kCount; ++i) {
        REQUIRE(a->send(b->local_address(), numbered(i, 1000)));
        a->flush();  // one call each: the kernel's buffer fills datagram by datagram
    }
    const uint64_t taken = a->stats().datagrams_sent;
    INFO("the kernel took " << taken);
    CHECK(taken < kCount / 2);
    CHECK(a->send_queue_bytes() == tight.max_send_queue_bytes);  // ten wait
    CHECK(a->stats().send_queue_full == kCount - taken - 10);
    CHECK(a->stats().send_failures == 0);

    REQUIRE(slow.open_gate());
    REQUIRE(loop.run_until([&] { return a->send_queue_bytes() == 0; }));
    CHECK(a->stats().datagrams_sent == taken + 10);
    // The ten that waited arrive last and in order (the qdisc dropped most of what it held).
    REQUIRE(loop.run_until(
        [&] { return !inbox.empty() && index_of(inbox.back().data) == taken + 9; }));
    REQUIRE(inbox.size() >= 10);
    for (uint32_t k = 0; k < 10; ++k) {
        const Received& r = inbox[inbox.size() - 10 + k];
        CHECK(r.data == numbered(static_cast<uint32_t>(taken) + k, 1000));
    }
    a->close();
    b->close();
    loop.settle();
}

TEST_CASE("udp: datagrams wait in the batch until the loop would block") {
    TestLoop loop;
    LoopClock clock;
    std::vector<Received> inbox;
    auto a = bind_or_fail(loop, clock, loopback4(), nullptr);
    auto b = bind_or_fail(loop, clock, loopback4(), &inbox);
    REQUIRE(a->send(b->local_address(), as_bytes("one")));
    REQUIRE(a->send(b->local_address(), as_bytes("two")));
    CHECK(a->stats().send_calls == 0);  // nothing has gone yet: they are one batch
    REQUIRE(loop.run_until([&] { return inbox.size() == 2; }));
    CHECK(a->stats().datagrams_sent == 2);
    CHECK(as_chars(inbox[1].data) == "two");
    a->close();
    b->close();
    loop.settle();
}

TEST_CASE("udp: close sends what the batch holds") {
    TestLoop loop;
    LoopClock clock;
    std::vector<Received> inbox;
    auto a = bind_or_fail(loop, clock, loopback4(), nullptr);
    auto b = bind_or_fail(loop, clock, loopback4(), &inbox);
    REQUIRE(a->send(b->local_address(), as_bytes("last words")));
    a->close();
    REQUIRE(loop.run_until([&] { return inbox.size() == 1; }));
    CHECK(as_chars(inbox[0].data) == "last words");
    b->close();
    loop.settle();
}

TEST_CASE("udp: the socket buffers are as large as asked, where the kernel lets us") {
    TestLoop loop;
    LoopClock clock;
    UdpOptions big;
    big.socket_buffer_bytes = 8 * 1024 * 1024;
    auto s = bind_or_fail(loop, clock, loopback4(), nullptr, big);
    // Linux reports twice the size it was asked for. Without CAP_NET_ADMIN the FORCE options
    // are refused and net.core.rmem_max caps the request.
    if (::geteuid() == 0) {
        CHECK(s->stats().receive_buffer_bytes >= big.socket_buffer_bytes);
        CHECK(s->stats().send_buffer_bytes >= big.socket_buffer_bytes);
    } else {
        CHECK(s->stats().receive_buffer_bytes > 0);
    }
    s->close();
    loop.settle();
}

TEST_CASE("udp: mode names") {
    for (UdpMode m : {UdpMode::kGso, UdpMode::kMmsg, UdpMode::kSingle}) {
        CHECK(parse_udp_mode(to_string(m)) == m);
    }
    CHECK(receive_mode_name(UdpMode::kGso) == "gro");
    CHECK_FALSE(parse_udp_mode("GSO").has_value());
    CHECK_FALSE(parse_udp_mode("").has_value());
}
