#include "src/signals.h"

#include <pthread.h>

#include <csignal>
#include <memory>

namespace burrow {
namespace {

struct Watch {
    uv_signal_t handle;
    std::function<void(int)>* on_signal = nullptr;
};

void deliver(uv_signal_t* handle, int signum) {
    (*static_cast<Watch*>(handle->data)->on_signal)(signum);
}

sigset_t signal_set(const std::vector<int>& signals) {
    sigset_t set;
    sigemptyset(&set);
    for (int signum : signals) sigaddset(&set, signum);
    return set;
}

}  // namespace

void hold_signals(const std::vector<int>& signals) {
    const sigset_t set = signal_set(signals);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

void run_with_signals(uv_loop_t* loop, const std::vector<int>& signals,
                      std::function<void(int signum)> on_signal) {
    std::vector<std::unique_ptr<Watch>> watches;
    for (int signum : signals) {
        auto w = std::make_unique<Watch>();
        w->on_signal = &on_signal;
        uv_signal_init(loop, &w->handle);
        w->handle.data = w.get();
        if (signum == SIGINT || signum == SIGTERM) {
            uv_signal_start_oneshot(&w->handle, deliver, signum);
        } else {
            uv_signal_start(&w->handle, deliver, signum);
        }
        uv_unref(reinterpret_cast<uv_handle_t*>(&w->handle));
        watches.push_back(std::move(w));
    }
    const sigset_t set = signal_set(signals);
    pthread_sigmask(SIG_UNBLOCK, &set, nullptr);  // a held one is delivered to its handle now
    uv_run(loop, UV_RUN_DEFAULT);
    for (auto& w : watches) uv_close(reinterpret_cast<uv_handle_t*>(&w->handle), nullptr);
    uv_run(loop, UV_RUN_DEFAULT);
}

}  // namespace burrow
