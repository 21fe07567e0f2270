// The simulated link and network on their own, driven by two trivial endpoints: a sender that
// emits numbered datagrams at a fixed pace and a recorder that notes what arrives when.
#include <catch2/catch.hpp>

#include <cmath>
#include <deque>
#include <map>
#include <vector>

#include "tests/sim/net/link.h"
#include "tests/sim/net/network.h"
#include "tunnel/wire.h"

using namespace burrow;
using namespace burrow::sim;
using namespace std::chrono_literals;

namespace {

// Sends `count` datagrams of `size` bytes, the first at t = 0, then one every `interval`
// (interval 0 = all at once). Each carries its sequence number in its first 8 bytes.
class PacedSender final : public SimEndpoint {
  public:
    PacedSender(uint64_t count, size_t size, Duration interval)
        : count_(count), size_(size), interval_(interval) {}

    void on_datagram(ByteView, Time) override {}
    void on_timer(Time now) override {
        while (next_ < count_ && send_time(next_) <= now) {
            Bytes d;
            ByteWriter w(d);
            w.u64(next_);
            d.resize(size_, 0xab);
            queue_.push_back(std::move(d));
            ++next_;
        }
    }
    std::optional<Bytes> poll_transmit(Time) override {
        if (queue_.empty()) return std::nullopt;
        Bytes d = std::move(queue_.front());
        queue_.pop_front();
        return d;
    }
    Time next_deadline() const override { return next_ < count_ ? send_time(next_) : kNever; }

    Time send_time(uint64_t seq) const { return Time{} + interval_ * static_cast<int64_t>(seq); }
    bool finished() const { return next_ == count_ && queue_.empty(); }

  private:
    uint64_t count_;
    size_t size_;
    Duration interval_;
    uint64_t next_ = 0;
    std::deque<Bytes> queue_;
};

struct Arrival {
    uint64_t seq;
    Time at;
    size_t size;
    bool operator==(const Arrival&) const = default;
};

class Recorder final : public SimEndpoint {
  public:
    void on_datagram(ByteView d, Time now) override {
        ByteReader r(d);
        const uint64_t seq = r.u64();
        REQUIRE(r.ok());
        arrivals.push_back({seq, now, d.size()});
    }
    void on_timer(Time) override {}
    std::optional<Bytes> poll_transmit(Time) override { return std::nullopt; }
    Time next_deadline() const override { return kNever; }

    std::vector<Arrival> arrivals;
};

struct PacedRun {
    std::vector<Arrival> arrivals;
    LinkStats stats;
    Time end;
};

constexpr Time kGenerousLimit = Time{} + std::chrono::hours(1);

PacedRun run_paced(const LinkConfig& config, uint64_t seed, uint64_t count, size_t size,
                   Duration interval) {
    PacedSender sender(count, size, interval);
    Recorder recorder;
    Network net(seed, config, LinkConfig{});
    net.attach(sender, recorder);
    // Done when everything is sent and nothing is in flight any more.
    const bool done = net.run_until(
        [&] { return sender.finished() && net.link_ab().in_flight() == 0; }, kGenerousLimit);
    REQUIRE(done);
    return {recorder.arrivals, net.link_ab().stats(), net.now()};
}

std::map<uint64_t, int> copies_per_seq(const std::vector<Arrival>& arrivals) {
    std::map<uint64_t, int> copies;
    for (const Arrival& a : arrivals) ++copies[a.seq];
    return copies;
}

uint64_t inversions(const std::vector<Arrival>& arrivals) {
    uint64_t n = 0, highest = 0;
    for (const Arrival& a : arrivals) {
        if (a.seq < highest) ++n;
        highest = std::max(highest, a.seq);
    }
    return n;
}

// Three standard deviations of a binomial proportion over n trials.
double tolerance(double p, uint64_t n) {
    return 3.0 * std::sqrt(p * (1 - p) / static_cast<double>(n)) + 1e-9;
}

}  // namespace

TEST_CASE("a perfect link delivers everything in order after the delay") {
    LinkConfig c;
    c.delay = 15ms;
    const PacedRun run = run_paced(c, 1, 1000, 200, 1ms);
    REQUIRE(run.arrivals.size() == 1000);
    for (uint64_t i = 0; i < run.arrivals.size(); ++i) {
        CHECK(run.arrivals[i].seq == i);
        CHECK(run.arrivals[i].at == Time{} + Duration(1ms) * static_cast<int64_t>(i) + 15ms);
    }
    CHECK(run.stats.sent == 1000);
    CHECK(run.stats.delivered == 1000);
    CHECK(run.stats.dropped() == 0);
    CHECK(run.stats.bytes_delivered == 200 * 1000);
}

