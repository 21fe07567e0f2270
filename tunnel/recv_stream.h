// The receiving half of a stream: reassembles STREAM frames into the in-order byte stream
// the application reads, and grants the peer credit as the application reads.
//
//   0 ....... read_offset_ ............................... flow max
//   [ read, freed | contiguous: readable() | gap | out of order | gap ... ]
//
// Invariant (ngtcp2 fuzz/rob.cc): the first gap starts at read_offset() + readable(); no
// byte is delivered twice or out of order. Bytes are only stored inside
// [read_offset, flow max), so a peer can make us hold at most the window it was granted.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>

#include "tunnel/bytes.h"
#include "tunnel/flow_control.h"
#include "tunnel/range_set.h"
#include "tunnel/stream_buffer.h"

namespace burrow {

class RecvStream {
  public:
    enum class Result { kOk, kFlowControlError, kFinalSizeError };

    // initial_max: the credit the peer assumes (kInitialStreamWindow); window: how far past
    // the read offset each MAX_STREAM_DATA lets the peer go.
    // pool: where the buffer takes blocks from and gives them back (the connection's).
    explicit RecvStream(uint64_t initial_max, uint64_t window, BlockPool* pool = nullptr);

    // Data at [offset, offset+len); duplicates and overlaps are fine (the first copy wins).
    // Checks before changing anything: end <= flow-control max, and consistency with a
    // known final size (data past it, or a FIN at a different size) -> error, no change.
    // `newly_received` gets how far the highest received offset advanced (for the
    // session-level flow controller). After a reset, data is checked and then discarded.
    Result on_data(uint64_t offset, ByteView data, bool fin, uint64_t& newly_received);
    // The peer's RESET_STREAM. Same checks as on_data; a repeat with the same size is kOk.
    // Buffered bytes are discarded and read() returns nothing from now on. The bytes between
    // read_offset() and final_size will never be read: the caller must count them as
    // consumed at the session level, or that session credit is never returned.
    Result on_reset(uint64_t final_size, uint64_t& newly_received);

    // In-order bytes only, copied into out.
    size_t read(MutableByteView out);
    // The next in-order bytes where they lie, without a copy: as many as are contiguous in
    // memory (up to a block's end), empty when none are readable. Valid until the next
    // non-const call.
    ByteView peek() const;
    // Marks the first n readable bytes read (n <= readable()), as read() does after copying.
    void consume(size_t n);
    // Contiguous bytes ready to read.
    size_t readable() const;
    // The peer's FIN arrived in a STREAM frame (its final size is known).
    bool fin_received() const { return final_size_.has_value() && !reset_; }
    bool reset_received() const { return reset_; }
    // FIN received and every byte read.
    bool finished() const { return fin_received() && read_offset_ == *final_size_; }
    std::optional<uint64_t> final_size() const { return final_size_; }

    // After reads: new credit to send in MAX_STREAM_DATA. None once the final size is
    // known, since the peer cannot send past it anyway (RFC 9000 §3.2 "Size Known").
    std::optional<uint64_t> take_max_stream_data_update();

    // Held in memory (in-order unread + out-of-order).
    uint64_t bytes_buffered() const { return buffered_; }
    uint64_t highest_received() const { return flow_.received(); }
    uint64_t read_offset() const { return read_offset_; }
    const RecvFlowController& flow() const { return flow_; }
    size_t allocated_bytes() const { return buffer_.allocated_bytes(); }

  private:
    Result check_end(uint64_t end, bool fin) const;
    void store(uint64_t offset, ByteView data);

    RecvFlowController flow_;  // received = highest offset seen, consumed = read_offset_
    StreamBuffer buffer_;
    // Held in buffer_: [read_offset_, contiguous_end_), the readable bytes, and the ranges
    // of received_, all above contiguous_end_ (out of order). Kept apart so that in-order
    // data, the bulk of any transfer, touches no range set (and allocates nothing).
    uint64_t contiguous_end_ = 0;
    RangeSet received_;
    uint64_t read_offset_ = 0;
    uint64_t buffered_ = 0;
    std::optional<uint64_t> final_size_;
    bool reset_ = false;
};

}  // namespace burrow
