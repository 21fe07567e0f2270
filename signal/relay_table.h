// Relay sessions: which two agents may exchange relayed packets, under which id and token. One
// session per pair of agents (docs/architecture.md §4): every service between them rides the same one.
//
// A session exists only because a ConnectRequest passed the ACL; open() checks the ACL again
// itself, so no caller can create a relay between agents the ACL keeps apart. The session id
// is random: it names the session (and the agents' link) in logs and lookups. The 128-bit token
// (known only to the two agents) authenticates relay datagrams; it is a MAC of the id and the
// pair under a key derived from the server's identity key (signal/relay_token.h), so after a
// restart attach() can re-create a session an agent still holds without any kept state.
//
// Which session a request gets, by the id the requester names (its link with the peer, or 0):
//
//   the pair's session, and the id names it           that session (a service is added)
//   the pair's session, id 0, the peer opened it       that session: both sides asked at once
//     less than kPairReuseWindow ago
//   the pair's session, id 0, otherwise                a new session replaces it: the requester
//                                                      has no link, so the peer's is stale
//   the pair's session, another id                     that session: the peer has moved on
//   no session for the pair                            a new one, under the named id when it is
//                                                      free (the links survive a server restart)
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "signal/acl.h"
#include "signal/control.h"
#include "signal/relay_token.h"
#include "tunnel/rng.h"
#include "tunnel/time.h"

namespace burrow {

// Both agents' first requests for a pair, each made before the other's PeerInfo arrived, land
// within a few round trips to the server of each other.
inline constexpr Duration kPairReuseWindow = std::chrono::seconds(10);

struct RelaySession {
    uint64_t id = 0;
    RelayToken token{};
    std::string initiator;  // the agent whose request created it: the Noise initiator
    std::string responder;
    // (opener, service) approved on it so far: who may open what, so that the server can tell
    // both agents again when one's candidates change without granting anything new.
    std::set<std::pair<std::string, std::string>> opened;
    // The services approved on it so far, either way.
    std::set<std::string> services() const {
        std::set<std::string> out;
        for (const auto& [opener, service] : opened) out.insert(service);
        return out;
    }
    Time created{};
    Time last_used{};
    // The server of the cluster the other agent is on, when it is not on this one: relayed
    // packets for it go there (signal/cluster_core.h). Empty for a pair of local agents.
    std::string remote_server;

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
    RelayTable(const Acl& acl, size_t max_per_agent, RelayTokenKey key = {})
        : acl_(acl), max_per_agent_(max_per_agent), key_(key) {}

    // The pair's session for requester opening service on peer (see the table above); nullptr
    // when the ACL does not allow it.
    const RelaySession* open(std::string_view requester, std::string_view peer,
                             std::string_view service, uint64_t requested_id, Time now, Rng& rng);
    RelaySession* find(uint64_t id);
    const RelaySession* find(uint64_t id) const;

    enum class AttachResult {
        kAttached,     // the session exists (again) under its id and token
        kNotAllowed,   // no ACL rule joins the pair any more, or an unknown agent
        kBadToken,     // not a token this server issued for this id and pair
        kSuperseded,   // the pair has a newer session under another id; the id is taken by
                       // another pair
    };
    // Re-creates (or confirms) session `id` between requester and peer after a reconnect or a
    // server restart. requester_role: requester's Noise role, which the session keeps.
    AttachResult attach(std::string_view requester, std::string_view peer, uint64_t id,
                        const RelayToken& token, SessionRole requester_role, Time now);
    // Ends the pair's session, if any: another server of the cluster opened a newer one for
    // them (the requester's server decides, as open() does here for a local pair).
    void close_pair(std::string_view a, std::string_view b);
    // Ends every session `agent` is part of (it went offline).
    void close_agent(std::string_view agent);
    size_t size() const { return sessions_.size(); }
    size_t count_for(std::string_view agent) const;
    // The sessions `agent` is part of.
    std::vector<const RelaySession*> sessions_of(std::string_view agent) const;

  private:
    RelaySession* find_pair(std::string_view a, std::string_view b);
    RelaySession& create(std::string_view requester, std::string_view peer, uint64_t wanted_id,
                         Time now, Rng& rng);
    void evict_oldest_of(std::string_view agent);

    RelayToken token_for(uint64_t id, std::string_view a, std::string_view b) const;

    const Acl& acl_;
    size_t max_per_agent_;
    RelayTokenKey key_;
    std::map<uint64_t, RelaySession> sessions_;
};

}  // namespace burrow