TEST_CASE("random loss matches the configured probability") {
    constexpr uint64_t kCount = 20000;
    for (double p : {0.02, 0.1, 0.3}) {
        for (uint64_t seed = 1; seed <= 5; ++seed) {
            INFO("loss " << p << " seed " << seed);
            LinkConfig c;
            c.loss = p;
            const PacedRun run = run_paced(c, seed, kCount, 100, 100us);
            const double measured = 1.0 - static_cast<double>(run.arrivals.size()) / kCount;
            CHECK(std::abs(measured - p) < tolerance(p, kCount));
            CHECK(run.stats.dropped_loss + run.stats.delivered == kCount);
            CHECK(run.stats.dropped_loss == kCount - run.arrivals.size());
            CHECK(inversions(run.arrivals) == 0);
        }
    }
}

TEST_CASE("burst loss follows the Gilbert-Elliott model") {
    constexpr uint64_t kCount = 50000;
    LinkConfig c;
    c.burst_loss = 0.01;
    c.burst_recover = 0.25;
    for (uint64_t seed = 1; seed <= 3; ++seed) {
        INFO("seed " << seed);
        const PacedRun run = run_paced(c, seed, kCount, 100, 100us);
        // Stationary share of the bad state: p / (p + r).
        const double expected = c.burst_loss / (c.burst_loss + c.burst_recover);
        const double measured = static_cast<double>(run.stats.dropped_burst) / kCount;
        CHECK(std::abs(measured - expected) < 0.25 * expected);
        // Runs of consecutive losses last 1/r packets on average.
        std::vector<bool> got(kCount, false);
        for (const Arrival& a : run.arrivals) got[a.seq] = true;
        uint64_t runs = 0, lost = 0;
        for (uint64_t i = 0; i < kCount; ++i) {
            if (!got[i]) {
                ++lost;
                if (i == 0 || got[i - 1]) ++runs;
            }
        }
        REQUIRE(runs > 0);
        const double mean_run = static_cast<double>(lost) / static_cast<double>(runs);
        CHECK(std::abs(mean_run - 1.0 / c.burst_recover) < 0.2 / c.burst_recover);
    }
}

TEST_CASE("duplication delivers extra copies at the configured rate") {
    constexpr uint64_t kCount = 20000;
    LinkConfig c;
    c.duplicate = 0.05;
    c.delay = 5ms;
    for (uint64_t seed = 1; seed <= 5; ++seed) {
        INFO("seed " << seed);
        const PacedRun run = run_paced(c, seed, kCount, 100, 100us);
        const auto copies = copies_per_seq(run.arrivals);
        REQUIRE(copies.size() == kCount);
        uint64_t extra = 0;
        for (const auto& [seq, n] : copies) {
            CHECK(n <= 2);
            extra += static_cast<uint64_t>(n - 1);
        }
        CHECK(extra == run.stats.duplicated);
        const double rate = static_cast<double>(extra) / kCount;
        CHECK(std::abs(rate - c.duplicate) < tolerance(c.duplicate, kCount));
        CHECK(run.stats.out_of_order == 0);  // a copy right behind its original is not reordering
    }
}

TEST_CASE("reordering happens only when configured") {
    constexpr uint64_t kCount = 10000;
    SECTION("loss, duplication and fixed delay keep the order") {
        LinkConfig c;
        c.loss = 0.1;
        c.duplicate = 0.1;
        c.delay = 20ms;
        c.rate_mbit = 50;
        const PacedRun run = run_paced(c, 3, kCount, 500, 100us);
        CHECK(inversions(run.arrivals) == 0);
        CHECK(run.stats.out_of_order == 0);
        CHECK(run.stats.reordered == 0);
    }
    SECTION("the reorder probability lets packets be overtaken") {
        LinkConfig c;
        c.reorder = 0.05;
        c.reorder_delay = 10ms;
        c.delay = 20ms;
        const PacedRun run = run_paced(c, 3, kCount, 500, 1ms);
        const double rate = static_cast<double>(run.stats.reordered) / kCount;
        CHECK(std::abs(rate - c.reorder) < tolerance(c.reorder, kCount));
        // Packets are 1 ms apart and the extra delay is 10 ms: every delayed one is overtaken.
        CHECK(inversions(run.arrivals) == run.stats.reordered);
        CHECK(run.stats.out_of_order == run.stats.reordered);
        CHECK(run.arrivals.size() == kCount);
    }
    SECTION("jitter larger than the spacing reorders too") {
        LinkConfig c;
        c.jitter = 5ms;
        const PacedRun run = run_paced(c, 3, kCount, 500, 1ms);
        CHECK(inversions(run.arrivals) > 0);
        CHECK(run.stats.out_of_order == inversions(run.arrivals));
        CHECK(run.stats.reordered == 0);
    }
}

