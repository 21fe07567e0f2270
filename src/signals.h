// Runs a libuv loop with SIGINT, SIGTERM (and SIGHUP where asked) delivered to a callback. The
// signal handles never keep the loop alive: it ends when the program's own handles have closed,
// and then the signal handles are closed too.
#pragma once

#include <uv.h>

#include <functional>
#include <vector>

namespace burrow {

// SIGINT and SIGTERM are delivered once each (a stop); any other signal listed every time.
void run_with_signals(uv_loop_t* loop, const std::vector<int>& signals,
                      std::function<void(int signum)> on_signal);

}  // namespace burrow
