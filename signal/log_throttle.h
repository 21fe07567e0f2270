// LogThrottle: a warning that repeats once per connection under load (a refused forwarded
// connection, a stream the target refused) is logged the first time, then summed up with a
// count at most once per interval, instead of one line per occurrence: issue 19 saw 55 MB of
// log in 15 s from one line per refused connection.
//
//   note(key, now)   true: log this occurrence now; false: it is counted for a summary
//   due(now)         the summaries whose interval ended: "key" and how many were held back
//   next_deadline()  when the next summary is due (the caller's timer)
//
// A key is the line without its per-connection details. After an interval in which a key did
// not repeat, its next occurrence is logged at once again.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "tunnel/time.h"

namespace burrow {

class LogThrottle {
  public:
    explicit LogThrottle(Duration interval) : interval_(interval) {}

    bool note(const std::string& key, Time now);

    struct Summary {
        std::string key;
        uint64_t count = 0;  // occurrences not logged since the key's last line
        Duration over{};     // how long they took to pile up
    };
    std::vector<Summary> due(Time now);
    Time next_deadline() const;

  private:
    struct Entry {
        Time since;          // the last line for this key
        uint64_t held = 0;   // occurrences since then
    };
    Duration interval_;
    std::map<std::string, Entry> entries_;
};

}  // namespace burrow
