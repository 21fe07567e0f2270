// Stream bytes in memory, addressed by absolute stream offset.
//
// Both stream directions keep a sliding span of a byte stream: the send side holds what was
// written and not yet acknowledged, the receive side what arrived (possibly out of order)
// and was not yet read. Bytes live in fixed-size blocks allocated on first write and freed
// once the window slides past them, so append and release are O(1) amortised, a send chunk
// is a view into one block (no copy), and a span with nothing in it holds no heap memory at
// all (thousands of idle streams cost only their object size).
//
//   block index:   first_block_  first_block_+1  ...
//   blocks_:  [ freed | freed | head_ -> blk | nullptr (gap) | blk ]
//
// Slots before head_ are already released and are compacted away lazily; a null slot is a
// block no byte has been written to yet (a gap in out-of-order receive data).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "tunnel/bytes.h"

namespace burrow {

// Blocks and block indexes the streams of one connection gave up, for the next stream bytes
// to land in. Under bulk transfer a sender frees a block about every dozen packets and needs
// a new one as often, and a receiver whose reader keeps up empties its buffer (index
// included) after nearly every packet: through the pool neither allocates. Bounded, so an
// idle connection keeps at most kMaxSpareBlocks blocks.
class BlockPool {
  public:
    using Block = std::unique_ptr<uint8_t[]>;
    using Index = std::vector<Block>;
    // Both ends of a bulk stream turn over a block or two between ACKs; 8 (128 KiB) leaves
    // room for several streams at once.
    static constexpr size_t kMaxSpareBlocks = 8;
    static constexpr size_t kMaxSpareIndexes = 8;

    Block take_block();
    void give_block(Block block);
    // An empty index, with the capacity of one given back if there is one.
    Index take_index();
    void give_index(Index index);

  private:
    std::vector<Block> blocks_;
    std::vector<Index> indexes_;
};

class StreamBuffer {
  public:
    // Without a pool, blocks and the index come from and go back to the heap.
    explicit StreamBuffer(BlockPool* pool = nullptr) : pool_(pool) {}

    // 16 KiB holds about a dozen full packets' payload: large enough that the per-block
    // bookkeeping is negligible in bulk transfers, small enough that a stream holding a few
    // bytes does not pin much memory.
    static constexpr size_t kBlockSize = 16 * 1024;

    // Copies data to [offset, offset + data.size()), allocating blocks as needed. The range
    // must not lie below an offset already passed to release_below().
    void write(uint64_t offset, ByteView data);
    // Up to max_len bytes starting at offset, stopping at the end of offset's block. The
    // bytes must have been written. Valid until the next write, release_below or clear.
    ByteView view(uint64_t offset, size_t max_len) const;
    // Copies out.size() written bytes starting at offset, across blocks.
    void copy_out(uint64_t offset, MutableByteView out) const;
    // Frees every block that lies entirely below offset.
    void release_below(uint64_t offset);
    // Frees everything, including the block index.
    void clear();

    size_t allocated_bytes() const { return allocated_blocks_ * kBlockSize; }

  private:
    using Block = BlockPool::Block;

    Block new_block();
    void drop_block(Block& block);

    size_t live_slots() const { return blocks_.size() - head_; }
    const uint8_t* block_at(uint64_t index) const;
    uint8_t* block_for_write(uint64_t index);

    BlockPool* pool_;
    std::vector<Block> blocks_;  // blocks_[head_ + i] holds block first_block_ + i
    size_t head_ = 0;
    uint64_t first_block_ = 0;
    size_t allocated_blocks_ = 0;
};

}  // namespace burrow
