#include "tunnel/range_set.h"

#include <algorithm>
#include <iterator>

namespace burrow {

// Growing or trimming an interval changes its node in place, or moves the node to a new key
// (map::extract keeps the allocation): only an interval that is really new, a new hole,
// allocates. ACK tracking and stream reassembly extend or trim one interval per packet.
void RangeSet::add(uint64_t start, uint64_t end) {
    if (start >= end) return;
    auto it = ranges_.upper_bound(start);
    if (it != ranges_.begin()) {
        auto prev = std::prev(it);
        if (prev->second >= start) {  // touches or overlaps the interval before: grow it
            if (prev->second >= end) return;  // already covered
            prev->second = end;
            absorb_following(prev);
            return;
        }
    }
    if (it != ranges_.end() && it->first <= end) {  // reaches the next one: grow it downwards
        auto node = ranges_.extract(it);
        node.key() = start;
        node.mapped() = std::max(node.mapped(), end);
        absorb_following(ranges_.insert(std::move(node)).position);
        return;
    }
    ranges_.emplace_hint(it, start, end);
}

void RangeSet::absorb_following(Map::iterator it) {
    auto next = std::next(it);
    while (next != ranges_.end() && next->first <= it->second) {
        it->second = std::max(it->second, next->second);
        next = ranges_.erase(next);
    }
}

void RangeSet::remove(uint64_t start, uint64_t end) {
    if (start >= end) return;
    auto it = ranges_.upper_bound(start);
    if (it != ranges_.begin()) --it;
    while (it != ranges_.end() && it->first < end) {
        const uint64_t s = it->first, e = it->second;
        if (e <= start) {
            ++it;
            continue;
        }
        if (s < start) {
            it->second = start;  // keeps its head
            if (e > end) {
                ranges_.emplace_hint(std::next(it), end, e);  // split: a new interval
                return;
            }
            ++it;
            continue;
        }
        if (e > end) {  // keeps its tail: the node moves to the new start
            auto node = ranges_.extract(it);
            node.key() = end;
            ranges_.insert(std::move(node));
            return;
        }
        it = ranges_.erase(it);
    }
}

bool RangeSet::contains(uint64_t v) const { return contains_all(v, v + 1); }

bool RangeSet::contains_all(uint64_t start, uint64_t end) const {
    if (start >= end) return true;
    auto it = ranges_.upper_bound(start);
    if (it == ranges_.begin()) return false;
    --it;
    return it->first <= start && it->second >= end;
}

std::optional<Interval> RangeSet::first() const {
    if (ranges_.empty()) return std::nullopt;
    return Interval{ranges_.begin()->first, ranges_.begin()->second};
}

std::optional<Interval> RangeSet::last() const {
    if (ranges_.empty()) return std::nullopt;
    return Interval{ranges_.rbegin()->first, ranges_.rbegin()->second};
}

std::optional<Interval> RangeSet::first_from(uint64_t from) const {
    auto it = ranges_.upper_bound(from);
    if (it != ranges_.begin()) {
        auto prev = std::prev(it);
        if (prev->second > from) return Interval{from, prev->second};
    }
    if (it == ranges_.end()) return std::nullopt;
    return Interval{it->first, it->second};
}

}  // namespace burrow
