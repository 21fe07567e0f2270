#include "tunnel/flow_control.h"

#include <algorithm>
#include <cassert>

namespace burrow {

RecvFlowController::RecvFlowController(uint64_t initial_max, uint64_t window)
    : max_(initial_max), window_(window) {}

bool RecvFlowController::on_received(uint64_t new_highest) {
    if (new_highest > max_) return false;
    received_ = std::max(received_, new_highest);
    return true;
}

void RecvFlowController::on_consumed(uint64_t bytes) {
    assert(bytes <= received_ - consumed_);
    consumed_ += bytes;
}

bool RecvFlowController::should_update() const {
    // An update must raise the limit, and only by a worthwhile amount (half a window).
    const uint64_t remaining = max_ - consumed_;
    return window_ > 0 && remaining < window_ && remaining <= window_ / 2;
}

uint64_t RecvFlowController::take_update() {
    max_ = std::max(max_, consumed_ + window_);
    return max_;
}

void SendCredit::on_max(uint64_t maximum) {
    max_ = std::max(max_, maximum);
}

void SendCredit::consume(uint64_t bytes) {
    assert(bytes <= available());
    used_ += bytes;
}

}  // namespace burrow
