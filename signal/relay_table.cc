#include "signal/relay_table.h"

#include <algorithm>

namespace burrow {

const RelaySession* RelayTable::open(std::string_view initiator, std::string_view responder,
                                     std::string_view service, Time now, Rng& rng) {
    if (!acl_.allowed(initiator, responder, service)) return nullptr;
    for (std::string_view agent : {initiator, responder}) {
        while (max_per_agent_ > 0 && count_for(agent) >= max_per_agent_) evict_oldest_of(agent);
    }
    RelaySession s;
    do {
        s.id = rng.next_u64();
    } while (s.id == 0 || sessions_.count(s.id));  // 0 reads as "no session" in logs
    rng.fill(s.token);
    s.initiator = initiator;
    s.responder = responder;
    s.service = service;
    s.last_used = now;
    return &sessions_.emplace(s.id, std::move(s)).first->second;
}

RelaySession* RelayTable::find(uint64_t id) {
    auto it = sessions_.find(id);
    return it == sessions_.end() ? nullptr : &it->second;
}

void RelayTable::close_agent(std::string_view agent) {
    std::erase_if(sessions_, [&](const auto& kv) { return kv.second.has_member(agent); });
}

size_t RelayTable::count_for(std::string_view agent) const {
    return static_cast<size_t>(
        std::count_if(sessions_.begin(), sessions_.end(),
                      [&](const auto& kv) { return kv.second.has_member(agent); }));
}

void RelayTable::evict_oldest_of(std::string_view agent) {
    auto oldest = sessions_.end();
    for (auto it = sessions_.begin(); it != sessions_.end(); ++it) {
        if (!it->second.has_member(agent)) continue;
        if (oldest == sessions_.end() || it->second.last_used < oldest->second.last_used) {
            oldest = it;
        }
    }
    if (oldest != sessions_.end()) sessions_.erase(oldest);
}

}  // namespace burrow
