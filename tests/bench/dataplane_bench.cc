// burrow-bench dataplane: the cost of the data plane alone. Two Sessions in memory (real
// handshake, real AEAD) move one stream of bulk data one way over a virtual-time link with a
// fixed delay and no loss; no sockets, no event loop. Reports the CPU throughput, heap
// allocations per packet and how many packets the receiver sent back (its ACKs) per data
// packet, so a change to the packet path shows in numbers rather than in a profile.
#include <algorithm>
#include <chrono>
#include <ctime>
#include <cstdio>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "tests/bench/bench_registry.h"
#include "tests/unit/heap_counter.h"
#include "tunnel/crypto_init.h"
#include "tunnel/rng.h"
#include "tunnel/session.h"

namespace burrow::bench {
namespace {

using namespace std::chrono_literals;

constexpr uint64_t kDefaultMegabytes = 64;
constexpr uint64_t kMaxMegabytes = 4096;  // the machine is shared: keep runs bounded
constexpr uint64_t kBytesPerMB = 1'000'000;
// A LAN-like path: long enough that ACKs, pacing and the congestion window do real work,
// short enough that the run is bound by CPU rather than by the virtual window.
constexpr Duration kOneWay = 1ms;
// Each direction serialises datagrams at this rate (a gigabit link), so they arrive one by
// one as from a real socket: delivered all at once, a window's worth would reach the
// receiver as a single batch and it would acknowledge once per window.
constexpr uint64_t kLinkBitsPerSecond = 1'000'000'000;
constexpr uint64_t kBitsPerByte = 8;
constexpr uint64_t kMicrosPerSecond = 1'000'000;
// Bytes handed to the stream and read back per application call: what one TCP read or
// write of the executor would move.
constexpr size_t kAppChunk = 64 * 1024;
// --streams: at most this many bulk streams at once (iperf3 -P's ceiling is 128).
constexpr size_t kMaxStreams = 128;
// The first bytes are excluded from the allocation count: buffers, maps and the congestion
// window grow to their steady size there.
constexpr uint64_t kWarmupBytes = 16 * 1024 * 1024;
constexpr int64_t kWallClock = 1'700'000'000'000'000;  // microseconds since the Unix epoch
constexpr uint64_t kSeed = 1;

struct Datagram {
    Time at;
    Bytes buffer;  // a full datagram's room, kept across uses of the slot
    size_t size = 0;
};

// Datagrams in flight, in arrival order (one delay for all). A ring whose slots keep their
// buffers, so the harness itself allocates nothing per packet once it has grown.
class Flight {
  public:
    bool empty() const { return count_ == 0; }
    Datagram& front() { return slots_[head_]; }
    void pop() {
        head_ = (head_ + 1) % slots_.size();
        --count_;
    }
    // The slot to fill next; push() commits it.
    Datagram& back_slot() {
        if (count_ == slots_.size()) grow();
        return slots_[(head_ + count_) % slots_.size()];
    }
    void push() { ++count_; }
    // When a datagram of `size` bytes sent at `now` arrives: after the one before it has
    // been serialised, and one delay after it is sent.
    Time arrival(Time now, size_t size) {
        const auto serialise = Duration(static_cast<int64_t>(
            (size * kBitsPerByte * kMicrosPerSecond + kLinkBitsPerSecond - 1) / kLinkBitsPerSecond));
        link_free_ = std::max(link_free_, now) + serialise;
        return link_free_ + kOneWay;
    }

