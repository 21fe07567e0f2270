// UdpFlowTable: the NAT-like table of one UDP forward or expose, sans-IO.
//
// UDP has no connections, so the agent makes them up the way a NAT does: on the forwarding side
// each client address is one flow (a FLOW_OPEN on the session, docs/architecture.md §4), on the
// exposing side each (peer, flow) is one socket towards the target, so that the target's
// replies come back on the socket of the client they answer. A flow lives while datagrams
// move; after `idle_timeout` without one it expires (the caller closes the flow and its
// socket). At most `max_flows` live at once per table: a flood of new source addresses beyond
// that is dropped and counted (refused_cap), never allowed to take sockets without bound.
//
//   find(key, now)            the flow for key, refreshed; nullopt if none
//   add(key, value, now)      a new flow; false at the cap (counted)
//   remove(key)               the caller closed it
//   expire(now)               the flows idle for idle_timeout, removed and returned
//   next_deadline()           when expire() may have something to do
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <utility>
#include <vector>

#include "tunnel/time.h"

namespace burrow {

// RFC 4787 REQ-5 asks NATs for a UDP mapping timeout of at least 2 minutes, but most home
// routers use 30-60 s; 60 s keeps a DNS or game flow's socket without holding idle ones long.
inline constexpr Duration kDefaultUdpIdleTimeout = std::chrono::seconds(60);
// Flows per forward (and per exposed service): each is a socket on the exposing side, so the
// cap bounds descriptors; 256 clients of one forward is plenty for DNS, games or a VPN.
inline constexpr size_t kDefaultMaxUdpFlows = 256;

template <class Key, class Value>
class UdpFlowTable {
  public:
    UdpFlowTable(Duration idle_timeout = kDefaultUdpIdleTimeout,
                 size_t max_flows = kDefaultMaxUdpFlows)
        : idle_timeout_(idle_timeout), max_flows_(max_flows) {}

    std::optional<Value> find(const Key& key, Time now) {
        auto it = flows_.find(key);
        if (it == flows_.end()) return std::nullopt;
        it->second.last_active = now;
        return it->second.value;
    }
    bool contains(const Key& key) const { return flows_.contains(key); }

    // Whether a new flow would be refused; a caller that checks first counts it with refuse().
    bool full() const { return flows_.size() >= max_flows_; }
    void refuse() { ++refused_cap_; }

    // false: max_flows are live; the flow is not added and refused_cap counts it.
    bool add(const Key& key, Value value, Time now) {
        if (flows_.contains(key)) return false;
        if (flows_.size() >= max_flows_) {
            ++refused_cap_;
            return false;
        }
        flows_.emplace(key, Entry{std::move(value), now});
        earliest_ = std::min(earliest_, now + idle_timeout_);
        ++created_;
        return true;
    }

    // The flow's value, if it was there.
    std::optional<Value> remove(const Key& key) {
        auto it = flows_.find(key);
        if (it == flows_.end()) return std::nullopt;
        Value v = std::move(it->second.value);
        flows_.erase(it);
        return v;
    }

    // Flows idle for idle_timeout or longer at `now`, removed from the table.
    std::vector<std::pair<Key, Value>> expire(Time now) {
        std::vector<std::pair<Key, Value>> gone;
        if (now < earliest_) return gone;
        earliest_ = kNever;
        for (auto it = flows_.begin(); it != flows_.end();) {
            const Time deadline = it->second.last_active + idle_timeout_;
            if (now >= deadline) {
                gone.emplace_back(it->first, std::move(it->second.value));
                it = flows_.erase(it);
                ++expired_;
            } else {
                earliest_ = std::min(earliest_, deadline);
                ++it;
            }
        }
        return gone;
    }

    // A lower bound: a flow refreshed since may expire later than this (expire() then finds
    // nothing and recomputes it). Cheap, so an executor may ask after every input.
    Time next_deadline() const { return flows_.empty() ? kNever : earliest_; }

    template <class F>
    void for_each(F f) const {
        for (const auto& [key, entry] : flows_) f(key, entry.value);
    }
    std::vector<std::pair<Key, Value>> take_all() {
        std::vector<std::pair<Key, Value>> all;
        for (auto& [key, entry] : flows_) all.emplace_back(key, std::move(entry.value));
        flows_.clear();
        earliest_ = kNever;
        return all;
    }

    size_t size() const { return flows_.size(); }
    size_t max_flows() const { return max_flows_; }
    Duration idle_timeout() const { return idle_timeout_; }
    uint64_t created() const { return created_; }
    uint64_t expired() const { return expired_; }
    uint64_t refused_cap() const { return refused_cap_; }

  private:
    struct Entry {
        Value value;
        Time last_active;
    };
    Duration idle_timeout_;
    size_t max_flows_;
    std::map<Key, Entry> flows_;
    Time earliest_ = kNever;
    uint64_t created_ = 0;
    uint64_t expired_ = 0;
    uint64_t refused_cap_ = 0;
};

}  // namespace burrow
