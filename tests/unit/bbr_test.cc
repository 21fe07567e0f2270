#include <catch2/catch.hpp>

#include <algorithm>
#include <memory>
#include <queue>
#include <variant>

#include "tunnel/ack_tracker.h"
#include "tunnel/bbr.h"
#include "tunnel/delivery_rate.h"
#include "tunnel/loss_detector.h"
#include "tunnel/pacer.h"
#include "tunnel/rng.h"
#include "tunnel/rtt_estimator.h"

using namespace burrow;
using std::chrono::milliseconds;

namespace {

constexpr size_t kMds = 1350;
Time ms(int64_t v) {
    return time_from_us(v * 1000);
}

// A bulk sender and a receiver joined by one bottleneck: a drop-tail queue drained at a fixed
// rate, a fixed propagation RTT, optional random loss in front of the queue. The sender runs
// the real recovery stack (loss detector, RTT, delivery rate, controller, pacer), the
// receiver a real AckTracker, all on virtual time: the same wiring the Connection uses.
struct Path {
    double rate = 1.25e6;             // bottleneck, bytes per second
    Duration rtt = milliseconds(40);  // propagation, all of it on the return path
    uint64_t buffer = 100'000;        // bottleneck queue, bytes
    double loss = 0;                  // random loss probability of each data packet
};

class Model {
  public:
    Model(CongestionKind kind, Path path, uint64_t seed)
        : path_(path), rng_(seed), cc_(make_congestion_controller(kind, kMds)), pacer_(kMds) {
        pacer_.set_rate(cc_->pacing_rate());
    }

    void run_until(Time end) {
        while (true) {
            while (can_send_now()) send();
            Time next = std::min({next_event(), next_send_time(), loss_.deadline(rtt_, kAckDelay),
                                  acks_.ack_deadline()});
            if (next > end) break;
            now_ = std::max(now_, next);
            while (!events_.empty() && events_.top().at <= now_) {
                Event e = events_.top();
                events_.pop();
                if (e.ack) {
                    on_ack(*e.ack);
                } else {
                    on_arrival(e.pn);
                }
            }
            if (acks_.ack_deadline() <= now_) send_ack();
            if (loss_.deadline(rtt_, kAckDelay) <= now_) on_timeout();
        }
        now_ = end;
    }

    void set_rtt(Duration rtt) { path_.rtt = rtt; }
    uint64_t delivered() const { return delivered_; }
    uint64_t congestion_drops() const { return congestion_drops_; }
    uint64_t random_drops() const { return random_drops_; }
    uint64_t sent_packets() const { return next_pn_; }
    const CongestionController& cc() const { return *cc_; }
    const Bbr& bbr() const { return dynamic_cast<const Bbr&>(*cc_); }
    const RttEstimator& rtt() const { return rtt_; }
    Duration max_rtt_since(Time t) const {
        Duration worst{0};
        for (const auto& [at, r] : rtt_samples_) {
            if (at >= t) worst = std::max(worst, r);
        }
        return worst;
    }
    uint64_t in_flight() const { return loss_.bytes_in_flight(); }

  private:
    static constexpr Duration kAckDelay = AckTracker::kMaxAckDelay;

    struct Event {
        Time at;
        uint64_t pn = 0;
        std::shared_ptr<AckFrame> ack;  // set: an ACK reaching the sender; else a packet
        bool operator>(const Event& o) const { return at > o.at; }
    };

    Time next_event() const { return events_.empty() ? kNever : events_.top().at; }

    Time next_send_time() const {
        if (probes_ > 0) return now_;
        if (loss_.bytes_in_flight() + kMds > cc_->congestion_window()) return kNever;
        return pacer_.earliest_send_time(now_, kMds);
    }
    bool can_send_now() const { return next_send_time() <= now_; }

    void send() {
        if (probes_ > 0) --probes_;
        SentPacket p;
        p.packet_number = next_pn_++;
        p.time_sent = now_;
        p.size = kMds;
        p.ack_eliciting = true;
        p.in_flight = true;
        rate_.on_packet_sent(p, loss_.bytes_in_flight(), now_);
        cc_->on_packet_sent(now_, kMds, loss_.bytes_in_flight());
        pacer_.on_packet_sent(now_, kMds);
        const uint64_t pn = p.packet_number;
        loss_.on_packet_sent(std::move(p));

        if (rng_.chance(path_.loss)) {
            ++random_drops_;
            return;
        }
        const double backlog_s =
            link_free_ > now_ ? static_cast<double>((link_free_ - now_).count()) / 1e6 : 0.0;
        if (backlog_s * path_.rate + kMds > static_cast<double>(path_.buffer)) {
            ++congestion_drops_;
            return;
        }
        const Duration service(static_cast<int64_t>(kMds / path_.rate * 1e6));
        link_free_ = std::max(link_free_, now_) + service;
        events_.push(Event{link_free_, pn, nullptr});
    }

