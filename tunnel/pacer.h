// Pacing: spread packets over the round trip at the congestion controller's rate instead of
// sending a window's worth back to back (RFC 9002 §7.7).
//
// A token bucket filled at the pacing rate. Its depth (the largest burst) is small: a few
// datagrams, or the bytes of one event-loop timer tick at high rates. A cwnd-sized burst
// lands in the bottleneck router's queue all at once; cheap home routers and cellular
// links hold a few dozen packets, so bursts turn into loss the congestion controller then
// misreads. A few datagrams fit any queue, and at high rates one timer tick's worth is as
// fine as the loop can pace anyway (sending less per wake-up would cap the rate).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>

#include "tunnel/time.h"

namespace burrow {

class Pacer {
  public:
    // Fewest datagrams the bucket holds: enough for a packet and its retransmission or
    // probe to leave together, small enough for any router queue.
    static constexpr uint64_t kMinBurstDatagrams = 4;
    // A bucket holding 2 ms of sending lets each wake-up send a batch (one system call for
    // many datagrams, src/udp_socket.h) rather than a datagram or two, and keeps the rate when
    // the loop wakes late because a callback ran long.
    static constexpr Duration kBurstTime = std::chrono::milliseconds(2);

    explicit Pacer(size_t max_datagram_size);
    void set_rate(uint64_t bytes_per_second);  // 0 = unpaced
    // <= now: may send now. Otherwise when enough tokens will have accumulated.
    Time earliest_send_time(Time now, size_t bytes) const;
    // Every packet sent, paced or not (ACK-only packets too): all of them use the path.
    void on_packet_sent(Time now, size_t bytes);
    uint64_t rate() const { return rate_; }

  private:
    double capacity() const;
    double tokens_at(Time now) const;

    uint64_t max_datagram_size_;
    uint64_t rate_ = 0;
    double tokens_;         // bytes; negative after sending more than the bucket held
    Time last_update_{};    // when tokens_ was last brought up to date
    bool started_ = false;  // no packet sent yet: the bucket is full
};

}  // namespace burrow
