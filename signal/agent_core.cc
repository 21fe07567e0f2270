#include "signal/agent_core.h"

#include <algorithm>
#include <cassert>
#include <utility>

#include "signal/udp_messages.h"

namespace burrow {
namespace {

std::string forward_label(const ForwardConfig& f) {
    return "forward " + to_string(f.listen) + " -> " + f.peer + "/" + f.service;
}

std::string relay_name(bool udp_bound) {
    return udp_bound ? "relay-udp" : "relay-tcp";
}

std::string plural(size_t n, const char* word) {
    return std::to_string(n) + " " + word + (n == 1 ? "" : "s");
}

// "forward 127.0.0.1:8080": what a forwarded connection's Pipe::origin starts with.
constexpr std::string_view kForwardOrigin = "forward ";

// "250 ms" below a second, "10.0 s" from there on.
std::string span_text(Duration d) {
    const int64_t ms = std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
    if (ms < 1000) return std::to_string(ms) + " ms";
    return std::to_string(ms / 1000) + "." + std::to_string(ms % 1000 / 100) + " s";
}

// "endpoint-independent/per-destination": our NAT's mapping, then the peer's, as the
// rendezvous reported them (the metrics' nat_pair label).
std::string nat_pair(const PeerLink& link) {
    const auto& plan = link.punch_plan();
    if (!plan) return "unknown/unknown";
    return std::string(to_string(plan->ours)) + "/" + to_string(plan->theirs);
}

std::string ms_text(Duration d) {
    const int64_t tenths = std::chrono::duration_cast<std::chrono::microseconds>(d).count() / 100;
    return std::to_string(tenths / 10) + "." + std::to_string(tenths % 10) + " ms";
}

}  // namespace

AgentCore::AgentCore(AgentCoreConfig config, Rng& rng, Time now)
    : config_(std::move(config)),
      rng_(rng),
      started_at_(now),
      client_(AgentClientConfig{config_.key, std::nullopt, config_.software, config_.keepalive,
                                config_.stun_servers},
              rng, now),
      port_mapper_(config_.port_mapping) {
    if (config_.servers.size() > 1) {
        server_index_ = config_.server_order == ServerOrder::kListed
                            ? 0
                            : static_cast<size_t>(rng_.next_u64() % config_.servers.size());
        config_.server = config_.servers[server_index_];
    }
}

// --- life ----------------------------------------------------------------------------------------

PunchPlan punch_plan_from(const std::vector<Candidate>& candidates) {
    PunchPlan plan;
    for (const auto& c : candidates) {
        if (is_tcp(c.kind)) {
            plan.tcp_candidates.push_back(c.address);
            if (c.kind == CandidateKind::kTcpServerReflexive && !plan.tcp_reflexive) {
                plan.tcp_reflexive = c.address;
            }
            continue;
        }
        plan.candidates.push_back(c.address);
        // The first is what the server's main port saw; more come from STUN servers. An
        // IPv4 one comes first: the techniques that need it (spray, birthday) get through IPv4
        // NATs, and an IPv6 firewall needs none.
        if (c.kind == CandidateKind::kServerReflexive &&
            (!plan.reflexive || (plan.reflexive->v6 && !c.address.v6))) {
            plan.reflexive = c.address;
        }
        if (c.kind == CandidateKind::kMapped && !plan.mapped) plan.mapped = c.address;
    }
    return plan;
}

void AgentCore::start(std::vector<SocketAddress> host_addresses, Time now, bool udp_ipv6) {
    udp_ipv6_ = udp_ipv6;
    log(Severity::kInfo, "agent " + config_.name + " (" + key_to_base64(public_key(config_.key)) +
                             "), udp port " +
                             std::to_string(host_addresses.empty() ? 0 : host_addresses[0].port));
    for (const auto& f : config_.forward) {
        if (f.protocol == ForwardProtocol::kUdp) {
            start_udp_forward(f, true);
        } else {
            start_forward(f, true);
        }
    }
    const uint16_t udp_port = host_addresses.empty() ? 0 : host_addresses[0].port;
    host_addresses_ = host_addresses;
    enable_tcp_paths(tcp_port_);
    client_.set_host_candidates(std::move(host_addresses), now);
    stun_resolving_.assign(config_.stun_servers.size(), false);
    resolve_stun_servers();
    if (udp_port != 0) port_mapper_.start(udp_port, now);
    after_port_mapper();
    after_client(now);
}

void AgentCore::on_port_mapping_result(PortMappingResult result, Time now) {
    port_mapper_.on_result(std::move(result), now);
    after_port_mapper();
    after_client(now);
}

void AgentCore::after_port_mapper() {
    while (auto r = port_mapper_.poll_request()) act(MapPort{*r});
    while (auto line = port_mapper_.poll_log()) log(Severity::kInfo, *line);
    // Stopping, the control connection is already closed: nothing to register.
    if (!stopping_) client_.set_mapped_candidate(port_mapper_.mapped());
}

void AgentCore::resolve_stun_servers() {
    const std::vector<StunServerStatus> st = client_.stun_servers().status();
    for (size_t i = 0; i < st.size() && i < stun_resolving_.size(); ++i) {
        if (st[i].address || stun_resolving_[i]) continue;
        stun_resolving_[i] = true;
        act(ResolveStunServer{i, config_.stun_servers[i]});
    }
}

void AgentCore::on_stun_server_resolved(size_t index, std::optional<SocketAddress> address,
                                        std::string_view error, Time now) {
    if (index >= stun_resolving_.size()) return;
    stun_resolving_[index] = false;
    std::string why(error);
    if (address && address->v6 && !udp_ipv6_) {
        // The main socket is IPv4 (this machine has no IPv6): a request could not leave it.
        why = "resolved to the IPv6 address " + to_string(*address) +
              "; the agent's UDP socket is IPv4 only (this machine has no IPv6)";
        address.reset();
    }
    if (!address) {
        log(Severity::kWarn, "stun server " + to_string(config_.stun_servers[index]) + ": " + why +
                                 " (skipped; tried again at the next registration)");
    }
    client_.set_stun_server_address(index, address, why, now);
    after_client(now);
}

void AgentCore::stop(Time now) {
    shut_down(0, "", now);
}

void AgentCore::shut_down(int status, std::string message, Time now) {
    if (stopping_) return;
    stopping_ = true;
    for (auto& [key, fw] : forwards_) act(StopListening{key});
    forwards_.clear();
    for (auto& [key, fw] : udp_forwards_) act(CloseUdpSocket{fw.route});
    udp_forwards_.clear();
    udp_forward_routes_.clear();
    for (auto& [route, fs] : udp_flow_sockets_) act(CloseUdpSocket{route});
    udp_flow_sockets_.clear();
    local_datagrams_.clear();
    for (auto& [key, waiters] : waiting_) {
        for (const Waiter& w : waiters) act(TcpClose{w.id});
    }
    waiting_.clear();
    for (auto& [name, peer] : peers_) {
        if (peer.dead) continue;
        Connection& conn = peer.link->connection();
        conn.close(ConnectionError::kApplicationClose, "agent stopping", now);
        // The CLOSE goes out before the link does.
        while (auto t = peer.link->poll_transmit(now)) {
            if (t->route == kRouteRelay) {
                client_.send_relay(peer.relay_id, t->data, now);
            } else {
                final_transmits_.push_back(UdpTransmit{t->route, t->to, std::move(t->data)});
            }
        }
        end_link(peer, "agent stopping", false, now);
    }
    peers_.clear();
    act(CloseControl{});
    // The delete goes out before Exit; src/ lets it finish before the loop ends.
    port_mapper_.stop();
    after_port_mapper();
    act(Exit{status, std::move(message)});
}

void AgentCore::reload(std::vector<ExposeConfig> expose, std::vector<ForwardConfig> forward,
                       Time now) {
    int added = 0, removed = 0;
    std::set<std::string> keep, keep_udp;
    for (const auto& f : forward) {
        (f.protocol == ForwardProtocol::kUdp ? keep_udp : keep).insert(to_string(f.listen));
    }
    std::vector<std::string> gone_udp;
    for (const auto& [key, fw] : udp_forwards_) {
        if (!keep_udp.contains(key)) gone_udp.push_back(key);
    }
    for (const auto& key : gone_udp) {
        stop_udp_forward(key, now);
        ++removed;
    }
    for (auto it = forwards_.begin(); it != forwards_.end();) {
        if (keep.contains(it->first)) {
            ++it;
            continue;
        }
        // Connections already accepted stay up; only the listener goes.
        act(StopListening{it->first});
        log(Severity::kInfo, forward_label(it->second.config) + " stopped");
        it = forwards_.erase(it);
        ++removed;
    }
    for (const auto& f : forward) {
        if (f.protocol == ForwardProtocol::kUdp) {
            auto it = udp_forwards_.find(to_string(f.listen));
            if (it == udp_forwards_.end()) {
                start_udp_forward(f, false);
                ++added;
            } else if (!(it->second.config == f)) {
                // Its flows belong to the old peer/service: they end, new ones go to the new.
                stop_udp_forward(to_string(f.listen), now);
                start_udp_forward(f, false);
            }
            continue;
        }
        auto it = forwards_.find(to_string(f.listen));
        if (it == forwards_.end()) {
            start_forward(f, false);
            ++added;
        } else if (!(it->second.config == f)) {
            log(Severity::kInfo,
                forward_label(it->second.config) + " now goes to " + f.peer + "/" + f.service);
            it->second.config = f;
        }
    }
    config_.expose = std::move(expose);
    config_.forward = std::move(forward);
    log(Severity::kInfo, std::to_string(added) + " forwards added, " + std::to_string(removed) +
                             " removed, " + std::to_string(config_.expose.size()) +
                             " services exposed");
}

void AgentCore::start_forward(const ForwardConfig& f, bool initial) {
    const std::string key = to_string(f.listen);
    Forward fw;
    fw.config = f;
    fw.initial = initial;
    forwards_[key] = fw;
    // config/ checked that listen addresses are IP literals.
    act(ListenTcp{key, literal_socket_address(f.listen).value_or(SocketAddress{})});
    log(Severity::kInfo, forward_label(f) + " listening");
}

void AgentCore::on_listen_failed(std::string_view forward, std::string_view error, Time now) {
    auto it = forwards_.find(forward);
    if (it == forwards_.end()) return;
    const bool fatal = it->second.initial;
    forwards_.erase(it);
    if (fatal) {
        // docs/architecture.md §7: a port in use at start is one line and exit status 1.
        shut_down(1, std::string(error), now);
        return;
    }
    log(Severity::kError, "reload: " + std::string(error));
}

// --- the server ----------------------------------------------------------------------------------

void AgentCore::on_control_connected(const SocketAddress& server,
                                     std::span<const SocketAddress> resolved, Time now) {
    dial_pending_ = false;
    server_address_ = server;
    other_server_address_.reset();
    for (const SocketAddress& a : resolved) {
        // An IPv4-only socket cannot reach an IPv6 address; a dual-stack one reaches both.
        if (a.v6 != server.v6 && (!a.v6 || udp_ipv6_)) {
            other_server_address_ = a;
            break;
        }
    }
    client_.set_other_family_server(other_server_address_
                                        ? std::optional<bool>(other_server_address_->v6)
                                        : std::nullopt);
    client_.on_connected(now);
    after_client(now);
}

void AgentCore::on_control_bytes(ByteView bytes, Time now) {
    client_.on_control_bytes(bytes, now);
    after_client(now);
}

void AgentCore::on_control_closed(std::string_view reason, Time now) {
    dial_pending_ = false;
    client_.on_disconnected(reason, now);
    after_client(now);  // logs the loss naming the server that was lost
    // Several servers: the next dial (after the client's retry delay, as ever) goes to the
    // next one. Direct sessions go on meanwhile; relayed ones re-attach at the new server.
    if (config_.servers.size() > 1) {
        server_index_ = (server_index_ + 1) % config_.servers.size();
        config_.server = config_.servers[server_index_];
    }
}

// After every input to the client: its events, then a dial if one is due.
void AgentCore::after_client(Time now) {
    while (auto event = client_.poll_event()) {
        std::visit([&](auto& e) { on_client_event(e, now); }, *event);
        if (stopping_) return;
    }
    if (!stopping_ && !dial_pending_ && client_.want_connect(now)) {
        dial_pending_ = true;
        client_.on_dial_started(now);
        log(Severity::kDebug, "connecting to the server " + to_string(config_.server));
        act(DialServer{config_.server});
    }
}

uint32_t AgentCore::doctor(std::string_view peer, Time now) {
    const uint32_t id = next_doctor_id_++;
    std::string error;
    if (!client_.online()) {
        error = "not connected to the signalling server " + to_string(config_.server);
    } else if (doctor_pending_.size() >= kMaxDoctorPending) {
        error = "too many doctor requests waiting for the server; try again";
    } else if (!client_.request_doctor(id, peer)) {
        error = "invalid peer name \"" + std::string(peer) + "\"";
    }
    if (!error.empty()) {
        act(DoctorResult{id, std::nullopt, std::move(error)});
        return id;
    }
    doctor_pending_[id] = now + kDoctorAnswerWait;
    return id;
}

void AgentCore::on_client_event(const DoctorAnswer& e, Time) {
    if (doctor_pending_.erase(e.reply.request_id) == 0) return;  // given up on already
    if (e.reply.status != DoctorStatus::kOk) {
        act(DoctorResult{e.reply.request_id, std::nullopt, doctor_refusal_text(e.reply)});
        return;
    }
    // Our own link now, if we have one: the path this very moment, which the reports (made
    // when punching settled) may predate.
    std::optional<LivePath> live;
    if (const PeerLink* l = link(e.reply.peer)) {
        live = LivePath{};
        live->kind = report_path(l->direct() ? std::optional(l->direct_kind()) : std::nullopt);
        if (l->direct()) live->address = l->direct();
        live->rtt_ms = to_ms(l->connection().rtt().smoothed());
    }
    act(DoctorResult{e.reply.request_id, diagnose(e.reply, client_.name(), live), ""});
}

void AgentCore::expire_doctor(Time now) {
    for (auto it = doctor_pending_.begin(); it != doctor_pending_.end();) {
        if (now < it->second) {
            ++it;
            continue;
        }
        act(DoctorResult{it->first, std::nullopt,
                         "the signalling server did not answer within " +
                             span_text(kDoctorAnswerWait)});
        it = doctor_pending_.erase(it);
    }
}

void AgentCore::fail_doctor(std::string reason) {
    for (const auto& [id, deadline] : doctor_pending_) act(DoctorResult{id, std::nullopt, reason});
    doctor_pending_.clear();
}

// The report's wire enums are the tunnel's plus one; a value added on one side only would be
// sent as a byte the server refuses as malformed (closing the control connection).
static_assert(static_cast<uint8_t>(PunchTechnique::kPredicted) + 1 ==
              static_cast<uint8_t>(ReportStrategy::kPredicted));
static_assert(static_cast<uint8_t>(DirectSource::kPredicted) + 1 ==
              static_cast<uint8_t>(ReportSource::kPredicted));
static_assert(static_cast<uint8_t>(DirectSource::kTcpHost) + 1 ==
              static_cast<uint8_t>(ReportSource::kTcpHost));
static_assert(static_cast<uint8_t>(DirectSource::kTcpPeerReflexive) + 1 ==
              static_cast<uint8_t>(ReportSource::kTcpPeerReflexive));

// A link's path in doctor's words: direct UDP or TCP, else the relay, whose leg from here is
// inside TLS when the server never heard our UDP.
ReportPath AgentCore::report_path(std::optional<DirectKind> direct) const {
    if (direct) return *direct == DirectKind::kTcp ? ReportPath::kDirectTcp : ReportPath::kDirect;
    return client_.udp_bound() ? ReportPath::kRelayUdp : ReportPath::kRelayTcp;
}

// How the link's punching settled, to the server for `burrow doctor`.
void AgentCore::report_punch(Peer& peer, const std::optional<SocketAddress>& direct,
                             DirectKind kind, DirectSource source,
                             std::optional<Duration> time_to_direct) {
    PunchReport r;
    r.peer = peer.name;
    r.nat = nat_ ? nat_->mapping : NatMapping::kUnknown;
    r.udp_to_server = client_.udp_bound();
    r.candidates = client_.registered_candidates();
    if (const auto& plan = peer.link->punch_plan()) {
        r.tried = plan->candidates;
        if (plan->reflexive &&
            std::find(r.tried.begin(), r.tried.end(), *plan->reflexive) == r.tried.end()) {
            r.tried.push_back(*plan->reflexive);
        }
    }
    r.answered = direct;
    if (auto t = peer.link->technique()) {
        r.strategy = static_cast<ReportStrategy>(static_cast<uint8_t>(*t) + 1);
    }
    r.source = direct ? static_cast<ReportSource>(static_cast<uint8_t>(source) + 1)
                      : ReportSource::kNone;
    if (direct && time_to_direct) {
        r.time_to_direct_ms = static_cast<uint32_t>(std::clamp<int64_t>(
            std::chrono::duration_cast<std::chrono::milliseconds>(*time_to_direct).count(), 0,
            UINT32_MAX));
    }
    r.path = report_path(direct ? std::optional(kind) : std::nullopt);
    client_.send_punch_report(std::move(r));
}

void AgentCore::on_client_event(const StunServerReport& e, Time) {
    if (!e.mapped) {
        log(Severity::kWarn, "stun server " + e.server + ": no answer to " +
                                 plural(static_cast<size_t>(e.requests), "request") +
                                 " (skipped until the next registration)");
        return;
    }
    log(Severity::kInfo, "stun server " + e.server + " sees this agent as " +
                             to_string(*e.mapped) + " (rtt " + ms_text(e.rtt) + ")");
}

void AgentCore::on_client_event(const Registered& e, Time now) {
    resolve_stun_servers();
    log(Severity::kInfo, "registered with the server as " + e.name + " (nat " + to_string(e.nat) +
                             ", " + (client_.udp_bound() ? "udp relay" : "udp not confirmed yet") +
                             ")");
    relay_wait_logged_ = false;
    wake_relayed_links(now);
}

// The relay works again (after a reconnect, or UDP came back): each relayed link sends a PING at
// once. Its ACK makes loss recovery resend what the relay lost meanwhile now, rather than at a
// probe timeout that backed off while the server was away.
void AgentCore::wake_relayed_links(Time now) {
    for (auto& [name, peer] : peers_) {
        if (peer.dead || peer.link->direct()) continue;
        peer.link->connection().ping();
        process(peer, now);
    }
}

void AgentCore::on_client_event(const AuthFailed& e, Time now) {
    log(Severity::kError, "the server refused this agent: " + e.reason);
    shut_down(1, "", now);
}

void AgentCore::on_client_event(const PeerReady& e, Time now) {
    const PeerInfo& info = e.info;
    Peer& peer = peers_[info.peer];
    peer.name = info.peer;
    if (peer.link &&
        (peer.relay_id != info.session_id || peer.link->session().peer_key() != info.peer_pub)) {
        end_link(peer, "replaced by a new session with " + info.peer, true, now);
    }
    const bool fresh = !peer.link;
    if (fresh) {
        PeerLinkConfig lc;
        lc.role = info.role == SessionRole::kInitiator ? Role::kInitiator : Role::kResponder;
        lc.local_key = config_.key;
        lc.peer_key = info.peer_pub;
        lc.session = config_.session;
        lc.session.load = &handshake_load_;
        lc.wall_clock_at_zero_us = config_.wall_clock_at_zero_us;
        peer.link = std::make_unique<PeerLink>(lc, rng_, now);
        peer.relay_id = info.session_id;
        peer.dead = false;
        peer.may_open.clear();
        peer.may_accept.clear();
        // A new session punches TCP afresh: the old one's schedule and candidates went with it.
        peer.tcp_punch = {};
        log(Severity::kDebug, "session " + std::to_string(info.session_id) + " with " + info.peer +
                                  " (" + (lc.role == Role::kInitiator ? "initiator" : "responder") +
                                  ")");
    }
    (info.opener ? peer.may_open : peer.may_accept).insert(info.service);
    PunchPlan plan = punch_plan_from(info.candidates);
    plan.ours = nat_ ? nat_->mapping : NatMapping::kUnknown;
    plan.theirs = info.nat;
    const std::vector<SocketAddress> tcp_candidates = plan.tcp_candidates;
    plan.our_allocation = nat_ ? nat_->allocation : PortAllocation{};
    plan.their_allocation = info.allocation;
    peer.link->set_punch_plan(std::move(plan), now);
    // Relay first (docs/architecture.md §5): the handshake goes through the server at once.
    if (fresh) peer.link->start(now);
    // This is the rendezvous' start time (AgentClient holds PeerReady until then): the peer
    // connects to our TCP candidates now too, so the SYNs cross.
    start_tcp_punch(peer, tcp_candidates, now);
    open_waiters(peer, now);
    release_held_datagrams(peer, now);
    // Streams and flows the peer opened before this approval reached us.
    std::deque<Peer::Unapproved> held = std::move(peer.unapproved);
    peer.unapproved.clear();
    for (auto& u : held) on_stream_opened(peer, u.id, u.service, now);
    std::deque<Peer::Unapproved> held_flows = std::move(peer.unapproved_flows);
    peer.unapproved_flows.clear();
    for (auto& u : held_flows) {
        on_flow_opened(peer, u.id, u.service, now);
        hand_on_held_flow_datagrams(peer, u, now);
    }
    process(peer, now);
}

void AgentCore::on_client_event(const ConnectRefusedEvent& e, Time) {
    refuse_held_datagrams(e.peer, e.service);
    auto it = waiting_.find({e.peer, e.service});
    if (it == waiting_.end()) {
        log(Severity::kWarn, "connect to " + e.peer + "/" + e.service + " refused: " + e.reason);
        return;
    }
    std::deque<Waiter> waiters = std::move(it->second);
    waiting_.erase(it);
    std::string label = "forward -> " + e.peer + "/" + e.service;
    for (const Waiter& w : waiters) {
        auto fw = forwards_.find(w.forward);
        if (fw != forwards_.end()) label = forward_label(fw->second.config);
        // An answer, not a failure: the client sees a clean end.
        refuse_forwarded(w.id, w.forward, &ForwardRefusals::acl, true);
    }
    log(Severity::kWarn, label + ": refused by the server: " + e.reason + " (" +
                             plural(waiters.size(), "connection") + " closed)");
}

void AgentCore::on_client_event(const RelayReceived& e, Time now) {
    Peer* peer = find_peer_by_relay(e.session_id);
    if (!peer) {
        drops_.relay_unknown_session++;
        return;
    }
    const size_t size = e.payload.size();
    if (std::holds_alternative<LinkAccepted>(
            peer->link->on_datagram(kRouteRelay, SocketAddress{}, e.payload, now))) {
        (e.via == RelayTransport::kUdp ? peer->traffic.relay_udp : peer->traffic.relay_tcp)
            .received(size);
    }
    process(*peer, now);
}

void AgentCore::on_client_event(const Disconnected& e, Time now) {
    fail_doctor("the connection to the signalling server closed before it answered");
    const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(e.retry_at - now);
    const int64_t tenths = std::max<int64_t>(0, wait.count() / 100);
    log(Severity::kWarn, "signalling server " + to_string(config_.server) + ": " + e.reason +
                             "; retrying in " + std::to_string(tenths / 10) + "." +
                             std::to_string(tenths % 10) + " s");
    act(CloseControl{});
    // Links stay: once the client is authenticated again it re-attaches their relay sessions
    // (RelayAttach), and a relayed session's packets lost meanwhile are resent by its loss
    // recovery. A link whose server does not come back ends by its idle timeout.
    size_t relayed = 0;
    for (const auto& [name, peer] : peers_) {
        if (!peer.dead && !peer.link->direct()) relayed++;
    }
    if (relayed > 0 && !relay_wait_logged_) {
        relay_wait_logged_ = true;  // once per outage, not per failed dial
        log(Severity::kInfo, plural(relayed, "relayed session") +
                                 " waiting for the server to come back (" +
                                 std::to_string(
                                     std::chrono::duration_cast<std::chrono::seconds>(
                                         config_.session.connection.idle_timeout)
                                         .count()) +
                                 " s idle timeout)");
    }
    for (auto& [key, waiters] : waiting_) {
        for (const Waiter& w : waiters) {
            refuse_forwarded(w.id, w.forward, &ForwardRefusals::no_session, false);
        }
    }
    waiting_.clear();
    for (auto& [key, fw] : udp_forwards_) {
        fw.counters.drop_no_session += fw.held.size();
        fw.held.clear();
        fw.held_bytes = 0;
        fw.connect_asked = false;
    }
}

void AgentCore::on_client_event(const NatDiscovered& e, Time now) {
    log(Severity::kDebug, std::string("nat: ") + to_string(e.mapping) + " (main " +
                              (e.mapped[0] ? to_string(*e.mapped[0]) : "-") + ", secondary " +
                              (e.mapped[1] ? to_string(*e.mapped[1]) : "-") +
                              "), port allocation " + describe(e.allocation));
    // A new public address: we moved to another network (or the ISP renumbered us), and a
    // mapping at the old gateway, if any, is no use. Ask whichever gateway we have now.
    const auto public_ip = [](const std::optional<SocketAddress>& a) {
        std::optional<SocketAddress> ip = a;
        if (ip) ip->port = 0;
        return ip;
    };
    const bool moved = nat_ && public_ip(nat_->mapped[0]) && public_ip(e.mapped[0]) &&
                       public_ip(nat_->mapped[0]) != public_ip(e.mapped[0]);
    nat_ = e;
    if (moved) {
        port_mapper_.on_network_changed(now);
        after_port_mapper();
    }
}

void AgentCore::on_client_event(const UdpBound&, Time now) {
    log(Severity::kDebug, "udp relay confirmed by the server");
    wake_relayed_links(now);
}

void AgentCore::on_client_event(const UdpMoved& e, Time) {
    const std::string every =
        std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(e.keepalive).count()) +
        " ms";
    if (e.learning) {
        log(Severity::kInfo, "udp: the NAT gave this agent a new address (it forgot the mapping); "
                             "relay keepalive now every " + every);
    } else {
        log(Severity::kWarn, "udp: the NAT gave this agent a new address (it forgot the mapping): "
                             "[agent] keepalive = " + every + " is too long for this NAT");
    }
}