    void on_arrival(uint64_t pn) {
        delivered_ += kMds;
        acks_.on_packet_received(pn, true, now_);
        if (acks_.ack_now()) send_ack();
    }

    void send_ack() {
        auto frame = std::make_shared<AckFrame>(acks_.build(now_));
        acks_.on_ack_sent();
        events_.push(Event{now_ + path_.rtt, 0, frame});
    }

    void on_ack(const AckFrame& frame) {
        const uint64_t prior = loss_.bytes_in_flight();
        auto out = loss_.on_ack(frame, now_, rtt_, kAckDelay);
        if (out.rtt_sampled) rtt_samples_.emplace_back(now_, rtt_.latest());
        uint64_t acked = 0;
        for (const SentPacket& p : out.acked) {
            rate_.on_packet_acked(p, now_);
            acked += p.size;
        }
        const uint64_t lost = report_loss(out.lost, prior, out.persistent_congestion);
        if (!out.acked.empty()) {
            cc_->on_ack(AckEvent{now_, acked, prior, loss_.bytes_in_flight(),
                                 out.largest_acked_sent_time, &rtt_, rate_.generate(now_, lost)});
        }
        pacer_.set_rate(cc_->pacing_rate());
    }

    void on_timeout() {
        const uint64_t prior = loss_.bytes_in_flight();
        auto out = loss_.on_timeout(now_, rtt_, kAckDelay);
        report_loss(out.lost, prior, out.persistent_congestion);
        probes_ += out.probes;
        pacer_.set_rate(cc_->pacing_rate());
    }

    uint64_t report_loss(const std::vector<SentPacket>& lost, uint64_t prior, bool persistent) {
        uint64_t bytes = 0;
        for (const SentPacket& p : lost) bytes += p.size;
        if (!lost.empty()) {
            cc_->on_loss(LossEvent{now_, bytes, prior, loss_.bytes_in_flight(),
                                   lost.back().time_sent, persistent});
        }
        return bytes;
    }

    Path path_;
    SeededRng rng_;
    Time now_{};
    std::priority_queue<Event, std::vector<Event>, std::greater<Event>> events_;
    Time link_free_{};

    LossDetector loss_;
    RttEstimator rtt_;
    DeliveryRateEstimator rate_;
    std::unique_ptr<CongestionController> cc_;
    Pacer pacer_;
    uint64_t next_pn_ = 0;
    int probes_ = 0;

    AckTracker acks_;
    uint64_t delivered_ = 0;
    uint64_t congestion_drops_ = 0;
    uint64_t random_drops_ = 0;
    std::vector<std::pair<Time, Duration>> rtt_samples_;
};

Duration service_time(const Path& p) {
    return Duration(static_cast<int64_t>(kMds / p.rate * 1e6));
}

// Goodput over [from, to) as a fraction of the bottleneck rate.
double utilisation(Model& m, const Path& p, Time from, Time to) {
    m.run_until(from);
    const uint64_t start = m.delivered();
    m.run_until(to);
    const double seconds = static_cast<double>((to - from).count()) / 1e6;
    return static_cast<double>(m.delivered() - start) / seconds / p.rate;
}

}  // namespace

TEST_CASE("bbr starts from the initial window, paced over the initial RTT at startup gain") {
    Bbr b(kMds);
    CHECK(b.congestion_window() == 10 * kMds);
    CHECK(b.mode() == Bbr::Mode::kStartup);
    const double expected = Bbr::kHighGain * 10 * kMds / 0.1;
    CHECK(static_cast<double>(b.pacing_rate()) == Approx(expected).epsilon(0.001));
    CHECK(std::string(b.name()) == "bbr");
}

TEST_CASE("bbr does not shrink its window on loss, only on persistent congestion") {
    Path path;
    Model m(CongestionKind::kBbr, path, 1);
    m.run_until(ms(3000));
    const uint64_t before = m.cc().congestion_window();
    REQUIRE(before > 20 * kMds);
    Bbr& b = const_cast<Bbr&>(m.bbr());
    b.on_loss(LossEvent{ms(3000), 5 * kMds, before, before - 5 * kMds, ms(2990), false});
    CHECK(b.congestion_window() == before);
    b.on_loss(LossEvent{ms(3000), 5 * kMds, before, before - 5 * kMds, ms(2990), true});
    CHECK(b.congestion_window() == 10 * kMds);
    CHECK(b.bottleneck_bandwidth() > 0);  // the model survives
}

