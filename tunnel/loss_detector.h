// Sender side of loss recovery, RFC 9002 §6: which packets were acknowledged, which are lost,
// and when to wake up to declare losses or send probes.
//
// Every sent packet is tracked until it is acknowledged or declared lost, including packets
// that carry only ACK frames: when one of those is acknowledged the caller can prune its
// AckTracker. A packet is lost when a packet kPacketThreshold numbers later was acknowledged,
// or when it was sent kTimeThreshold round trips before one that was. A probe timeout (PTO)
// fires when ack-eliciting packets stay unacknowledged for too long; it only asks for probes
// and declares nothing lost.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <vector>

#include "tunnel/frame.h"
#include "tunnel/range_set.h"
#include "tunnel/rtt_estimator.h"
#include "tunnel/sent_packet.h"
#include "tunnel/time.h"

namespace burrow {

class LossDetector {
  public:
    static constexpr uint64_t kPacketThreshold = 3;      // RFC 9002 §6.1.1
    // RFC 9002 §6.1.1 lets the reordering threshold adapt. When a packet we declared lost
    // is acknowledged after all, the path reorders more than we assumed: double the packet
    // threshold, up to this cap (the time threshold still bounds detection at 9/8 RTT).
    // Without it, per-packet jitter of a few ms at tens of Mbit/s turns one packet in eight
    // into a spurious retransmission.
    static constexpr uint64_t kMaxPacketThreshold = 64;
    // How many lost-packet ranges we remember to recognise spurious losses.
    static constexpr size_t kLostMemoryRanges = 256;
    static constexpr double kTimeThreshold = 9.0 / 8.0;  // RFC 9002 §6.1.2
    // Our cap on PTO backoff: a tunnel must recover fast after an outage (a Wi-Fi handover,
    // a 2 s blackhole), and RFC 9002's unbounded doubling would leave it silent for tens of
    // seconds after the path came back. Never below the un-backed-off PTO, so a path whose
    // RTT really exceeds the cap is not flooded with probes.
    static constexpr Duration kMaxPto = std::chrono::seconds(2);
    static constexpr uint64_t kPersistentCongestionThreshold = 3;  // RFC 9002 §7.6.1
    // PTO probes (RFC 9002 §6.2.4 allows up to two): two when more than one ack-eliciting
    // packet is outstanding, so that losing one probe does not cost another doubled PTO;
    // one when a lone packet (a keepalive, a keystroke) is all there is to repeat.
    static constexpr int kMaxProbes = 2;

    // Takes ownership; packet numbers strictly increasing.
    void on_packet_sent(SentPacket packet);

    struct AckOutcome {
        std::vector<SentPacket> acked;  // newly acked, ascending pn
        std::vector<SentPacket> lost;   // newly declared lost, ascending pn
        bool rtt_sampled = false;
        Time largest_acked_sent_time{};      // of the largest newly acked packet
        bool persistent_congestion = false;  // RFC 9002 §7.6
    };
    // Marks newly acked packets, takes an RTT sample when the largest acked is newly acked
    // and at least one newly acked packet is ack-eliciting (feeds `rtt`), resets pto_count
    // if anything was newly acked, then detects losses (packet and time thresholds).
    // Numbers never sent are ignored; the caller checks ack.largest against largest_sent()
    // to detect that protocol violation. The outcome is the detector's own, reused by the
    // next call (so an ACK allocates nothing): valid until then.
    const AckOutcome& on_ack(const AckFrame& ack, Time now, RttEstimator& rtt,
                             Duration max_ack_delay);

    struct TimeoutOutcome {
        std::vector<SentPacket> lost;  // time-threshold losses when the loss timer fired
        int probes = 0;                // PTO fired: send this many ack-eliciting probes (1 or 2)
        bool persistent_congestion = false;  // RFC 9002 §7.6, among `lost`
    };
    // Call when now >= deadline(); an early call does nothing. Valid until the next call.
    const TimeoutOutcome& on_timeout(Time now, const RttEstimator& rtt, Duration max_ack_delay);
    // Loss timer if armed, else the PTO deadline if ack-eliciting packets are in flight
    // (pto_base * 2^pto_count, capped at kMaxPto, from the last ack-eliciting send),
    // else kNever.
    Time deadline(const RttEstimator& rtt, Duration max_ack_delay) const;

    uint64_t bytes_in_flight() const { return bytes_in_flight_; }
    uint32_t pto_count() const { return pto_count_; }
    bool has_in_flight() const { return bytes_in_flight_ > 0; }
    std::optional<uint64_t> largest_acked() const { return largest_acked_; }
    uint64_t largest_sent() const { return largest_sent_; }  // 0 before the first send
    size_t tracked_count() const { return sent_.size(); }
    uint64_t packet_threshold() const { return packet_threshold_; }
    uint64_t spurious_losses() const { return spurious_losses_; }
    // All tracked packets, ascending, e.g. to requeue their frames when the path changes.
    // In-flight accounting, timers and the PTO backoff start over.
    std::vector<SentPacket> take_all();

  private:
    using SentMap = std::map<uint64_t, SentPacket>;
    // Records of packets no longer tracked, kept for the next packets sent: at most this
    // many, about ten ACKs' worth under bulk, so the map allocates nothing per packet in
    // steady state and an idle session does not hold its peak flight's records.
    static constexpr size_t kMaxSpareRecords = 256;

    // Appends the newly lost packets to `lost`.
    void detect_lost(Time now, const RttEstimator& rtt, std::vector<SentPacket>& lost);
    // Stops tracking *it (its record moved out first); the next iterator.
    SentMap::iterator release(SentMap::iterator it);
    bool detect_persistent_congestion(const std::vector<SentPacket>& lost, const RttEstimator& rtt,
                                      Duration max_ack_delay) const;
    void forget(const SentPacket& p);
    void note_spurious_losses(uint64_t smallest, uint64_t largest);
    Duration pto(const RttEstimator& rtt, Duration max_ack_delay) const;

    SentMap sent_;  // unacked and not yet lost, by packet number
    std::vector<SentMap::node_type> spare_records_;
    AckOutcome ack_outcome_;
    TimeoutOutcome timeout_outcome_;
    uint64_t bytes_in_flight_ = 0;
    uint64_t ack_eliciting_outstanding_ = 0;
    uint64_t largest_sent_ = 0;
    bool sent_any_ = false;
    std::optional<uint64_t> largest_acked_;
    Time last_ack_eliciting_sent_{};
    Time loss_time_ = kNever;
    uint32_t pto_count_ = 0;
    Time first_rtt_sample_ = kNever;  // persistent congestion ignores packets sent before it
    uint64_t packet_threshold_ = kPacketThreshold;
    RangeSet recently_lost_;  // numbers declared lost, to notice when they are acked after all
    uint64_t spurious_losses_ = 0;
};

}  // namespace burrow
