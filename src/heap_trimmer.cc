#include "src/heap_trimmer.h"

#include <malloc.h>

namespace burrow {

std::shared_ptr<HeapTrimmer> HeapTrimmer::create(uv_loop_t* loop) {
    std::shared_ptr<HeapTrimmer> t(new HeapTrimmer());
    uv_timer_init(loop, &t->timer_);  // cannot fail: it only links the handle into the loop
    t->timer_.data = t.get();
    t->self_ = t;
    return t;
}

void HeapTrimmer::on_connection_closed() {
    if (closed_ || armed_ || ++closed_since_trim_ < kMinClosed) return;
    armed_ = true;
    uv_timer_start(&timer_, &HeapTrimmer::on_fire, static_cast<uint64_t>(kDelay.count()), 0);
}

void HeapTrimmer::on_fire(uv_timer_t* timer) {
    auto* self = static_cast<HeapTrimmer*>(timer->data);
    self->armed_ = false;
    self->closed_since_trim_ = 0;
    malloc_trim(0);
    ++self->trims_;
}

void HeapTrimmer::close() {
    if (closed_) return;
    closed_ = true;
    uv_close(reinterpret_cast<uv_handle_t*>(&timer_), &HeapTrimmer::on_closed);
}

void HeapTrimmer::on_closed(uv_handle_t* handle) {
    auto* self = static_cast<HeapTrimmer*>(handle->data);
    auto keep = std::move(self->self_);  // may free this object when it goes out of scope
}

}  // namespace burrow