TEST_CASE("bbr startup finds the bottleneck bandwidth within a few rounds") {
    for (double mbit : {2.0, 10.0, 50.0}) {
        Path path;
        path.rate = mbit * 1e6 / 8;
        path.buffer = static_cast<uint64_t>(path.rate * 0.04);  // one BDP
        INFO("bottleneck " << mbit << " Mbit/s");
        Model m(CongestionKind::kBbr, path, 1);
        // Startup doubles per round: 50 Mbit/s is ~4 doublings above the initial pacing rate;
        // give it twice that plus the 3 rounds that confirm the plateau.
        uint64_t round_found = 0;
        for (int step = 1; step <= 200 && round_found == 0; ++step) {
            m.run_until(ms(10 * step));
            if (m.bbr().bottleneck_bandwidth() >= 0.9 * path.rate)
                round_found = m.bbr().round_count();
        }
        CHECK(round_found > 0);
        CHECK(round_found <= 10);
        m.run_until(ms(2000));
        CHECK(m.bbr().filled_pipe());
        CHECK(m.bbr().bottleneck_bandwidth() == Approx(path.rate).epsilon(0.1));
        CHECK(m.bbr().mode() == Bbr::Mode::kProbeBw);
        // The minimum includes one packet's serialisation at the bottleneck.
        CHECK(m.bbr().min_rtt() >= path.rtt + service_time(path));
        CHECK(m.bbr().min_rtt() <= path.rtt + 2 * service_time(path) + milliseconds(1));
    }
}

TEST_CASE("bbr pacing rate converges to the bottleneck rate and fills the link") {
    Path path;
    Model m(CongestionKind::kBbr, path, 1);
    m.run_until(ms(3000));
    // Average the pacing rate over whole gain cycles: 1.25, 0.75 and six 1.0 phases.
    double sum = 0;
    int n = 0;
    for (int t = 3000; t < 8000; t += 5) {
        m.run_until(ms(t));
        sum += static_cast<double>(m.cc().pacing_rate());
        ++n;
    }
    CHECK(sum / n == Approx(path.rate).epsilon(0.08));
    CHECK(utilisation(m, path, ms(8000), ms(9900)) > 0.97);
    // Including the ProbeRtt dip every 10 s (~300 ms at 4 packets), the v1 price of
    // keeping the min RTT estimate fresh.
    CHECK(utilisation(m, path, ms(9900), ms(25000)) > 0.93);
}

TEST_CASE("bbr keeps its rate at 1% random loss where NewReno collapses") {
    Path path;
    path.rate = 50e6 / 8;  // 50 Mbit/s, 40 ms: BDP 250 kB
    path.buffer = 250'000;
    path.loss = 0.01;
    for (uint64_t seed = 1; seed <= 3; ++seed) {
        INFO("seed " << seed);
        Model bbr(CongestionKind::kBbr, path, seed);
        const double bbr_util = utilisation(bbr, path, ms(3000), ms(10000));
        CHECK(bbr.random_drops() > 0);
        // Target from the brief: at least 75% of the link rate at 1% loss.
        CHECK(bbr_util >= 0.75);
        CHECK(bbr.bbr().bottleneck_bandwidth() == Approx(path.rate).epsilon(0.15));
        Model reno(CongestionKind::kNewReno, path, seed);
        const double reno_util = utilisation(reno, path, ms(3000), ms(10000));
        // Mathis et al.: ~1.2 / sqrt(p) packets per RTT = ~400 kB/s here, under 10% of the
        // link. The comparison shows the loss is real and the model is not too kind.
        CHECK(reno_util < 0.3);
        CHECK(bbr_util > 2 * reno_util);
    }
}

