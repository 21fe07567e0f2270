// Flow control: how much a peer may send us, and how much it lets us send.
//
// Both directions count absolute byte offsets, as QUIC does (RFC 9000 §4.1): a limit is the
// highest offset (per stream) or the highest sum of offsets (per session) the sender may
// reach. Credit is granted as the application reads, so a slow local TCP reader stops the
// remote sender instead of making us buffer without bound (docs/architecture.md §4).
#pragma once

#include <cstdint>

namespace burrow {

// Protocol constants both sides assume before any MAX_* frame arrives.
//
// 256 KiB covers a 50 Mbit/s x 40 ms bandwidth-delay product (250 kB), so a new stream can
// run at full speed from its first round trip, before the receiver's first MAX_STREAM_DATA.
inline constexpr uint64_t kInitialStreamWindow = 256 * 1024;
// 16 streams' worth of initial stream credit: a burst of new connections (a browser opening
// several at once) is not throttled by the session limit before the first MAX_DATA.
inline constexpr uint64_t kInitialSessionWindow = 4 * 1024 * 1024;
// Concurrent streams a peer may open before the first MAX_STREAMS; QUIC stacks commonly
// start at 100 too, enough for a browser's parallel connections to one service.
inline constexpr uint64_t kInitialMaxStreams = 100;

// Credit we grant (receive side), for one stream (limit on the highest offset received)
// or the whole session (limit on the sum of highest offsets over all streams).
//
// The caller tracks "received" as a highest offset, so duplicates and reordering never
// count twice; "consumed" is what the application has taken out of our buffers.
class RecvFlowController {
  public:
    // initial_max: the limit the peer assumes before our first update. window: how far
    // past the consumed offset each update lets the peer go.
    explicit RecvFlowController(uint64_t initial_max, uint64_t window);

    // False (and no change) if new_highest exceeds max(): a flow-control violation.
    // A value at or below received() is accepted and changes nothing.
    bool on_received(uint64_t new_highest);
    // The application read `bytes` more; never more than has been received.
    void on_consumed(uint64_t bytes);
    // The peer's remaining credit (max - consumed) has fallen to half the window or less:
    // time to send MAX_*. Waiting for half a window keeps updates rare (one per half window
    // read) yet leaves the peer a full half window to send during the update's round trip.
    bool should_update() const;
    // Raises max to consumed + window (never lowers it) and returns the new max to send.
    uint64_t take_update();

    uint64_t max() const { return max_; }
    uint64_t received() const { return received_; }
    uint64_t consumed() const { return consumed_; }
    uint64_t window() const { return window_; }

  private:
    uint64_t max_;
    uint64_t window_;
    uint64_t received_ = 0;
    uint64_t consumed_ = 0;
};

// Credit the peer granted us (send side).
class SendCredit {
  public:
    explicit SendCredit(uint64_t initial_max) : max_(initial_max) {}

    // Only ever raises: MAX_* frames can arrive reordered, and an older, smaller maximum
    // must not take back credit already granted (RFC 9000 §4.1).
    void on_max(uint64_t maximum);
    // Asserts bytes <= available().
    void consume(uint64_t bytes);

    uint64_t available() const { return max_ - used_; }
    uint64_t max() const { return max_; }
    uint64_t used() const { return used_; }

  private:
    uint64_t max_;
    uint64_t used_ = 0;
};

}  // namespace burrow
