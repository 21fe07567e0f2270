#include "signal/relay_table.h"

#include <sodium.h>

#include <algorithm>

namespace burrow {

const RelaySession* RelayTable::open(std::string_view requester, std::string_view peer,
                                     std::string_view service, uint64_t requested_id, Time now,
                                     Rng& rng) {
    if (!acl_.allowed(requester, peer, service)) return nullptr;
    RelaySession* s = find_pair(requester, peer);
    if (s && requested_id == 0 &&
        !(s->initiator == peer && now - s->created < kPairReuseWindow)) {
        sessions_.erase(s->id);  // the requester has no link: the peer's is stale
        s = nullptr;
    }
    if (!s) s = &create(requester, peer, requested_id, now, rng);
    s->opened.emplace(std::string(requester), std::string(service));
    s->last_used = now;
    return s;
}

RelaySession* RelayTable::find_pair(std::string_view a, std::string_view b) {
    for (auto& [id, s] : sessions_) {
        if (s.has_member(a) && s.has_member(b)) return &s;
    }
    return nullptr;
}

RelaySession& RelayTable::create(std::string_view requester, std::string_view peer,
                                 uint64_t wanted_id, Time now, Rng& rng) {
    for (std::string_view agent : {requester, peer}) {
        while (max_per_agent_ > 0 && count_for(agent) >= max_per_agent_) evict_oldest_of(agent);
    }
    RelaySession s;
    s.id = wanted_id;
    while (s.id == 0 || sessions_.count(s.id)) s.id = rng.next_u64();  // 0 reads as "none"
    s.token = token_for(s.id, requester, peer);
    s.initiator = requester;
    s.responder = peer;
    s.created = now;
    return sessions_.emplace(s.id, std::move(s)).first->second;
}

RelayToken RelayTable::token_for(uint64_t id, std::string_view a, std::string_view b) const {
    const AclAgent* x = acl_.find_by_name(a);
    const AclAgent* y = acl_.find_by_name(b);
    // open() and attach() check both names against the ACL first.
    return key_.token(id, x ? x->key : PublicKey{}, y ? y->key : PublicKey{});
}

RelayTable::AttachResult RelayTable::attach(std::string_view requester, std::string_view peer,
                                            uint64_t id, const RelayToken& token,
                                            SessionRole requester_role, Time now) {
    if (id == 0 || !acl_.pair_allowed(requester, peer)) return AttachResult::kNotAllowed;
    const RelayToken expected = token_for(id, requester, peer);
    if (sodium_memcmp(expected.data(), token.data(), token.size()) != 0) {
        return AttachResult::kBadToken;
    }
    if (RelaySession* s = find_pair(requester, peer)) {
        if (s->id != id) return AttachResult::kSuperseded;
        s->last_used = now;
        return AttachResult::kAttached;
    }
    if (sessions_.count(id)) return AttachResult::kSuperseded;
    for (std::string_view agent : {requester, peer}) {
        while (max_per_agent_ > 0 && count_for(agent) >= max_per_agent_) evict_oldest_of(agent);
    }
    RelaySession s;
    s.id = id;
    s.token = token;
    const bool initiator = requester_role == SessionRole::kInitiator;
    s.initiator = initiator ? requester : peer;
    s.responder = initiator ? peer : requester;
    // Not a fresh pair of simultaneous requests (kPairReuseWindow): the link is old.
    s.created = now - kPairReuseWindow;
    s.last_used = now;
    sessions_.emplace(id, std::move(s));
    return AttachResult::kAttached;
}

void RelayTable::close_pair(std::string_view a, std::string_view b) {
    if (RelaySession* s = find_pair(a, b)) sessions_.erase(s->id);
}

RelaySession* RelayTable::find(uint64_t id) {
    auto it = sessions_.find(id);
    return it == sessions_.end() ? nullptr : &it->second;
}

const RelaySession* RelayTable::find(uint64_t id) const {
    auto it = sessions_.find(id);
    return it == sessions_.end() ? nullptr : &it->second;
}

void RelayTable::close_agent(std::string_view agent) {
    std::erase_if(sessions_, [&](const auto& kv) { return kv.second.has_member(agent); });
}

std::vector<const RelaySession*> RelayTable::sessions_of(std::string_view agent) const {
    std::vector<const RelaySession*> out;
    for (const auto& [id, s] : sessions_) {
        if (s.has_member(agent)) out.push_back(&s);
    }
    return out;
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
