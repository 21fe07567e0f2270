#include <catch2/catch.hpp>

#include <deque>
#include <optional>
#include <vector>

#include "src/core_timer.h"
#include "tests/unit/uv_test_loop.h"
#include "tunnel/bytes.h"

using namespace burrow;
using namespace std::chrono_literals;
using burrow::test::TestLoop;

namespace {

// A core in the docs/architecture.md §2 shape whose deadline and output the test controls.
struct FakeCore {
    Time deadline = kNever;
    std::vector<Time> timer_calls;
    std::deque<Bytes> outbox;
    // What on_timer does to the deadline; by default the core has nothing more to do.
    std::function<void(FakeCore&, Time)> on_timer_effect = [](FakeCore& c, Time) {
        c.deadline = kNever;
    };

    void on_timer(Time now) {
        timer_calls.push_back(now);
        on_timer_effect(*this, now);
    }
    std::optional<Bytes> poll_transmit(Time) {
        if (outbox.empty()) return std::nullopt;
        Bytes b = std::move(outbox.front());
        outbox.pop_front();
        return b;
    }
    Time next_deadline() const { return deadline; }
};

// Counts loop iterations: a prepare handle runs once per iteration, before the poll.
struct IterationCounter {
    explicit IterationCounter(uv_loop_t* loop) {
        uv_prepare_init(loop, &prepare);
        prepare.data = this;
        uv_prepare_start(&prepare,
                         [](uv_prepare_t* p) { ++static_cast<IterationCounter*>(p->data)->count; });
    }
    ~IterationCounter() {
        uv_close(reinterpret_cast<uv_handle_t*>(&prepare), nullptr);
        uv_run(prepare.loop, UV_RUN_NOWAIT);  // finish the close while the handle exists
    }
    uv_prepare_t prepare;
    int count = 0;
};

struct Harness {
    TestLoop loop;
    LoopClock clock;
    FakeCore core;
    std::vector<Bytes> sent;
    std::shared_ptr<CoreTimer> timer = CoreTimer::create(
        loop.get(), clock, core_hooks(core, [this](Bytes&& b) { sent.push_back(std::move(b)); }));
    ~Harness() {
        timer->close();
        loop.settle();
    }
};

}  // namespace

TEST_CASE("core timer fires at a future deadline, not before") {
    Harness h;
    const Time deadline = h.clock.now() + 30ms;
    h.core.deadline = deadline;
    h.timer->kick();
    REQUIRE(h.timer->armed_deadline() == deadline);
    REQUIRE(h.loop.run_until([&] { return !h.core.timer_calls.empty(); }, 2s));
    REQUIRE(h.core.timer_calls.size() == 1);
    const Time fired = h.core.timer_calls[0];
    CHECK(fired >= deadline);
    CHECK(fired - deadline < 50ms);  // generous: the test machine is shared
    CHECK(h.timer->armed_deadline() == kNever);
    // Nothing more is scheduled: no further calls.
    h.loop.run_for(50ms);
    CHECK(h.core.timer_calls.size() == 1);
}

TEST_CASE("core timer is idle when the core has no deadline") {
    Harness h;
    h.core.deadline = kNever;
    h.timer->kick();
    CHECK(h.timer->armed_deadline() == kNever);
    h.loop.run_for(50ms);
    CHECK(h.core.timer_calls.empty());
    CHECK(h.timer->stats().timer_fires == 0);
}

TEST_CASE("core timer fires a past deadline on the next loop iteration") {
    Harness h;
    h.core.deadline = time_from_us(0);  // long gone
    h.timer->kick();
    CHECK(h.core.timer_calls.empty());  // never from inside kick()
    uv_run(h.loop.get(), UV_RUN_NOWAIT);
    CHECK(h.core.timer_calls.size() == 1);
}

TEST_CASE("core timer does not spin on a core whose deadline stays in the past") {
    Harness h;
    IterationCounter iterations(h.loop.get());
    h.core.deadline = time_from_us(0);
    // A stuck core: its deadline never moves. The fuse keeps a spinning implementation from
    // hanging the test; the counts below then fail it.
    constexpr size_t kFuse = 100000;
    h.core.on_timer_effect = [](FakeCore& c, Time) {
        if (c.timer_calls.size() >= kFuse) c.deadline = kNever;
    };
    h.timer->kick();
    h.loop.run_for(100ms);
    const size_t calls = h.core.timer_calls.size();
    INFO("on_timer calls " << calls << ", loop iterations " << iterations.count);
    CHECK(calls >= 2);
    // At most about one call per kOverdueRetry (1 ms), plus slack.
    CHECK(calls <= 150);
    CHECK(iterations.count <= 1000);
    CHECK(h.timer->stats().overdue_rearms > 0);
}

TEST_CASE("core timer drains poll_transmit in order after a kick") {
    Harness h;
    for (uint8_t i = 0; i < 3; ++i) h.core.outbox.push_back(Bytes{i});
    h.timer->kick();
    REQUIRE(h.sent.size() == 3);
    for (uint8_t i = 0; i < 3; ++i) CHECK(h.sent[i] == Bytes{i});
    CHECK(h.timer->stats().transmits == 3);
}

