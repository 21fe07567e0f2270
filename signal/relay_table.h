// Relay sessions: which two agents may exchange relayed packets, for which service, under
// which id and token.
//
// A session exists only because a ConnectRequest passed the ACL; open() checks the ACL again
// itself, so no caller can create a relay between agents the ACL keeps apart. The session id
// and the 128-bit token are random: the id names the session in logs and lookups, the token
// (known only to the two agents) authenticates relay datagrams.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "signal/acl.h"
#include "signal/control.h"
#include "tunnel/rng.h"
#include "tunnel/time.h"

namespace burrow {

struct RelaySession {
    uint64_t id = 0;
    RelayToken token{};
    std::string initiator;
    std::string responder;
    std::string service;
    Time last_used{};

    bool has_member(std::string_view agent) const {
        return agent == initiator || agent == responder;
    }
    // The other agent; `agent` must be a member.
    const std::string& peer_of(std::string_view agent) const {
        return agent == initiator ? responder : initiator;
    }
};

class RelayTable {
  public:
    // max_per_agent bounds the sessions an agent is part of: opening one more evicts that
    // agent's least recently used session (sessions are never closed explicitly, so a cap that
    // refused would lock out a long-running agent).
    RelayTable(const Acl& acl, size_t max_per_agent) : acl_(acl), max_per_agent_(max_per_agent) {}

    // nullptr when the ACL does not allow initiator to open service on responder.
    const RelaySession* open(std::string_view initiator, std::string_view responder,
                             std::string_view service, Time now, Rng& rng);
    RelaySession* find(uint64_t id);
    // Ends every session `agent` is part of (it went offline).
    void close_agent(std::string_view agent);
    size_t size() const { return sessions_.size(); }
    size_t count_for(std::string_view agent) const;

  private:
    void evict_oldest_of(std::string_view agent);

    const Acl& acl_;
    size_t max_per_agent_;
    std::map<uint64_t, RelaySession> sessions_;
};

}  // namespace burrow
