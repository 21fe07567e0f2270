// One direction of a simulated path: loss (independent and Gilbert-Elliott bursts),
// duplication, reordering, propagation delay with jitter, a serialising bottleneck with a
// drop-tail queue, an MTU and blackhole windows.
//
// A datagram handed to send() goes through the stages in this order, each of which may drop
// it (the first matching reason is counted):
//
//   mtu -> blackhole -> burst (Gilbert-Elliott) -> loss -> bottleneck queue
//       -> propagation delay + jitter -> optional reorder delay -> optional duplicate
//
// Duplicates are made after the bottleneck (they cost no bandwidth) and arrive right after the
// original. Every random choice comes from the link's own SeededRng, so a link replays
// identically for a seed and an identical sequence of send() calls.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <queue>
#include <utility>
#include <vector>

#include "tunnel/bytes.h"
#include "tunnel/rng.h"
#include "tunnel/time.h"

namespace burrow::sim {

struct LinkConfig {
    double loss = 0;             // independent random loss probability
    double burst_loss = 0;       // Gilbert-Elliott: P(good->bad); in bad state every packet is lost
    double burst_recover = 0.3;  // P(bad->good) per packet
    double duplicate = 0;        // probability a packet is delivered twice
    double reorder = 0;          // probability a packet gets extra delay (overtaken)
    Duration reorder_delay = std::chrono::milliseconds(10);
    Duration delay{0};     // one-way propagation
    Duration jitter{0};    // uniform extra delay in [0, jitter] (may reorder too)
    double rate_mbit = 0;  // 0 = unlimited; else a serialising bottleneck
    // Drop-tail queue limit in bytes at the bottleneck. 0 picks default_queue_bytes().
    size_t queue_bytes = 0;
    size_t mtu = 1500;                              // larger datagrams are dropped
    std::vector<std::pair<Time, Time>> blackholes;  // every packet sent in [a,b) is lost
};

// The queue a bottleneck gets when LinkConfig::queue_bytes is 0: one bandwidth-delay product
// for the round trip this link's delay implies (2 x one-way, assuming a symmetric path), but
// never less than kMinQueueDelay worth of bytes nor two MTUs, so that a zero-delay link still
// absorbs a small burst as a real router buffer does.
inline constexpr Duration kMinQueueDelay = std::chrono::milliseconds(20);
size_t default_queue_bytes(const LinkConfig& config);

struct LinkStats {
    uint64_t sent = 0;       // datagrams offered to send()
    uint64_t delivered = 0;  // datagrams handed out by pop_arrival(), duplicates included
    uint64_t bytes_sent = 0;
    uint64_t bytes_delivered = 0;
    uint64_t dropped_loss = 0;
    uint64_t dropped_burst = 0;
    uint64_t dropped_queue = 0;
    uint64_t dropped_mtu = 0;
    uint64_t dropped_blackhole = 0;
    uint64_t duplicated = 0;    // extra copies scheduled
    uint64_t reordered = 0;     // datagrams given the reorder delay
    uint64_t out_of_order = 0;  // delivered after a datagram that was sent later (any cause)

    uint64_t dropped() const {
        return dropped_loss + dropped_burst + dropped_queue + dropped_mtu + dropped_blackhole;
    }
};

class Link {
  public:
    Link(const LinkConfig& config, uint64_t seed);

    // Offers a datagram to the link at time `now` (non-decreasing across calls).
    void send(Bytes datagram, Time now);
    // When the next datagram arrives at the far end; kNever when none is in flight.
    Time next_arrival() const;
    // The next datagram whose arrival time is <= now, in arrival order (ties: send order).
    std::optional<Bytes> pop_arrival(Time now);

    size_t in_flight() const { return in_flight_.size(); }
    // Bytes of the datagrams in_flight() counts.
    size_t bytes_in_flight() const { return bytes_in_flight_; }
    const LinkStats& stats() const { return stats_; }
    const LinkConfig& config() const { return config_; }

  private:
    struct InFlight {
        Time arrival;
        uint64_t order;     // tie-break: schedule order, so equal arrival times stay FIFO
        uint64_t send_seq;  // which send() produced it, for out-of-order accounting
        Bytes data;
    };
    struct Later {
        bool operator()(const InFlight& x, const InFlight& y) const {
            return x.arrival != y.arrival ? x.arrival > y.arrival : x.order > y.order;
        }
    };

    bool in_blackhole(Time now) const;
    bool burst_drops();
    // Time the datagram leaves the bottleneck, or nullopt if the queue is full.
    std::optional<Time> through_bottleneck(size_t size, Time now);
    void schedule(Time arrival, uint64_t send_seq, Bytes data);

    LinkConfig config_;
    size_t queue_limit_;
    SeededRng rng_;
    bool burst_bad_ = false;
    // When the bottleneck finishes what is queued, in fractional microseconds so that
    // serialisation times do not accumulate rounding errors.
    double bottleneck_free_at_us_ = 0;
    uint64_t next_send_seq_ = 0;
    uint64_t next_order_ = 0;
    uint64_t highest_delivered_seq_ = 0;
    bool delivered_any_ = false;
    std::priority_queue<InFlight, std::vector<InFlight>, Later> in_flight_;
    size_t bytes_in_flight_ = 0;
    LinkStats stats_;
};

}  // namespace burrow::sim
