#include "tunnel/recv_stream.h"

#include <algorithm>
#include <cassert>

namespace burrow {

RecvStream::RecvStream(uint64_t initial_max, uint64_t window, BlockPool* pool)
    : flow_(initial_max, window), buffer_(pool) {}

RecvStream::Result RecvStream::check_end(uint64_t end, bool fin) const {
    // RFC 9000 §4.5: the final size can not change, no data may lie past it, and a final
    // size below data already received is an error too.
    if (end > flow_.max()) return Result::kFlowControlError;
    if (final_size_ && (end > *final_size_ || (fin && end != *final_size_))) {
        return Result::kFinalSizeError;
    }
    if (fin && end < flow_.received()) return Result::kFinalSizeError;
    return Result::kOk;
}

RecvStream::Result RecvStream::on_data(uint64_t offset, ByteView data, bool fin,
                                       uint64_t& newly_received) {
    newly_received = 0;
    const uint64_t end = offset + data.size();
    if (end < offset) return Result::kFlowControlError;  // wrapped: far past any limit
    if (const Result r = check_end(end, fin); r != Result::kOk) return r;

    const uint64_t before = flow_.received();
    flow_.on_received(end);  // cannot fail: checked above
    newly_received = flow_.received() - before;
    if (fin) final_size_ = end;
    if (!reset_) store(offset, data);
    return Result::kOk;
}

void RecvStream::store(uint64_t offset, ByteView data) {
    const uint64_t end = offset + data.size();
    // Everything below contiguous_end_ is held or read already.
    const uint64_t from = std::max(offset, contiguous_end_);
    uint64_t at = from;
    // Copy only into the gaps: bytes already held keep their first copy.
    while (at < end) {
        const auto held = received_.first_from(at);
        const uint64_t gap_end = held ? std::min(held->start, end) : end;
        if (at < gap_end) {
            buffer_.write(at, data.subspan(at - offset, gap_end - at));
            buffered_ += gap_end - at;
        }
        if (!held || held->end >= end) break;
        at = held->end;
    }
    if (from >= end) return;
    if (from > contiguous_end_) {
        received_.add(from, end);
        return;
    }
    contiguous_end_ = end;
    // The gap before out-of-order ranges may just have closed.
    while (const auto first = received_.first()) {
        if (first->start > contiguous_end_) break;
        contiguous_end_ = std::max(contiguous_end_, first->end);
        received_.pop_first();
    }
}

RecvStream::Result RecvStream::on_reset(uint64_t final_size, uint64_t& newly_received) {
    newly_received = 0;
    if (const Result r = check_end(final_size, true); r != Result::kOk) return r;
    const uint64_t before = flow_.received();
    flow_.on_received(final_size);
    newly_received = flow_.received() - before;
    final_size_ = final_size;
    reset_ = true;
    received_.clear();
    contiguous_end_ = read_offset_;
    buffer_.clear();
    buffered_ = 0;
    return Result::kOk;
}

size_t RecvStream::readable() const {
    if (reset_) return 0;
    return static_cast<size_t>(contiguous_end_ - read_offset_);
}

size_t RecvStream::read(MutableByteView out) {
    const size_t n = std::min(out.size(), readable());
    if (n == 0) return 0;
    buffer_.copy_out(read_offset_, out.first(n));
    consume(n);
    return n;
}

ByteView RecvStream::peek() const {
    const size_t n = readable();
    if (n == 0) return {};
    return buffer_.view(read_offset_, n);
}

void RecvStream::consume(size_t n) {
    assert(n <= readable());
    if (n == 0) return;
    read_offset_ += n;
    buffered_ -= n;
    flow_.on_consumed(n);
    if (buffered_ == 0) {
        buffer_.clear();
    } else {
        buffer_.release_below(read_offset_);
    }
}

std::optional<uint64_t> RecvStream::take_max_stream_data_update() {
    if (final_size_ || !flow_.should_update()) return std::nullopt;
    return flow_.take_update();
}

}  // namespace burrow
