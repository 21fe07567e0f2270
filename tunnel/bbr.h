// BBR congestion control, v1 style (draft-cardwell-iccrg-bbr-congestion-control-00).
//
// BBR models the path by two numbers: the bottleneck bandwidth (the max delivery rate seen
// over the last ~10 round trips) and the round-trip propagation time (the min RTT seen over
// the last 10 s). It paces at pacing_gain x bandwidth and caps in-flight at
// cwnd_gain x bandwidth x min RTT (the bandwidth-delay product, BDP):
//
//   Startup   gain 2/ln2: double the rate each round until bandwidth stops growing by 25%
//             for 3 rounds (the pipe is full)
//   Drain     pace below the bandwidth until the queue Startup built is gone
//   ProbeBw   cycle pacing gains 1.25, 0.75, 1 x 6, one min RTT each: probe for more
//             bandwidth, then drain what the probe queued, then cruise
//   ProbeRtt  every 10 s without a new min RTT, cut in-flight to 4 packets for 200 ms and
//             a round so the queue empties and the true propagation time shows
//
// Unlike v1 in Linux, a loss does not cut the window (no packet conservation on recovery):
// random loss is not congestion, and a tunnel over Wi-Fi or a lossy uplink must keep its
// rate (loss-based controllers collapse at 1% loss). What keeps BBR sane under real
// congestion is the in-flight cap of 2 BDP: a drop-tail queue holds at most about one BDP
// of our data. Persistent congestion (a blackhole) resets the window to the initial one.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>

#include "tunnel/congestion.h"

namespace burrow {

class Bbr final : public CongestionController {
  public:
    // 2/ln2: the smallest gain that doubles the delivery rate every round (BBR draft §4.3.1).
    static constexpr double kHighGain = 2.885;
    static constexpr double kDrainGain = 1.0 / kHighGain;  // BBR draft §4.3.2
    static constexpr double kCwndGain = 2.0;               // BBR draft §4.3.3
    static constexpr size_t kGainCycleLength = 8;          // BBR draft §4.3.3
    // BBR draft §4.3.3 probes at 1.25; we probe at 1.125. The probe's queue (gain - 1) x BDP
    // is what interactive streams wait behind once per cycle: 1.25 costs them 10 ms on a
    // 40 ms path, above our RTT + 10 ms target at p99; 1.125 halves it and still finds
    // 12.5% more bandwidth per cycle (a tunnel's path rarely changes faster). The drain phase
    // stays 0.75 and lasts until in-flight is back to one BDP (check_cycle_phase).
    static constexpr std::array<double, kGainCycleLength> kPacingGainCycle = {
        1.125, 0.75, 1, 1, 1, 1, 1, 1};
    static constexpr uint64_t kBtlBwFilterRounds = 10;                      // BBR draft §4.1.1.3
    static constexpr Duration kRtPropFilterLen = std::chrono::seconds(10);  // §4.1.2.3
    static constexpr Duration kProbeRttDuration = std::chrono::milliseconds(200);  // §4.3.4
    static constexpr uint64_t kMinPipeCwndPackets = 4;  // BBR draft §4.3.4
    // BBR draft §4.2.2 (BBRSetSendQuantum): a send quantum is 1 ms of the pacing rate, at most
    // 64 KB, at least 2 datagrams (1 below 1.2 Mbit/s). The window targets the BDP plus room
    // for quanta (§4.2.3.2, BBRInflight), because both ends move data in batches: a
    // sub-millisecond path (a LAN, loopback) has a BDP of a few datagrams, and a window of
    // 2 x BDP there lets out three datagrams per ACK, one system call each way for every three
    // packets (loopback, one stream: 172 Mbit/s). The draft adds three quanta; we add one: the
    // same throughput on loopback (936 vs 957 Mbit/s beside a ping-pong) with the extra
    // queue an interactive stream waits behind under bulk halved (p99 4.8 vs 10.7 ms).
    static constexpr Duration kSendQuantumTime = std::chrono::milliseconds(1);
    static constexpr uint64_t kMaxSendQuantum = 64 * 1024;
    static constexpr uint64_t kLowRateBytesPerSecond = 150000;  // 1.2 Mbit/s
    static constexpr uint64_t kSendQuantaInWindow = 1;
    // ProbeRTT holds in-flight at half a BDP, not v1's 4 packets (BBRv2's
    // ProbeRTTCwndGain): enough to drain the queue and see the base RTT, while streams that
    // share the session still get window space within an ACK or two, not a whole RTT.
    static constexpr double kProbeRttCwndGain = 0.5;
    static constexpr double kFullBwGrowth = 1.25;       // BBR draft §4.3.1.2
    static constexpr uint64_t kFullBwRounds = 3;        // BBR draft §4.3.1.2
    // Longest a ProbeBW drain phase (gain 0.75) lasts, in min RTTs; see check_cycle_phase.
    static constexpr int kMaxDrainRtProps = 4;
    // STARTUP also ends on a round losing more than this share of its deliveries in at least
    // kStartupLossEvents separate loss events (BBRv2: BBRLossThresh 2%, StartupFullLossCnt).
    static constexpr double kStartupLossRate = 0.02;
    static constexpr uint64_t kStartupLossEvents = 6;
    // ... and only when the round's smallest RTT shows this much queue (see check_full_pipe).
    static constexpr Duration kStartupLossMinQueue = std::chrono::milliseconds(1);
    // HyStart++ (RFC 9406 §4.3) delay-increase thresholds, used to end STARTUP.
    static constexpr uint64_t kHystartMinRttSamples = 8;  // N_RTT_SAMPLE
    static constexpr Duration kHystartMinRttThresh = std::chrono::milliseconds(4);
    static constexpr Duration kHystartMaxRttThresh = std::chrono::milliseconds(16);