void AgentCore::on_client_event(const RelaySessionDetached& e, Time now) {
    Peer* peer = find_peer_by_relay(e.session_id);
    if (!peer) return;
    if (!peer->link->direct()) {
        end_link(*peer, "the server will not relay it any more: " + e.reason, true, now);
        return;
    }
    log(Severity::kWarn, "session with " + peer->name + ": no relay fallback (" + e.reason + ")");
}

void AgentCore::on_client_event(const UdpBlocked& e, Time) {
    log(Severity::kWarn, "no UDP answer from the server after " + std::to_string(e.tries) +
                             " tries: relaying inside the TLS connection (slower)");
}

// --- UDP -----------------------------------------------------------------------------------------

void AgentCore::on_udp(RouteId route, const SocketAddress& from, ByteView datagram, Time now) {
    receive_copy_.assign(datagram.begin(), datagram.end());
    on_udp(route, from, MutableByteView(receive_copy_), now);
}

void AgentCore::on_udp(RouteId route, const SocketAddress& from, MutableByteView datagram,
                       Time now) {
    // A UDP forward's client, or a UDP service's target answering one flow.
    if (route != kRouteMain) {
        if (auto it = udp_forward_routes_.find(route); it != udp_forward_routes_.end()) {
            if (auto fw = udp_forwards_.find(it->second); fw != udp_forwards_.end()) {
                on_forward_datagram(fw->second, from, datagram, now);
            }
            return;
        }
        if (udp_flow_sockets_.contains(route)) {
            on_target_datagram(route, from, datagram, now);
            return;
        }
    }
    // A configured STUN server's answer: STUN, from that server's address. When the server is
    // also the burrow server's STUN port, only its own transaction is taken here.
    if (route == kRouteMain && is_stun(datagram) && client_.knows_stun_server(from) &&
        (client_.expects_stun_server(from, datagram) || !from_server_port(from))) {
        client_.on_stun_server_udp(from, datagram, now);
        after_client(now);
        return;
    }
    if (route == kRouteMain) {
        if (auto port = from_server_port(from)) {
            client_.on_udp(*port, datagram, now);
            after_client(now);
            return;
        }
        if (auto port = from_other_server_port(from); port && is_stun(datagram)) {
            client_.on_other_family_udp(*port, datagram, now);
            after_client(now);
            return;
        }
    }
    Peer* owner = nullptr;
    if (route == kRouteMain) {
        for (auto& [name, peer] : peers_) {
            if (!peer.dead && peer.link->claims(from, datagram)) owner = &peer;
        }
    } else if (auto it = socket_owner_.find(route); it != socket_owner_.end()) {
        auto p = peers_.find(it->second);
        if (p != peers_.end() && !p->second.dead) owner = &p->second;
    }
    if (!owner) {
        drops_.udp_from_unknown++;
        return;
    }
    const size_t size = datagram.size();
    const LinkVerdict verdict = owner->link->on_datagram(route, from, datagram, now);
    if (std::holds_alternative<LinkAccepted>(verdict)) owner->traffic.direct.received(size);
    process(*owner, now);
}

