// Receiver side of acknowledgements: which packet numbers to acknowledge, and when.
//
// RFC 9000 §13.2: acknowledge every second ack-eliciting packet while a connection starts and
// every tenth after (see kBulkAckElicitingThreshold), at once when a packet arrives out of
// order, fills a gap or comes after one (so the sender's loss detection starts early), and
// otherwise within min(kMaxAckDelay, RTT/4) of the first unacknowledged ack-eliciting packet.
// Packets that are not ack-eliciting are acknowledged only alongside others.
//
// The ranges received are kept until an ACK that covered them is itself acknowledged
// (RFC 9000 §13.2.4), and at most kMaxRanges of them: with a bound, a peer that leaves a
// gap in every other packet cannot make our ACKs or our memory grow.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>

#include "tunnel/frame.h"
#include "tunnel/range_set.h"
#include "tunnel/time.h"

namespace burrow {

class AckTracker {
  public:
    // Oldest ranges are dropped beyond this. 32 ranges describe reordering and loss patterns
    // far worse than any real path while keeping an ACK frame around 100-200 bytes.
    static constexpr size_t kMaxRanges = 32;
    static_assert(kMaxRanges <= kAckRangesInline, "our own ACKs must not allocate");
    // Our max_ack_delay. RFC 9000's default of 25 ms is tuned for servers with many
    // connections; we have one session per peer and a timer with microsecond precision
    // (src/core_timer.h). The peer adds this delay to every probe timeout, so on the short
    // paths a tunnel often runs over (same city, same LAN) 25 ms would dominate recovery
    // time, and a lone interactive packet (a keystroke through ssh) would wait that long for
    // its ACK. 10 ms keeps both short while still letting most ACKs ride on the next data
    // packet or pair up (RFC 9000 §13.2.2).
    static constexpr Duration kMaxAckDelay = std::chrono::milliseconds(10);
    // RFC 9000 §13.2.2: acknowledge at least every second ack-eliciting packet.
    static constexpr uint64_t kAckElicitingThreshold = 2;
    // Under bulk transfer an ACK per two data packets costs both ends a packet's worth of work
    // for every two; quicly and Chrome acknowledge every 10th once a connection is past its
    // start (draft-ietf-quic-ack-frequency lets a sender ask for this). The sender's loss
    // detection does not depend on ACK frequency (packet and time thresholds are counted in
    // packet numbers and RTTs, and an ACK goes out at once on any gap or reordering), and
    // BBR's delivery-rate samples span the packets an ACK covers, however many.
    static constexpr uint64_t kBulkAckElicitingThreshold = 10;
    // Ack-eliciting packets acknowledged every second one first: while the sender is in
    // STARTUP, its window grows on every ACK and its RTT estimate is young. quicly and
    // Chrome switch after 100 packets; here, on the 20 Mbit/s, 40 ms path of
    // tests/sim/transfer_test.cc (interactive requests), that raised the interactive p99
    // from 83 to 150 ms, the requests sent during STARTUP's loss episode waiting longest.
    // 400 keeps 83 ms; later packets, the bulk of any long transfer, are decimated.
    static constexpr uint64_t kEarlyPackets = 400;
    // The delayed-ACK timer is at most this share of the RTT, so that with ten packets per
    // ACK a sender whose window holds fewer than ten (a short path, a window after loss)
    // waits a quarter round trip at most, not kMaxAckDelay (quicly, Chrome: RTT/4).
    static constexpr int64_t kAckDelayRttDivisor = 4;

    // pn must not have been received before (the replay window filters duplicates; a
    // repeat is ignored here anyway). Packets below the ranges dropped by the cap are
    // ignored too.
    void on_packet_received(uint64_t pn, bool ack_eliciting, Time now);
    // The connection's smoothed RTT changed: the delayed-ACK timer becomes
    // min(kMaxAckDelay, smoothed / kAckDelayRttDivisor).
    void on_rtt(Duration smoothed);
    // True when an ACK should go out now: kAckElicitingThreshold ack-eliciting packets
    // unacknowledged (kBulkAckElicitingThreshold after the first kEarlyPackets; RFC 9000
    // §13.2.2), or an ack-eliciting packet arrived out of order / after a gap (§13.2.1).
    // Also true after on_receive_batch_end() while anything ack-eliciting is unacknowledged.
    bool ack_now() const;
    // The executor has handed in every datagram one read from the socket gave (a GRO or
    // recvmmsg batch): what the batch brought is acknowledged now, in one ACK. Under bulk a
    // batch holds dozens of packets, so this thins ACKs as much as the count threshold does;
    // when the sender's window is smaller than the threshold (a short path, a window after
    // loss, several streams sharing it) the ACK still leaves at once instead of after the
    // delayed-ACK timer, a wake-up of its own on a path whose round trip is shorter than
    // the wake-up's cost.
    void on_receive_batch_end();
    // When the delayed-ACK timer fires (arrival of the first unacknowledged ack-eliciting
    // packet + the delay on_rtt set, kMaxAckDelay before); kNever if nothing ack-eliciting is
    // unacknowledged.
    Time ack_deadline() const;
    bool has_ranges() const { return !received_.empty(); }
    // Ranges descending; ack_delay_us = now - arrival of the largest. Empty if !has_ranges().
    AckFrame build(Time now) const;
    // An ACK went out: nothing is owed any more (the ranges are kept for later ACKs).
    void on_ack_sent();
    // The peer got an ACK of ours whose largest acknowledged was `largest`.
    void on_ack_acked(uint64_t largest);

  private:
    void cap_ranges();

    RangeSet received_;
    std::optional<uint64_t> largest_;                // largest pn ever received
    Time largest_time_{};                            // when it arrived
    std::optional<uint64_t> largest_ack_eliciting_;  // largest ack-eliciting pn received
    uint64_t unacked_eliciting_ = 0;                 // since the last ACK we sent
    uint64_t eliciting_received_ = 0;                // ever, counted to kEarlyPackets + 1
    Duration ack_delay_ = kMaxAckDelay;
    Time first_unacked_time_ = kNever;
    bool immediate_ = false;  // reordering or a gap seen since the last ACK we sent
    bool batch_ended_ = false;  // a receive batch ended since the last ACK we sent
    // Below this, ranges were dropped by the kMaxRanges cap: packets arriving there now are
    // ancient reordering the peer has long declared lost; recording them would only push a
    // newer range out.
    uint64_t floor_ = 0;
};

}  // namespace burrow