TEST_CASE("core timer sends a bounded burst per kick and the rest on later iterations") {
    Harness h;
    constexpr int kTotal = 3 * CoreTimer::kMaxTransmitsPerKick + 10;
    for (int i = 0; i < kTotal; ++i) h.core.outbox.push_back(Bytes{static_cast<uint8_t>(i)});
    h.timer->kick();
    CHECK(h.sent.size() == static_cast<size_t>(CoreTimer::kMaxTransmitsPerKick));
    REQUIRE(h.loop.run_until([&] { return h.sent.size() == kTotal; }, 2s));
    for (int i = 0; i < kTotal; ++i) CHECK(h.sent[i] == Bytes{static_cast<uint8_t>(i)});
    CHECK(h.timer->stats().drain_limited == 3);
}

TEST_CASE("core timer flushes once after each drain, bounded ones and timer fires included") {
    TestLoop loop;
    LoopClock clock;
    FakeCore core;
    std::vector<size_t> sent_at_flush;  // how many datagrams had been sent at each flush
    size_t sent = 0;
    CoreTimer::Hooks hooks = core_hooks(core, [&](Bytes&&) { ++sent; });
    hooks.flush = [&] { sent_at_flush.push_back(sent); };
    auto timer = CoreTimer::create(loop.get(), clock, std::move(hooks));
    constexpr size_t kTotal = CoreTimer::kMaxTransmitsPerKick + 5;
    for (size_t i = 0; i < kTotal; ++i) core.outbox.push_back(Bytes{1});
    timer->kick();
    CHECK(sent_at_flush == std::vector<size_t>{CoreTimer::kMaxTransmitsPerKick});
    REQUIRE(loop.run_until([&] { return sent_at_flush.size() == 2; }, 2s));
    CHECK(sent_at_flush[1] == kTotal);
    timer->close();
    loop.settle();
}

TEST_CASE("core timer sends what on_timer produced") {
    Harness h;
    h.core.deadline = h.clock.now() + 10ms;
    h.core.on_timer_effect = [](FakeCore& c, Time) {
        c.outbox.push_back(Bytes{42});
        c.deadline = kNever;
    };
    h.timer->kick();
    REQUIRE(h.loop.run_until([&] { return !h.sent.empty(); }, 2s));
    CHECK(h.sent[0] == Bytes{42});
}

TEST_CASE("core timer follows a deadline that moves earlier") {
    Harness h;
    h.core.deadline = h.clock.now() + 10s;
    h.timer->kick();
    const Time sooner = h.clock.now() + 20ms;
    h.core.deadline = sooner;  // new input made the core want an earlier wake-up
    h.timer->kick();
    REQUIRE(h.loop.run_until([&] { return !h.core.timer_calls.empty(); }, 2s));
    CHECK(h.core.timer_calls[0] >= sooner);
}

TEST_CASE("core timer wakes for a deadline a fraction of a millisecond away") {
    // Delayed ACKs and pacing gaps on a fast path are tens to hundreds of microseconds: a timer
    // that rounds them up to whole milliseconds halves a one-stream transfer. Each round asks
    // for a wake-up 200 us ahead. A libuv timer of 1 ms (the least above zero) makes the loop
    // poll with a 1 ms timeout from when it is armed: never less than 800 us late. The
    // machine may be busy, so one wake-up within 500 us in 20 rounds is what is asked.
    Harness h;
    constexpr auto kAhead = 200us;
    constexpr auto kPrompt = 500us;
    int prompt = 0;
    for (int round = 0; round < 20; ++round) {
        h.core.timer_calls.clear();
        const Time deadline = h.clock.now() + kAhead;
        h.core.deadline = deadline;
        h.timer->kick();
        REQUIRE(h.loop.run_until([&] { return !h.core.timer_calls.empty(); }, 2s));
        CHECK(h.core.timer_calls[0] >= deadline);  // never before the deadline
        if (h.core.timer_calls[0] - deadline < kPrompt) ++prompt;
    }
    INFO("prompt wake-ups " << prompt << " of 20");
    CHECK(prompt >= 1);
}

TEST_CASE("core timer re-arms at an unchanged deadline without a system call") {
    Harness h;
    h.core.deadline = h.clock.now() + 10s;
    h.timer->kick();
    const uint64_t sets = h.timer->stats().timer_sets;
    for (int i = 0; i < 5; ++i) h.timer->kick();  // input that left the deadline where it was
    CHECK(h.timer->stats().timer_sets == sets);
    h.core.deadline = h.clock.now() + 5s;
    h.timer->kick();
    CHECK(h.timer->stats().timer_sets == sets + 1);
}

TEST_CASE("core timer calls nothing after close") {
    TestLoop loop;
    LoopClock clock;
    auto core = std::make_unique<FakeCore>();
    core->deadline = clock.now() + 5ms;
    int sends = 0;
    auto timer = CoreTimer::create(loop.get(), clock, core_hooks(*core, [&](Bytes&&) { ++sends; }));
    timer->kick();
    timer->close();
    core.reset();  // the hooks are gone: destroying the core is safe
    loop.run_for(30ms);
    timer->kick();
    CHECK(sends == 0);
    CHECK(timer->stats().timer_fires == 0);
}
