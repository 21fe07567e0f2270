// A set of uint64 values kept as disjoint half-open intervals [start, end).
//
// Used for acknowledged packet numbers, received stream offsets and bytes to retransmit.
// Adjacent or overlapping intervals are merged, so the set is always minimal.
#pragma once

#include <cstdint>
#include <map>
#include <optional>

namespace burrow {

struct Interval {
    uint64_t start = 0;
    uint64_t end = 0;  // exclusive
    uint64_t length() const { return end - start; }
    bool operator==(const Interval&) const = default;
};

class RangeSet {
public:
    void add(uint64_t start, uint64_t end);
    void remove(uint64_t start, uint64_t end);
    bool contains(uint64_t v) const;
    // True when every value of [start, end) is in the set.
    bool contains_all(uint64_t start, uint64_t end) const;
    bool empty() const { return ranges_.empty(); }
    size_t interval_count() const { return ranges_.size(); }
    void clear() { ranges_.clear(); }

    std::optional<Interval> first() const;
    std::optional<Interval> last() const;
    // The first interval overlapping [from, +inf), clipped to start at `from`.
    std::optional<Interval> first_from(uint64_t from) const;
    void pop_first() { ranges_.erase(ranges_.begin()); }

    // Ascending iteration over intervals (start -> end).
    auto begin() const { return ranges_.begin(); }
    auto end() const { return ranges_.end(); }
    auto rbegin() const { return ranges_.rbegin(); }
    auto rend() const { return ranges_.rend(); }

private:
    using Map = std::map<uint64_t, uint64_t>;
    // Merges into `it` the intervals after it that it now reaches.
    void absorb_following(Map::iterator it);

    Map ranges_;  // start -> end
};

}  // namespace burrow
