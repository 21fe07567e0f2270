#include "tunnel/range_set.h"

namespace burrow {

void RangeSet::add(uint64_t start, uint64_t end) {
    if (start >= end) return;
    // First interval whose start is > start; step back if the previous one touches us.
    auto it = ranges_.upper_bound(start);
    if (it != ranges_.begin()) {
        auto prev = std::prev(it);
        if (prev->second >= start) {
            if (prev->second >= end) return;  // already covered
            start = prev->first;
            it = prev;
        }
    }
    // Swallow every interval that starts within [start, end].
    while (it != ranges_.end() && it->first <= end) {
        if (it->second > end) end = it->second;
        it = ranges_.erase(it);
    }
    ranges_.emplace(start, end);
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
        it = ranges_.erase(it);
        if (s < start) ranges_.emplace(s, start);
        if (e > end) {
            ranges_.emplace(end, e);
            break;
        }
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
