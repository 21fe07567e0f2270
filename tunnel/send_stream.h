// The sending half of a stream: the application's bytes until the peer acknowledges them.
//
//   0 ........ acked_prefix_ ......... sent_end_ ........ written_
//   [ freed   |  held: in flight, lost or acked out of order |  not sent yet ]
//
// Bytes are sent once as new data; a range whose packet is declared lost is queued in
// lost_ and goes out again (lowest offset first, before new data) unless an
// acknowledgement for it arrives first. Memory is released as soon as the contiguous
// acknowledged prefix advances. The FIN travels with the last byte, or alone.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>

#include "tunnel/bytes.h"
#include "tunnel/range_set.h"
#include "tunnel/stream_buffer.h"

namespace burrow {

class SendStream {
  public:
    // pool: where the buffer takes blocks from and gives them back (the connection's).
    explicit SendStream(size_t buffer_limit, BlockPool* pool = nullptr);

    // Appends up to writable() bytes; returns how many.
    size_t write(ByteView data);
    // buffer_limit - bytes held (unacked); 0 after finish().
    size_t writable() const;
    // FIN after everything written so far.
    void finish();
    bool finished() const { return finished_; }

    struct Chunk {
        uint64_t offset;
        ByteView data;
        bool fin;
    };
    // Next thing to transmit: lost ranges first (lowest offset first), then new data. New
    // data never goes past `flow_limit` (absolute stream offset the peer allows). At most
    // max_len data bytes; a chunk may stop early at an internal block boundary. A chunk may
    // be FIN-only (empty data). The returned view stays valid until the next non-const
    // call. nullopt when nothing can be sent.
    std::optional<Chunk> next_chunk(size_t max_len, uint64_t flow_limit);
    // Would next_chunk (with max_len > 0) return something?
    bool has_pending(uint64_t flow_limit) const;

    void on_acked(uint64_t offset, uint64_t length, bool fin);
    // Re-queues whatever of the range (and the FIN) is not acknowledged yet.
    void on_lost(uint64_t offset, uint64_t length, bool fin);

    // Finished and every byte and the FIN acknowledged.
    bool all_acked() const;
    // End offset of data ever sent (for session flow control; the final size of a reset).
    uint64_t highest_sent() const { return sent_end_; }
    // Held in memory (written and not yet acknowledged).
    uint64_t bytes_buffered() const { return written_ - acked_prefix_; }
    uint64_t bytes_written() const { return written_; }
    // Bytes queued for retransmission.
    uint64_t bytes_lost() const;

  private:
    bool fin_pending() const { return finished_ && !fin_acked_ && (!fin_sent_ || fin_lost_); }
    void advance_acked_prefix();

    size_t buffer_limit_;
    StreamBuffer buffer_;
    uint64_t written_ = 0;
    uint64_t sent_end_ = 0;
    uint64_t acked_prefix_ = 0;  // every byte below is acknowledged and freed
    RangeSet acked_;             // acknowledged ranges above acked_prefix_
    RangeSet lost_;              // sent, declared lost, not acknowledged: to send again
    bool finished_ = false;
    bool fin_sent_ = false;
    bool fin_lost_ = false;
    bool fin_acked_ = false;
};

}  // namespace burrow
