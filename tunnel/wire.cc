#include "tunnel/wire.h"

#include <cassert>
#include <cstring>

namespace burrow {

size_t varint_size(uint64_t v) {
    assert(v <= kVarintMax);
    if (v < (uint64_t{1} << 6)) return 1;
    if (v < (uint64_t{1} << 14)) return 2;
    if (v < (uint64_t{1} << 30)) return 4;
    return 8;
}

bool ByteReader::take(size_t n) {
    if (!ok_ || data_.size() - pos_ < n) {
        ok_ = false;
        return false;
    }
    return true;
}

uint8_t ByteReader::u8() {
    if (!take(1)) return 0;
    return data_[pos_++];
}

uint16_t ByteReader::u16() {
    if (!take(2)) return 0;
    uint16_t v = static_cast<uint16_t>((data_[pos_] << 8) | data_[pos_ + 1]);
    pos_ += 2;
    return v;
}

uint32_t ByteReader::u32() {
    if (!take(4)) return 0;
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v = (v << 8) | data_[pos_++];
    return v;
}

uint64_t ByteReader::u64() {
    if (!take(8)) return 0;
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v = (v << 8) | data_[pos_++];
    return v;
}

uint64_t ByteReader::varint() {
    if (!take(1)) return 0;
    const size_t len = size_t{1} << (data_[pos_] >> 6);
    if (!take(len)) return 0;
    uint64_t v = data_[pos_++] & 0x3f;
    for (size_t i = 1; i < len; ++i) v = (v << 8) | data_[pos_++];
    return v;
}

ByteView ByteReader::bytes(size_t n) {
    if (!take(n)) return {};
    ByteView v = data_.subspan(pos_, n);
    pos_ += n;
    return v;
}

ByteView ByteReader::rest() {
    if (!ok_) return {};
    ByteView v = data_.subspan(pos_);
    pos_ = data_.size();
    return v;
}

void ByteWriter::bytes(ByteView b) {
    if (vector_ != nullptr) {
        vector_->insert(vector_->end(), b.begin(), b.end());
        return;
    }
    assert(b.size() <= fixed_.size() - pos_);
    if (!b.empty()) std::memcpy(fixed_.data() + pos_, b.data(), b.size());
    pos_ += b.size();
}

void ByteWriter::u16(uint16_t v) {
    u8(static_cast<uint8_t>(v >> 8));
    u8(static_cast<uint8_t>(v));
}

void ByteWriter::u32(uint32_t v) {
    for (int i = 3; i >= 0; --i) u8(static_cast<uint8_t>(v >> (8 * i)));
}

void ByteWriter::u64(uint64_t v) {
    for (int i = 7; i >= 0; --i) u8(static_cast<uint8_t>(v >> (8 * i)));
}

void ByteWriter::varint(uint64_t v) {
    const size_t len = varint_size(v);
    const uint8_t prefix = len == 1 ? 0x00 : len == 2 ? 0x40 : len == 4 ? 0x80 : 0xc0;
    for (size_t i = len; i-- > 0;) {
        uint8_t b = static_cast<uint8_t>(v >> (8 * i));
        if (i == len - 1) b |= prefix;
        u8(b);
    }
}

}  // namespace burrow