std::optional<UdpPort> AgentCore::from_server_port(const SocketAddress& from) const {
    if (!server_address_ || from.ip != server_address_->ip || from.v6 != server_address_->v6) {
        return std::nullopt;
    }
    for (UdpPort port : {UdpPort::kMain, UdpPort::kSecondary}) {
        if (client_.server_udp_port(port) == from.port) return port;
    }
    return std::nullopt;
}

std::optional<UdpPort> AgentCore::from_other_server_port(const SocketAddress& from) const {
    const std::optional<SocketAddress>& other = other_server_address_;
    if (!other || from.ip != other->ip || from.v6 != other->v6) return std::nullopt;
    for (UdpPort port : {UdpPort::kMain, UdpPort::kSecondary}) {
        if (client_.server_udp_port(port) == from.port) return port;
    }
    return std::nullopt;
}

void AgentCore::on_udp_batch_end() {
    for (auto& [name, peer] : peers_) {
        if (peer.link) peer.link->on_receive_batch_end();
    }
}

void AgentCore::on_udp_socket_failed(RouteId route, std::string_view error) {
    if (auto fr = udp_forward_routes_.find(route); fr != udp_forward_routes_.end()) {
        const std::string key = fr->second;
        udp_forward_routes_.erase(fr);
        auto fw = udp_forwards_.find(key);
        if (fw == udp_forwards_.end()) return;
        const bool fatal = fw->second.initial;
        udp_forwards_.erase(fw);
        // docs/architecture.md §7: a port in use at start is one line and exit status 1.
        if (fatal) return shut_down(1, std::string(error), started_at_);
        log(Severity::kError, "reload: " + std::string(error));
        return;
    }
    if (auto fs = udp_flow_sockets_.find(route); fs != udp_flow_sockets_.end()) {
        const UdpFlowSocket flow = fs->second;
        log(Severity::kWarn, "udp flow of " + flow.peer + " to " + flow.service + ": " +
                                 std::string(error) + "; closing the flow");
        auto p = peers_.find(flow.peer);
        if (p != peers_.end() && !p->second.dead) {
            drop_flow(p->second, flow.flow);
            p->second.link->connection().close_flow(flow.flow);
        } else {
            udp_flow_sockets_.erase(fs);
        }
        return;
    }
    auto it = socket_owner_.find(route);
    if (it == socket_owner_.end()) return;
    const std::string owner = it->second;
    socket_owner_.erase(it);
    auto p = peers_.find(owner);
    if (p == peers_.end() || p->second.dead) return;
    p->second.link->remove_socket(route);
    // One line for the first failure: the rest of the batch fail the same way.
    if (p->second.link->stats().sockets_failed == 1) {
        log(Severity::kWarn, "birthday sockets: " + std::string(error) + "; using the others");
    }
}

