// A FIFO queue over one growing array, for queues that turn over per packet (a connection's
// events and control queue). std::deque frees and allocates a chunk every few dozen
// elements as a steady stream passes through; this allocates only when it holds more than
// ever before.
#pragma once

#include <cassert>
#include <cstddef>
#include <utility>
#include <vector>

namespace burrow {

template <typename T>
class RingQueue {
  public:
    bool empty() const { return size_ == 0; }
    size_t size() const { return size_; }
    T& front() {
        assert(size_ > 0);
        return slots_[head_];
    }
    // The i-th element from the front.
    T& operator[](size_t i) {
        assert(i < size_);
        return slots_[(head_ + i) % slots_.size()];
    }
    void push_back(T value) {
        if (size_ == slots_.size()) grow();
        slots_[(head_ + size_) % slots_.size()] = std::move(value);
        ++size_;
    }
    void pop_front() {
        assert(size_ > 0);
        slots_[head_] = T{};  // release what the element holds now, not when overwritten
        head_ = (head_ + 1) % slots_.size();
        --size_;
    }
    void clear() {
        while (!empty()) pop_front();
    }

  private:
    // Doubling keeps push_back O(1) amortised.
    static constexpr size_t kInitialSlots = 8;
    void grow() {
        std::vector<T> bigger(slots_.empty() ? kInitialSlots : 2 * slots_.size());
        for (size_t i = 0; i < size_; ++i) {
            bigger[i] = std::move(slots_[(head_ + i) % slots_.size()]);
        }
        slots_ = std::move(bigger);
        head_ = 0;
    }

    std::vector<T> slots_;
    size_t head_ = 0;
    size_t size_ = 0;
};

}  // namespace burrow
