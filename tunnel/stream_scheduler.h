// Round-robin over streams with something to send, so a small interactive stream is
// never stuck behind a bulk one (docs/architecture.md §4).
//
// The caller pops the front stream, sends one chunk of it, and pushes it back if it still
// has data: each ready stream gets one turn per round. Every operation is O(1), so
// thousands of streams cost nothing per packet. The queue is a doubly linked list threaded
// through a hash map keyed by stream id, which also answers contains() and remove().
#pragma once

#include <cstddef>
#include <optional>
#include <unordered_map>

#include "tunnel/frame.h"

namespace burrow {

class StreamScheduler {
  public:
    // Appends at the back; no-op if already queued (it keeps its place).
    void push(StreamId id);
    // Front; the caller re-pushes if it still has data.
    std::optional<StreamId> pop();
    // No-op if not queued.
    void remove(StreamId id);
    bool contains(StreamId id) const { return links_.count(id) != 0; }
    bool empty() const { return links_.empty(); }
    size_t size() const { return links_.size(); }

  private:
    struct Links {
        std::optional<StreamId> prev;
        std::optional<StreamId> next;
    };

    // The node of the stream popped last, reused by the next push: a bulk stream goes
    // round pop -> push once per packet, and that must not allocate.
    std::unordered_map<StreamId, Links>::node_type spare_;
    std::unordered_map<StreamId, Links> links_;
    std::optional<StreamId> head_;
    std::optional<StreamId> tail_;
};

}  // namespace burrow
