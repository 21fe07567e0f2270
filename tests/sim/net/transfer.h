// Bulk and interactive transfers between two Connections over the simulated network, with
// byte-exact verification. The building block of tests/sim/transfer_test.cc and burrow-sim.
//
// A (the initiator) opens `streams` streams to B and writes each one's content, derived from
// (seed, stream index) so B can verify every byte without a copy, then half-closes it. B reads
// and verifies in order, and checks that StreamFinished comes after exactly the written
// length; then it half-closes its own (empty) direction so the stream can retire. Optionally
// an interactive stream carries a 1 KB request from A every interval and a 1 KB response
// from B, and A records the request->response latency.
//
// At every step the harness also checks the flow-control promises: what each side buffers
// stays within its windows and send buffers, and A never runs further ahead of B's reader
// than the receive windows allow.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "tests/sim/net/link.h"
#include "tests/sim/net/network.h"
#include "tunnel/connection.h"
#include "tunnel/packet.h"
#include "tunnel/rng.h"

namespace burrow::sim {

// What a transfer drives: an endpoint that carries a Connection, bare or inside something
// that wraps it (a Session, which adds the handshake and encryption).
class TransferEndpoint : public SimEndpoint {
  public:
    virtual Connection& connection() = 0;
    virtual const Connection& connection() const = 0;
};

// Makes one side of a run. `seed` is that side's own (for its Rng); `now` is the start time.
using EndpointFactory = std::function<std::unique_ptr<TransferEndpoint>(
    Role role, const ConnectionConfig& config, uint64_t seed, Time now)>;

// A Connection as the simulator sees it, with its own NullProtection and SeededRng.
class ConnectionEndpoint final : public TransferEndpoint {
  public:
    ConnectionEndpoint(Role role, const ConnectionConfig& config, Time now);

    void on_datagram(ByteView d, Time now) override { conn_.on_datagram(d, now); }
    void on_timer(Time now) override { conn_.on_timer(now); }
    std::optional<Bytes> poll_transmit(Time now) override { return conn_.poll_transmit(now); }
    Time next_deadline() const override { return conn_.next_deadline(); }

    Connection& connection() override { return conn_; }
    const Connection& connection() const override { return conn_; }

  private:
    NullProtection protection_;
    Connection conn_;  // last: it keeps a reference to protection_
};

// The content of stream `stream` of a run with `seed`: byte `offset` is content_byte(...).
uint8_t content_byte(uint64_t seed, uint64_t stream, uint64_t offset);
void fill_content(uint64_t seed, uint64_t stream, uint64_t offset, MutableByteView out);
// Index of the first byte of `data` that differs from the content at `offset`, or
// data.size() when all match.
size_t first_content_mismatch(uint64_t seed, uint64_t stream, uint64_t offset, ByteView data);

struct TransferConfig {
    uint64_t seed = 1;
    size_t streams = 8;
    uint64_t bytes_per_stream = 64 * 1024;
    // false: every stream carries bytes_per_stream. true: each size is drawn from
    // [0, bytes_per_stream], log-uniformly (most streams small, a few large) with exact 0 and
    // exact maximum each one time in eight, so empty and full-size streams always occur.
    bool mixed_sizes = false;

    LinkConfig a_to_b;
    LinkConfig b_to_a;
    ConnectionConfig connection;  // both sides
    // Empty: each side is a ConnectionEndpoint. Set it to run the same transfer through
    // another endpoint type, e.g. Sessions (tests/sim/session_test.cc).
    EndpointFactory make_endpoint;
    // Called after every step of the run (once the application side has acted), for tests
    // that watch the endpoints as the transfer goes.
    std::function<void(Time)> on_step;

    bool interactive = false;
    Duration interactive_interval = std::chrono::milliseconds(50);
    size_t interactive_message = 1024;

    // 0: B reads whatever arrives. Otherwise B reads at most this many bulk bytes per
    // virtual millisecond.
    uint64_t slow_reader_bytes_per_ms = 0;

    // No progress (bytes read on either side, a FIN) for this long is a stall. Longer than a
    // few backed-off probe timeouts, shorter than the idle timeout.
    Duration stall_timeout = std::chrono::seconds(20);
    Duration time_limit = std::chrono::minutes(30);  // virtual; a last resort
};

// The sizes the bulk streams of a run carry.
std::vector<uint64_t> stream_sizes(const TransferConfig& config);

enum class TransferFailure {
    kNone,
    kMismatch,          // a byte differs, or more bytes than written arrived
    kMissingFin,        // every byte was read but StreamFinished never came (or came early)
    kStall,             // no progress for stall_timeout
    kConnectionClosed,  // either side reported ConnectionClosed
    kStreamReset,       // a stream was reset although nobody asked for it
    kBufferOverrun,     // buffered bytes or send-ahead exceeded the configured windows
    kProtocol,          // an event the scenario cannot explain (unknown stream, ...)
    kTimeLimit,
};
const char* failure_name(TransferFailure f);

struct TransferResult {
    bool ok = false;
    TransferFailure failure = TransferFailure::kNone;
    std::string reason;  // one line: what went wrong, on which stream, at which offset

    Duration duration{0};  // virtual time until B read the last bulk FIN
    uint64_t bulk_bytes = 0;
    double goodput_bytes_per_sec = 0;
    double goodput_fraction = 0;  // of the a->b link rate; 0 when that link is unlimited

    std::vector<double> interactive_latency_ms;  // one per answered request, in order
    double p50_ms = 0;
    double p99_ms = 0;

    uint64_t write_blocked = 0;  // times A's write() accepted less than offered
    uint64_t max_buffered_a = 0;
    uint64_t max_buffered_b = 0;
    uint64_t max_send_ahead = 0;  // max of A's stream bytes sent minus bytes B's app read

    ConnectionStats a_stats;
    double a_srtt_ms = 0;  // A's smoothed RTT at the end
    ConnectionStats b_stats;
    LinkStats ab;
    LinkStats ba;
    NetworkStats network;
};

// Nearest-rank percentile (q in [0, 1]) of unsorted samples; 0 when there are none.
double percentile(std::vector<double> samples, double q);

class TransferScenario {
  public:
    explicit TransferScenario(TransferConfig config) : config_(std::move(config)) {}
    TransferResult run() const;
    const TransferConfig& config() const { return config_; }

  private:
    TransferConfig config_;
};

// The seed-swept transfer the sim tests share: 8 streams of mixed sizes up to 64 KiB over a
// path of 10-40 ms RTT with 0-3 ms jitter, both chosen by the seed so the seeds also sweep
// the timing; `impair` adds the condition under test to both directions.
TransferConfig mixed_transfer(uint64_t seed, const std::function<void(LinkConfig&)>& impair);

// "seed N: <failure>: <reason>", for test failure messages.
std::string describe(uint64_t seed, const TransferResult& r);

}  // namespace burrow::sim
