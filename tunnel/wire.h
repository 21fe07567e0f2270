// Bounds-checked reading and writing of wire formats.
//
// Integers are big-endian (network order). Variable-length integers use the QUIC encoding
// (RFC 9000 §16): the two high bits of the first byte give the length, 1, 2, 4 or 8 bytes,
// carrying 6, 14, 30 or 62 bits.
//
//   00xxxxxx                          0 .. 63
//   01xxxxxx xxxxxxxx                 0 .. 16383
//   10xxxxxx + 3 bytes                0 .. 2^30-1
//   11xxxxxx + 7 bytes                0 .. 2^62-1
//
// A ByteReader never reads past its end: every read reports failure instead, and after the
// first failure the reader stays failed, so a parser can read a whole message and check ok()
// once.
#pragma once

#include <cassert>
#include <cstdint>
#include <optional>

#include "tunnel/bytes.h"

namespace burrow {

inline constexpr uint64_t kVarintMax = (uint64_t{1} << 62) - 1;  // RFC 9000 §16

// Bytes a varint encoding of v takes (1, 2, 4 or 8); v must be <= kVarintMax.
size_t varint_size(uint64_t v);

class ByteReader {
public:
    explicit ByteReader(ByteView data) : data_(data) {}

    bool ok() const { return ok_; }
    size_t remaining() const { return ok_ ? data_.size() - pos_ : 0; }
    bool empty() const { return remaining() == 0; }
    size_t position() const { return pos_; }

    uint8_t u8();
    uint16_t u16();
    uint32_t u32();
    uint64_t u64();
    uint64_t varint();
    // The next n bytes, viewing the input (no copy); empty view and failure if short.
    ByteView bytes(size_t n);
    ByteView rest();
    void fail() { ok_ = false; }

private:
    bool take(size_t n);
    ByteView data_;
    size_t pos_ = 0;
    bool ok_ = true;
};

// Appends to a vector, or fills a caller's fixed buffer from its start (the packet path: a
// datagram is built where it will be sent from). A fixed buffer must be large enough for
// everything written; the caller sizes it first (asserted).
class ByteWriter {
public:
    explicit ByteWriter(Bytes& out) : vector_(&out) {}
    explicit ByteWriter(MutableByteView out) : fixed_(out) {}
    void u8(uint8_t v) {
        if (vector_ != nullptr) {
            vector_->push_back(v);
        } else {
            assert(pos_ < fixed_.size());
            fixed_[pos_++] = v;
        }
    }
    void u16(uint16_t v);
    void u32(uint32_t v);
    void u64(uint64_t v);
    void varint(uint64_t v);  // v must be <= kVarintMax
    void bytes(ByteView b);
    size_t size() const { return vector_ != nullptr ? vector_->size() : pos_; }

private:
    Bytes* vector_ = nullptr;
    MutableByteView fixed_;
    size_t pos_ = 0;
};

}  // namespace burrow