Time AgentCore::next_deadline() const {
    Time t = client_.next_deadline();
    for (const auto& [name, peer] : peers_) {
        if (peer.dead) continue;
        t = std::min(t, peer.link->next_deadline());
        if (!peer.unapproved.empty()) t = std::min(t, peer.unapproved.front().deadline);
        if (!peer.credit_waiters.empty()) t = std::min(t, peer.credit_waiters.front().deadline);
        if (!peer.unapproved_flows.empty()) {
            t = std::min(t, peer.unapproved_flows.front().deadline);
        }
    }
    for (const auto& [key, fw] : forwards_) t = std::min(t, fw.paused_until);
    for (const auto& [key, fw] : udp_forwards_) t = std::min(t, fw.flows.next_deadline());
    for (const auto& [service, s] : udp_services_) t = std::min(t, s.flows.next_deadline());
    for (const auto& [id, deadline] : doctor_pending_) t = std::min(t, deadline);
    t = std::min(t, port_mapper_.next_deadline());
    t = std::min(t, tcp_deadline());
    return std::min(t, repeated_.next_deadline());
}

void AgentCore::on_timer(Time now) {
    port_mapper_.on_timer(now);
    after_port_mapper();
    client_.on_timer(now);
    after_client(now);
    expire_doctor(now);
    for (auto& [name, peer] : peers_) {
        if (peer.dead) continue;
        if (now >= peer.link->next_deadline()) peer.link->on_timer(now);
        expire_unapproved(peer, now);
        expire_unapproved_flows(peer, now);
        expire_credit_waiters(peer, now);
        if (now >= peer.tcp_punch.at) tcp_punch_round(peer, now);
        process(peer, now);
    }
    expire_unclaimed_tcp(now);
    expire_udp_flows(now);
    std::erase_if(peers_, [](const auto& kv) { return kv.second.dead; });
    resume_forwards(now);
    log_repeated_summaries(now);
}

