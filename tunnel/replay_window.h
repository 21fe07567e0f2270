// Sliding window over 64-bit packet counters: drops duplicates and anything too old.
//
// RFC 6479 style: a ring of 64-bit words holds one bit per counter. Moving the window forward
// clears whole words instead of shifting the bitmap, so each update is O(1) however far the
// window jumps. The ring has one word more than the window needs, so the word being reused
// for new counters never holds a bit that is still inside the window.
//
// Check and commit are split on purpose: the caller classifies a counter before decrypting
// and marks it only after the packet authenticated, so forged packets cannot move the window.
#pragma once

#include <array>
#include <cstdint>

namespace burrow {

class ReplayWindow {
  public:
    static constexpr uint64_t kSize = 2048;  // docs/architecture.md §4: at least 2048
    enum class Verdict { kNew, kDuplicate, kTooOld };

    // No state change. Counters more than kSize - 1 below largest() are kTooOld.
    Verdict classify(uint64_t counter) const;
    // Precondition: classify(counter) == kNew (anything else is ignored).
    void mark(uint64_t counter);
    uint64_t largest() const { return largest_; }  // largest marked (0 if none)
    bool empty() const { return empty_; }

  private:
    static constexpr uint64_t kWordBits = 64;
    static constexpr uint64_t kWords = kSize / kWordBits + 1;  // + 1: see the file comment
    static_assert(kSize % kWordBits == 0, "window must be a whole number of words");

    bool bit(uint64_t counter) const;

    std::array<uint64_t, kWords> bits_{};
    uint64_t largest_ = 0;
    bool empty_ = true;
};

}  // namespace burrow