TEST_CASE("bbr stays sane under real congestion at a drop-tail queue") {
    SECTION("deep buffer: in-flight near 2 BDP keeps the queue, and so the RTT, bounded") {
        Path path;
        path.buffer = 10 * 50'000;  // 10 BDP: a loss-based sender would fill all of it
        Model m(CongestionKind::kBbr, path, 1);
        const double util = utilisation(m, path, ms(3000), ms(12000));
        CHECK(util > 0.95);
        // cwnd = 2 BDP: at most one BDP queued, so RTT at most ~2x the propagation time.
        CHECK(m.max_rtt_since(ms(3000)) <= path.rtt * 2 + milliseconds(15));
        CHECK(m.cc().congestion_window() <= 3 * 50'000);
        CHECK(m.congestion_drops() == 0);
        // NewReno would fill the buffer: the comparison shows the queue was really there.
        Model reno(CongestionKind::kNewReno, path, 1);
        reno.run_until(ms(12000));
        CHECK(reno.max_rtt_since(ms(3000)) > path.rtt * 4);
    }
    SECTION("shallow buffer: the link stays full and loss stays moderate") {
        Path path;
        path.buffer = 12'500;  // a quarter BDP
        Model m(CongestionKind::kBbr, path, 1);
        const uint64_t sent_before = (m.run_until(ms(3000)), m.sent_packets());
        const uint64_t drops_before = m.congestion_drops();
        const double util = utilisation(m, path, ms(3000), ms(12000));
        CHECK(util > 0.85);
        const double drop_rate = static_cast<double>(m.congestion_drops() - drops_before) /
                                 static_cast<double>(m.sent_packets() - sent_before);
        CHECK(drop_rate < 0.1);
    }
}

TEST_CASE("bbr probes RTT when its min RTT estimate expires after a route change") {
    Path path;
    Model m(CongestionKind::kBbr, path, 1);
    m.run_until(ms(3000));
    const Duration old_min = m.bbr().min_rtt();
    REQUIRE(old_min <= path.rtt + 2 * service_time(path));
    // The route gets longer: the old 40 ms minimum is never seen again.
    m.set_rtt(milliseconds(70));
    bool probed = false;
    uint64_t probe_cwnd = UINT64_MAX;
    Time probe_start = kNever, probe_end = kNever;
    for (int t = 3000; t < 16000; t += 5) {
        m.run_until(ms(t));
        // The filter holds the old minimum until it expires (and ProbeRtt begins).
        if (!probed && m.bbr().mode() != Bbr::Mode::kProbeRtt) {
            REQUIRE(m.bbr().min_rtt() == old_min);
        }
        if (m.bbr().mode() == Bbr::Mode::kProbeRtt) {
            probed = true;
            probe_cwnd = std::min(probe_cwnd, m.cc().congestion_window());
            if (probe_start == kNever) probe_start = ms(t);
        } else if (probed && probe_end == kNever) {
            probe_end = ms(t);
        }
    }
    REQUIRE(probed);
    // The old minimum was measured in the first round: it expires 10 s later, and is probed
    // then, although the route changed at 3 s (no earlier: the filter keeps it 10 s).
    // Packets in flight at the change still report the old minimum for one more old RTT.
    CHECK(probe_start >= ms(0) + Bbr::kRtPropFilterLen);
    CHECK(probe_start <= ms(3000) + old_min + Bbr::kRtPropFilterLen + milliseconds(5));
    // ProbeRTT holds in-flight at half a BDP (never below 4 packets): enough to drain the
    // queue without starving the session's other streams. The expired minimum is replaced by
    // the current sample as ProbeRTT begins, so the BDP is the new route's.
    const double bdp = m.bbr().bottleneck_bandwidth() *
                       std::chrono::duration<double>(m.bbr().min_rtt()).count();
    CHECK(probe_cwnd >= Bbr::kMinPipeCwndPackets * kMds);
    CHECK(static_cast<double>(probe_cwnd) <= Bbr::kProbeRttCwndGain * bdp * 1.05 + kMds);
    CHECK(probe_end - probe_start >= Bbr::kProbeRttDuration);
    CHECK(m.bbr().min_rtt() >= milliseconds(70));
    CHECK(m.bbr().mode() == Bbr::Mode::kProbeBw);
    // And the window was restored: the link is full again.
    CHECK(utilisation(m, path, ms(16000), ms(20000)) > 0.9);
}

TEST_CASE("bbr adopts a shorter RTT at once") {
    Path path;
    path.rtt = milliseconds(80);
    Model m(CongestionKind::kBbr, path, 1);
    m.run_until(ms(3000));
    m.set_rtt(milliseconds(30));
    m.run_until(ms(3500));
    CHECK(m.bbr().min_rtt() <= milliseconds(30) + 2 * service_time(path) + milliseconds(1));
    CHECK(m.bbr().mode() != Bbr::Mode::kProbeRtt);
}

TEST_CASE("bbr leaves room for a send quantum beyond 2 x BDP on a sub-millisecond path") {
    // Loopback or a LAN: 800 Mbit/s, 100 us round trip, a BDP of about 7 datagrams. Without
    // the quantum (BBR draft §4.2.2) the window is ~15 datagrams and each ACK lets out a
    // handful: one system call per few packets at both ends.
    Path path;
    path.rate = 1e8;
    path.rtt = std::chrono::microseconds(100);
    path.buffer = 4'000'000;
    Model m(CongestionKind::kBbr, path, 7);
    m.run_until(ms(2000));
    const double bdp = path.rate * 100e-6;
    const auto quantum = static_cast<double>(Bbr::kMaxSendQuantum);  // 1 ms at 800 Mbit/s
    const auto cwnd = static_cast<double>(m.cc().congestion_window());
    INFO("cwnd " << cwnd << " B, BDP " << bdp << " B");
    CHECK(cwnd >= Bbr::kCwndGain * bdp + 0.8 * quantum);
    // One quantum, not the draft's three: the queue an interactive stream waits behind.
    CHECK(cwnd <= Bbr::kCwndGain * 1.3 * bdp + static_cast<double>(Bbr::kSendQuantaInWindow) *
                                                       quantum + 2 * kMds);
    CHECK(utilisation(m, path, ms(2000), ms(3000)) > 0.9);
}