    enum class Mode { kStartup, kDrain, kProbeBw, kProbeRtt };

    explicit Bbr(size_t max_datagram_size);

    void on_packet_sent(Time now, uint32_t bytes, uint64_t bytes_in_flight) override;
    void on_ack(const AckEvent& ev) override;
    void on_loss(const LossEvent& ev) override;
    uint64_t congestion_window() const override { return cwnd_; }
    uint64_t pacing_rate() const override { return static_cast<uint64_t>(pacing_rate_); }
    const char* name() const override { return "bbr"; }

    // Introspection for tests and `burrow status`.
    Mode mode() const { return mode_; }
    double bottleneck_bandwidth() const;           // bytes per second; 0 before the first sample
    Duration min_rtt() const { return rt_prop_; }  // Duration::max() before the first sample
    bool filled_pipe() const { return filled_pipe_; }
    uint64_t round_count() const { return round_count_; }
    double pacing_gain() const { return pacing_gain_; }

  private:
    // Max over the per-round maxima of the last kBtlBwFilterRounds rounds.
    class BandwidthFilter {
      public:
        void update(uint64_t round, double bw);
        double get(uint64_t current_round) const;

      private:
        struct Slot {
            uint64_t round = 0;
            double bw = 0;
            bool used = false;
        };
        std::array<Slot, kBtlBwFilterRounds> slots_{};
    };

    double bdp_bytes(double gain) const;  // gain x BDP; 0 while the model is empty
    uint64_t send_quantum() const;         // BBR draft §4.2.2
    void update_round(const AckEvent& ev);
    void update_bandwidth(const RateSample& rs);
    void check_cycle_phase(const AckEvent& ev, bool lost);
    void check_full_pipe(const RateSample& rs);
    void check_startup_delay();
    void check_drain(const AckEvent& ev);
    void update_rt_prop(const AckEvent& ev);
    void check_probe_rtt(const AckEvent& ev);
    void enter_startup();
    void enter_probe_bw(Time now);
    void exit_probe_rtt(Time now);
    void set_pacing_rate(const AckEvent& ev);
    void set_cwnd(const AckEvent& ev);
    uint64_t probe_rtt_cwnd() const;

    uint64_t max_datagram_size_;
    uint64_t initial_cwnd_;
    uint64_t min_pipe_cwnd_;

    Mode mode_ = Mode::kStartup;
    double pacing_gain_ = kHighGain;
    double cwnd_gain_ = kHighGain;
    uint64_t cwnd_;
    double pacing_rate_;  // bytes per second

    BandwidthFilter btl_bw_;
    Duration rt_prop_ = Duration::max();
    Time rt_prop_stamp_{};
    bool rt_prop_expired_ = false;

    uint64_t delivered_ = 0;  // DeliveryRateEstimator::delivered() as of the last ACK
    uint64_t next_round_delivered_ = 0;
    uint64_t round_start_delivered_ = 0;  // delivered_ when the current round began
    uint64_t round_lost_bytes_ = 0;       // lost during the current round
    uint64_t round_loss_events_ = 0;
    Duration round_min_rtt_ = Duration::max();  // smallest RTT sample this round
    uint64_t round_rtt_samples_ = 0;
    uint64_t round_count_ = 0;
    bool round_start_ = false;

    bool filled_pipe_ = false;
    double full_bw_ = 0;
    uint64_t full_bw_count_ = 0;

    size_t cycle_index_ = 0;
    Time cycle_stamp_{};

    bool probe_rtt_done_armed_ = false;
    Time probe_rtt_done_stamp_{};
    bool probe_rtt_round_done_ = false;
    uint64_t prior_cwnd_ = 0;
    bool idle_restart_ = false;
    bool loss_since_ack_ = false;
};

}  // namespace burrow
