#include "tunnel/stream_buffer.h"

#include <algorithm>
#include <cassert>
#include <cstring>

namespace burrow {

BlockPool::Block BlockPool::take_block() {
    if (blocks_.empty()) {
        // Uninitialised on purpose: every byte is written before it is read.
        return std::make_unique_for_overwrite<uint8_t[]>(StreamBuffer::kBlockSize);
    }
    Block block = std::move(blocks_.back());
    blocks_.pop_back();
    return block;
}

void BlockPool::give_block(Block block) {
    if (blocks_.size() < kMaxSpareBlocks) blocks_.push_back(std::move(block));
}

BlockPool::Index BlockPool::take_index() {
    if (indexes_.empty()) return {};
    Index index = std::move(indexes_.back());
    indexes_.pop_back();
    return index;
}

void BlockPool::give_index(Index index) {
    index.clear();
    if (index.capacity() > 0 && indexes_.size() < kMaxSpareIndexes) {
        indexes_.push_back(std::move(index));
    }
}

StreamBuffer::Block StreamBuffer::new_block() {
    if (pool_ != nullptr) return pool_->take_block();
    // Uninitialised on purpose: every byte is written before it is read.
    return std::make_unique_for_overwrite<uint8_t[]>(kBlockSize);
}

void StreamBuffer::drop_block(Block& block) {
    if (pool_ != nullptr) {
        pool_->give_block(std::move(block));
    } else {
        block.reset();
    }
}

const uint8_t* StreamBuffer::block_at(uint64_t index) const {
    assert(index >= first_block_ && index - first_block_ < live_slots());
    const uint8_t* block = blocks_[head_ + (index - first_block_)].get();
    assert(block != nullptr);
    return block;
}

uint8_t* StreamBuffer::block_for_write(uint64_t index) {
    if (live_slots() == 0) {
        blocks_.clear();
        if (blocks_.capacity() == 0 && pool_ != nullptr) blocks_ = pool_->take_index();
        head_ = 0;
        first_block_ = index;
    }
    if (index < first_block_) {
        // Out-of-order data may land before everything held so far: grow at the front,
        // reusing released slots when there are enough.
        const uint64_t missing = first_block_ - index;
        if (missing <= head_) {
            head_ -= missing;
        } else {
            std::vector<Block> grown(missing + live_slots());
            std::move(blocks_.begin() + static_cast<ptrdiff_t>(head_), blocks_.end(),
                      grown.begin() + static_cast<ptrdiff_t>(missing));
            blocks_ = std::move(grown);
            head_ = 0;
        }
        first_block_ = index;
    }
    const size_t slot = head_ + (index - first_block_);
    if (slot >= blocks_.size()) blocks_.resize(slot + 1);
    Block& block = blocks_[slot];
    if (!block) {
        block = new_block();
        ++allocated_blocks_;
    }
    return block.get();
}

void StreamBuffer::write(uint64_t offset, ByteView data) {
    size_t done = 0;
    while (done < data.size()) {
        const uint64_t at = offset + done;
        const size_t in_block = at % kBlockSize;
        const size_t n = std::min(data.size() - done, kBlockSize - in_block);
        std::memcpy(block_for_write(at / kBlockSize) + in_block, data.data() + done, n);
        done += n;
    }
}

ByteView StreamBuffer::view(uint64_t offset, size_t max_len) const {
    const size_t in_block = offset % kBlockSize;
    const size_t n = std::min(max_len, kBlockSize - in_block);
    if (n == 0) return {};
    return {block_at(offset / kBlockSize) + in_block, n};
}

void StreamBuffer::copy_out(uint64_t offset, MutableByteView out) const {
    size_t done = 0;
    while (done < out.size()) {
        const ByteView part = view(offset + done, out.size() - done);
        std::memcpy(out.data() + done, part.data(), part.size());
        done += part.size();
    }
}

void StreamBuffer::release_below(uint64_t offset) {
    const uint64_t keep_from = offset / kBlockSize;
    while (live_slots() > 0 && first_block_ < keep_from) {
        if (blocks_[head_]) {
            drop_block(blocks_[head_]);
            --allocated_blocks_;
        }
        ++head_;
        ++first_block_;
    }
    if (allocated_blocks_ == 0) {
        clear();
    } else if (head_ * 2 >= blocks_.size()) {
        // Compact once the released prefix is at least half the index: each slot moves at
        // most once per time the index doubles, so release stays O(1) amortised.
        blocks_.erase(blocks_.begin(), blocks_.begin() + static_cast<ptrdiff_t>(head_));
        head_ = 0;
    }
}

void StreamBuffer::clear() {
    for (Block& block : blocks_) {
        if (block) drop_block(block);
    }
    if (pool_ != nullptr) {
        pool_->give_index(std::move(blocks_));
        blocks_ = std::vector<Block>();  // the moved-from index, made certainly empty
    } else {
        std::vector<Block>().swap(blocks_);  // clear() alone would keep the index's capacity
    }
    head_ = 0;
    first_block_ = 0;
    allocated_blocks_ = 0;
}

}  // namespace burrow
