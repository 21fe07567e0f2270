// Runs a libuv loop with SIGINT, SIGTERM (and SIGHUP where asked) delivered to a callback. The
// signal handles never keep the loop alive: it ends when the program's own handles have closed,
// and then the signal handles are closed too.
#pragma once

#include <uv.h>

#include <functional>
#include <vector>

namespace burrow {

// SIGINT and SIGTERM are delivered once each (a stop); any other signal listed every time.
// Signals held with hold_signals() are let through once the handles are in place.
void run_with_signals(uv_loop_t* loop, const std::vector<int>& signals,
                      std::function<void(int signum)> on_signal);

// Blocks signals in this thread (and the threads it starts later) until run_with_signals
// handles them: one that arrives while the program starts stays pending instead of killing it.
void hold_signals(const std::vector<int>& signals);

}  // namespace burrow
