// A vector that holds its first N elements inside the object and moves to the heap only past
// them. For per-packet records whose usual size is small and known (the frames of one sent
// packet, the ranges of one ACK): building, copying and destroying them then allocates
// nothing in steady state, while an unusual packet is still represented whole.
//
// Elements are contiguous in either place, so iterators are plain pointers. T must be
// default-constructible and movable; the inline slots are always constructed.
#pragma once

#include <algorithm>
#include <array>
#include <cassert>
#include <cstddef>
#include <initializer_list>
#include <iterator>
#include <vector>

namespace burrow {

template <typename T, size_t N>
class SmallVector {
  public:
    SmallVector() = default;
    SmallVector(std::initializer_list<T> items) {
        for (const T& t : items) push_back(t);
    }

    size_t size() const { return size_; }
    bool empty() const { return size_ == 0; }
    T* data() { return on_heap() ? heap_.data() : inline_.data(); }
    const T* data() const { return on_heap() ? heap_.data() : inline_.data(); }
    T* begin() { return data(); }
    T* end() { return data() + size_; }
    const T* begin() const { return data(); }
    const T* end() const { return data() + size_; }
    auto rbegin() const { return std::reverse_iterator<const T*>(end()); }
    auto rend() const { return std::reverse_iterator<const T*>(begin()); }
    T& operator[](size_t i) {
        assert(i < size_);
        return data()[i];
    }
    const T& operator[](size_t i) const {
        assert(i < size_);
        return data()[i];
    }
    T& front() { return (*this)[0]; }
    const T& front() const { return (*this)[0]; }
    T& back() { return (*this)[size_ - 1]; }
    const T& back() const { return (*this)[size_ - 1]; }

    void push_back(T value) {
        if (!on_heap() && size_ == N) {
            // Past the inline slots: everything moves to the heap, keeping one layout.
            heap_.reserve(2 * N);
            std::move(inline_.begin(), inline_.end(), std::back_inserter(heap_));
        }
        if (on_heap()) {
            heap_.push_back(std::move(value));
        } else {
            inline_[size_] = std::move(value);
        }
        ++size_;
    }
    // Keeps heap capacity, if any: a record reused for the next packet does not allocate again.
    void clear() {
        heap_.clear();
        size_ = 0;
    }
    void reserve(size_t n) {
        if (n > N) heap_.reserve(n);
    }

    bool operator==(const SmallVector& o) const {
        return std::equal(begin(), end(), o.begin(), o.end());
    }

  private:
    bool on_heap() const { return size_ > N || !heap_.empty(); }

    std::array<T, N> inline_{};
    std::vector<T> heap_;
    size_t size_ = 0;
};

}  // namespace burrow
