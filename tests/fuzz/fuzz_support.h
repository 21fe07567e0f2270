// Shared by every fuzz target (tests/fuzz/*_fuzz.cc) and the seed generator: an invariant check
// that aborts (so libFuzzer and the corpus replay both report it), and a reader that turns the
// fuzzer's bytes into choices without ever failing (an exhausted input reads as zeros).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

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

// A stream cut into the reads a socket might give: one read when `cut` is 0, else pieces of
// 1 to max_piece bytes whose sizes a fixed LCG seeded with `cut` picks (the cut is part of the
// fuzzer's input, so a failing input replays the same reads).
inline std::vector<ByteView> cut_into(ByteView stream, uint8_t cut, size_t max_piece) {
    std::vector<ByteView> pieces;
    uint32_t state = cut;
    size_t at = 0;
    while (at < stream.size()) {
        size_t n = stream.size() - at;
        if (cut != 0) {
            state = state * 1103515245u + 12345u;
            n = std::min<size_t>(n, 1 + (state >> 16) % max_piece);
        }
        pieces.push_back(stream.subspan(at, n));
        at += n;
    }
    return pieces;
}

}  // namespace burrow::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);
