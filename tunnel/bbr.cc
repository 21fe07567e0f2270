#include "tunnel/bbr.h"

#include <algorithm>

namespace burrow {

namespace {
constexpr double kMicrosPerSecond = 1e6;
double seconds(Duration d) {
    return static_cast<double>(d.count()) / kMicrosPerSecond;
}
}  // namespace

void Bbr::BandwidthFilter::update(uint64_t round, double bw) {
    Slot& s = slots_[round % kBtlBwFilterRounds];
    if (!s.used || s.round != round) {
        s = Slot{round, bw, true};
    } else {
        s.bw = std::max(s.bw, bw);
    }
}

double Bbr::BandwidthFilter::get(uint64_t current_round) const {
    double best = 0;
    for (const Slot& s : slots_) {
        if (s.used && s.round + kBtlBwFilterRounds > current_round) best = std::max(best, s.bw);
    }
    return best;
}

Bbr::Bbr(size_t max_datagram_size)
    : max_datagram_size_(max_datagram_size),
      initial_cwnd_(initial_congestion_window(max_datagram_size)),
      min_pipe_cwnd_(kMinPipeCwndPackets * max_datagram_size),
      cwnd_(initial_cwnd_),
      // BBR draft §4.2.1: before any bandwidth sample, pace the initial window over the
      // initial RTT guess, at startup gain.
      pacing_rate_(kHighGain * static_cast<double>(initial_cwnd_) /
                   seconds(RttEstimator::kInitialRtt)) {}

double Bbr::bottleneck_bandwidth() const {
    return btl_bw_.get(round_count_);
}

double Bbr::bdp_bytes(double gain) const {
    const double bw = bottleneck_bandwidth();
    if (bw <= 0 || rt_prop_ == Duration::max()) return 0;
    return gain * bw * seconds(rt_prop_);
}

void Bbr::on_packet_sent(Time, uint32_t, uint64_t bytes_in_flight) {
    // Restarting from idle: the pipe is empty, so there is no queue to drain and no reason to
    // probe; cruise at the estimated bandwidth (BBR draft §4.3.3.1 "restarting from idle").
    if (bytes_in_flight == 0) {
        idle_restart_ = true;
        if (mode_ == Mode::kProbeBw && bottleneck_bandwidth() > 0) {
            pacing_rate_ = bottleneck_bandwidth();
        }
    }
}

void Bbr::on_loss(const LossEvent& ev) {
    loss_since_ack_ = true;
    round_lost_bytes_ += ev.bytes_lost;
    ++round_loss_events_;
    if (ev.persistent_congestion) {
        // The path went away for several PTOs; what we knew about queueing is stale. Keep
        // the bandwidth estimate (it ages out in 10 rounds) but restart from a small window.
        cwnd_ = std::max(initial_cwnd_, min_pipe_cwnd_);
    }
}

void Bbr::on_ack(const AckEvent& ev) {
    // Count rounds on the delivery rate estimator's clock, the one rate.prior_delivered is
    // read from.
    if (ev.rate.newly_acked > 0) delivered_ = ev.rate.prior_delivered + ev.rate.delivered;
    const bool lost = ev.rate.newly_lost > 0 || loss_since_ack_;
    loss_since_ack_ = false;

    update_round(ev);
    if (ev.rate.rtt > Duration::zero()) {
        round_min_rtt_ = std::min(round_min_rtt_, ev.rate.rtt);
        // Counted per packet the ACK covers, not per ACK: a receiver that acknowledges every
        // tenth packet (AckTracker) would otherwise leave rounds of up to 80 packets below
        // HyStart's N_RTT_SAMPLE, and STARTUP would run on until it overflowed the queue.
        round_rtt_samples_ += std::max<uint64_t>(1, ev.rate.newly_acked / max_datagram_size_);
    }
    check_startup_delay();
    update_bandwidth(ev.rate);
    check_cycle_phase(ev, lost);
    check_full_pipe(ev.rate);
    check_drain(ev);
    update_rt_prop(ev);
    check_probe_rtt(ev);
    if (ev.bytes_acked > 0) idle_restart_ = false;

    set_pacing_rate(ev);
    set_cwnd(ev);
}

void Bbr::update_round(const AckEvent& ev) {
    // A round trip ends when a packet sent after the previous round ended is acknowledged
    // (BBR draft §4.1.1.3): counting in delivered bytes, not time, follows the ACK clock.
    round_start_ = false;
    if (ev.rate.newly_acked > 0 && ev.rate.prior_delivered >= next_round_delivered_) {
        next_round_delivered_ = delivered_;
        ++round_count_;
        round_start_ = true;
    }
}

void Bbr::update_bandwidth(const RateSample& rs) {
    if (rs.delivery_rate <= 0) return;
    // App-limited samples measure the application; they count only when they still beat
    // the estimate (BBR draft §4.1.1.5).
    if (rs.is_app_limited && rs.delivery_rate < bottleneck_bandwidth()) return;
    btl_bw_.update(round_count_, rs.delivery_rate);
}

void Bbr::check_cycle_phase(const AckEvent& ev, bool lost) {
    if (mode_ != Mode::kProbeBw) return;
    const bool full_length = ev.now - cycle_stamp_ > rt_prop_;
    const double prior = static_cast<double>(ev.prior_in_flight);
    bool next = full_length;
    if (pacing_gain_ > 1) {
        // Probe until the extra in-flight is out there, or the path shows it is full.
        next = full_length && (lost || prior >= bdp_bytes(pacing_gain_));
    } else if (pacing_gain_ < 1) {
        // Drain until in-flight is back down to one BDP, however long that takes (BBRv2's
        // ProbeBW_DOWN rule). v1 leaves after one min RTT; a bandwidth estimate even 0.5%
        // high (the max filter keeps the luckiest sample) then ratchets up a standing queue
        // cycle after cycle, and interactive streams wait behind it. kMaxDrainRounds bounds
        // the phase should in-flight never fall (a competing flow owns the queue).
        next = prior <= bdp_bytes(1.0) || ev.now - cycle_stamp_ > kMaxDrainRtProps * rt_prop_;
    }
    if (!next) return;
    cycle_index_ = (cycle_index_ + 1) % kGainCycleLength;
    cycle_stamp_ = ev.now;
    pacing_gain_ = kPacingGainCycle[cycle_index_];
}

void Bbr::check_full_pipe(const RateSample& rs) {
    if (!round_start_) return;
    // Loss ends STARTUP too (BBRv2's rule): a round that lost more than kStartupLossRate of
    // what it delivered, over at least kStartupLossEvents separate losses, has overflowed
    // the bottleneck queue already; three more rounds at 2.89x would drop a BDP or more and
    // leave a full queue in front of every interactive packet.
    const uint64_t round_delivered = delivered_ - round_start_delivered_;
    // Random loss (a lossy radio link) loses packets without any queue; it must not end
    // STARTUP at a fraction of the path's rate. Overflow comes with a queue: the whole round
    // saw RTTs above the minimum.
    const bool queue_seen =
        round_min_rtt_ != Duration::max() && rt_prop_ != Duration::max() &&
        round_min_rtt_ > rt_prop_ + kStartupLossMinQueue;
    const bool lossy_round =
        queue_seen && round_loss_events_ >= kStartupLossEvents &&
        static_cast<double>(round_lost_bytes_) >
            kStartupLossRate * static_cast<double>(round_delivered);
    round_start_delivered_ = delivered_;
    round_lost_bytes_ = 0;
    round_loss_events_ = 0;
    round_min_rtt_ = Duration::max();
    round_rtt_samples_ = 0;
    if (filled_pipe_ || rs.is_app_limited) return;
    if (lossy_round) {
        filled_pipe_ = true;
        return;
    }
    const double bw = bottleneck_bandwidth();
    if (bw >= full_bw_ * kFullBwGrowth) {
        full_bw_ = bw;
        full_bw_count_ = 0;
        return;
    }
    if (++full_bw_count_ >= kFullBwRounds) filled_pipe_ = true;
}

void Bbr::check_startup_delay() {
    // A rising RTT ends STARTUP too (HyStart++, RFC 9406 §4.2), checked on every ACK once
    // the round has enough samples: when even the smallest RTT of this round sits above the
    // path's minimum by the threshold, a queue is building, so the bottleneck rate has been
    // reached. STARTUP doubles in-flight each round, so waiting for the round to end would
    // overflow the queue first.
    if (filled_pipe_ || mode_ != Mode::kStartup) return;
    if (round_rtt_samples_ < kHystartMinRttSamples || rt_prop_ == Duration::max()) return;
    const Duration eta = std::clamp(rt_prop_ / 8, kHystartMinRttThresh, kHystartMaxRttThresh);
    if (round_min_rtt_ > rt_prop_ + eta) filled_pipe_ = true;
}

void Bbr::check_drain(const AckEvent& ev) {
    if (mode_ == Mode::kStartup && filled_pipe_) {
        mode_ = Mode::kDrain;
        pacing_gain_ = kDrainGain;
        cwnd_gain_ = kHighGain;
    }
    if (mode_ == Mode::kDrain && static_cast<double>(ev.bytes_in_flight) <= bdp_bytes(1.0)) {
        enter_probe_bw(ev.now);
    }
}

void Bbr::enter_startup() {
    mode_ = Mode::kStartup;
    pacing_gain_ = kHighGain;
    cwnd_gain_ = kHighGain;
}

void Bbr::enter_probe_bw(Time now) {
    mode_ = Mode::kProbeBw;
    cwnd_gain_ = kCwndGain;
    // Start at a random phase other than the draining one (BBR draft §4.3.3.5) so that
    // flows sharing a bottleneck do not probe in lockstep. No random source is injected
    // here: the bytes delivered so far are unpredictable enough across sessions and keep
    // runs reproducible for a given sequence of events.
    const uint64_t pseudo_random = delivered_ / max_datagram_size_ + round_count_;
    cycle_index_ = kGainCycleLength - 1 - pseudo_random % (kGainCycleLength - 1);
    cycle_index_ = (cycle_index_ + 1) % kGainCycleLength;
    cycle_stamp_ = now;
    pacing_gain_ = kPacingGainCycle[cycle_index_];
}

void Bbr::update_rt_prop(const AckEvent& ev) {
    rt_prop_expired_ = rt_prop_ != Duration::max() && ev.now > rt_prop_stamp_ + kRtPropFilterLen;
    const Duration sample = ev.rate.rtt;
    if (sample > Duration{0} && (sample <= rt_prop_ || rt_prop_expired_)) {
        rt_prop_ = sample;
        rt_prop_stamp_ = ev.now;
    }
}

void Bbr::check_probe_rtt(const AckEvent& ev) {
    if (mode_ != Mode::kProbeRtt && rt_prop_expired_ && !idle_restart_) {
        mode_ = Mode::kProbeRtt;
        pacing_gain_ = 1;
        cwnd_gain_ = 1;
        prior_cwnd_ = cwnd_;
        probe_rtt_done_armed_ = false;
    }
    if (mode_ != Mode::kProbeRtt) return;
    if (!probe_rtt_done_armed_ && ev.bytes_in_flight <= probe_rtt_cwnd()) {
        // In-flight is down to the floor: hold it there for 200 ms and at least one round.
        probe_rtt_done_stamp_ = ev.now + kProbeRttDuration;
        probe_rtt_done_armed_ = true;
        probe_rtt_round_done_ = false;
        next_round_delivered_ = delivered_;
    } else if (probe_rtt_done_armed_) {
        if (round_start_) probe_rtt_round_done_ = true;
        if (probe_rtt_round_done_ && ev.now > probe_rtt_done_stamp_) exit_probe_rtt(ev.now);
    }
}

void Bbr::exit_probe_rtt(Time now) {
    rt_prop_stamp_ = now;
    cwnd_ = std::max(cwnd_, prior_cwnd_);
    if (filled_pipe_) {
        enter_probe_bw(now);
    } else {
        enter_startup();
    }
}

void Bbr::set_pacing_rate(const AckEvent& ev) {
    const double bw = bottleneck_bandwidth();
    double rate;
    if (bw > 0) {
        rate = pacing_gain_ * bw;
    } else {
        const Duration rtt = ev.rtt != nullptr && ev.rtt->has_sample()
                                 ? std::max(ev.rtt->smoothed(), RttEstimator::kGranularity)
                                 : RttEstimator::kInitialRtt;
        rate = kHighGain * static_cast<double>(initial_cwnd_) / seconds(rtt);
    }
    // During startup never lower the rate: a sample from a half-empty first round would.
    if (filled_pipe_ || rate > pacing_rate_) pacing_rate_ = rate;
}

uint64_t Bbr::send_quantum() const {
    const uint64_t floor =
        (pacing_rate_ < static_cast<double>(kLowRateBytesPerSecond) ? 1 : 2) * max_datagram_size_;
    const auto quantum = static_cast<uint64_t>(pacing_rate_ * seconds(kSendQuantumTime));
    return std::max(std::min(quantum, kMaxSendQuantum), floor);
}

void Bbr::set_cwnd(const AckEvent& ev) {
    const double bdp = bdp_bytes(cwnd_gain_);
    const uint64_t target = bdp > 0 ? static_cast<uint64_t>(bdp) + kSendQuantaInWindow * send_quantum()
                                    : initial_cwnd_;
    if (filled_pipe_) {
        cwnd_ = std::min(cwnd_ + ev.bytes_acked, target);
    } else if (cwnd_ < target || delivered_ < initial_cwnd_) {
        cwnd_ += ev.bytes_acked;
    }
    cwnd_ = std::max(cwnd_, min_pipe_cwnd_);
    if (mode_ == Mode::kProbeRtt) cwnd_ = std::min(cwnd_, probe_rtt_cwnd());
}

uint64_t Bbr::probe_rtt_cwnd() const {
    const auto half_bdp = static_cast<uint64_t>(bdp_bytes(kProbeRttCwndGain));
    return std::max(half_bdp, min_pipe_cwnd_);
}

}  // namespace burrow