TEST_CASE("delay plus jitter stays within its bounds and covers them") {
    constexpr uint64_t kCount = 5000;
    LinkConfig c;
    c.delay = 30ms;
    c.jitter = 8ms;
    for (uint64_t seed = 1; seed <= 3; ++seed) {
        INFO("seed " << seed);
        PacedSender clock(kCount, 100, 1ms);  // only for its send_time()
        const PacedRun run = run_paced(c, seed, kCount, 100, 1ms);
        REQUIRE(run.arrivals.size() == kCount);
        Duration lo = Duration::max(), hi = Duration::min();
        for (const Arrival& a : run.arrivals) {
            const Duration d = a.at - clock.send_time(a.seq);
            lo = std::min(lo, d);
            hi = std::max(hi, d);
        }
        CHECK(lo >= c.delay);
        CHECK(hi <= c.delay + c.jitter);
        CHECK(lo < c.delay + c.jitter / 10);
        CHECK(hi > c.delay + c.jitter * 9 / 10);
    }
}

TEST_CASE("the bottleneck serialises at the configured rate") {
    // 10 Mbit/s is 1250 bytes per ms: 1250-byte datagrams leave exactly 1 ms apart.
    LinkConfig c;
    c.rate_mbit = 10;
    c.queue_bytes = 1000 * 1250;  // large enough for the whole test
    c.delay = 10ms;
    const PacedRun run = run_paced(c, 1, 1000, 1250, 500us);  // offered: 20 Mbit/s
    REQUIRE(run.arrivals.size() == 1000);
    CHECK(run.stats.dropped_queue == 0);
    for (size_t i = 1; i < run.arrivals.size(); ++i) {
        CHECK(run.arrivals[i].at - run.arrivals[i - 1].at == 1ms);
    }
    // First datagram: 1 ms to serialise, then 10 ms of propagation.
    CHECK(run.arrivals.front().at == Time{} + 11ms);
    CHECK(run.arrivals.back().at == Time{} + 1000ms + 10ms);

    SECTION("offered below the rate, nothing queues") {
        const PacedRun slow = run_paced(c, 1, 500, 1250, 2ms);  // 5 Mbit/s
        for (const Arrival& a : slow.arrivals) {
            CHECK(a.at == Time{} + 2ms * static_cast<int64_t>(a.seq) + 11ms);
        }
    }
}

TEST_CASE("the bottleneck queue drops beyond queue_bytes") {
    LinkConfig c;
    c.rate_mbit = 10;
    c.queue_bytes = 10 * 1250;
    SECTION("a burst keeps exactly what fits") {
        const PacedRun run = run_paced(c, 1, 100, 1250, 0us);  // all at t = 0
        CHECK(run.arrivals.size() == 10);
        CHECK(run.stats.dropped_queue == 90);
        for (uint64_t i = 0; i < run.arrivals.size(); ++i) CHECK(run.arrivals[i].seq == i);
    }
    SECTION("twice the rate loses about half, and queueing delay stays bounded") {
        const PacedRun run = run_paced(c, 1, 2000, 1250, 500us);
        const double delivered = static_cast<double>(run.arrivals.size()) / 2000;
        CHECK(delivered == Approx(0.5).margin(0.02));
        CHECK(run.stats.dropped_queue + run.stats.delivered == 2000);
        PacedSender clock(2000, 1250, 500us);
        for (const Arrival& a : run.arrivals) {
            // At most queue_bytes ahead at 1250 bytes/ms, plus its own serialisation.
            CHECK(a.at - clock.send_time(a.seq) <= 11ms);
        }
    }
    SECTION("the default queue is one round trip's worth") {
        LinkConfig d;
        d.rate_mbit = 10;
        d.delay = 20ms;
        CHECK(default_queue_bytes(d) == 50000);  // 1250 bytes/ms x 40 ms
        d.delay = 0ms;
        CHECK(default_queue_bytes(d) == 25000);  // the 20 ms floor
        d.rate_mbit = 0.1;
        CHECK(default_queue_bytes(d) == 2 * d.mtu);
        d.rate_mbit = 0;
        CHECK(default_queue_bytes(d) == 0);
    }
}

