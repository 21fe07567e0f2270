#include "tunnel/stream_framer.h"

#include <cassert>

namespace burrow {

namespace {

// Keeps the buffer's dead prefix from growing without bound while avoiding a move per frame.
constexpr size_t kCompactThreshold = 4096;

size_t read_length(const uint8_t* p, size_t length_size) {
    size_t v = 0;
    for (size_t i = 0; i < length_size; ++i) v = v << 8 | p[i];
    return v;
}

}  // namespace

const char* to_string(DeframeError e) {
    switch (e) {
        case DeframeError::kOversized: return "frame length out of bounds";
        case DeframeError::kTruncated: return "stream ended inside a frame";
    }
    return "?";
}

StreamDeframer::StreamDeframer(size_t length_size, size_t min_frame, size_t max_frame)
    : length_size_(length_size), min_frame_(min_frame), max_frame_(max_frame) {
    assert(length_size == 2 || length_size == 4);
}

void StreamDeframer::fail(DeframeError e) {
    error_ = e;
    buffer_ = Bytes();  // nothing more will be read: free it
    read_pos_ = 0;
}

// Drops the consumed prefix: all of it when nothing is left (no move), else once it is large.
void StreamDeframer::compact() {
    if (read_pos_ == buffer_.size()) {
        buffer_.clear();
        read_pos_ = 0;
    } else if (read_pos_ >= kCompactThreshold) {
        buffer_.erase(buffer_.begin(), buffer_.begin() + static_cast<ptrdiff_t>(read_pos_));
        read_pos_ = 0;
    }
}

void StreamDeframer::feed(ByteView bytes) {
    if (error_) return;
    compact();
    buffer_.insert(buffer_.end(), bytes.begin(), bytes.end());
}

std::optional<MutableByteView> StreamDeframer::next() {
    if (error_) return std::nullopt;
    compact();
    if (buffered() < length_size_) return std::nullopt;
    const size_t length = read_length(buffer_.data() + read_pos_, length_size_);
    if (length < min_frame_ || length > max_frame_) {
        fail(DeframeError::kOversized);
        return std::nullopt;
    }
    if (buffered() < length_size_ + length) return std::nullopt;
    const MutableByteView frame(buffer_.data() + read_pos_ + length_size_, length);
    read_pos_ += length_size_ + length;  // the view stays valid: compact() runs on the next call
    return frame;
}

std::optional<DeframeError> StreamDeframer::finish() {
    if (error_) return error_;
    if (buffered() > 0) {
        fail(DeframeError::kTruncated);
        return error_;
    }
    return std::nullopt;
}

void write_frame_length(size_t length_size, size_t size, MutableByteView out) {
    assert(out.size() >= length_size);
    assert(length_size == 4 || size <= 0xffff);
    for (size_t i = 0; i < length_size; ++i) {
        out[length_size - 1 - i] = static_cast<uint8_t>(size >> (8 * i));
    }
}

bool append_tcp_path_frame(ByteView datagram, Bytes& out) {
    if (datagram.empty() || datagram.size() > kMaxTcpPathFrame) return false;
    const size_t at = out.size();
    out.resize(at + kTcpPathLengthSize + datagram.size());
    write_frame_length(kTcpPathLengthSize, datagram.size(),
                       MutableByteView(out).subspan(at, kTcpPathLengthSize));
    std::copy(datagram.begin(), datagram.end(),
              out.begin() + static_cast<std::ptrdiff_t>(at + kTcpPathLengthSize));
    return true;
}

std::optional<Bytes> frame_for_tcp_path(ByteView datagram) {
    Bytes out;
    if (!append_tcp_path_frame(datagram, out)) return std::nullopt;
    return out;
}

}  // namespace burrow
