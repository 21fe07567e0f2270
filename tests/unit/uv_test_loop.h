// A libuv loop for the tests of src/: runs until a condition holds or a time limit passes, so
// no test can hang, and closes whatever a failed test left open.
#pragma once

#include <uv.h>

#include <chrono>
#include <functional>

namespace burrow::test {

class TestLoop {
  public:
    TestLoop() {
        uv_loop_init(&loop_);
        uv_timer_init(&loop_, &tick_);
    }
    ~TestLoop() {
        uv_walk(
            &loop_,
            [](uv_handle_t* h, void*) {
                if (!uv_is_closing(h)) uv_close(h, nullptr);
            },
            nullptr);
        uv_run(&loop_, UV_RUN_DEFAULT);
        uv_loop_close(&loop_);
    }
    TestLoop(const TestLoop&) = delete;
    TestLoop& operator=(const TestLoop&) = delete;

    uv_loop_t* get() { return &loop_; }

    // Runs the loop until done() or the limit; returns done().
    bool run_until(const std::function<bool()>& done,
                   std::chrono::milliseconds limit = std::chrono::seconds(5)) {
        const auto end = std::chrono::steady_clock::now() + limit;
        // A ticking timer bounds each blocking poll, so the limit is checked even when
        // nothing happens.
        uv_timer_start(
            &tick_, [](uv_timer_t*) {}, kTickMs, kTickMs);
        while (!done() && std::chrono::steady_clock::now() < end) uv_run(&loop_, UV_RUN_ONCE);
        uv_timer_stop(&tick_);
        return done();
    }

    void run_for(std::chrono::milliseconds d) {
        const auto end = std::chrono::steady_clock::now() + d;
        run_until([&] { return std::chrono::steady_clock::now() >= end; }, d * 2);
    }

    // Lets pending close callbacks run.
    void settle() {
        for (int i = 0; i < kSettleRounds; ++i) uv_run(&loop_, UV_RUN_NOWAIT);
    }

  private:
    static constexpr uint64_t kTickMs = 5;
    static constexpr int kSettleRounds = 4;
    uv_loop_t loop_;
    uv_timer_t tick_;
};

}  // namespace burrow::test
