#include "signal/log_throttle.h"

#include <algorithm>

namespace burrow {

bool LogThrottle::note(const std::string& key, Time now) {
    auto it = entries_.find(key);
    if (it == entries_.end() || (it->second.held == 0 && now - it->second.since >= interval_)) {
        entries_[key] = Entry{now, 0};
        return true;
    }
    it->second.held++;
    return false;
}

std::vector<LogThrottle::Summary> LogThrottle::due(Time now) {
    std::vector<Summary> out;
    for (auto it = entries_.begin(); it != entries_.end();) {
        Entry& e = it->second;
        if (now - e.since < interval_) {
            ++it;
        } else if (e.held == 0) {
            it = entries_.erase(it);  // quiet for a whole interval: the next one logs at once
        } else {
            out.push_back(Summary{it->first, e.held, now - e.since});
            e = Entry{now, 0};
            ++it;
        }
    }
    return out;
}

Time LogThrottle::next_deadline() const {
    Time t = kNever;
    for (const auto& [key, e] : entries_) {
        if (e.held > 0) t = std::min(t, e.since + interval_);
    }
    return t;
}

}  // namespace burrow
