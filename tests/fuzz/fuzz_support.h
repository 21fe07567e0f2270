// Shared by every fuzz target (tests/fuzz/*_fuzz.cc) and the seed generator: an invariant check
// that aborts (so libFuzzer and the corpus replay both report it), and a reader that turns the
// fuzzer's bytes into choices without ever failing (an exhausted input reads as zeros).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "tunnel/bytes.h"

#define FUZZ_CHECK(cond)                                                                  \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            std::fprintf(stderr, "fuzz invariant failed: %s (%s:%d)\n", #cond, __FILE__, \
                         __LINE__);                                                       \
            std::abort();                                                                 \
        }                                                                                 \
    } while (0)

namespace burrow::fuzz {

class FuzzReader {
  public:
    FuzzReader(const uint8_t* data, size_t size) : data_(data), size_(size) {}
    explicit FuzzReader(ByteView v) : data_(v.data()), size_(v.size()) {}

    bool empty() const { return pos_ >= size_; }
    size_t remaining() const { return size_ - pos_; }

    uint8_t u8() { return empty() ? 0 : data_[pos_++]; }
    uint16_t u16() { return static_cast<uint16_t>(u8() << 8 | u8()); }
    uint32_t u32() { return uint32_t{u16()} << 16 | u16(); }
    uint64_t u64() { return uint64_t{u32()} << 32 | u32(); }
    // Up to n bytes (fewer when the input runs out).
    ByteView take(size_t n) {
        n = std::min(n, remaining());
        ByteView v(data_ + pos_, n);
        pos_ += n;
        return v;
    }
    ByteView rest() { return take(remaining()); }

  private:
    const uint8_t* data_;
    size_t size_;
    size_t pos_ = 0;
};

}  // namespace burrow::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);
