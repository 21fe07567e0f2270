#include "tunnel/replay_window.h"

namespace burrow {

bool ReplayWindow::bit(uint64_t counter) const {
    const uint64_t word = (counter / kWordBits) % kWords;
    return (bits_[word] >> (counter % kWordBits)) & 1;
}

ReplayWindow::Verdict ReplayWindow::classify(uint64_t counter) const {
    if (empty_ || counter > largest_) return Verdict::kNew;
    if (largest_ - counter >= kSize) return Verdict::kTooOld;
    return bit(counter) ? Verdict::kDuplicate : Verdict::kNew;
}

void ReplayWindow::mark(uint64_t counter) {
    if (classify(counter) != Verdict::kNew) return;
    if (empty_) {
        empty_ = false;
        largest_ = counter;
    } else if (counter > largest_) {
        // Clear the words the window slides onto; they still hold counters a ring ago.
        const uint64_t old_word = largest_ / kWordBits;
        const uint64_t new_word = counter / kWordBits;
        const uint64_t steps = new_word - old_word < kWords ? new_word - old_word : kWords;
        for (uint64_t i = 1; i <= steps; ++i) bits_[(old_word + i) % kWords] = 0;
        largest_ = counter;
    }
    bits_[(counter / kWordBits) % kWords] |= uint64_t{1} << (counter % kWordBits);
}

}  // namespace burrow