std::optional<AgentAction> AgentCore::poll_action() {
    if (auto bytes = client_.poll_control()) return WriteControl{std::move(*bytes)};
    if (actions_.empty()) return std::nullopt;
    AgentAction a = std::move(actions_.front());
    actions_.pop_front();
    return a;
}

std::optional<UdpTransmit> AgentCore::poll_transmit(Time now) {
    Bytes out(kMaxUdpDatagram);
    const auto w = write_transmit(now, out);
    if (!w) return std::nullopt;
    out.resize(w->size);
    return UdpTransmit{w->route, w->to, std::move(out), w->tcp};
}

std::optional<UdpWrite> AgentCore::write_transmit(Time now, MutableByteView out) {
    assert(out.size() >= kMaxUdpDatagram);
    // Control-side datagrams (CLOSEs of stopped links, Bind, STUN, relayed packets) are few:
    // built apart, then copied into the caller's buffer.
    const auto place = [&](const Bytes& bytes) {
        assert(bytes.size() <= out.size());
        std::copy(bytes.begin(), bytes.end(), out.begin());
        return bytes.size();
    };
    if (!final_transmits_.empty()) {
        const UdpTransmit& t = final_transmits_.front();
        const UdpWrite w{t.to, t.route, place(t.data)};
        final_transmits_.pop_front();
        return w;
    }
    // Datagrams for UDP forwards' clients and services' targets (at most
    // kMaxForwardedUdpDatagram is never reached: the session carries less than kMaxUdpDatagram).
    if (!local_datagrams_.empty()) {
        const UdpTransmit& t = local_datagrams_.front();
        const UdpWrite w{t.to, t.route, place(t.data)};
        local_datagrams_.pop_front();
        return w;
    }
    while (true) {
        while (auto datagram = client_.poll_udp()) {
            auto port = client_.server_udp_port(datagram->to);
            const std::optional<SocketAddress>& server =
                datagram->other_family ? other_server_address_ : server_address_;
            if (!server || !port) continue;
            SocketAddress to = *server;
            to.port = *port;
            return UdpWrite{to, kRouteMain, place(datagram->bytes)};
        }
        if (auto datagram = client_.poll_stun_server_udp()) {
            return UdpWrite{datagram->to, kRouteMain, place(datagram->bytes)};
        }
        bool relayed = false;
        for (auto& [name, peer] : peers_) {
            if (peer.dead) continue;
            const auto w = peer.link->write_transmit(now, out);
            if (!w) continue;
            if (w->route != kRouteRelay) {
                peer.traffic.direct.sent(w->size);
                return UdpWrite{w->to, w->route, w->size, w->path == DirectKind::kTcp};
            }
            // Through the server: the client wraps it for UDP or the TLS connection.
            if (client_.send_relay(peer.relay_id, ByteView(out).first(w->size), now)) {
                (client_.udp_bound() ? peer.traffic.relay_udp : peer.traffic.relay_tcp)
                    .sent(w->size);
            }
            relayed = true;
            break;
        }
        if (!relayed) return std::nullopt;
    }
}

// --- forwards ------------------------------------------------------------------------------------

std::optional<TcpId> AgentCore::on_tcp_accepted(std::string_view forward, Time now) {
    auto it = forwards_.find(forward);
    if (it == forwards_.end() || stopping_) return std::nullopt;
    Forward& fw = it->second;
    fw.connections++;
    const TcpId id = next_tcp_++;
    const ForwardConfig& f = fw.config;
    auto& queue = waiting_[{f.peer, f.service}];
    if (queue.size() >= kMaxWaitingConnections) {
        drops_.waiting_full++;
        warn_repeated(forward_label(f) + ": " + std::to_string(kMaxWaitingConnections) +
                          " connections already wait for the session; closing new ones",
                      now);
        refuse_forwarded(id, it->first, &ForwardRefusals::queue_full, false);
        return id;
    }
    queue.push_back(Waiter{id, it->first});
    auto p = peers_.find(f.peer);
    if (p != peers_.end() && !p->second.dead && p->second.may_open.contains(f.service)) {
        open_waiters(p->second, now);
        process(p->second, now);
        return id;
    }
    if (queue.size() == 1) {
        log(Severity::kDebug,
            forward_label(f) + ": asking the server for " + f.peer + "/" + f.service);
        const uint64_t link = p != peers_.end() && !p->second.dead ? p->second.relay_id : 0;
        client_.connect(f.peer, f.service, link, now);
        after_client(now);
    }
    return id;
}

// The connections waiting for services this peer now lets us open become streams.
void AgentCore::open_waiters(Peer& peer, Time now) {
    for (const std::string& service : peer.may_open) {
        auto it = waiting_.find({peer.name, service});
        if (it == waiting_.end()) continue;
        std::deque<Waiter> waiters = std::move(it->second);
        waiting_.erase(it);
        for (const Waiter& w : waiters) open_forward_stream(peer, w.id, w.forward, now);
    }
}

void AgentCore::open_forward_stream(Peer& peer, TcpId id, const std::string& forward, Time now) {
    auto fw = forwards_.find(forward);
    if (fw == forwards_.end()) {
        act(TcpClose{id});
        return;
    }
    // Behind the connections that already wait for credit: they open in order.
    if (peer.credit_waiters.empty() && try_open_stream(peer, id, fw->second)) return;
    const ForwardConfig& f = fw->second.config;
    if (peer.credit_waiters.size() >= kMaxWaitingConnections) {
        warn_repeated(forward_label(f) + ": " + std::to_string(kMaxWaitingConnections) +
                          " connections already wait for " + f.peer +
                          "'s stream limit; closing new ones",
                      now);
        refuse_forwarded(id, forward, &ForwardRefusals::queue_full, false);
        return;
    }
    if (peer.credit_waiters.empty()) {
        warn_repeated(forward_label(f) + ": the session with " + f.peer +
                          " is at the peer's stream limit; new connections wait for it",
                      now);
    }
    peer.credit_waiters.push_back(Peer::CreditWaiter{id, forward, now + kStreamCreditWait});
}

bool AgentCore::try_open_stream(Peer& peer, TcpId id, const Forward& fw) {
    const ForwardConfig& f = fw.config;
    // nullopt: no credit left (a closed connection ends the link, and its waiters with it).
    std::optional<StreamId> stream = peer.link->connection().open_stream(f.service);
    if (!stream) return false;
    peer.streams[*stream] = id;
    pipes_.emplace(id, Pipe{peer.name, StreamPipe(*stream, true),
                            std::string(kForwardOrigin) + to_string(f.listen),
                            forward_label(f)});
    act(TcpResumeReading{id});
    return true;
}

// The peer's MAX_STREAMS came in a packet just processed: the oldest waiters open first.
void AgentCore::open_credit_waiters(Peer& peer) {
    while (!peer.credit_waiters.empty()) {
        const Peer::CreditWaiter& w = peer.credit_waiters.front();
        auto fw = forwards_.find(w.forward);
        if (fw == forwards_.end()) {
            act(TcpClose{w.id});  // the forward went with a reload
        } else if (!try_open_stream(peer, w.id, fw->second)) {
            return;
        }
        peer.credit_waiters.pop_front();
    }
}

void AgentCore::expire_credit_waiters(Peer& peer, Time now) {
    while (!peer.credit_waiters.empty() && now >= peer.credit_waiters.front().deadline) {
        const Peer::CreditWaiter w = peer.credit_waiters.front();
        peer.credit_waiters.pop_front();
        auto fw = forwards_.find(w.forward);
        const std::string label =
            fw != forwards_.end() ? forward_label(fw->second.config) : "forward " + w.forward;
        warn_repeated(label + ": no stream credit from " + peer.name + " within " +
                          span_text(kStreamCreditWait) + "; closing the connection",
                      now);
        // The clean end a refused connection gets: the client sees EOF, not a reset.
        refuse_forwarded(w.id, w.forward, &ForwardRefusals::stream_limit, true);
    }
}

