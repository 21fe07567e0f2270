// The cluster part of a signalling server, sans-IO: presence of this server's agents in Redis
// and rendezvous with agents on other servers of the cluster over Redis publish/subscribe.
// src/redis_link.cc runs the Redis commands it asks for (hiredis on the libuv loop) and feeds
// back replies, published messages and whether Redis is reachable; ServerCore owns it.
//
// Redis layout (docs/architecture.md §5):
//   burrow:agent:<agent>    -> the name of the server the agent is connected to, with a TTL
//                              (kPresenceTtl) renewed every kPresenceRenew while it is; deleted
//                              (only if it still names this server) when the agent leaves
//   burrow:server:<server>  a channel each server subscribes to: rendezvous requests for its
//                           agents and answers to its own requests, relayed packets, and for
//                           pairs split over two servers the candidates told again (Refresh)
//                           and the agents' punch reports (PunchReport), so that each server
//                           refreshes its own agent and both answer `burrow doctor` for the
//                           pair (signal/cluster_message.h)
//
// A connect to an agent that is not on this server:
//
//   requester's server                      Redis                     peer's server
//   connect(...) -- GET burrow:agent:P -->    "s2"
//                -- PUBLISH burrow:server:s2 Rendezvous --------------> on_message: Rendezvous
//                                                                      (ServerCore checks the
//                                                                      ACL, sends PeerInfo to P)
//   on_message: Reply  <---------- PUBLISH burrow:server:s1 Reply ---- reply(...)
//   -> ConnectAnswered (PeerInfo to the requester) or ConnectFailed (ConnectRefused)
//
// Every pending connect ends: answered, refused, kClusterConnectTimeout passed, or Redis gone
// (which fails them all at once with a reason the user can act on). While Redis is down new
// cross-server connects fail at once; agents on this server still meet each other.
#pragma once

#include <map>
#include <set>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "signal/cluster_message.h"
#include "signal/control.h"
#include "tunnel/time.h"

namespace burrow {

// Presence outlives a crashed server by at most this long: after it, its agents read as
// offline and connects to them fail as "peer offline" instead of waiting for a dead server.
inline constexpr Duration kPresenceTtl = std::chrono::seconds(30);
// A third of the TTL: two renewals in a row may be lost before a live agent's key expires.
inline constexpr Duration kPresenceRenew = kPresenceTtl / 3;
// Two Redis round trips plus the other server's work take milliseconds; an answer this late
// means the other server is gone or stuck, and the agent's user should hear so.
inline constexpr Duration kClusterConnectTimeout = std::chrono::seconds(3);

inline constexpr std::string_view kAgentKeyPrefix = "burrow:agent:";
inline constexpr std::string_view kServerChannelPrefix = "burrow:server:";

// Deletes a presence key only while it still names this server: an agent that moved to
// another server keeps the key that server wrote.
inline constexpr std::string_view kDeleteIfOwnedScript =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) "
    "else return 0 end";

struct ClusterConfig {
    std::string name;  // this server's name in the cluster (unique per server)
    Duration presence_ttl = kPresenceTtl;
    Duration presence_renew = kPresenceRenew;
    Duration connect_timeout = kClusterConnectTimeout;
};

// One Redis command, its arguments as Redis takes them. tag != 0: src/ hands the reply back
// to on_reply(tag, ...); 0: the reply does not matter.
struct RedisCommand {
    std::vector<std::string> args;
    uint64_t tag = 0;
    bool operator==(const RedisCommand&) const = default;
};

struct RedisReply {
    enum class Kind { kString, kInteger, kNil, kError, kOther };
    Kind kind = Kind::kNil;
    std::string text;       // kString, kError
    int64_t integer = 0;    // kInteger
};

// A connect request the requester's server forwards: src/'s connection, the request, and the
// PeerInfo (about the requester) the peer is to get.
struct CrossConnect {
    uint64_t conn = 0;
    std::string requester;
    ConnectRequest request;
    PeerInfo to_peer;
};

// What became of a CrossConnect: the PeerInfo for the requester, or why not.
struct ClusterConnectAnswered {
    CrossConnect connect;
    std::string peer_server;  // where the peer is: relayed packets for it go there
    PeerInfo to_requester;
};
struct ClusterConnectFailed {
    CrossConnect connect;
    std::string reason;  // for ConnectRefused and the log
};
// Another server asks this one to join one of its agents with one of ours; ServerCore checks
// and answers with reply().
struct ClusterRendezvousIn {
    ClusterRendezvous message;
};
// A relayed packet from another server for one of our agents; ServerCore checks and delivers.
struct ClusterRelayIn {
    ClusterRelay message;
};
// Another server's agent reported on its punching with one of our agents; ServerCore checks
// and keeps it for `burrow doctor`.
struct ClusterPunchReportIn {
    ClusterPunchReport message;
};
// Another server's agent has new candidates; ServerCore checks and tells our agent again.
struct ClusterRefreshIn {
    ClusterRefresh message;
};
// Where the other agent of a relay session is (locate()): its server.
struct ClusterPeerLocated {
    uint64_t session_id = 0;
    std::string server;
};
// A line for the server's log (Redis up or down, a malformed message).
struct ClusterLog {
    std::string line;
};