  private:
    void grow() {
        std::vector<Datagram> bigger(std::max<size_t>(kInitialSlots, 2 * slots_.size()));
        for (size_t i = 0; i < count_; ++i) {
            bigger[i] = std::move(slots_[(head_ + i) % slots_.size()]);
        }
        slots_ = std::move(bigger);
        head_ = 0;
    }
    static constexpr size_t kInitialSlots = 1024;  // a window's worth at the default settings
    std::vector<Datagram> slots_;
    size_t head_ = 0;
    size_t count_ = 0;
    Time link_free_{};  // when the link has serialised everything sent so far
};

struct Result {
    double seconds = 0;      // wall clock
    double cpu_seconds = 0;  // this process's CPU time: what a shared machine cannot skew
    uint64_t data_packets = 0;  // sent by A after warm-up
    uint64_t ack_packets = 0;   // sent by B after warm-up
    int64_t allocations = 0;    // after warm-up
};

class Run {
  public:
    Run()
        : ok_(crypto_init()),
          keys_rng_(kSeed),
          secret_a_(PrivateKey::generate(keys_rng_)),
          secret_b_(PrivateKey::generate(keys_rng_)),
          rng_a_(kSeed + 1),
          rng_b_(kSeed + 2),
          a_(Role::kInitiator, secret_a_, public_key(secret_b_), {}, rng_a_, Time{}, kWallClock),
          b_(Role::kResponder, secret_b_, public_key(secret_a_), {}, rng_b_, Time{}, kWallClock),
          chunk_(kAppChunk) {}

    // Moves `total` bytes, split evenly over `streams` streams written in turn (iperf3 -P).
    std::optional<Result> transfer(uint64_t total, size_t streams) {
        if (!ok_) return std::nullopt;
        a_.start(now_);
        std::vector<StreamId> outgoing;
        for (size_t i = 0; i < streams; ++i) {
            const auto stream = a_.connection().open_stream("bench");
            if (!stream) return std::nullopt;
            outgoing.push_back(*stream);
        }
        std::vector<uint64_t> written_to(streams, 0);
        const uint64_t per_stream = total / streams;
        total = per_stream * streams;
        Result r;
        bool measuring = false;
        uint64_t written = 0, received = 0;
        uint64_t sent_a_at_start = 0, sent_b_at_start = 0;
        int64_t allocations_at_start = 0;
        const auto start = std::chrono::steady_clock::now();
        const std::clock_t cpu_start = std::clock();
        while (received < total) {
            for (size_t i = 0; i < streams && written < total; ++i) {
                while (written_to[i] < per_stream) {
                    const size_t want = static_cast<size_t>(
                        std::min<uint64_t>(kAppChunk, per_stream - written_to[i]));
                    const size_t n =
                        a_.connection().write(outgoing[i], ByteView(chunk_).first(want));
                    written_to[i] += n;
                    written += n;
                    if (n < want) break;
                }
            }
            drain(a_, to_b_);
            drain(b_, to_a_);
            deliver();
            received += read_all();
            if (!measuring && received >= kWarmupBytes) {
                measuring = true;
                sent_a_at_start = a_.connection().stats().packets_sent;
                sent_b_at_start = b_.connection().stats().packets_sent;
                allocations_at_start = test::total_allocations.load();
            }
            if (!advance()) return std::nullopt;
        }
        r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        r.cpu_seconds = static_cast<double>(std::clock() - cpu_start) / CLOCKS_PER_SEC;
        r.allocations = test::total_allocations.load() - allocations_at_start;
        r.data_packets = a_.connection().stats().packets_sent - sent_a_at_start;
        r.ack_packets = b_.connection().stats().packets_sent - sent_b_at_start;
        return r;
    }

  private:
    // Each datagram is built in place in its flight slot (Session::write_transmit).
    void drain(Session& s, Flight& flight) {
        const size_t room = s.connection().max_datagram_size();
        for (;;) {
            Datagram& slot = flight.back_slot();
            if (slot.buffer.size() < room) slot.buffer.resize(room);
            slot.size = s.write_transmit(now_, slot.buffer);
            if (slot.size == 0) return;
            slot.at = flight.arrival(now_, slot.size);
            flight.push();
        }
    }

    // One datagram per direction at most, so the receiver acts (and acknowledges) after each
    // one as after a socket read.
    void deliver() {
        for (auto [flight, to] : {std::pair{&to_b_, &b_}, std::pair{&to_a_, &a_}}) {
            if (flight->empty() || flight->front().at > now_) continue;
            Datagram& d = flight->front();
            to->on_datagram(MutableByteView(d.buffer).first(d.size), now_);  // opened in place
            flight->pop();
        }
    }