void AgentCore::refuse_forwarded(TcpId id, const std::string& forward,
                                 uint64_t ForwardRefusals::*why, bool clean) {
    if (auto fw = forwards_.find(forward); fw != forwards_.end()) (fw->second.refused.*why)++;
    if (clean) {
        act(TcpFinish{id});
    } else {
        act(TcpClose{id});
    }
}

void AgentCore::on_descriptors_low(std::string_view forward, int limit, Time now) {
    auto it = forwards_.find(forward);
    if (it == forwards_.end() || it->second.paused_until != kNever) return;
    drops_.listen_paused++;
    it->second.paused_until = now + kAcceptPause;
    act(PauseAccepting{it->first});
    // The same line every time (no per-event figures), so a run of pauses is one line and a
    // summary.
    warn_repeated(forward_label(it->second.config) + ": out of file descriptors (limit " +
                      std::to_string(limit) + "); not accepting for " + span_text(kAcceptPause),
                  now);
}

void AgentCore::resume_forwards(Time now) {
    for (auto& [key, fw] : forwards_) {
        if (now < fw.paused_until) continue;
        fw.paused_until = kNever;
        act(ResumeAccepting{key});
    }
}

// --- incoming streams ----------------------------------------------------------------------------

const ExposeConfig* AgentCore::find_expose(std::string_view service) const {
    for (const auto& e : config_.expose) {
        if (e.service == service) return &e;
    }
    return nullptr;
}

void AgentCore::on_stream_opened(Peer& peer, StreamId id, const std::string& service, Time now) {
    const ExposeConfig* expose = find_expose(service);
    if (!expose) {
        return refuse_stream(peer, id, service, ResetReason::kUnknownService,
                             "no such service is exposed", now);
    }
    if (std::find(expose->allow.begin(), expose->allow.end(), peer.name) == expose->allow.end()) {
        expose_counters_[service].refused++;
        return refuse_stream(peer, id, service, ResetReason::kNotAllowed,
                             peer.name + " is not in its allow list", now);
    }
    if (!peer.may_accept.contains(service)) {
        if (peer.unapproved.size() >= kMaxAwaitingApproval) {
            expose_counters_[service].refused++;
            return refuse_stream(peer, id, service, ResetReason::kNotAllowed,
                                 "too many streams wait for the server's approval", now);
        }
        // Its approval may be on its way from the server (see kApprovalWait).
        peer.unapproved.push_back(Peer::Unapproved{id, service, now + kApprovalWait});
        return;
    }
    accept_stream(peer, id, *expose, now);
}

void AgentCore::accept_stream(Peer& peer, StreamId id, const ExposeConfig& expose, Time now) {
    (void)now;
    expose_counters_[expose.service].streams++;
    const TcpId tcp = next_tcp_++;
    peer.streams[id] = tcp;
    pipes_.emplace(tcp, Pipe{peer.name, StreamPipe(id, false), "expose " + expose.service,
                             "expose " + expose.service + " for " + peer.name + " -> " +
                                 to_string(expose.target)});
    act(ConnectTcp{tcp, expose.target, kTargetConnectTimeout});
}

void AgentCore::refuse_stream(Peer& peer, StreamId id, const std::string& service,
                              ResetReason reason, const std::string& why, Time now) {
    drops_.streams_refused++;
    warn_repeated("refused stream from " + peer.name + " to " + service + ": " + why, now);
    peer.link->connection().reset_stream(id, reason);
}

void AgentCore::expire_unapproved(Peer& peer, Time now) {
    while (!peer.unapproved.empty() && now >= peer.unapproved.front().deadline) {
        const Peer::Unapproved u = peer.unapproved.front();
        peer.unapproved.pop_front();
        expose_counters_[u.service].refused++;
        refuse_stream(peer, u.id, u.service, ResetReason::kNotAllowed,
                      "the server did not approve it for this session", now);
    }
}

// --- links ---------------------------------------------------------------------------------------

AgentCore::Peer* AgentCore::find_peer_by_relay(uint64_t relay_id) {
    for (auto& [name, peer] : peers_) {
        if (!peer.dead && peer.relay_id == relay_id) return &peer;
    }
    return nullptr;
}

const PeerLink* AgentCore::link(std::string_view peer) const {
    auto it = peers_.find(peer);
    return it == peers_.end() || it->second.dead ? nullptr : it->second.link.get();
}

std::string AgentCore::path_of(const PeerLink& link) const {
    if (const auto& direct = link.direct()) {
        return std::string(status_name(link.direct_kind())) + " " + to_string(*direct);
    }
    return relay_name(client_.udp_bound());
}

// After any input to a link: what it asks for, then its streams' events.
void AgentCore::process(Peer& peer, Time now) {
    if (peer.dead) return;
    while (auto e = peer.link->poll_event()) on_link_event(peer, *e, now);
    while (!peer.dead) {
        std::optional<ConnectionEvent> e = peer.link->connection().poll_event();
        if (!e) break;
        on_stream_event(peer, *e, now);
    }
    if (!peer.dead) open_credit_waiters(peer);
}

void AgentCore::on_link_event(Peer& peer, const LinkEvent& event, Time now) {
    std::visit(
        [&](const auto& e) {
            using E = std::decay_t<decltype(e)>;
            if constexpr (std::is_same_v<E, LinkUp>) {
                log(Severity::kInfo,
                    "session with " + peer.name + " up (" + path_of(*peer.link) + ", " +
                        (peer.link->session().role() == Role::kInitiator ? "we connected"
                                                                         : "they connected") +
                        ")");
            } else if constexpr (std::is_same_v<E, LinkPunching>) {
                log(Severity::kDebug, "punching to " + peer.name + ": " + to_string(e.technique) +
                                          " (our nat " +
                                          (nat_ ? to_string(nat_->mapping) : "unknown") + ")" +
                                          (e.prediction.empty() ? "" : ": " + e.prediction));
            } else if constexpr (std::is_same_v<E, LinkPathChanged>) {
                if (e.time_to_direct) {
                    // A link that moved up from direct TCP to direct UDP was counted at its
                    // first direct path; its report is replaced (the server keeps the latest).
                    if (!e.moved_up) {
                        const std::string pair = nat_pair(*peer.link);
                        punch_.successes[{pair, to_string(e.source)}]++;
                        punch_.observe_time_to_direct(to_ms(*e.time_to_direct) / 1000.0);
                    }
                    report_punch(peer, e.direct, e.kind, e.source, e.time_to_direct);
                }
                if (e.direct) {
                    log(Severity::kInfo,
                        "path to " + peer.name + ": " + status_name(e.kind) + " " +
                            to_string(*e.direct) + " (rtt " +
                            ms_text(e.rtt) + ", " + e.reason +
                            (e.time_to_direct ? ", " + std::string(to_string(e.source)) + ", " +
                                                    span_text(*e.time_to_direct) +
                                                    " after the session started"
                                              : std::string()) +
                            ")");
                } else {
                    log(Severity::kInfo, "path to " + peer.name + ": " +
                                             relay_name(client_.udp_bound()) + " (" + e.reason +
                                             ")");
                }
            } else if constexpr (std::is_same_v<E, LinkPunchFallback>) {
                punch_.fallbacks[{nat_pair(*peer.link), to_string(e.technique)}]++;
                report_punch(peer, std::nullopt, DirectKind::kUdp, DirectSource::kHost,
                             std::nullopt);
                log(Severity::kInfo, "punching to " + peer.name + " (" +
                                         to_string(e.technique) + ", nat " +
                                         nat_pair(*peer.link) + ") found no direct path in " +
                                         span_text(kPunchVerdictAfter) + ": staying on the " +
                                         relay_name(client_.udp_bound()));
            } else if constexpr (std::is_same_v<E, LinkWantsSockets>) {
                std::vector<RouteId> routes;
                for (size_t i = 0; i < e.count; ++i) {
                    const RouteId r = next_route_++;
                    socket_owner_[r] = peer.name;
                    routes.push_back(r);
                    act(OpenUdpSocket{r, kBirthdaySocketBuffer});
                }
                log(Severity::kDebug, "our NAT is symmetric: opening " + std::to_string(e.count) +
                                          " sockets towards " + peer.name);
                peer.link->add_sockets(routes, now);
            } else if constexpr (std::is_same_v<E, LinkReleasesSockets>) {
                for (RouteId r : e.routes) {
                    socket_owner_.erase(r);
                    act(CloseUdpSocket{r});
                }
            }
        },
        event);
}