using ClusterEvent = std::variant<RedisCommand, ClusterConnectAnswered, ClusterConnectFailed,
                                  ClusterRendezvousIn, ClusterRelayIn, ClusterPunchReportIn,
                                  ClusterRefreshIn, ClusterPeerLocated, ClusterLog>;

struct ClusterStats {
    uint64_t connects_forwarded = 0;  // Rendezvous published to another server
    uint64_t connects_answered = 0;   // ... and answered with PeerInfo
    uint64_t connects_failed = 0;     // refused, timed out, Redis down, peer offline
    uint64_t rendezvous_in = 0;       // Rendezvous from other servers
    uint64_t malformed = 0;           // published payloads that did not decode
    uint64_t relayed_out = 0;         // relayed packets sent on to another server
    uint64_t relayed_in = 0;          // ... received from another server
    uint64_t reports_out = 0;         // PunchReports passed to the peer's server
    uint64_t reports_in = 0;          // ... received from another server
    uint64_t refreshes_out = 0;       // Refresh (new candidates) sent to the peer's server
    uint64_t refreshes_in = 0;        // ... received from another server
};

class ClusterCore {
  public:
    explicit ClusterCore(ClusterConfig config);

    const std::string& name() const { return config_.name; }
    // The channel src/ subscribes to on every (re)connection to Redis.
    std::string channel() const { return server_channel(config_.name); }
    static std::string server_channel(std::string_view server);
    static std::string agent_key(std::string_view agent);
    bool redis_up() const { return up_; }
    const ClusterStats& stats() const { return stats_; }
    size_t pending_count() const { return pending_.size(); }

    // Redis is reachable (subscribed to channel()): writes the presence of every local agent
    // again, since Redis may have restarted empty.
    std::vector<ClusterEvent> on_redis_up(Time now);
    // Redis went away: every pending connect fails.
    std::vector<ClusterEvent> on_redis_down(Time now);

    std::vector<ClusterEvent> agent_online(const std::string& agent, Time now);
    std::vector<ClusterEvent> agent_offline(const std::string& agent);

    // Looks up the peer's server and forwards the rendezvous; fails at once while Redis is down.
    std::vector<ClusterEvent> connect(CrossConnect c, Time now);
    // The answer to a ClusterRendezvousIn.
    std::vector<ClusterEvent> reply(const ClusterRendezvous& to, ClusterRendezvousReply answer);

    // A relayed packet for an agent on `server` (the caller applied the sender's quotas);
    // from_server is filled in.
    RedisCommand relay(std::string_view server, ClusterRelay packet);
    // For a pair split over two servers: an agent's PunchReport, and its new candidates, for
    // the peer's `server` (from_server is filled in). Nothing while Redis is down: a report
    // lost is a doctor answer with one side, a refresh lost leaves the pair as it was.
    std::vector<ClusterEvent> punch_report(std::string_view server, ClusterPunchReport report);
    std::vector<ClusterEvent> refresh(std::string_view server, ClusterRefresh refresh);

    // Looks up the server of `peer`, the other agent of relay session `session_id` (an agent
    // re-attached a session here after moving servers): ClusterPeerLocated when found.
    std::vector<ClusterEvent> locate(uint64_t session_id, const std::string& peer);

    std::vector<ClusterEvent> on_reply(uint64_t tag, const RedisReply& reply, Time now);
    std::vector<ClusterEvent> on_message(ByteView payload, Time now);
    std::vector<ClusterEvent> on_timer(Time now);
    Time next_deadline() const;

  private:
    static RedisCommand publish(std::string_view server, const ClusterMessage& m,
                                uint64_t tag = 0);
    enum class Stage { kLookup, kPublish, kAwaitAnswer };
    struct Pending {
        CrossConnect connect;
        Stage stage = Stage::kLookup;
        std::string peer_server;  // once looked up
        Time deadline{};
    };
    RedisCommand presence_set(const std::string& agent) const;
    void fail(uint64_t id, std::string reason, std::vector<ClusterEvent>& out);

    ClusterConfig config_;
    bool up_ = false;
    std::set<std::string> agents_;  // online on this server
    Time next_renew_ = kNever;
    uint64_t next_id_ = 1;
    std::map<uint64_t, Pending> pending_;  // by request id (also the Redis reply tag)
    // locate() lookups by Redis reply tag: the session they are for. A lost reply (Redis
    // gone) leaves its entry until on_redis_down clears them all.
    std::map<uint64_t, uint64_t> locating_;
    ClusterStats stats_;
};

}  // namespace burrow