    uint64_t read_all() {
        uint64_t n = 0;
        // A's events (StreamWritable) are only drained, as an application would.
        while (a_.connection().poll_event()) {
        }
        Connection& c = b_.connection();
        while (auto e = c.poll_event()) {
            if (const auto* opened = std::get_if<StreamOpened>(&*e)) {
                incoming_.push_back(opened->id);
            }
        }
        for (const StreamId id : incoming_) {
            while (const size_t got = c.read(id, chunk_)) n += got;
        }
        return n;
    }

    // Moves virtual time to the next thing that happens; false when nothing ever will.
    bool advance() {
        Time next = std::min(a_.next_deadline(), b_.next_deadline());
        for (Flight* flight : {&to_b_, &to_a_}) {
            if (!flight->empty()) next = std::min(next, flight->front().at);
        }
        if (next == kNever) return false;
        now_ = std::max(now_, next);
        if (now_ >= a_.next_deadline()) a_.on_timer(now_);
        if (now_ >= b_.next_deadline()) b_.on_timer(now_);
        return true;
    }

    bool ok_;
    SeededRng keys_rng_;
    PrivateKey secret_a_, secret_b_;
    SeededRng rng_a_, rng_b_;
    Session a_, b_;
    Bytes chunk_;
    Time now_{};
    Flight to_b_, to_a_;
    std::vector<StreamId> incoming_;
};

int run_dataplane(uint64_t megabytes, size_t streams) {
    Run run;
    const auto r = run.transfer(megabytes * kBytesPerMB, streams);
    if (!r) {
        std::fprintf(stderr, "burrow-bench dataplane: the transfer did not complete\n");
        return 1;
    }
    const double measured_mb =
        static_cast<double>(megabytes * kBytesPerMB - kWarmupBytes) / kBytesPerMB;
    const double packets = static_cast<double>(r->data_packets + r->ack_packets);
    std::printf("dataplane: %llu MB one way on %zu stream%s between two Sessions in memory (both "
                "sides on one core)\n\n",
                static_cast<unsigned long long>(megabytes), streams, streams == 1 ? "" : "s");
    std::printf("%-28s %12.0f\n", "throughput MB/s (wall)",
                static_cast<double>(megabytes) / r->seconds);
    std::printf("%-28s %12.0f\n", "MB per CPU second",
                static_cast<double>(megabytes) / r->cpu_seconds);
    std::printf("%-28s %12llu\n", "data packets (after warm-up)",
                static_cast<unsigned long long>(r->data_packets));
    std::printf("%-28s %12.0f\n", "data packets per MB",
                static_cast<double>(r->data_packets) / measured_mb);
    std::printf("%-28s %12llu\n", "ack packets (after warm-up)",
                static_cast<unsigned long long>(r->ack_packets));
    std::printf("%-28s %12.1f\n", "data packets per ack",
                static_cast<double>(r->data_packets) / std::max<double>(1, r->ack_packets));
    std::printf("%-28s %12.2f\n", "allocations per packet",
                static_cast<double>(r->allocations) / std::max(1.0, packets));
    std::printf("%-28s %12.0f\n", "allocations per MB",
                static_cast<double>(r->allocations) / measured_mb);
    return 0;
}

const BenchRegistration kDataplane{
    "dataplane",
    "two Sessions in memory moving bulk data one way: MB/s, allocations per packet, ACK ratio",
    [](CLI::App& cmd) {
        auto megabytes = std::make_shared<uint64_t>(kDefaultMegabytes);
        cmd.add_option("--megabytes", *megabytes, "bytes to move, in MB (default 64)")
            ->check(CLI::Range(kWarmupBytes / kBytesPerMB + 1, kMaxMegabytes));
        auto streams = std::make_shared<size_t>(1);
        cmd.add_option("--streams", *streams,
                       "bulk streams sharing the bytes, written in turn (default 1)")
            ->check(CLI::Range(size_t{1}, kMaxStreams));
        return std::function<int()>(
            [megabytes, streams] { return run_dataplane(*megabytes, *streams); });
    }};

}  // namespace
}  // namespace burrow::bench
