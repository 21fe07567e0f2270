// Running a function later from the loop: on its next timer phase, outside whatever callback is
// running now (a callback that must not close the handle it runs in, or a result that must
// never be delivered from inside the call that asked for it).
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>

namespace burrow {

// Calls fn once from the loop, then frees everything it used. fn may close any handle.
void defer(uv_loop_t* loop, std::function<void()> fn);
// The same, delay_ms from now (a one-shot that keeps the loop alive until it has run).
void defer(uv_loop_t* loop, uint64_t delay_ms, std::function<void()> fn);

}  // namespace burrow