void AgentCore::on_stream_event(Peer& peer, const ConnectionEvent& event, Time now) {
    if (const auto* closed = std::get_if<ConnectionClosed>(&event)) {
        end_link(
            peer,
            closed->by_peer ? "closed by " + peer.name + ": " + closed->reason : closed->reason,
            true, now);
        return;
    }
    if (const auto* opened = std::get_if<StreamOpened>(&event)) {
        on_stream_opened(peer, opened->id, opened->service, now);
        return;
    }
    if (const auto* flow = std::get_if<FlowOpened>(&event)) {
        on_flow_opened(peer, flow->flow, flow->service, now);
        return;
    }
    if (const auto* closed = std::get_if<FlowClosed>(&event)) {
        on_flow_closed(peer, closed->flow);
        return;
    }
    if (auto* datagram = std::get_if<DatagramReceived>(&event)) {
        on_flow_datagram(peer, datagram->flow, std::move(datagram->data), now);
        return;
    }
    const StreamId id = std::visit(
        [](const auto& e) -> StreamId {
            if constexpr (requires { e.id; }) {
                return e.id;
            } else {
                return 0;
            }
        },
        event);
    auto s = peer.streams.find(id);
    if (s == peer.streams.end()) return;
    const TcpId tcp = s->second;
    Pipe* p = find_pipe(tcp);
    if (!p) return;
    Connection& conn = peer.link->connection();
    std::visit(
        [&](const auto& e) {
            using E = std::decay_t<decltype(e)>;
            if constexpr (std::is_same_v<E, StreamReadable>) {
                p->pipe.on_readable();
            } else if constexpr (std::is_same_v<E, StreamWritable>) {
                p->pipe.on_writable(conn);
            } else if constexpr (std::is_same_v<E, StreamFinished>) {
                p->pipe.on_finished();
            } else if constexpr (std::is_same_v<E, StreamReset>) {
                p->pipe.on_reset(e.reason);
            } else if constexpr (std::is_same_v<E, StreamClosed>) {
                p->pipe.on_closed();
            }
        },
        event);
    drain_pipe(tcp, now);
}

// Ends a link: its forwarded connections are reset, the relay forgets it, its sockets close.
// The entry stays (dead) until the caller's loop over peers_ is done with it.
void AgentCore::end_link(Peer& peer, const std::string& reason, bool log_it, Time now) {
    if (peer.dead || !peer.link) return;
    peer.dead = true;
    if (log_it) {
        log(Severity::kInfo, "session with " + peer.name + " closed: " + reason + " (" +
                                 plural(peer.streams.size(), "forwarded connection") + " reset)");
    }
    std::vector<TcpId> tcps;
    for (const auto& [stream, tcp] : peer.streams) tcps.push_back(tcp);
    peer.streams.clear();
    for (TcpId tcp : tcps) {
        if (Pipe* p = find_pipe(tcp)) {
            p->pipe.session_gone();
            drain_pipe(tcp, now);
        }
    }
    for (RouteId r : peer.link->sockets()) {
        socket_owner_.erase(r);
        act(CloseUdpSocket{r});
    }
    close_link_tcps(peer.name, now);
    peer.unapproved.clear();
    peer.unapproved_flows.clear();
    std::vector<FlowId> flows;
    for (const auto& [flow, owner] : peer.flows) flows.push_back(flow);
    for (FlowId flow : flows) drop_flow(peer, flow);
    for (const auto& w : peer.credit_waiters) {
        refuse_forwarded(w.id, w.forward, &ForwardRefusals::no_session, false);
    }
    peer.credit_waiters.clear();
    client_.forget_session(peer.relay_id);
    // The link object stays until the peer entry goes: a caller up the stack may still be
    // inside one of its calls.
}

// --- TCP -----------------------------------------------------------------------------------------

AgentCore::Pipe* AgentCore::find_pipe(TcpId id) {
    auto it = pipes_.find(id);
    return it == pipes_.end() ? nullptr : &it->second;
}

Connection* AgentCore::connection_of(const Pipe& p) {
    auto it = peers_.find(p.peer);
    if (it == peers_.end() || it->second.dead) return nullptr;
    return &it->second.link->connection();
}

void AgentCore::drain_pipe(TcpId id, Time now) {
    Pipe* p = find_pipe(id);
    if (!p) return;
    while (auto a = p->pipe.poll_action()) {
        switch (*a) {
            case PipeAction::kResumeReading:
                act(TcpResumeReading{id});
                break;
            case PipeAction::kPauseReading:
                act(TcpPauseReading{id});
                break;
            case PipeAction::kFlush:
                act(TcpFlush{id});
                break;
            case PipeAction::kShutdown:
                act(TcpShutdown{id});
                break;
            case PipeAction::kFinish:
                act(TcpFinish{id});
                break;
            case PipeAction::kClose:
                act(TcpClose{id});
                break;
            case PipeAction::kReset:
                act(TcpReset{id});
                if (p->origin.starts_with(kForwardOrigin)) {
                    auto fw = forwards_.find(p->origin.substr(kForwardOrigin.size()));
                    if (fw != forwards_.end()) fw->second.resets++;
                }
                break;
        }
    }
    if (auto note = p->pipe.note(); note && !p->noted) {
        p->noted = true;
        switch (*note) {
            case PipeNote::kRefusedByPeer:
                if (p->origin.starts_with(kForwardOrigin)) {
                    auto fw = forwards_.find(p->origin.substr(kForwardOrigin.size()));
                    if (fw != forwards_.end()) fw->second.refused.peer++;
                }
                warn_repeated(p->label + ": refused by the peer: " +
                                  reset_reason_text(p->pipe.reset_reason()),
                              now);
                break;
            case PipeNote::kResetByPeer:
                log(Severity::kDebug,
                    p->label + ": stream " + std::to_string(p->pipe.id()) +
                        " reset by the peer: " + reset_reason_text(p->pipe.reset_reason()));
                break;
            case PipeNote::kClientAborted:
                log(Severity::kDebug, p->label + ": stream " + std::to_string(p->pipe.id()) +
                                          ": tcp closed early, resetting");
                break;
        }
    }
    if (p->pipe.done()) {
        auto peer = peers_.find(p->peer);
        if (peer != peers_.end()) peer->second.streams.erase(p->pipe.id());
        pipes_.erase(id);
    }
}

void AgentCore::on_tcp_connected(TcpId id, Time now) {
    Pipe* p = find_pipe(id);
    if (!p) {
        act(TcpClose{id});
        return;
    }
    if (Connection* conn = connection_of(*p)) {
        p->pipe.on_tcp_connected(*conn);
    } else {
        p->pipe.session_gone();
    }
    drain_pipe(id, now);
    auto peer = peers_.find(p->peer);
    if (peer != peers_.end()) process(peer->second, now);
}

void AgentCore::on_tcp_connect_failed(TcpId id, ConnectFailure why, std::string_view error,
                                      Time now) {
    Pipe* p = find_pipe(id);
    if (!p) return;
    drops_.streams_refused++;
    warn_repeated("refused stream from " + p->peer + " to " +
                      p->origin.substr(p->origin.find(' ') + 1) + ": " + std::string(error),
                  now);
    p->pipe.refuse(connection_of(*p), why == ConnectFailure::kUnresolved ? ResetReason::kUnreachable
                                                                         : ResetReason::kRefused);
    const std::string peer_name = p->peer;
    drain_pipe(id, now);
    auto peer = peers_.find(peer_name);
    if (peer != peers_.end()) process(peer->second, now);
}

size_t AgentCore::tcp_read_space(TcpId id) const {
    auto it = pipes_.find(id);
    if (it == pipes_.end()) return 0;
    auto peer = peers_.find(it->second.peer);
    if (peer == peers_.end() || peer->second.dead) return 0;
    return it->second.pipe.read_space(peer->second.link->connection());
}

void AgentCore::on_tcp_data(TcpId id, ByteView data, Time now) {
    Pipe* p = find_pipe(id);
    if (!p) return;
    Connection* conn = connection_of(*p);
    if (!conn) return;
    p->pipe.on_tcp_data(*conn, data);
    const std::string peer_name = p->peer;
    drain_pipe(id, now);
    auto peer = peers_.find(peer_name);
    if (peer != peers_.end()) process(peer->second, now);
}

