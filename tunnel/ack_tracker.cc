#include "tunnel/ack_tracker.h"

#include <algorithm>

namespace burrow {

void AckTracker::on_packet_received(uint64_t pn, bool ack_eliciting, Time now) {
    if (pn < floor_ || received_.contains(pn)) return;
    if (ack_eliciting) {
        // RFC 9000 §13.2.1: below an ack-eliciting packet already received (reordering, or
        // a packet the sender may already count as lost), or above the largest with missing
        // packets in between (likely loss the sender should hear about at once).
        const bool reordered = largest_ack_eliciting_ && pn < *largest_ack_eliciting_;
        const bool after_gap = largest_ && pn > *largest_ + 1;
        if (reordered || after_gap) immediate_ = true;
        if (unacked_eliciting_ == 0) first_unacked_time_ = now;
        ++unacked_eliciting_;
        if (eliciting_received_ <= kEarlyPackets) ++eliciting_received_;
        if (!largest_ack_eliciting_ || pn > *largest_ack_eliciting_) largest_ack_eliciting_ = pn;
    }
    if (!largest_ || pn > *largest_) {
        largest_ = pn;
        largest_time_ = now;
    }
    received_.add(pn, pn + 1);
    cap_ranges();
}

void AckTracker::cap_ranges() {
    while (received_.interval_count() > kMaxRanges) {
        floor_ = received_.first()->end;
        received_.pop_first();
    }
}

void AckTracker::on_rtt(Duration smoothed) {
    ack_delay_ = std::min(kMaxAckDelay, smoothed / kAckDelayRttDivisor);
}

bool AckTracker::ack_now() const {
    // Ranges with a hole between them (until the ACKs reporting it are acknowledged and the
    // ranges pruned) mean the sender is recovering a loss: its window opens only as ACKs
    // come, so it hears every second packet again, as at the start.
    const bool recovering = received_.interval_count() > 1;
    const uint64_t threshold = eliciting_received_ <= kEarlyPackets || recovering
                                   ? kAckElicitingThreshold
                                   : kBulkAckElicitingThreshold;
    return unacked_eliciting_ >= threshold ||
           ((immediate_ || batch_ended_) && unacked_eliciting_ > 0);
}

Time AckTracker::ack_deadline() const {
    if (unacked_eliciting_ == 0) return kNever;
    return first_unacked_time_ + ack_delay_;
}

AckFrame AckTracker::build(Time now) const {
    AckFrame ack;
    ack.ranges.reserve(received_.interval_count());
    for (auto it = received_.rbegin(); it != received_.rend(); ++it) {
        ack.ranges.push_back(AckRange{it->first, it->second - 1});
    }
    // The largest range always holds largest_ (ranges are only pruned from below), so the
    // delay belongs to the packet the peer takes its RTT sample from.
    if (!ack.ranges.empty() && now > largest_time_) {
        ack.ack_delay_us = static_cast<uint64_t>(to_us(now - largest_time_));
    }
    return ack;
}

void AckTracker::on_ack_sent() {
    unacked_eliciting_ = 0;
    first_unacked_time_ = kNever;
    immediate_ = false;
    batch_ended_ = false;
}

void AckTracker::on_receive_batch_end() {
    if (unacked_eliciting_ > 0) batch_ended_ = true;
}

void AckTracker::on_ack_acked(uint64_t largest) {
    // RFC 9000 §13.2.4: the peer knows about everything up to `largest` now. We still keep
    // the top range even if it is covered: later ACKs must never be empty, their largest
    // must not go backwards (the peer's loss detection and RTT samples key on it), and the
    // ack delay we report belongs to that packet. One range costs a few bytes.
    const auto top = received_.last();
    if (!top) return;
    received_.remove(0, largest == UINT64_MAX ? UINT64_MAX : largest + 1);
    if (received_.empty()) received_.add(top->start, top->end);
}

}  // namespace burrow
