#include "tunnel/stream_scheduler.h"

namespace burrow {

void StreamScheduler::push(StreamId id) {
    if (links_.count(id) != 0) return;
    if (spare_.empty()) {
        links_.emplace(id, Links{tail_, std::nullopt});
    } else {
        spare_.key() = id;
        spare_.mapped() = Links{tail_, std::nullopt};
        links_.insert(std::move(spare_));
    }
    if (tail_) {
        links_[*tail_].next = id;
    } else {
        head_ = id;
    }
    tail_ = id;
}

std::optional<StreamId> StreamScheduler::pop() {
    if (!head_) return std::nullopt;
    const StreamId id = *head_;
    remove(id);
    return id;
}

void StreamScheduler::remove(StreamId id) {
    const auto it = links_.find(id);
    if (it == links_.end()) return;
    const Links links = it->second;
    spare_ = links_.extract(it);
    if (links.prev) {
        links_[*links.prev].next = links.next;
    } else {
        head_ = links.next;
    }
    if (links.next) {
        links_[*links.next].prev = links.prev;
    } else {
        tail_ = links.prev;
    }
}

}  // namespace burrow
