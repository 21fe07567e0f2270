#include "signal/server_core.h"

#include <sodium.h>

#include <algorithm>

#include "signal/auth.h"

namespace burrow {
namespace {

// RFC 6298 §2.3: SRTT <- 7/8 SRTT + 1/8 R'.
constexpr int kRttSmoothing = 8;

std::string key_base64(const PublicKey& key) {
    std::string b64(sodium_base64_ENCODED_LEN(key.size(), sodium_base64_VARIANT_ORIGINAL), '\0');
    sodium_bin2base64(b64.data(), b64.size(), key.data(), key.size(),
                      sodium_base64_VARIANT_ORIGINAL);
    b64.resize(b64.find('\0'));
    return b64;
}

}  // namespace

const char* to_string(Refusal r) {
    switch (r) {
        case Refusal::kAuthFailed:
            return "auth_failed";
        case Refusal::kUnknownKey:
            return "unknown_key";
        case Refusal::kServerFull:
            return "server_full";
        case Refusal::kAuthTimeout:
            return "auth_timeout";
        case Refusal::kIdleTimeout:
            return "idle_timeout";
        case Refusal::kProtocol:
            return "protocol";
        case Refusal::kConnectNotAllowed:
            return "connect_not_allowed";
        case Refusal::kConnectPeerOffline:
            return "connect_peer_offline";
        case Refusal::kConnectInvalid:
            return "connect_invalid";
        case Refusal::kAttachRefused:
            return "attach_refused";
        case Refusal::kConnectClusterFailed:
            return "connect_cluster_failed";
        case Refusal::kCount:
            break;
    }
    return "?";
}

ServerCore::ServerCore(ServerCoreConfig config, Acl acl, Rng& rng)
    : config_(std::move(config)),
      static_pub_(public_key(config_.static_key)),
      rng_(rng),
      acl_(std::move(acl)),
      registry_(acl_, config_.limits.relay),
      relays_(acl_, config_.limits.max_sessions_per_agent, RelayTokenKey(config_.static_key)),
      forwarder_(registry_, relays_, drops_),
      udp_(registry_, forwarder_, drops_, config_.software, config_.stun_standard_clients) {
    // The bound holds whatever the configuration says.
    config_.limits.pre_auth_deadline = std::min(config_.limits.pre_auth_deadline, kPreAuthDeadline);
    std::array<uint8_t, 16> lookup_key;
    rng_.fill(lookup_key);
    registry_.set_lookup_key(lookup_key);
    if (config_.cluster) {
        cluster_.emplace(*config_.cluster);
        forwarder_.set_cluster(&*cluster_);
    }
}

size_t ServerCore::pending_count() const {
    return static_cast<size_t>(std::count_if(
        conns_.begin(), conns_.end(), [](const auto& kv) { return !kv.second.authenticated(); }));
}

std::optional<Duration> ServerCore::rtt(std::string_view agent) const {
    const AgentRecord* a = registry_.find(agent);
    if (!a || !a->conn) return std::nullopt;
    auto it = conns_.find(*a->conn);
    return it == conns_.end() ? std::nullopt : it->second.srtt;
}

std::string ServerCore::who(const Connection& c) const {
    return c.authenticated() ? "agent \"" + c.agent + "\"" : "connection " + std::to_string(c.id);
}

// --- connections --------------------------------------------------------------------------------

std::vector<ServerAction> ServerCore::on_connection_open(ConnId conn, Time now,
                                                        std::optional<SocketAddress> observed) {
    Actions out;
    if (pending_count() >= config_.limits.max_pending) {
        out.push_back(SendControl{
            conn, ControlErrorMessage{static_cast<uint16_t>(ControlErrorCode::kTooManyPending),
                                      "server busy, try again later"}});
        out.push_back(CloseConnection{
            conn, "connection " + std::to_string(conn) + ": too many unauthenticated connections"});
        return out;
    }
    forget(conn, now, out);  // a reused id would be src/'s bug; never let two states share it
    Connection c;
    c.id = conn;
    c.observed = observed;
    rng_.fill(c.nonce);
    c.deadline = now + config_.limits.pre_auth_deadline;
    c.last_input = now;
    out.push_back(SendControl{conn, ServerHello{static_pub_, c.nonce}});
    auto [it, inserted] = conns_.emplace(conn, std::move(c));
    reschedule(it->second);
    return out;
}

std::vector<ServerAction> ServerCore::on_control_bytes(ConnId conn, ByteView bytes, Time now) {
    Actions out;
    auto it = conns_.find(conn);
    if (it == conns_.end()) return out;
    it->second.decoder.feed(bytes);
    // Each message may close this connection (or, by replacement, another), so look it up
    // again every time round.
    for (;;) {
        it = conns_.find(conn);
        if (it == conns_.end()) break;
        Connection& c = it->second;
        std::optional<ControlMessage> m = c.decoder.next();
        if (!m) {
            if (std::optional<ControlDecodeError> e = c.decoder.error()) {
                std::string reason;
                if (*e == ControlDecodeError::kOversized) {
                    reason = c.authenticated() ? "oversize frame" : "oversize frame before auth";
                } else {
                    reason = std::string(c.authenticated() ? "malformed control message"
                                                           : "garbage before auth") +
                             " (" + to_string(*e) + ")";
                }
                stats_.refuse(Refusal::kProtocol);
                reject(conn, ControlErrorCode::kProtocol, reason, who(c) + ": " + reason, now, out);
            }
            break;
        }
        c.last_input = now;
        handle(c, std::move(*m), now, out);
    }
    it = conns_.find(conn);
    if (it != conns_.end()) reschedule(it->second);
    return out;
}

std::vector<ServerAction> ServerCore::on_connection_closed(ConnId conn, Time now) {
    Actions out;
    auto it = conns_.find(conn);
    if (it == conns_.end()) return out;
    if (it->second.authenticated()) {
        out.push_back(LogEvent{who(it->second) + " offline (connection closed)"});
    }
    forget(conn, now, out);
    return out;
}

Time ServerCore::due(const Connection& c) const {
    if (!c.authenticated()) return c.deadline;
    return std::min(c.next_ping, c.last_input + config_.limits.idle_timeout);
}

void ServerCore::reschedule(Connection& c) {
    const Time t = due(c);
    if (t == c.scheduled) return;
    if (c.scheduled != kNever) timers_.erase({c.scheduled, c.id});
    c.scheduled = t;
    if (t != kNever) timers_.insert({t, c.id});
}

std::vector<ServerAction> ServerCore::on_timer(Time now) {
    Actions out;
    std::vector<ConnId> timed_out;
    std::vector<ConnId> idle;
    std::vector<ConnId> fired;
    for (auto t = timers_.begin(); t != timers_.end() && t->first <= now; ++t) {
        fired.push_back(t->second);
    }
    for (ConnId id : fired) {
        auto it = conns_.find(id);
        if (it == conns_.end()) continue;
        Connection& c = it->second;
        if (!c.authenticated()) {
            if (now >= c.deadline) timed_out.push_back(id);
        } else if (now >= c.last_input + config_.limits.idle_timeout) {
            idle.push_back(id);
        } else if (now >= c.next_ping) {
            send_ping(c, now, out);
        }
        reschedule(c);
    }
    for (ConnId id : timed_out) {
        stats_.refuse(Refusal::kAuthTimeout);
        reject(id, ControlErrorCode::kTimeout, "authentication timeout",
               "connection " + std::to_string(id) + ": authentication timeout", now, out);
    }
    for (ConnId id : idle) {
        const std::string reason = who(conns_.at(id)) + ": idle timeout (nothing received in " +
                                   std::to_string(std::chrono::duration_cast<std::chrono::seconds>(
                                                      config_.limits.idle_timeout)
                                                      .count()) +
                                   " s)";
        stats_.refuse(Refusal::kIdleTimeout);
        reject(id, ControlErrorCode::kTimeout, "idle timeout", reason, now, out);
    }
    if (cluster_) apply(cluster_->on_timer(now), now, out);
    return out;
}

Time ServerCore::next_deadline() const {
    Time t = timers_.empty() ? kNever : timers_.begin()->first;
    if (cluster_) t = std::min(t, cluster_->next_deadline());
    return t;
}

std::optional<ServerAction> ServerCore::on_udp(UdpPort port, const SocketAddress& from,
                                               ByteView datagram, Time now) {
    return udp_.on_udp(port, from, datagram, now);
}

void ServerCore::reject(ConnId id, std::optional<ControlErrorCode> code, std::string client_message,
                        std::string log_reason, Time now, Actions& out) {
    if (code) {
        if (client_message.size() > kMaxControlTextLen) client_message.resize(kMaxControlTextLen);
        out.push_back(SendControl{
            id, ControlErrorMessage{static_cast<uint16_t>(*code), std::move(client_message)}});
    }
    out.push_back(CloseConnection{id, std::move(log_reason)});
    forget(id, now, out);
}

void ServerCore::forget(ConnId id, Time now, Actions& out) {
    auto it = conns_.find(id);
    if (it == conns_.end()) return;
    if (it->second.authenticated()) {
        AgentRecord* a = registry_.find(it->second.agent);
        if (a && a->conn == id) {
            registry_.set_offline(*a, now);
            relays_.close_agent(a->name);
            if (cluster_) apply(cluster_->agent_offline(a->name), now, out);
        }
    }
    if (it->second.scheduled != kNever) timers_.erase({it->second.scheduled, id});
    conns_.erase(it);
}

// --- messages -----------------------------------------------------------------------------------

void ServerCore::handle(Connection& c, ControlMessage&& m, Time now, Actions& out) {
    if (!c.authenticated()) {
        if (auto* auth = std::get_if<Auth>(&m)) {
            on_auth(c, *auth, now, out);
        } else {
            const std::string what = std::string("expected Auth, got ") + message_name(m);
            stats_.refuse(Refusal::kProtocol);
            reject(c.id, ControlErrorCode::kProtocol, what,
                   who(c) + ": garbage before auth (" + what + ")", now, out);
        }
        return;
    }

    AgentRecord* self = registry_.find(c.agent);
    if (self) self->last_seen = now;
    if (auto* req = std::get_if<ConnectRequest>(&m)) {
        on_connect_request(c, *req, now, out);
    } else if (auto* attach = std::get_if<RelayAttach>(&m)) {
        on_relay_attach(c, *attach, now, out);
    } else if (auto* reg = std::get_if<Register>(&m)) {
        if (self) {
            const bool changed = self->candidates != reg->candidates || self->nat != reg->nat ||
                                 self->allocation != reg->allocation;
            self->candidates = std::move(reg->candidates);
            self->nat = reg->nat;
            self->allocation = reg->allocation;
            if (changed) refresh_sessions_of(*self, now, out);
        }
    } else if (auto* data = std::get_if<RelayData>(&m)) {
        if (!self) return;
        if (auto action = forwarder_.forward(*self, data->session_id, nullptr, data->payload,
                                             RelayVia::kTls, now)) {
            out.push_back(std::move(*action));
        }
    } else if (auto* report = std::get_if<PunchReport>(&m)) {
        on_punch_report(c, std::move(*report), now, out);
    } else if (auto* doctor = std::get_if<DoctorRequest>(&m)) {
        on_doctor_request(c, *doctor, now, out);
    } else if (auto* ping = std::get_if<Ping>(&m)) {
        out.push_back(SendControl{c.id, Pong{ping->value}});
    } else if (auto* pong = std::get_if<Pong>(&m)) {
        on_pong(c, *pong, now);
    } else if (auto* err = std::get_if<ControlErrorMessage>(&m)) {
        reject(c.id, std::nullopt, {},
               who(c) + " reported error " + std::to_string(err->code) + ": " + err->message, now,
               out);
    } else {
        const std::string what = std::string("unexpected ") + message_name(m) + " from an agent";
        stats_.refuse(Refusal::kProtocol);
        reject(c.id, ControlErrorCode::kProtocol, what, who(c) + ": " + what, now, out);
    }
}

void ServerCore::on_auth(Connection& c, const Auth& auth, Time now, Actions& out) {
    // The proof first: only the holder of a key's private half learns whether the server
    // knows that key, so the list of agents cannot be probed.
    if (!verify_auth_proof(config_.static_key, auth.agent_pub, c.nonce, auth.proof)) {
        const bool replayed = std::find(recent_proofs_.begin(), recent_proofs_.end(), auth.proof) !=
                              recent_proofs_.end();
        stats_.refuse(Refusal::kAuthFailed);
        reject(c.id, ControlErrorCode::kAuthFailed, "authentication failed",
               who(c) + (replayed ? ": replayed auth (a proof already used on another connection)"
                                  : ": wrong proof for key " + key_base64(auth.agent_pub)),
               now, out);
        return;
    }
    const AclAgent* known = acl_.find_by_key(auth.agent_pub);
    AgentRecord* record = known ? registry_.find(known->name) : nullptr;
    if (!record) {
        stats_.refuse(Refusal::kUnknownKey);
        reject(c.id, ControlErrorCode::kUnknownKey,
               "unknown agent key: add it to the server's configuration",
               who(c) + ": unknown key " + key_base64(auth.agent_pub) +
                   " (add an [[agent]] with this key to server.toml to admit it)",
               now, out);
        return;
    }
    if (!record->online() && registry_.online_count() >= config_.limits.max_agents) {
        stats_.refuse(Refusal::kServerFull);
        reject(c.id, ControlErrorCode::kServerFull, "server full",
               who(c) + ": agent \"" + record->name + "\" refused: maximum of " +
                   std::to_string(config_.limits.max_agents) + " agents online reached",
               now, out);
        return;
    }

    recent_proofs_.push_back(auth.proof);
    if (recent_proofs_.size() > kRecentProofs) recent_proofs_.pop_front();

    if (record->conn) {
        const ConnId old = *record->conn;
        // Keep the agent online and its relay sessions: only the connection changes.
        auto old_it = conns_.find(old);
        if (old_it != conns_.end()) old_it->second.agent.clear();
        reject(old, ControlErrorCode::kReplaced, "replaced by a new connection",
               "agent \"" + record->name + "\": connection " + std::to_string(old) +
                   " replaced by connection " + std::to_string(c.id),
               now, out);
    }

    UdpToken token{};
    rng_.fill(token);
    const bool was_online = record->online();
    registry_.set_online(*record, c.id, token, now);
    record->tcp_address = c.observed;
    stats_.registrations++;
    if (cluster_ && !was_online) apply(cluster_->agent_online(record->name, now), now, out);
    c.agent = record->name;
    c.decoder.set_max_frame(kMaxControlFrame);
    c.next_ping = now;

    AuthOk ok;
    ok.name = record->name;
    ok.udp_token = token;
    ok.stun_ports = config_.stun_ports;
    ok.relay_udp_port = config_.relay_udp_port;
    out.push_back(SendControl{c.id, std::move(ok)});
    out.push_back(LogEvent{who(c) + " online on connection " + std::to_string(c.id) +
                           (auth.software.empty() ? "" : " (" + auth.software + ")")});
    send_ping(c, now, out);  // an RTT sample before the first rendezvous
}

void ServerCore::on_connect_request(Connection& c, const ConnectRequest& req, Time now,
                                    Actions& out) {
    auto refuse = [&](std::string reason, Refusal why) {
        stats_.refuse(why);
        out.push_back(LogEvent{who(c) + ": connect to " + req.peer + "/" + req.service +
                               " refused: " + reason});
        out.push_back(SendControl{c.id, ConnectRefused{req.peer, req.service, std::move(reason)}});
    };
    if (req.service.empty()) return refuse("empty service name", Refusal::kConnectInvalid);
    if (req.peer == c.agent) return refuse("cannot connect to yourself", Refusal::kConnectInvalid);
    // The ACL first, so an agent learns nothing about peers it may not reach.
    if (!acl_.allowed(c.agent, req.peer, req.service)) {
        return refuse("not allowed by the server", Refusal::kConnectNotAllowed);
    }
    AgentRecord* self = registry_.find(c.agent);
    AgentRecord* peer = registry_.find(req.peer);
    if (self && cluster_ && (!peer || !peer->online())) {
        return connect_through_cluster(c, req, now, out);
    }
    if (!self || !peer || !peer->online()) {
        return refuse("peer offline", Refusal::kConnectPeerOffline);
    }
    const RelaySession* s = relays_.open(c.agent, req.peer, req.service, req.session_id, now, rng_);
    if (!s) return refuse("not allowed by the server", Refusal::kConnectNotAllowed);

    send_rendezvous(*s, req.service, *self, *peer, now, out);
    stats_.rendezvous++;
    out.push_back(LogEvent{who(c) + ": connect to " + req.peer + "/" + req.service +
                           " as relay session " + std::to_string(s->id)});
}

void ServerCore::on_punch_report(Connection& c, PunchReport report, Time now, Actions& out) {
    // A pair split over two servers of a cluster: the peer's server keeps the report too, so
    // that the peer's `burrow doctor` sees this side as well.
    const RelaySession* split = cluster_ ? remote_session(c.agent, report.peer) : nullptr;
    std::optional<ClusterPunchReport> across;
    if (split) across = ClusterPunchReport{{}, c.agent, report};
    // Only about a pair the server joined (and so the ACL allowed); anything else is kept
    // nowhere, so an agent cannot fill the book with pairs of its choosing.
    if (!doctor_.on_report(c.agent, std::move(report), now)) {
        stats_.punch_reports_dropped++;
        return;
    }
    stats_.punch_reports++;
    if (across) apply(cluster_->punch_report(split->remote_server, std::move(*across)), now, out);
}

const RelaySession* ServerCore::remote_session(std::string_view agent,
                                               std::string_view peer) const {
    for (const RelaySession* s : relays_.sessions_of(agent)) {
        if (s->peer_of(agent) == peer && !s->remote_server.empty()) return s;
    }
    return nullptr;
}

// A service opened on session s (by either agent) that the ACL still allows in the same
// direction: what a refresh may tell the pair again. nullptr when there is none.
const std::pair<std::string, std::string>* ServerCore::approved_opening(
    const RelaySession& s, const std::string& agent) const {
    const std::string& peer = s.peer_of(agent);
    for (const auto& o : s.opened) {
        if (acl_.allowed(o.first, o.first == agent ? peer : agent, o.second)) return &o;
    }
    return nullptr;
}

// A peer that punched with our old candidates may have given up on direct (a port mapping that
// came after the session started is the common case: UPnP discovery takes seconds; a port
// allocation measured after it, which prediction needs on both sides, is another), and a
// session lives as long as it is used. So both agents get the rendezvous again, under the same
// session id (their link stays; its path manager adds the new candidates and probes them) and
// for a service already approved in the same direction (nothing new is granted; the ACL is
// asked again in case it changed). For a pair split over two servers of a cluster the peer's
// server tells the peer and sends back what this server tells `self` (ClusterRefresh).
void ServerCore::refresh_sessions_of(const AgentRecord& self, Time now, Actions& out) {
    for (const RelaySession* s : relays_.sessions_of(self.name)) {
        if (!s->remote_server.empty()) {
            if (cluster_) refresh_across(*s, self, now, out);
            continue;
        }
        const AgentRecord* peer = registry_.find(s->peer_of(self.name));
        if (!peer || !peer->online() || !peer->conn) continue;
        const auto* approved = approved_opening(*s, self.name);
        if (!approved) continue;
        const auto& [opener, service] = *approved;
        if (opener == self.name) {
            send_rendezvous(*s, service, self, *peer, now, out);
        } else {
            send_rendezvous(*s, service, *peer, self, now, out);
        }
        stats_.rendezvous_refreshed++;
        out.push_back(LogEvent{self.name + ": new candidates; " + peer->name +
                               " told again for relay session " + std::to_string(s->id)});
    }
}

void ServerCore::refresh_across(const RelaySession& s, const AgentRecord& self, Time now,
                                Actions& out) {
    const std::string& peer = s.peer_of(self.name);
    const auto* approved = approved_opening(s, self.name);
    if (!approved) return;
    const auto& [opener, service] = *approved;
    ClusterRefresh r;
    r.agent = self.name;
    r.peer = peer;
    r.answer = true;  // and `self` gets the peer's PeerInfo back from the peer's server
    r.to_peer = peer_info(s, service, self, peer, opener == peer);
    apply(cluster_->refresh(s.remote_server, std::move(r)), now, out);
    stats_.rendezvous_refreshed++;
    out.push_back(LogEvent{self.name + ": new candidates; " + peer + " on server \"" +
                           s.remote_server + "\" told again for relay session " +
                           std::to_string(s.id)});
}

void ServerCore::send_rendezvous(const RelaySession& s, std::string_view service,
                                 const AgentRecord& opener, const AgentRecord& other, Time now,
                                 Actions& out) {
    PeerInfo to_opener = peer_info(s, service, other, opener.name, true);
    PeerInfo to_other = peer_info(s, service, opener, other.name, false);
    doctor_.on_rendezvous(opener.name, to_other.nat, to_other.candidates, other.name,
                          to_opener.nat, to_opener.candidates, now);
    out.push_back(SendControl{*opener.conn, std::move(to_opener)});
    out.push_back(SendControl{*other.conn, std::move(to_other)});
}

void ServerCore::on_relay_attach(Connection& c, const RelayAttach& req, Time now, Actions& out) {
    const std::string what = who(c) + ": relay session " + std::to_string(req.session_id) +
                             " with " + req.peer;
    std::string reason;
    switch (relays_.attach(c.agent, req.peer, req.session_id, req.relay_token, req.role, now)) {
        case RelayTable::AttachResult::kAttached: {
            out.push_back(LogEvent{what + " attached"});
            // An agent that moved here from another server of the cluster: where is its peer?
            const AgentRecord* peer = registry_.find(req.peer);
            RelaySession* s = relays_.find(req.session_id);
            if (cluster_ && s && s->remote_server.empty() && (!peer || !peer->online())) {
                apply(cluster_->locate(req.session_id, req.peer), now, out);
            }
            return;
        }
        case RelayTable::AttachResult::kNotAllowed:
            reason = "not allowed by the server";
            break;
        case RelayTable::AttachResult::kBadToken:
            reason = "token not issued by this server (its identity key changed?)";
            break;
        case RelayTable::AttachResult::kSuperseded:
            reason = "replaced by a newer session";
            break;
    }
    stats_.refuse(Refusal::kAttachRefused);
    out.push_back(LogEvent{what + " not attached: " + reason});
    out.push_back(SendControl{c.id, RelayDetached{req.session_id, reason}});
}

void ServerCore::on_doctor_request(Connection& c, const DoctorRequest& req, Time now,
                                   Actions& out) {
    stats_.doctor_requests++;
    DoctorReply reply;
    reply.request_id = req.request_id;
    reply.peer = req.peer;
    // The ACL first, as for a connect: an unknown agent and one the asker may not reach get the
    // same answer, so nothing is learned about agents beyond the asker's reach.
    if (req.peer == c.agent || !acl_.pair_allowed(c.agent, req.peer)) {
        reply.status = DoctorStatus::kNotAllowed;
    } else if (auto joined = doctor_.reply(req.request_id, c.agent, req.peer, now)) {
        reply = std::move(*joined);
        const AgentRecord* self = registry_.find(c.agent);
        const AgentRecord* peer = registry_.find(req.peer);
        reply.self.online = self && self->online();
        reply.self.udp_heard = reply.self.online && self->udp_address.has_value();
        reply.peer_side.online = peer && peer->online();
        reply.peer_side.udp_heard = reply.peer_side.online && peer->udp_address.has_value();
        if (!reply.peer_side.online && cluster_ && remote_session(c.agent, req.peer)) {
            // On another server of the cluster, with the pair's relay session live as far as
            // this server knows. Whether that server hears the peer over UDP is not known here:
            // the peer's PunchReport (udp_to_server) says it; without one, nothing is claimed.
            reply.peer_side.online = true;
            reply.peer_side.udp_heard = true;
        }
    } else {
        reply.status = DoctorStatus::kNoRendezvous;
    }
    out.push_back(SendControl{c.id, std::move(reply)});
}

PeerInfo ServerCore::peer_info(const RelaySession& s, std::string_view service,
                               const AgentRecord& about, std::string_view to, bool opener) const {
    PeerInfo p;
    p.session_id = s.id;
    p.peer = about.name;
    p.peer_pub = about.key;
    p.candidates = about.candidates;
    // The address the relay port saw is a server-reflexive candidate the agent may not know.
    if (about.udp_address && p.candidates.size() < kMaxCandidates &&
        std::none_of(p.candidates.begin(), p.candidates.end(), [&](const Candidate& c) {
            return !is_tcp(c.kind) && c.address == *about.udp_address;
        })) {
        p.candidates.push_back(Candidate{CandidateKind::kServerReflexive, *about.udp_address});
    }
    // An agent that listens where its control connection leaves from (it offers a TCP host
    // candidate) is reachable at what the server sees that connection come from, when its NAT
    // lets the peer's SYN in (TCP hole punching, issue 15).
    const auto tcp_host = [](const Candidate& c) { return c.kind == CandidateKind::kTcpHost; };
    if (about.tcp_address && p.candidates.size() < kMaxCandidates &&
        std::any_of(p.candidates.begin(), p.candidates.end(), tcp_host) &&
        std::none_of(p.candidates.begin(), p.candidates.end(), [&](const Candidate& c) {
            return is_tcp(c.kind) && c.address == *about.tcp_address;
        })) {
        p.candidates.push_back(Candidate{CandidateKind::kTcpServerReflexive, *about.tcp_address});
    }
    p.nat = about.nat;
    p.allocation = about.allocation;
    p.relay_token = s.token;
    p.start_in_ms = start_in_ms(to);
    p.role = s.initiator == to ? SessionRole::kInitiator : SessionRole::kResponder;
    p.service = service;
    p.opener = opener;
    return p;
}

uint32_t ServerCore::start_in_ms(std::string_view to) const {
    // Both agents should start together: subtract each one's one-way delay (half its RTT).
    Duration lead = kRendezvousLead;
    if (std::optional<Duration> r = rtt(to)) lead -= *r / 2;
    return static_cast<uint32_t>(
        std::max<int64_t>(0, std::chrono::duration_cast<std::chrono::milliseconds>(lead).count()));
}

void ServerCore::send_ping(Connection& c, Time now, Actions& out) {
    c.ping_value++;
    c.ping_sent = now;
    c.next_ping = now + config_.limits.ping_interval;
    // A built SendControl, not its fields: clang 14 (the fuzz build, tests/fuzz/) lacks C++20
    // parenthesized aggregate initialisation. in_place_type keeps GCC 12 from a false
    // -Wmaybe-uninitialized about the variant's other alternatives.
    out.emplace_back(std::in_place_type<SendControl>, SendControl{c.id, Ping{c.ping_value}});
}

void ServerCore::on_pong(Connection& c, const Pong& pong, Time now) {
    if (!c.ping_sent || pong.value != c.ping_value) return;  // stale or unsolicited
    const Duration sample = now - *c.ping_sent;
    c.ping_sent.reset();
    c.srtt = c.srtt ? (*c.srtt * (kRttSmoothing - 1) + sample) / kRttSmoothing : sample;
}

// --- cluster ------------------------------------------------------------------------------------

std::vector<ServerAction> ServerCore::on_redis_up(Time now) {
    Actions out;
    if (cluster_) apply(cluster_->on_redis_up(now), now, out);
    return out;
}

std::vector<ServerAction> ServerCore::on_redis_down(Time now) {
    Actions out;
    if (cluster_) apply(cluster_->on_redis_down(now), now, out);
    return out;
}

std::vector<ServerAction> ServerCore::on_redis_reply(uint64_t tag, const RedisReply& reply,
                                                     Time now) {
    Actions out;
    if (cluster_) apply(cluster_->on_reply(tag, reply, now), now, out);
    return out;
}

std::vector<ServerAction> ServerCore::on_cluster_message(ByteView payload, Time now) {
    Actions out;
    if (cluster_) apply(cluster_->on_message(payload, now), now, out);
    return out;
}

void ServerCore::connect_through_cluster(Connection& c, const ConnectRequest& req, Time now,
                                         Actions& out) {
    AgentRecord* self = registry_.find(c.agent);
    // The requester's server opens the pair's relay session; the peer's server attaches the
    // same id and token (both derive them from the identity key the cluster shares).
    const RelaySession* s = relays_.open(c.agent, req.peer, req.service, req.session_id, now, rng_);
    if (!self || !s) {
        stats_.refuse(Refusal::kConnectNotAllowed);
        out.push_back(SendControl{c.id, ConnectRefused{req.peer, req.service,
                                                       "not allowed by the server"}});
        return;
    }
    CrossConnect cross{c.id, c.agent, req, peer_info(*s, req.service, *self, req.peer, false)};
    out.push_back(LogEvent{who(c) + ": connect to " + req.peer + "/" + req.service +
                           ": peer not on this server, asking the cluster"});
    apply(cluster_->connect(std::move(cross), now), now, out);
}

void ServerCore::on_cluster_rendezvous(const ClusterRendezvous& m, Time now, Actions& out) {
    const std::string what = "cluster: \"" + m.requester + "\" on server \"" + m.from_server +
                             "\": connect to " + m.peer + "/" + m.service;
    ClusterRendezvousReply answer;
    auto refuse = [&](std::string reason) {
        out.push_back(LogEvent{what + " refused: " + reason});
        answer.ok = false;
        answer.reason = std::move(reason);
        apply(cluster_->reply(m, std::move(answer)), now, out);
    };
    // The same ACL as for a local connect: every server of a cluster loads one server.toml.
    if (!acl_.allowed(m.requester, m.peer, m.service)) return refuse("not allowed by the server");
    AgentRecord* peer = registry_.find(m.peer);
    const AclAgent* requester = acl_.find_by_name(m.requester);
    if (!peer || !peer->online() || !requester) return refuse("peer offline");
    if (m.to_peer.peer != m.requester || m.to_peer.peer_pub != requester->key ||
        m.to_peer.service != m.service) {
        return refuse("rendezvous about another agent than its requester");
    }
    // The requester's server opened this session (its open() decided whether the pair's old
    // one lives on, as it does for a local pair); an older session of the pair here gives way.
    auto attach = [&] {
        return relays_.attach(m.peer, m.requester, m.to_peer.session_id, m.to_peer.relay_token,
                              m.to_peer.role, now);
    };
    RelayTable::AttachResult attached = attach();
    if (attached == RelayTable::AttachResult::kSuperseded) {
        relays_.close_pair(m.peer, m.requester);
        attached = attach();
    }
    switch (attached) {
        case RelayTable::AttachResult::kAttached:
            break;
        case RelayTable::AttachResult::kBadToken:
            return refuse(
                "relay token not accepted: the servers of a cluster must share one identity_key");
        case RelayTable::AttachResult::kNotAllowed:
            return refuse("not allowed by the server");
        case RelayTable::AttachResult::kSuperseded:
            return refuse("the pair has a newer relay session on the peer's server; try again");
    }
    RelaySession* s = relays_.find(m.to_peer.session_id);
    if (!s) return refuse("relay session refused");
    s->remote_server = m.from_server;
    // What the requester's server recorded: a refresh of either agent's candidates may tell
    // the pair again for this service, in this direction.
    s->opened.emplace(m.requester, m.service);
    PeerInfo to_peer = m.to_peer;
    to_peer.start_in_ms = start_in_ms(m.peer);
    to_peer.opener = false;
    answer.ok = true;
    answer.to_requester = peer_info(*s, m.service, *peer, m.requester, true);
    doctor_.on_rendezvous(m.requester, to_peer.nat, to_peer.candidates, m.peer,
                          answer.to_requester.nat, answer.to_requester.candidates, now);
    out.push_back(SendControl{*peer->conn, std::move(to_peer)});
    stats_.rendezvous++;
    out.push_back(LogEvent{what + " as relay session " + std::to_string(s->id)});
    apply(cluster_->reply(m, std::move(answer)), now, out);
}

void ServerCore::on_cluster_punch_report(ClusterPunchReport& m, Time now) {
    // Checked as if the reporter were here: a known agent, not one connected here (a report
    // about it comes from here), whom the ACL joins to its peer; the book then keeps it only
    // for a pair this server joined.
    const AclAgent* reporter = acl_.find_by_name(m.agent);
    const AgentRecord* here = registry_.find(m.agent);
    if (!reporter || (here && here->online()) || !acl_.pair_allowed(m.agent, m.report.peer) ||
        !doctor_.on_report(m.agent, std::move(m.report), now)) {
        stats_.punch_reports_dropped++;
        return;
    }
    stats_.punch_reports++;
}

void ServerCore::on_cluster_refresh(const ClusterRefresh& m, Time now, Actions& out) {
    const std::string what = "cluster: \"" + m.agent + "\" on server \"" + m.from_server +
                             "\": new candidates for " + m.peer;
    auto ignore = [&](const char* reason) {
        out.push_back(LogEvent{what + " ignored: " + reason});
    };
    RelaySession* s = relays_.find(m.to_peer.session_id);
    const AclAgent* agent = acl_.find_by_name(m.agent);
    const AgentRecord* here = registry_.find(m.agent);
    AgentRecord* peer = registry_.find(m.peer);
    if (!s || m.agent == m.peer || !s->has_member(m.agent) || !s->has_member(m.peer) ||
        sodium_memcmp(s->token.data(), m.to_peer.relay_token.data(), s->token.size()) != 0) {
        return ignore("no such relay session here");
    }
    if (!agent || (here && here->online()) || m.to_peer.peer != m.agent ||
        m.to_peer.peer_pub != agent->key) {
        return ignore("about another agent than its sender");
    }
    if (!peer || !peer->online() || !peer->conn) return ignore("peer offline");
    // Nothing new is granted: only a service already opened on the session, in the same
    // direction, and still allowed.
    const std::string& opener = m.to_peer.opener ? m.peer : m.agent;
    const std::string& other = m.to_peer.opener ? m.agent : m.peer;
    if (!s->opened.count({opener, m.to_peer.service}) ||
        !acl_.allowed(opener, other, m.to_peer.service)) {
        return ignore("not allowed by the server");
    }
    s->remote_server = m.from_server;
    PeerInfo to_peer = m.to_peer;
    to_peer.start_in_ms = start_in_ms(m.peer);
    PeerInfo back = peer_info(*s, to_peer.service, *peer, m.agent, !to_peer.opener);
    doctor_.on_rendezvous(m.agent, to_peer.nat, to_peer.candidates, m.peer, back.nat,
                          back.candidates, now);
    out.push_back(SendControl{*peer->conn, std::move(to_peer)});
    out.push_back(LogEvent{what + ": told again for relay session " + std::to_string(s->id)});
    if (m.answer) {
        ClusterRefresh r;
        r.agent = m.peer;
        r.peer = m.agent;
        r.answer = false;
        r.to_peer = std::move(back);
        apply(cluster_->refresh(m.from_server, std::move(r)), now, out);
    }
}

void ServerCore::apply(std::vector<ClusterEvent> events, Time now, Actions& out) {
    for (auto& e : events) {
        if (auto* command = std::get_if<RedisCommand>(&e)) {
            out.push_back(std::move(*command));
        } else if (auto* answered = std::get_if<ClusterConnectAnswered>(&e)) {
            const CrossConnect& cc = answered->connect;
            const std::string what = "agent \"" + cc.requester + "\": connect to " +
                                     cc.request.peer + "/" + cc.request.service;
            auto it = conns_.find(cc.conn);
            if (it == conns_.end() || it->second.agent != cc.requester) {
                out.push_back(LogEvent{what + ": answered after the agent left"});
                continue;
            }
            PeerInfo p = std::move(answered->to_requester);
            if (RelaySession* s = relays_.find(p.session_id)) {
                s->remote_server = answered->peer_server;
            }
            p.start_in_ms = start_in_ms(cc.requester);
            p.service = cc.request.service;
            p.opener = true;
            doctor_.on_rendezvous(cc.requester, cc.to_peer.nat, cc.to_peer.candidates,
                                  cc.request.peer, p.nat, p.candidates, now);
            stats_.rendezvous++;
            out.push_back(LogEvent{what + " through the cluster as relay session " +
                                   std::to_string(p.session_id)});
            out.push_back(SendControl{cc.conn, std::move(p)});
        } else if (auto* failed = std::get_if<ClusterConnectFailed>(&e)) {
            const CrossConnect& cc = failed->connect;
            stats_.refuse(failed->reason == "peer offline" ? Refusal::kConnectPeerOffline
                                                           : Refusal::kConnectClusterFailed);
            out.push_back(LogEvent{"agent \"" + cc.requester + "\": connect to " +
                                   cc.request.peer + "/" + cc.request.service +
                                   " refused: " + failed->reason});
            auto it = conns_.find(cc.conn);
            if (it == conns_.end() || it->second.agent != cc.requester) continue;
            std::string reason = failed->reason;
            if (reason.size() > kMaxControlTextLen) reason.resize(kMaxControlTextLen);
            out.push_back(SendControl{
                cc.conn, ConnectRefused{cc.request.peer, cc.request.service, std::move(reason)}});
        } else if (auto* in = std::get_if<ClusterRendezvousIn>(&e)) {
            on_cluster_rendezvous(in->message, now, out);
        } else if (auto* relay = std::get_if<ClusterRelayIn>(&e)) {
            if (auto action = forwarder_.deliver_from_cluster(relay->message, now)) {
                out.push_back(std::move(*action));
            }
        } else if (auto* report = std::get_if<ClusterPunchReportIn>(&e)) {
            on_cluster_punch_report(report->message, now);
        } else if (auto* refresh = std::get_if<ClusterRefreshIn>(&e)) {
            on_cluster_refresh(refresh->message, now, out);
        } else if (auto* located = std::get_if<ClusterPeerLocated>(&e)) {
            if (RelaySession* s = relays_.find(located->session_id)) {
                s->remote_server = located->server;
            }
        } else if (auto* log = std::get_if<ClusterLog>(&e)) {
            out.push_back(LogEvent{std::move(log->line)});
        }
    }
}

}  // namespace burrow
