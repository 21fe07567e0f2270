#include "signal/cluster_core.h"

#include <algorithm>

namespace burrow {
namespace {

std::string seconds_text(Duration d) {
    return std::to_string(std::chrono::duration_cast<std::chrono::seconds>(d).count());
}

}  // namespace

ClusterCore::ClusterCore(ClusterConfig config) : config_(std::move(config)) {}

std::string ClusterCore::server_channel(std::string_view server) {
    return std::string(kServerChannelPrefix) + std::string(server);
}

std::string ClusterCore::agent_key(std::string_view agent) {
    return std::string(kAgentKeyPrefix) + std::string(agent);
}

// One message on `server`'s channel; tag != 0 asks for PUBLISH's answer (how many got it).
RedisCommand ClusterCore::publish(std::string_view server, const ClusterMessage& m,
                                  uint64_t tag) {
    const Bytes payload = encode_cluster(m);
    return RedisCommand{
        {"PUBLISH", server_channel(server), std::string(payload.begin(), payload.end())}, tag};
}

RedisCommand ClusterCore::presence_set(const std::string& agent) const {
    return RedisCommand{{"SET", agent_key(agent), config_.name, "EX",
                         seconds_text(config_.presence_ttl)},
                        0};
}

std::vector<ClusterEvent> ClusterCore::on_redis_up(Time now) {
    std::vector<ClusterEvent> out;
    if (up_) return out;
    up_ = true;
    for (const auto& agent : agents_) out.push_back(presence_set(agent));
    next_renew_ = now + config_.presence_renew;
    out.push_back(ClusterLog{"cluster: Redis reachable; server \"" + config_.name + "\" on " +
                             channel() + ", presence of " + std::to_string(agents_.size()) +
                             " agent(s) written"});
    return out;
}

std::vector<ClusterEvent> ClusterCore::on_redis_down(Time) {
    std::vector<ClusterEvent> out;
    if (!up_) return out;
    up_ = false;
    next_renew_ = kNever;
    locating_.clear();
    std::vector<uint64_t> ids;
    for (const auto& [id, p] : pending_) ids.push_back(id);
    for (uint64_t id : ids) fail(id, "cluster store (Redis) unavailable", out);
    out.push_back(ClusterLog{"cluster: Redis unreachable; connects to agents on other servers "
                             "fail until it is back (agents on this server still connect)"});
    return out;
}

std::vector<ClusterEvent> ClusterCore::agent_online(const std::string& agent, Time) {
    std::vector<ClusterEvent> out;
    agents_.insert(agent);
    if (up_) out.push_back(presence_set(agent));
    return out;
}

std::vector<ClusterEvent> ClusterCore::agent_offline(const std::string& agent) {
    std::vector<ClusterEvent> out;
    if (agents_.erase(agent) == 0) return out;
    if (up_) {
        out.push_back(RedisCommand{
            {"EVAL", std::string(kDeleteIfOwnedScript), "1", agent_key(agent), config_.name}, 0});
    }
    return out;
}

std::vector<ClusterEvent> ClusterCore::connect(CrossConnect c, Time now) {
    std::vector<ClusterEvent> out;
    if (!up_) {
        stats_.connects_failed++;
        out.push_back(ClusterConnectFailed{
            std::move(c), "peer not on this server and the cluster store (Redis) is unavailable"});
        return out;
    }
    const uint64_t id = next_id_++;
    out.push_back(RedisCommand{{"GET", agent_key(c.request.peer)}, id});
    pending_.emplace(id, Pending{std::move(c), Stage::kLookup, {}, now + config_.connect_timeout});
    return out;
}

std::vector<ClusterEvent> ClusterCore::reply(const ClusterRendezvous& to,
                                             ClusterRendezvousReply answer) {
    std::vector<ClusterEvent> out;
    if (!up_) return out;  // the asking server times out and says so
    answer.request_id = to.request_id;
    if (answer.reason.size() > kMaxControlTextLen) answer.reason.resize(kMaxControlTextLen);
    out.push_back(publish(to.from_server, answer));
    return out;
}

RedisCommand ClusterCore::relay(std::string_view server, ClusterRelay packet) {
    stats_.relayed_out++;
    packet.from_server = config_.name;
    return publish(server, packet);
}

std::vector<ClusterEvent> ClusterCore::punch_report(std::string_view server,
                                                    ClusterPunchReport report) {
    std::vector<ClusterEvent> out;
    if (!up_) return out;
    stats_.reports_out++;
    report.from_server = config_.name;
    out.push_back(publish(server, report));
    return out;
}

std::vector<ClusterEvent> ClusterCore::refresh(std::string_view server, ClusterRefresh refresh) {
    std::vector<ClusterEvent> out;
    if (!up_) return out;
    stats_.refreshes_out++;
    refresh.from_server = config_.name;
    out.push_back(publish(server, refresh));
    return out;
}

std::vector<ClusterEvent> ClusterCore::locate(uint64_t session_id, const std::string& peer) {
    std::vector<ClusterEvent> out;
    if (!up_) return out;
    const uint64_t tag = next_id_++;
    locating_[tag] = session_id;
    out.push_back(RedisCommand{{"GET", agent_key(peer)}, tag});
    return out;
}

std::vector<ClusterEvent> ClusterCore::on_reply(uint64_t tag, const RedisReply& reply, Time) {
    std::vector<ClusterEvent> out;
    if (auto l = locating_.find(tag); l != locating_.end()) {
        const uint64_t session_id = l->second;
        locating_.erase(l);
        if (reply.kind == RedisReply::Kind::kString && reply.text != config_.name &&
            !reply.text.empty() && reply.text.size() <= kMaxServerNameLen) {
            out.push_back(ClusterPeerLocated{session_id, reply.text});
        }
        return out;
    }
    auto it = pending_.find(tag);
    if (it == pending_.end()) return out;  // timed out or failed meanwhile
    Pending& p = it->second;
    if (reply.kind == RedisReply::Kind::kError) {
        fail(tag, "cluster store (Redis) error: " + reply.text, out);
        return out;
    }
    if (p.stage == Stage::kLookup) {
        if (reply.kind != RedisReply::Kind::kString || reply.text == config_.name) {
            // Absent, or naming this server although the agent is not here (it left moments
            // ago and the delete is still on its way).
            fail(tag, "peer offline", out);
            return out;
        }
        if (reply.text.empty() || reply.text.size() > kMaxServerNameLen) {
            fail(tag, "cluster store names no valid server for the peer", out);
            return out;
        }
        p.peer_server = reply.text;
        p.stage = Stage::kPublish;
        ClusterRendezvous m;
        m.request_id = tag;
        m.from_server = config_.name;
        m.requester = p.connect.requester;
        m.peer = p.connect.request.peer;
        m.service = p.connect.request.service;
        m.to_peer = p.connect.to_peer;
        out.push_back(publish(p.peer_server, m, tag));
        stats_.connects_forwarded++;
        return out;
    }
    if (p.stage == Stage::kPublish) {
        // PUBLISH answers with how many subscribers got the message.
        if (reply.kind == RedisReply::Kind::kInteger && reply.integer == 0) {
            fail(tag, "the peer's server \"" + p.peer_server + "\" is not listening", out);
            return out;
        }
        p.stage = Stage::kAwaitAnswer;
    }
    return out;
}

std::vector<ClusterEvent> ClusterCore::on_message(ByteView payload, Time) {
    std::vector<ClusterEvent> out;
    std::optional<ClusterMessage> m = decode_cluster(payload);
    if (!m) {
        stats_.malformed++;
        out.push_back(ClusterLog{"cluster: malformed message of " +
                                 std::to_string(payload.size()) + " bytes on " + channel() +
                                 " ignored"});
        return out;
    }
    if (auto* relay = std::get_if<ClusterRelay>(&*m)) {
        stats_.relayed_in++;
        out.push_back(ClusterRelayIn{std::move(*relay)});
        return out;
    }
    if (auto* report = std::get_if<ClusterPunchReport>(&*m)) {
        stats_.reports_in++;
        out.push_back(ClusterPunchReportIn{std::move(*report)});
        return out;
    }
    if (auto* refresh = std::get_if<ClusterRefresh>(&*m)) {
        stats_.refreshes_in++;
        out.push_back(ClusterRefreshIn{std::move(*refresh)});
        return out;
    }
    if (auto* r = std::get_if<ClusterRendezvous>(&*m)) {
        stats_.rendezvous_in++;
        out.push_back(ClusterRendezvousIn{std::move(*r)});
        return out;
    }
    auto& answer = std::get<ClusterRendezvousReply>(*m);
    auto it = pending_.find(answer.request_id);
    if (it == pending_.end() || it->second.stage == Stage::kLookup) return out;  // late
    if (!answer.ok) {
        fail(answer.request_id, answer.reason, out);
        return out;
    }
    // Only the peer asked for may answer: the request names who it wants.
    if (answer.to_requester.peer != it->second.connect.request.peer) {
        fail(answer.request_id, "the peer's server answered about another agent", out);
        return out;
    }
    stats_.connects_answered++;
    out.push_back(ClusterConnectAnswered{std::move(it->second.connect), it->second.peer_server,
                                         std::move(answer.to_requester)});
    pending_.erase(it);
    return out;
}

std::vector<ClusterEvent> ClusterCore::on_timer(Time now) {
    std::vector<ClusterEvent> out;
    if (up_ && now >= next_renew_) {
        for (const auto& agent : agents_) out.push_back(presence_set(agent));
        next_renew_ = now + config_.presence_renew;
    }
    std::vector<uint64_t> expired;
    for (const auto& [id, p] : pending_) {
        if (now >= p.deadline) expired.push_back(id);
    }
    for (uint64_t id : expired) {
        const Pending& p = pending_.at(id);
        std::string reason =
            p.stage == Stage::kLookup
                ? "no answer from the cluster store (Redis) within "
                : "no answer from the peer's server \"" + p.peer_server + "\" within ";
        fail(id, reason + seconds_text(config_.connect_timeout) + " s", out);
    }
    return out;
}

Time ClusterCore::next_deadline() const {
    Time t = up_ ? next_renew_ : kNever;
    for (const auto& [id, p] : pending_) t = std::min(t, p.deadline);
    return t;
}

void ClusterCore::fail(uint64_t id, std::string reason, std::vector<ClusterEvent>& out) {
    auto it = pending_.find(id);
    if (it == pending_.end()) return;
    stats_.connects_failed++;
    out.push_back(ClusterConnectFailed{std::move(it->second.connect), std::move(reason)});
    pending_.erase(it);
}

}  // namespace burrow
