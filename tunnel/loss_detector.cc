#include "tunnel/loss_detector.h"

#include <algorithm>
#include <cassert>
#include <iterator>

namespace burrow {

namespace {
Duration scale(Duration d, double factor) {
    return std::chrono::duration_cast<Duration>(
        std::chrono::duration<double, std::micro>(static_cast<double>(d.count()) * factor));
}
}  // namespace

void LossDetector::on_packet_sent(SentPacket packet) {
    assert(!sent_any_ || packet.packet_number > largest_sent_);
    sent_any_ = true;
    largest_sent_ = packet.packet_number;
    if (packet.in_flight) bytes_in_flight_ += packet.size;
    if (packet.ack_eliciting) {
        ++ack_eliciting_outstanding_;
        last_ack_eliciting_sent_ = packet.time_sent;
    }
    const uint64_t pn = packet.packet_number;
    if (spare_records_.empty()) {
        sent_.emplace_hint(sent_.end(), pn, std::move(packet));
        return;
    }
    SentMap::node_type node = std::move(spare_records_.back());
    spare_records_.pop_back();
    node.key() = pn;
    node.mapped() = std::move(packet);
    sent_.insert(sent_.end(), std::move(node));
}

LossDetector::SentMap::iterator LossDetector::release(SentMap::iterator it) {
    const auto next = std::next(it);
    SentMap::node_type node = sent_.extract(it);
    if (spare_records_.size() < kMaxSpareRecords) spare_records_.push_back(std::move(node));
    return next;
}

void LossDetector::forget(const SentPacket& p) {
    if (p.in_flight) bytes_in_flight_ -= p.size;
    if (p.ack_eliciting) --ack_eliciting_outstanding_;
}

const LossDetector::AckOutcome& LossDetector::on_ack(const AckFrame& ack, Time now,
                                                     RttEstimator& rtt, Duration max_ack_delay) {
    AckOutcome& out = ack_outcome_;
    out.acked.clear();
    out.lost.clear();
    out.rtt_sampled = false;
    out.largest_acked_sent_time = {};
    out.persistent_congestion = false;
    if (ack.ranges.empty() || !sent_any_) return out;

    // Ranges arrive descending; walk them upwards so `acked` comes out ascending.
    for (auto r = ack.ranges.rbegin(); r != ack.ranges.rend(); ++r) {
        if (r->smallest > r->largest) continue;  // malformed; the decoder should not let it by
        note_spurious_losses(r->smallest, r->largest);
        auto it = sent_.lower_bound(r->smallest);
        while (it != sent_.end() && it->first <= r->largest) {
            forget(it->second);
            out.acked.push_back(std::move(it->second));
            it = release(it);
        }
    }
    std::sort(out.acked.begin(), out.acked.end(), [](const SentPacket& a, const SentPacket& b) {
        return a.packet_number < b.packet_number;
    });

    // The largest number acknowledged that we actually sent: a lying peer acknowledging the
    // future must not make every packet we have in flight look lost.
    for (const AckRange& r : ack.ranges) {
        if (r.smallest <= largest_sent_) {
            const uint64_t largest = std::min(r.largest, largest_sent_);
            if (!largest_acked_ || largest > *largest_acked_) largest_acked_ = largest;
            break;
        }
    }

    if (out.acked.empty()) return out;  // RFC 9002 A.7: nothing new, nothing to learn

    const SentPacket& newest = out.acked.back();
    out.largest_acked_sent_time = newest.time_sent;
    const bool any_eliciting = std::any_of(out.acked.begin(), out.acked.end(),
                                           [](const SentPacket& p) { return p.ack_eliciting; });
    if (newest.packet_number == ack.ranges.front().largest && any_eliciting) {
        // Clamp before converting: the field is a peer-controlled 62-bit number.
        const uint64_t bound = static_cast<uint64_t>(std::max(max_ack_delay, Duration{0}).count());
        const Duration ack_delay{static_cast<int64_t>(std::min(ack.ack_delay_us, bound))};
        rtt.on_sample(now - newest.time_sent, ack_delay, max_ack_delay);
        out.rtt_sampled = true;
        if (first_rtt_sample_ == kNever) first_rtt_sample_ = now;
    }
    pto_count_ = 0;

    detect_lost(now, rtt, out.lost);
    out.persistent_congestion = detect_persistent_congestion(out.lost, rtt, max_ack_delay);
    return out;
}

void LossDetector::note_spurious_losses(uint64_t smallest, uint64_t largest) {
    // Any number in [smallest, largest] that we declared lost arrived after all.
    const uint64_t end = largest + 1;
    uint64_t from = smallest;
    bool spurious = false;
    while (auto hit = recently_lost_.first_from(from)) {
        if (hit->start >= end) break;
        const uint64_t stop = std::min(hit->end, end);
        spurious_losses_ += stop - hit->start;
        recently_lost_.remove(hit->start, stop);
        spurious = true;
        from = stop;
    }
    if (spurious) packet_threshold_ = std::min(packet_threshold_ * 2, kMaxPacketThreshold);
}

void LossDetector::detect_lost(Time now, const RttEstimator& rtt, std::vector<SentPacket>& lost) {
    loss_time_ = kNever;
    if (!largest_acked_) return;
    // RFC 9002 §6.1.2
    const Duration loss_delay = std::max(
        scale(std::max(rtt.latest(), rtt.smoothed()), kTimeThreshold), RttEstimator::kGranularity);
    const Time lost_send_time = now - loss_delay;
    const uint64_t largest_acked = *largest_acked_;
    auto it = sent_.begin();
    while (it != sent_.end() && it->first <= largest_acked) {
        SentPacket& p = it->second;
        if (p.time_sent <= lost_send_time || largest_acked >= p.packet_number + packet_threshold_) {
            recently_lost_.add(p.packet_number, p.packet_number + 1);
            if (recently_lost_.interval_count() > kLostMemoryRanges) recently_lost_.pop_first();
            forget(p);
            lost.push_back(std::move(p));
            it = release(it);
        } else {
            loss_time_ = std::min(loss_time_, p.time_sent + loss_delay);
            ++it;
        }
    }
}

bool LossDetector::detect_persistent_congestion(const std::vector<SentPacket>& lost,
                                                const RttEstimator& rtt,
                                                Duration max_ack_delay) const {
    // RFC 9002 §7.6: two ack-eliciting packets lost, sent further apart than the duration
    // below, with every packet between them lost too, all sent after the first RTT sample.
    // Only runs of consecutive numbers lost in this one call count: a number missing from
    // the run was acknowledged (or lost earlier, where staying conservative is harmless).
    if (first_rtt_sample_ == kNever) return false;
    const Duration duration =
        rtt.pto_base(max_ack_delay) * static_cast<int64_t>(kPersistentCongestionThreshold);
    std::optional<Time> run_start;
    std::optional<uint64_t> prev_pn;
    for (const SentPacket& p : lost) {
        if (p.time_sent <= first_rtt_sample_) {
            prev_pn.reset();
            run_start.reset();
            continue;
        }
        if (prev_pn && p.packet_number != *prev_pn + 1) run_start.reset();
        prev_pn = p.packet_number;
        if (!p.ack_eliciting) continue;
        if (!run_start) {
            run_start = p.time_sent;
        } else if (p.time_sent - *run_start > duration) {
            return true;
        }
    }
    return false;
}

Duration LossDetector::pto(const RttEstimator& rtt, Duration max_ack_delay) const {
    const Duration base = rtt.pto_base(max_ack_delay);
    const Duration cap = std::max(kMaxPto, base);
    Duration d = base;
    for (uint32_t i = 0; i < pto_count_ && d < cap; ++i) d *= 2;
    return std::min(d, cap);
}

const LossDetector::TimeoutOutcome& LossDetector::on_timeout(Time now, const RttEstimator& rtt,
                                                             Duration max_ack_delay) {
    TimeoutOutcome& out = timeout_outcome_;
    out.lost.clear();
    out.probes = 0;
    out.persistent_congestion = false;
    if (loss_time_ != kNever) {
        if (now < loss_time_) return out;
        detect_lost(now, rtt, out.lost);
        out.persistent_congestion = detect_persistent_congestion(out.lost, rtt, max_ack_delay);
        return out;
    }
    if (ack_eliciting_outstanding_ == 0) return out;
    if (now < last_ack_eliciting_sent_ + pto(rtt, max_ack_delay)) return out;
    ++pto_count_;
    out.probes = ack_eliciting_outstanding_ > 1 ? kMaxProbes : 1;
    return out;
}

Time LossDetector::deadline(const RttEstimator& rtt, Duration max_ack_delay) const {
    if (loss_time_ != kNever) return loss_time_;
    if (ack_eliciting_outstanding_ == 0) return kNever;
    return last_ack_eliciting_sent_ + pto(rtt, max_ack_delay);
}

std::vector<SentPacket> LossDetector::take_all() {
    std::vector<SentPacket> all;
    all.reserve(sent_.size());
    for (auto& [pn, p] : sent_) all.push_back(std::move(p));
    sent_.clear();
    bytes_in_flight_ = 0;
    ack_eliciting_outstanding_ = 0;
    loss_time_ = kNever;
    pto_count_ = 0;
    return all;
}

}  // namespace burrow
