#include "tunnel/send_stream.h"

#include <algorithm>
#include <cassert>

namespace burrow {

SendStream::SendStream(size_t buffer_limit, BlockPool* pool)
    : buffer_limit_(buffer_limit), buffer_(pool) {}

size_t SendStream::write(ByteView data) {
    const size_t n = std::min(data.size(), writable());
    if (n == 0) return 0;
    buffer_.write(written_, data.first(n));
    written_ += n;
    return n;
}

size_t SendStream::writable() const {
    if (finished_) return 0;
    const uint64_t held = bytes_buffered();
    return held >= buffer_limit_ ? 0 : static_cast<size_t>(buffer_limit_ - held);
}

void SendStream::finish() {
    finished_ = true;
}

std::optional<SendStream::Chunk> SendStream::next_chunk(size_t max_len, uint64_t flow_limit) {
    if (!lost_.empty() && max_len > 0) {
        // Lost bytes were already within the peer's limit when first sent, and limits only
        // grow, so a retransmission never needs a flow-control check.
        const Interval range = *lost_.first();
        const ByteView data =
            buffer_.view(range.start, std::min<uint64_t>(range.length(), max_len));
        const uint64_t end = range.start + data.size();
        lost_.remove(range.start, end);
        const bool fin = end == written_ && fin_pending();
        if (fin) {
            fin_sent_ = true;
            fin_lost_ = false;
        }
        return Chunk{range.start, data, fin};
    }
    if (sent_end_ < written_ && sent_end_ < flow_limit && max_len > 0) {
        const uint64_t allowed = std::min(written_, flow_limit) - sent_end_;
        const ByteView data = buffer_.view(sent_end_, std::min<uint64_t>(allowed, max_len));
        const uint64_t offset = sent_end_;
        sent_end_ += data.size();
        const bool fin = sent_end_ == written_ && fin_pending();
        if (fin) fin_sent_ = true;
        return Chunk{offset, data, fin};
    }
    if (sent_end_ == written_ && fin_pending()) {
        // FIN-only: everything before it has gone out at least once. The FIN sits at
        // offset written_, which was within the limit when the data before it was sent.
        fin_sent_ = true;
        fin_lost_ = false;
        return Chunk{written_, {}, true};
    }
    return std::nullopt;
}

bool SendStream::has_pending(uint64_t flow_limit) const {
    if (!lost_.empty()) return true;
    if (sent_end_ < written_) return sent_end_ < flow_limit;
    return fin_pending();
}

void SendStream::on_acked(uint64_t offset, uint64_t length, bool fin) {
    const uint64_t end = offset + length;
    assert(end <= sent_end_);
    const uint64_t start = std::max(offset, acked_prefix_);
    if (start < end) {
        if (start == acked_prefix_ && (acked_.empty() || acked_.first()->start > end)) {
            acked_prefix_ = end;  // in order, the usual case: no range to record
        } else {
            acked_.add(start, end);
        }
        // An acknowledgement that overtakes a loss verdict cancels the resend.
        lost_.remove(start, end);
        advance_acked_prefix();
    }
    if (fin) {
        fin_acked_ = true;
        fin_lost_ = false;
    }
}

void SendStream::advance_acked_prefix() {
    while (const auto first = acked_.first()) {
        if (first->start > acked_prefix_) break;
        acked_prefix_ = std::max(acked_prefix_, first->end);
        acked_.pop_first();
    }
    if (acked_prefix_ == written_) {
        buffer_.clear();
    } else {
        buffer_.release_below(acked_prefix_);
    }
}

void SendStream::on_lost(uint64_t offset, uint64_t length, bool fin) {
    const uint64_t end = offset + length;
    assert(end <= sent_end_);
    uint64_t at = std::max(offset, acked_prefix_);
    // Queue the gaps between acknowledged ranges inside [at, end).
    while (at < end) {
        const auto acked = acked_.first_from(at);
        const uint64_t gap_end = acked ? std::min(acked->start, end) : end;
        if (at < gap_end) lost_.add(at, gap_end);
        if (!acked || acked->end >= end) break;
        at = acked->end;
    }
    if (fin && !fin_acked_) fin_lost_ = true;
}

bool SendStream::all_acked() const {
    return finished_ && fin_acked_ && acked_prefix_ == written_;
}

uint64_t SendStream::bytes_lost() const {
    uint64_t total = 0;
    for (const auto& [start, end] : lost_) total += end - start;
    return total;
}

}  // namespace burrow