void AgentCore::on_tcp_eof(TcpId id, Time now) {
    Pipe* p = find_pipe(id);
    if (!p) return;
    Connection* conn = connection_of(*p);
    if (!conn) return;
    p->pipe.on_tcp_eof(*conn);
    const std::string peer_name = p->peer;
    drain_pipe(id, now);
    auto peer = peers_.find(peer_name);
    if (peer != peers_.end()) process(peer->second, now);
}

size_t AgentCore::tcp_output(TcpId id, MutableByteView out, Time now) {
    Pipe* p = find_pipe(id);
    if (!p) return 0;
    Connection* conn = connection_of(*p);
    if (!conn) return 0;
    const size_t n = p->pipe.read_output(*conn, out);
    if (n == 0) drain_pipe(id, now);  // a FIN may follow the last byte
    return n;
}

void AgentCore::on_tcp_drained(TcpId id, Time now) {
    Pipe* p = find_pipe(id);
    if (!p) return;
    if (Connection* conn = connection_of(*p)) p->pipe.on_tcp_drained(*conn);
    drain_pipe(id, now);
}

void AgentCore::on_tcp_shutdown_done(TcpId id, Time now) {
    Pipe* p = find_pipe(id);
    if (!p) return;
    p->pipe.on_tcp_shutdown_done();
    drain_pipe(id, now);
}

void AgentCore::on_tcp_closed(TcpId id, Time now) {
    // A connection that still waited for its stream.
    for (auto it = waiting_.begin(); it != waiting_.end(); ++it) {
        auto& q = it->second;
        auto w = std::find_if(q.begin(), q.end(), [&](const Waiter& x) { return x.id == id; });
        if (w == q.end()) continue;
        q.erase(w);
        if (q.empty()) waiting_.erase(it);
        return;
    }
    for (auto& [name, peer] : peers_) {
        auto& q = peer.credit_waiters;
        auto w = std::find_if(q.begin(), q.end(), [&](const auto& x) { return x.id == id; });
        if (w == q.end()) continue;
        q.erase(w);
        return;
    }
    Pipe* p = find_pipe(id);
    if (!p) return;
    p->pipe.on_tcp_closed(connection_of(*p));
    const std::string peer_name = p->peer;
    drain_pipe(id, now);
    auto peer = peers_.find(peer_name);
    if (peer != peers_.end()) process(peer->second, now);
}

// --- status --------------------------------------------------------------------------------------

AgentStatus AgentCore::status(Time now) const {
    AgentStatus s;
    s.name = config_.name;
    s.public_key = key_to_base64(public_key(config_.key));
    s.uptime_s = to_ms(now - started_at_) / 1000.0;
    s.server = to_string(config_.server);
    s.server_address = server_address_;
    s.server_state = client_.state();
    s.registered = client_.registered();
    s.udp_bound = client_.udp_bound();
    const uint64_t registrations = client_.stats().registrations;
    s.reconnects = registrations > 0 ? registrations - 1 : 0;
    s.keepalive_s = to_ms(client_.keepalive()) / 1000.0;
    s.keepalive_learned = !config_.keepalive;
    if (nat_) {
        s.nat = nat_->mapping;
        s.reflexive = nat_->mapped[0];
        s.allocation = nat_->allocation;
    }
    s.port_mapping = port_mapper_.status();
    std::map<std::string, uint64_t> active;
    for (const auto& [id, p] : pipes_) active[p.origin]++;
    for (const auto& [name, peer] : peers_) {
        if (peer.dead) continue;
        const PeerLink& link = *peer.link;
        const Connection& c = link.connection();
        PeerStatus ps;
        ps.peer = name;
        ps.session_id = peer.relay_id;
        ps.role = link.session().role();
        ps.state = link.session().state();
        ps.direct = link.direct().has_value();
        if (const auto& direct = link.direct()) {
            ps.path = link.direct_kind() == DirectKind::kTcp ? PathKind::kDirectTcp
                                                              : PathKind::kDirect;
            ps.path_address = *direct;
        } else if (client_.udp_bound()) {
            ps.path = PathKind::kRelayUdp;
            const auto port = client_.server_udp_port(UdpPort::kMain);
            if (server_address_ && port) {
                ps.path_address = *server_address_;
                ps.path_address->port = *port;
            }
        } else {
            ps.path = PathKind::kRelayTcp;
            ps.path_address = server_address_;
        }
        ps.congestion_window = c.congestion_window();
        ps.traffic = peer.traffic;
        ps.technique = link.technique() ? to_string(*link.technique()) : "";
        ps.prediction = link.paths().prediction();
        ps.rtt_ms = to_ms(c.rtt().smoothed());
        ps.connection = c.stats();
        ps.loss = ps.connection.packets_sent ? static_cast<double>(ps.connection.packets_lost) /
                                                   static_cast<double>(ps.connection.packets_sent)
                                             : 0.0;
        ps.session = link.session().stats();
        ps.paths = link.paths().stats();
        ps.streams = peer.streams.size();
        ps.may_open.assign(peer.may_open.begin(), peer.may_open.end());
        ps.may_accept.assign(peer.may_accept.begin(), peer.may_accept.end());
        ps.streams_awaiting_approval = peer.unapproved.size();
        s.peers.push_back(std::move(ps));
    }
    std::map<std::string, uint64_t> waiting;
    for (const auto& [key, waiters] : waiting_) {
        for (const Waiter& w : waiters) waiting[w.forward]++;
    }
    for (const auto& [name, peer] : peers_) {
        for (const auto& w : peer.credit_waiters) waiting[w.forward]++;
    }
    for (const auto& [key, f] : forwards_) {
        s.forwards.push_back(ForwardStatus{key, f.config.peer, f.config.service, f.connections,
                                           active[std::string(kForwardOrigin) + key],
                                           waiting[key], f.refused, f.resets, "tcp", std::nullopt});
    }
    const double idle_s = to_ms(config_.udp_idle_timeout) / 1000.0;
    for (const auto& [key, f] : udp_forwards_) {
        ForwardStatus fs;
        fs.listen = key;
        fs.peer = f.config.peer;
        fs.service = f.config.service;
        fs.protocol = "udp";
        fs.connections = f.counters.flows;
        fs.active = f.flows.size();
        fs.waiting = f.held.size();
        fs.udp = UdpStatus{f.flows.size(), f.flows.max_flows(), idle_s,
                           max_datagram_for(f.config.peer), f.counters};
        s.forwards.push_back(std::move(fs));
    }
    for (const auto& e : config_.expose) {
        auto it = expose_counters_.find(e.service);
        const ExposeCounters c = it != expose_counters_.end() ? it->second : ExposeCounters{};
        ExposeStatus es{e.service, to_string(e.target), e.allow, c.streams,
                        active["expose " + e.service], c.refused, "tcp", std::nullopt};
        if (e.protocol == ForwardProtocol::kUdp) {
            es.protocol = "udp";
            UdpStatus u;
            u.idle_timeout_s = idle_s;
            u.max_flows = config_.max_udp_flows;
            if (auto us = udp_services_.find(e.service); us != udp_services_.end()) {
                u.active_flows = us->second.flows.size();
                u.counters = us->second.counters;
                uint64_t largest = 0;
                us->second.flows.for_each([&](const auto& key, RouteId) {
                    largest = std::max(largest, max_datagram_for(key.first));
                });
                u.max_datagram = largest;
            }
            // Without flows: what a session with any allowed peer carries.
            for (const auto& peer : e.allow) {
                if (u.max_datagram == 0) u.max_datagram = max_datagram_for(peer);
            }
            es.streams = u.counters.flows;
            es.active = u.active_flows;
            es.refused = u.counters.drop_refused;
            es.udp = u;
        }
        s.exposes.push_back(std::move(es));
    }
    s.stun_servers = client_.stun_servers().status();
    s.stun_server_stats = client_.stun_servers().stats();
    s.client = client_.stats();
    s.drops = drops_;
    s.punch = punch_;
    return s;
}

void AgentCore::log(Severity severity, std::string line) {
    act(Log{severity, std::move(line)});
}

void AgentCore::warn_repeated(const std::string& key, Time now) {
    if (repeated_.note(key, now)) log(Severity::kWarn, key);
}

void AgentCore::log_repeated_summaries(Time now) {
    for (const auto& s : repeated_.due(now)) {
        log(Severity::kWarn, s.key + " (" + plural(s.count, "more time") + " in the last " +
                                 span_text(s.over) + ")");
    }
}

}  // namespace burrow