TEST_CASE("datagrams above the MTU are dropped") {
    LinkConfig c;
    c.mtu = 1200;
    CHECK(run_paced(c, 1, 10, 1200, 1ms).arrivals.size() == 10);
    const PacedRun big = run_paced(c, 1, 10, 1201, 1ms);
    CHECK(big.arrivals.empty());
    CHECK(big.stats.dropped_mtu == 10);
}

TEST_CASE("a blackhole loses exactly what is sent inside its window") {
    LinkConfig c;
    c.delay = 50ms;  // in flight when the window opens: still delivered
    c.blackholes = {{Time{} + 100ms, Time{} + 300ms}, {Time{} + 500ms, Time{} + 510ms}};
    const PacedRun run = run_paced(c, 1, 1000, 100, 1ms);
    const auto copies = copies_per_seq(run.arrivals);
    for (uint64_t seq = 0; seq < 1000; ++seq) {
        const bool dark = (seq >= 100 && seq < 300) || (seq >= 500 && seq < 510);
        INFO("seq " << seq);
        CHECK(copies.count(seq) == (dark ? 0u : 1u));
    }
    CHECK(run.stats.dropped_blackhole == 210);
}

TEST_CASE("the same seed replays the identical arrival trace") {
    LinkConfig c;
    c.loss = 0.05;
    c.burst_loss = 0.01;
    c.duplicate = 0.05;
    c.reorder = 0.05;
    c.delay = 10ms;
    c.jitter = 3ms;
    c.rate_mbit = 20;
    c.queue_bytes = 20000;
    const PacedRun first = run_paced(c, 42, 5000, 1000, 300us);
    const PacedRun again = run_paced(c, 42, 5000, 1000, 300us);
    const PacedRun other = run_paced(c, 43, 5000, 1000, 300us);
    CHECK(first.arrivals == again.arrivals);
    CHECK(first.stats.dropped() == again.stats.dropped());
    CHECK(first.arrivals != other.arrivals);
}

namespace {

// An endpoint whose deadline never moves past `now`: a timer bug the network must survive.
class StuckTimer final : public SimEndpoint {
  public:
    void on_datagram(ByteView, Time) override {}
    void on_timer(Time) override { ++calls; }
    std::optional<Bytes> poll_transmit(Time) override { return std::nullopt; }
    Time next_deadline() const override { return Time{}; }
    uint64_t calls = 0;
};

}  // namespace

TEST_CASE("the network steps past a deadline that never moves") {
    StuckTimer stuck;
    Recorder idle;
    Network net(1, LinkConfig{}, LinkConfig{});
    net.attach(stuck, idle);
    const bool done = net.run_until([] { return false; }, Time{} + 2ms);
    CHECK_FALSE(done);
    CHECK(net.now() == Time{} + 2ms);
    // One call per microsecond, not an endless loop at t = 0.
    CHECK(stuck.calls == 2001);
    CHECK(net.stats().livelock_steps == 2001);
}

TEST_CASE("run_until stops when done and the step hook sees every wake-up") {
    PacedSender sender(100, 100, 10ms);
    Recorder recorder;
    LinkConfig c;
    c.delay = 5ms;
    Network net(1, c, LinkConfig{});
    net.attach(sender, recorder);
    std::vector<Time> steps;
    net.set_on_step([&](Time now) { steps.push_back(now); });
    net.wake_at(Time{} + 7ms);
    net.wake_at(Time{} + 7ms);  // asking twice wakes once

    CHECK(net.run_until([&] { return recorder.arrivals.size() == 3; }, kGenerousLimit));
    CHECK(net.now() == Time{} + 25ms);  // third datagram: sent at 20 ms, 5 ms delay
    CHECK(std::count(steps.begin(), steps.end(), Time{} + 7ms) == 1);
    CHECK(std::is_sorted(steps.begin(), steps.end()));
    CHECK(net.stats().wakeups == 1);

    // Nothing in flight and the limit comes first: time stands at the limit.
    CHECK_FALSE(net.run_until([] { return false; }, Time{} + 31ms));
    CHECK(net.now() == Time{} + 31ms);
    CHECK(recorder.arrivals.size() == 3);
}
