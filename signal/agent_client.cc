#include "signal/agent_client.h"

#include <sodium.h>

#include <algorithm>
#include <array>
#include <iterator>

#include "signal/auth.h"
#include "signal/udp_messages.h"

namespace burrow {
namespace {

constexpr uint8_t kFirstPrintable = 0x20;  // control.h: text fields refuse C0 controls and DEL
constexpr uint8_t kDelete = 0x7f;

bool printable_char(char c) {
    const auto b = static_cast<uint8_t>(c);
    return b >= kFirstPrintable && b != kDelete;
}

// What the server's decoder accepts in a name (control.h): within the cap, no control
// characters. Anything else would make the server drop our whole connection.
bool valid_name(std::string_view s, size_t cap) {
    return !s.empty() && s.size() <= cap && std::all_of(s.begin(), s.end(), printable_char);
}

// Free text we send (software, our Error's message), made acceptable the same way.
std::string printable(std::string_view s, size_t cap) {
    std::string out;
    std::copy_if(s.begin(), s.end(), std::back_inserter(out), printable_char);
    if (out.size() > cap) out.resize(cap);
    return out;
}

std::string seconds(Duration d) {
    return std::to_string(std::chrono::duration_cast<std::chrono::seconds>(d).count()) + " s";
}

size_t port_index(UdpPort port) {
    return static_cast<size_t>(port);
}

// The probe's requests for the server's other-family address.
void mark_other_family(std::deque<ServerDatagram>& staged) {
    for (ServerDatagram& d : staged) d.other_family = true;
}

}  // namespace

const char* to_string(AgentClientState s) {
    switch (s) {
        case AgentClientState::kWaiting:
            return "waiting";
        case AgentClientState::kDialing:
            return "dialing";
        case AgentClientState::kAwaitingHello:
            return "awaiting-hello";
        case AgentClientState::kAwaitingAuthOk:
            return "awaiting-auth-ok";
        case AgentClientState::kOnline:
            return "online";
        case AgentClientState::kFailed:
            return "failed";
    }
    return "?";
}

AgentClient::AgentClient(AgentClientConfig config, Rng& rng, Time now)
    : config_(std::move(config)),
      public_key_(burrow::public_key(config_.key)),
      rng_(rng),
      reconnect_at_(now),
      probe_(printable(config_.software, kStunMaxTextEncode)),
      other_probe_(printable(config_.software, kStunMaxTextEncode)),
      stun_servers_(config_.stun_servers, printable(config_.software, kStunMaxTextEncode)) {
    config_.software = printable(config_.software, kMaxSoftwareLen);
    binding_.set_keepalive(config_.keepalive);
}

// --- dialing ------------------------------------------------------------------------------------

bool AgentClient::want_connect(Time now) const {
    return state_ == AgentClientState::kWaiting && now >= reconnect_at_;
}

Time AgentClient::reconnect_at() const {
    return state_ == AgentClientState::kWaiting ? reconnect_at_ : kNever;
}

std::optional<uint16_t> AgentClient::server_udp_port(UdpPort port) const {
    if (!server_ports_) return std::nullopt;
    return (*server_ports_)[port_index(port)];
}

void AgentClient::on_dial_started(Time now) {
    if (state_ == AgentClientState::kFailed) return;
    reset_connection();
    // Bytes meant for an earlier connection must never reach a new one.
    control_out_.clear();
    control_out_bytes_ = 0;
    state_ = AgentClientState::kDialing;
    state_deadline_ = now + kDialTimeout;
    stats_.dials++;
}

void AgentClient::on_connected(Time now) {
    if (state_ == AgentClientState::kWaiting) on_dial_started(now);  // src/ skipped the call
    if (state_ != AgentClientState::kDialing) return;
    state_ = AgentClientState::kAwaitingHello;
    state_deadline_ = now + kAuthTimeout;
    // The server is authenticated by TLS already, so its frames get the full cap from the start
    // (an Error before AuthOk may be longer than kMaxPreAuthFrame).
    decoder_ = ControlDecoder(kMaxControlFrame);
    last_input_ = now;
    stats_.connections++;
}

void AgentClient::on_disconnected(std::string_view reason, Time now) {
    switch (state_) {
        case AgentClientState::kDialing:
            disconnect("could not connect to the signalling server: " + std::string(reason), now);
            break;
        case AgentClientState::kAwaitingHello:
        case AgentClientState::kAwaitingAuthOk:
        case AgentClientState::kOnline:
            disconnect("connection to the signalling server lost: " + std::string(reason), now);
            break;
        case AgentClientState::kWaiting:
        case AgentClientState::kFailed:
            break;  // we ended this connection ourselves and said why
    }
}

// --- control messages ---------------------------------------------------------------------------

void AgentClient::on_control_bytes(ByteView bytes, Time now) {
    const auto connected = [this] {
        return state_ == AgentClientState::kAwaitingHello ||
               state_ == AgentClientState::kAwaitingAuthOk || state_ == AgentClientState::kOnline;
    };
    if (!connected()) {
        stats_.drop_control_unexpected++;
        return;
    }
    last_input_ = now;
    ping_sent_at_.reset();  // any input answers our Ping
    decoder_.feed(bytes);
    // A message may end the connection; what follows it is then not ours to read.
    while (connected()) {
        std::optional<ControlMessage> m = decoder_.next();
        if (!m) {
            if (std::optional<ControlDecodeError> e = decoder_.error()) {
                protocol_error(std::string("malformed data from the signalling server (") +
                                   to_string(*e) + ")",
                               now);
            }
            break;
        }
        handle(std::move(*m), now);
    }
}

void AgentClient::handle(ControlMessage&& m, Time now) {
    if (auto* e = std::get_if<ControlErrorMessage>(&m)) return on_server_error(*e, now);
    if (auto* ping = std::get_if<Ping>(&m)) return send_control(Pong{ping->value});
    switch (state_) {
        case AgentClientState::kAwaitingHello:
            if (auto* hello = std::get_if<ServerHello>(&m)) return on_server_hello(*hello, now);
            break;
        case AgentClientState::kAwaitingAuthOk:
            if (auto* ok = std::get_if<AuthOk>(&m)) return on_auth_ok(std::move(*ok), now);
            break;
        case AgentClientState::kOnline:
            if (auto* info = std::get_if<PeerInfo>(&m)) return on_peer_info(std::move(*info), now);
            if (auto* refused = std::get_if<ConnectRefused>(&m)) return emit(std::move(*refused));
            if (auto* data = std::get_if<RelayData>(&m)) return on_relay_data(std::move(*data));
            if (auto* d = std::get_if<RelayDetached>(&m)) return on_relay_detached(*d);
            if (auto* r = std::get_if<DoctorReply>(&m)) return emit(DoctorAnswer{std::move(*r)});
            if (std::holds_alternative<Pong>(m)) return;  // on_control_bytes took it as an answer
            break;
        default:
            return;
    }
    protocol_error(std::string("unexpected ") + message_name(m) + " from the signalling server (" +
                       to_string(state_) + ")",
                   now);
}

void AgentClient::on_server_hello(const ServerHello& hello, Time now) {
    (void)now;
    if (config_.server_key && *config_.server_key != hello.server_static_pub) {
        return fail("the signalling server's identity key " + key_to_base64(hello.server_static_pub) +
                    " is not the configured " + key_to_base64(*config_.server_key) +
                    ": check the server's key, or that this is the right server");
    }
    std::optional<AuthProof> proof =
        compute_auth_proof(config_.key, hello.server_static_pub, hello.nonce);
    if (!proof) {
        return fail(
            "the signalling server sent an invalid identity key (a low-order point): "
            "it is misconfigured or not a burrow server");
    }
    send_control(Auth{public_key_, *proof, config_.software});
    state_ = AgentClientState::kAwaitingAuthOk;
}

void AgentClient::on_auth_ok(AuthOk&& ok, Time now) {
    state_ = AgentClientState::kOnline;
    state_deadline_ = kNever;
    name_ = std::move(ok.name);
    udp_token_ = ok.udp_token;
    // Bind and relay go to relay_udp_port; the secondary port is the other STUN port.
    const uint16_t secondary =
        ok.stun_ports[1] != ok.relay_udp_port ? ok.stun_ports[1] : ok.stun_ports[0];
    server_ports_ = std::array<uint16_t, 2>{ok.relay_udp_port, secondary};
    registered_ = false;
    std::deque<ServerDatagram> staged;
    probe_.start(rng_, now, staged);
    binding_.start(udp_token_, now, staged);
    other_nat_.reset();
    const bool other_family_host =
        other_family_v6_ && std::any_of(host_candidates_.begin(), host_candidates_.end(),
                                        [&](const SocketAddress& a) {
                                            return a.v6 == *other_family_v6_;
                                        });
    if (other_family_host) {
        std::deque<ServerDatagram> other;
        other_probe_.start(rng_, now, other);
        mark_other_family(other);
        queue_udp(other);
    } else {
        other_probe_.stop();
    }
    // Each registration asks the STUN servers again, as it asks the server's ports.
    stun_servers_.start(rng_, now);
    queue_udp(staged);
    reported_binding_ = UdpBindingStatus::kUnknown;
    attach_sessions();
}

void AgentClient::attach_sessions() {
    for (const auto& [id, s] : sessions_) {
        send_control(RelayAttach{id, s.peer, s.token, s.role});
        stats_.relay_attaches++;
    }
}

bool AgentClient::send_punch_report(PunchReport report) {
    if (!online()) return false;
    if (report.candidates.size() > kMaxCandidates) report.candidates.resize(kMaxCandidates);
    if (report.tried.size() > kMaxCandidates) report.tried.resize(kMaxCandidates);
    send_control(report);
    return true;
}

bool AgentClient::request_doctor(uint32_t request_id, std::string_view peer) {
    if (!online() || !valid_name(peer, kMaxAgentNameLen)) return false;
    send_control(DoctorRequest{request_id, std::string(peer)});
    return true;
}

void AgentClient::on_relay_detached(const RelayDetached& d) {
    if (sessions_.erase(d.session_id) == 0) {
        stats_.drop_relay_unknown_session++;
        return;
    }
    emit(RelaySessionDetached{d.session_id, d.reason});
}

void AgentClient::on_server_error(const ControlErrorMessage& e, Time now) {
    const std::string said = e.message.empty() ? "" : " (server says: " + e.message + ")";
    switch (static_cast<ControlErrorCode>(e.code)) {
        case ControlErrorCode::kUnknownKey:
            return fail("the signalling server does not know this agent's key " +
                        key_to_base64(public_key_) + ": add it as an [[agent]] to server.toml" + said);
        case ControlErrorCode::kAuthFailed:
            return fail("the signalling server rejected this agent's authentication" + said +
                        ": check that the agent's key file is the one server.toml lists");
        case ControlErrorCode::kReplaced:
            return fail(
                "another agent with this key connected to the signalling server and "
                "replaced this one: run only one agent per key");
        default:
            return disconnect("the signalling server closed the connection: error " +
                                  std::to_string(e.code) + said,
                              now);
    }
}

void AgentClient::on_peer_info(PeerInfo&& info, Time now) {
    remember_session(info);
    const Duration delay =
        std::min<Duration>(std::chrono::milliseconds(info.start_in_ms), kMaxRendezvousDelay);
    emit(PeerReady{std::move(info), now + delay});
}

void AgentClient::on_relay_data(RelayData&& data) {
    if (!sessions_.contains(data.session_id)) {
        stats_.drop_relay_unknown_session++;
        return;
    }
    stats_.relay_received_tls++;
    emit(RelayReceived{data.session_id, std::move(data.payload), RelayTransport::kTls});
}

// --- UDP ----------------------------------------------------------------------------------------

void AgentClient::on_udp(UdpPort from, ByteView datagram, Time now) {
    if (!online()) {
        stats_.drop_udp_unexpected++;
        return;
    }
    if (is_stun(datagram)) return on_probe_answer(probe_.on_stun(from, datagram), now);
    if (datagram.empty()) {
        stats_.drop_udp_malformed++;
        return;
    }
    const uint8_t type = datagram[0];
    if (type != kUdpTypeBindOk && type != kUdpTypeBindMoved && type != kUdpTypeRelay) {
        stats_.drop_udp_malformed++;
        return;
    }
    // The server sends BindOk and relay traffic from its main port only.
    if (from != UdpPort::kMain) {
        stats_.drop_udp_unexpected++;
        return;
    }
    if (type == kUdpTypeRelay) return on_relay_datagram(datagram, now);
    const BindAnswerKind answer = binding_.on_bind_ok(datagram, now);
    if (answer == BindAnswerKind::kNotOurs) {
        stats_.drop_udp_unexpected++;
        return;
    }
    if (answer == BindAnswerKind::kMoved) {
        stats_.udp_moves++;
        emit(UdpMoved{binding_.refresh_interval(), binding_.learning()});
        // The NAT gave us a new public address: what the STUN servers saw is stale.
        stun_servers_.start(rng_, now);
    }
    report_binding();
}

void AgentClient::on_other_family_udp(UdpPort from, ByteView datagram, Time now) {
    if (!online() || !is_stun(datagram)) {
        stats_.drop_udp_unexpected++;
        return;
    }
    on_probe_answer(other_probe_.on_stun(from, datagram), now);
}

// A STUN answer to either family's NAT probe: one that completes it may let us register.
void AgentClient::on_probe_answer(StunAnswer answer, Time now) {
    switch (answer) {
        case StunAnswer::kAccepted:
            maybe_register(now);
            break;
        case StunAnswer::kUnmatched:
            stats_.drop_stun_unmatched++;
            break;
        case StunAnswer::kMalformed:
            stats_.drop_stun_malformed++;
            break;
    }
}

void AgentClient::on_relay_datagram(ByteView datagram, Time now) {
    (void)now;
    std::optional<RelayDatagram> relay = decode_relay_datagram(datagram);
    if (!relay) {
        stats_.drop_udp_malformed++;
        return;
    }
    auto it = sessions_.find(relay->session_id);
    if (it == sessions_.end()) {
        stats_.drop_relay_unknown_session++;
        return;
    }
    const RelayToken& token = it->second.token;
    if (sodium_memcmp(relay->token.data(), token.data(), token.size()) != 0) {
        stats_.drop_relay_bad_token++;
        return;
    }
    stats_.relay_received_udp++;
    emit(RelayReceived{relay->session_id, Bytes(relay->payload.begin(), relay->payload.end()),
                       RelayTransport::kUdp});
}

void AgentClient::report_binding() {
    const UdpBindingStatus now_status = binding_.status();
    if (now_status == reported_binding_) return;
    reported_binding_ = now_status;
    if (now_status == UdpBindingStatus::kBound) emit(UdpBound{});
    if (now_status == UdpBindingStatus::kBlocked) emit(UdpBlocked{kUdpRequestMaxTries});
}

void AgentClient::queue_udp(std::deque<ServerDatagram>& staged) {
    for (ServerDatagram& d : staged) {
        udp_out_bytes_ += d.bytes.size();
        udp_out_.push_back(std::move(d));
    }
    staged.clear();
}

// --- registration and connects ------------------------------------------------------------------

std::vector<Candidate> AgentClient::candidates() const {
    std::vector<SocketAddress> reflexive;
    for (const std::optional<NatProbeResult>* probe : {&nat_, &other_nat_}) {
        if (*probe && (*probe)->mapped[port_index(UdpPort::kMain)]) {
            reflexive.push_back(*(*probe)->mapped[port_index(UdpPort::kMain)]);
        }
    }
    for (const SocketAddress& a : stun_servers_.mapped()) reflexive.push_back(a);
    std::vector<Candidate> cs;
    const size_t mapped = mapped_candidate_ ? 1 : 0;
    // Room is kept for the reflexive and mapped candidates: they are the ones that work across
    // NATs.
    for (const SocketAddress& a : host_candidates_) {
        if (cs.size() + reflexive.size() + mapped >= kMaxCandidates) break;
        cs.push_back(Candidate{CandidateKind::kHost, a});
    }
    // Before the reflexive ones: a gateway's mapping answers any peer, and an address that is
    // both (a full-cone NAT that also mapped the port) is offered as the stronger kind.
    if (mapped_candidate_) cs.push_back(Candidate{CandidateKind::kMapped, *mapped_candidate_});
    for (const SocketAddress& srflx : reflexive) {
        // A host without NAT sees its own address reflected, and servers behind one
        // endpoint-independent mapping all see the same address: one candidate is enough.
        if (cs.size() < kMaxCandidates &&
            std::none_of(cs.begin(), cs.end(),
                         [&](const Candidate& c) { return c.address == srflx; })) {
            cs.push_back(Candidate{CandidateKind::kServerReflexive, srflx});
        }
    }
    // TCP last: a direct TCP path is the fallback where UDP cannot get through, and the server
    // needs one slot for the tcp-srflx candidate it adds.
    for (const SocketAddress& a : tcp_host_candidates_) {
        if (cs.size() + 1 >= kMaxCandidates) break;
        cs.push_back(Candidate{CandidateKind::kTcpHost, a});
    }
    return cs;
}

NatMapping AgentClient::mapping() const {
    if (!nat_) return NatMapping::kUnknown;
    // Each probe's family is that of the addresses it saw (a probe nobody answered says
    // nothing either way).
    std::array<const NatProbeResult*, 2> probe_of{};  // [v6]
    for (const std::optional<NatProbeResult>* probe : {&nat_, &other_nat_}) {
        if (!*probe) continue;
        for (const std::optional<SocketAddress>& seen : (*probe)->mapped) {
            if (seen) {
                probe_of[seen->v6 ? 1 : 0] = &**probe;
                break;
            }
        }
    }
    const std::vector<SocketAddress> stun = stun_servers_.mapped();
    std::array<NatMapping, 2> verdict{};
    for (size_t v6 = 0; v6 < 2; ++v6) {
        // A mapping is compared with the mappings of its own family only: an IPv4 and an IPv6
        // address always differ, and say nothing about how either NAT maps.
        std::vector<SocketAddress> same;
        std::copy_if(stun.begin(), stun.end(), std::back_inserter(same),
                     [&](const SocketAddress& a) { return a.v6 == (v6 == 1); });
        const NatProbeResult* p = probe_of[v6];
        verdict[v6] = refine_mapping(p ? p->mapping : NatMapping::kUnknown,
                                     p ? p->mapped[port_index(UdpPort::kMain)] : std::nullopt,
                                     same, host_candidates_);
    }
    return verdict[0] != NatMapping::kUnknown ? verdict[0] : verdict[1];
}

PortAllocation AgentClient::allocation() const {
    std::vector<uint16_t> ports;
    if (nat_) {
        for (const auto& m : nat_->mapped) {
            if (m) ports.push_back(m->port);
        }
    }
    for (const StunServerStatus& st : stun_servers_.status()) {
        if (st.mapped) ports.push_back(st.mapped->port);
    }
    return measure_allocation(ports);
}

void AgentClient::send_register() {
    Register r{candidates(), mapping(), allocation()};
    if (registered_as_ && *registered_as_ == r) return;
    send_control(r);
    registered_as_ = std::move(r);
}

void AgentClient::set_stun_server_address(size_t i, std::optional<SocketAddress> address,
                                          std::string error, Time now) {
    stun_servers_.set_address(i, std::move(address), std::move(error));
    if (online()) stun_servers_.probe(i, rng_, now);
}

void AgentClient::on_stun_server_udp(const SocketAddress& from, ByteView datagram, Time now) {
    stun_servers_.on_datagram(from, datagram, now);
    after_stun_servers();
}

void AgentClient::after_stun_servers() {
    bool changed = false;
    while (auto e = stun_servers_.poll_event()) {
        if (auto* a = std::get_if<StunServerAnswered>(&*e)) {
            const StunServerStatus st = stun_servers_.status()[a->index];
            if (a->changed) {
                changed = true;
                emit(StunServerReport{st.server, a->mapped, st.rtt, st.requests});
            }
        } else if (auto* silent = std::get_if<StunServerSilent>(&*e)) {
            const StunServerStatus st = stun_servers_.status()[silent->index];
            changed = true;  // a stale address it saw may have left the candidates
            emit(StunServerReport{st.server, std::nullopt, Duration{}, st.requests});
        }
    }
    if (!changed || !registered()) return;
    const NatMapping before = registered_as_ ? registered_as_->nat : NatMapping::kUnknown;
    send_register();
    const PortAllocation allocation = this->allocation();
    if (registered_as_->nat != before || allocation != reported_allocation_) {
        reported_allocation_ = allocation;
        emit(NatDiscovered{nat_->mapped, registered_as_->nat, allocation});
    }
}

void AgentClient::maybe_register(Time now) {
    if (!online() || registered_ || !probe_.finished() || other_probe_.running()) return;
    nat_ = probe_.result();
    if (other_probe_.finished()) other_nat_ = other_probe_.result();
    registered_as_.reset();
    send_register();
    reported_allocation_ = allocation();
    emit(NatDiscovered{nat_->mapped, registered_as_->nat, reported_allocation_});
    registered_ = true;
    backoff_.reset();
    stats_.registrations++;
    emit(Registered{name_, registered_as_->candidates, registered_as_->nat});
    flush_pending_connects(now);
}

void AgentClient::set_host_candidates(std::vector<SocketAddress> addresses, Time now) {
    std::vector<SocketAddress> unique;
    for (const SocketAddress& a : addresses) {
        if (std::find(unique.begin(), unique.end(), a) == unique.end()) unique.push_back(a);
    }
    host_candidates_ = std::move(unique);
    if (!registered()) return;
    registered_as_.reset();
    send_register();
    // The network changed: ask the STUN servers again what they see.
    stun_servers_.start(rng_, now);
}

void AgentClient::set_mapped_candidate(std::optional<SocketAddress> mapped) {
    if (mapped == mapped_candidate_) return;
    mapped_candidate_ = mapped;
    if (registered()) send_register();
}

void AgentClient::connect(std::string_view peer, std::string_view service, uint64_t session_id,
                          Time now) {
    if (!valid_name(peer, kMaxAgentNameLen)) {
        return refuse_locally(
            std::string(peer), std::string(service),
            "invalid peer name (1-" + std::to_string(kMaxAgentNameLen) + " printable characters)");
    }
    if (!valid_name(service, kMaxServiceNameLen)) {
        return refuse_locally(std::string(peer), std::string(service),
                              "invalid service name (1-" + std::to_string(kMaxServiceNameLen) +
                                  " printable characters)");
    }
    if (state_ == AgentClientState::kFailed) {
        return refuse_locally(std::string(peer), std::string(service),
                              "not authenticated with the signalling server");
    }
    if (registered()) {
        send_control(ConnectRequest{std::string(peer), std::string(service), session_id});
        return;
    }
    if (pending_connects_.size() >= kMaxPendingConnects) {
        return refuse_locally(std::string(peer), std::string(service),
                              "too many connects waiting for the signalling server");
    }
    pending_connects_.push_back(PendingConnect{std::string(peer), std::string(service), session_id,
                                               now + kPendingConnectTimeout});
}

void AgentClient::flush_pending_connects(Time now) {
    expire_pending_connects(now);
    for (PendingConnect& p : pending_connects_) {
        send_control(ConnectRequest{std::move(p.peer), std::move(p.service), p.session_id});
    }
    pending_connects_.clear();
}

void AgentClient::expire_pending_connects(Time now) {
    std::deque<PendingConnect> kept;
    for (PendingConnect& p : pending_connects_) {
        if (now >= p.deadline) {
            refuse_locally(std::move(p.peer), std::move(p.service),
                           "not registered with the signalling server within " +
                               seconds(kPendingConnectTimeout) + " (server unreachable?)");
        } else {
            kept.push_back(std::move(p));
        }
    }
    pending_connects_ = std::move(kept);
}

void AgentClient::refuse_locally(std::string peer, std::string service, std::string reason) {
    stats_.connects_refused_locally++;
    emit(ConnectRefused{std::move(peer), std::move(service), std::move(reason)});
}

// --- relay --------------------------------------------------------------------------------------

void AgentClient::remember_session(const PeerInfo& info) {
    const uint64_t id = info.session_id;
    if (!sessions_.contains(id) && sessions_.size() >= kMaxRelaySessions) {
        auto oldest = std::min_element(sessions_.begin(), sessions_.end(), [](auto& a, auto& b) {
            return a.second.age < b.second.age;
        });
        sessions_.erase(oldest);
    }
    sessions_[id] = KnownSession{info.relay_token, info.peer, info.role, session_age_++};
}

void AgentClient::forget_session(uint64_t session_id) {
    sessions_.erase(session_id);
}

bool AgentClient::send_relay(uint64_t session_id, ByteView payload, Time now) {
    (void)now;
    if (!online()) {
        stats_.drop_relay_offline++;
        return false;
    }
    if (payload.size() > kMaxRelayPayload) {
        stats_.drop_relay_too_large++;
        return false;
    }
    auto it = sessions_.find(session_id);
    if (it == sessions_.end()) {
        stats_.drop_relay_unknown_session++;
        return false;
    }
    if (binding_.bound()) {
        if (udp_out_bytes_ + kRelayFromHeaderSize + payload.size() > kMaxQueuedRelayBytes) {
            stats_.drop_relay_queue_full++;
            return false;
        }
        std::deque<ServerDatagram> staged;
        staged.push_back(ServerDatagram{
            UdpPort::kMain,
            encode_relay_from_datagram(session_id, it->second.token, udp_token_, payload)});
        queue_udp(staged);
        stats_.relay_sent_udp++;
        return true;
    }
    if (control_out_bytes_ + payload.size() > kMaxQueuedRelayBytes) {
        stats_.drop_relay_queue_full++;
        return false;
    }
    send_control(RelayData{session_id, Bytes(payload.begin(), payload.end())});
    stats_.relay_sent_tls++;
    return true;
}

// --- timers and outputs -------------------------------------------------------------------------

void AgentClient::on_timer(Time now) {
    expire_pending_connects(now);
    switch (state_) {
        case AgentClientState::kDialing:
            if (now >= state_deadline_) {
                disconnect(
                    "could not connect to the signalling server within " + seconds(kDialTimeout),
                    now);
            }
            break;
        case AgentClientState::kAwaitingHello:
        case AgentClientState::kAwaitingAuthOk:
            if (now >= state_deadline_) {
                disconnect("the signalling server did not complete authentication within " +
                               seconds(kAuthTimeout),
                           now);
            }
            break;
        case AgentClientState::kOnline: {
            if (now >= last_input_ + kServerSilenceTimeout) {
                disconnect("nothing heard from the signalling server for " +
                               seconds(kServerSilenceTimeout),
                           now);
                break;
            }
            if (ping_sent_at_ && now >= *ping_sent_at_ + kPongTimeout) {
                disconnect("the signalling server did not answer a ping within " +
                               seconds(kPongTimeout),
                           now);
                break;
            }
            if (!ping_sent_at_ && now >= last_input_ + kQuietBeforePing) {
                send_control(Ping{++ping_value_});
                ping_sent_at_ = now;
            }
            std::deque<ServerDatagram> staged;
            probe_.on_timer(now, staged);
            binding_.on_timer(now, staged);
            queue_udp(staged);
            other_probe_.on_timer(now, staged);
            mark_other_family(staged);
            queue_udp(staged);
            report_binding();
            maybe_register(now);
            stun_servers_.on_timer(now);
            after_stun_servers();
            break;
        }
        case AgentClientState::kWaiting:
        case AgentClientState::kFailed:
            break;
    }
}

Time AgentClient::next_deadline() const {
    Time next = kNever;
    for (const PendingConnect& p : pending_connects_) next = std::min(next, p.deadline);
    switch (state_) {
        case AgentClientState::kWaiting:
            return std::min(next, reconnect_at_);
        case AgentClientState::kDialing:
        case AgentClientState::kAwaitingHello:
        case AgentClientState::kAwaitingAuthOk:
            return std::min(next, state_deadline_);
        case AgentClientState::kOnline:
            return std::min({next, last_input_ + kServerSilenceTimeout, ping_deadline(),
                             probe_.next_deadline(), other_probe_.next_deadline(),
                             binding_.next_deadline(),
                             stun_servers_.next_deadline()});
        case AgentClientState::kFailed:
            return next;
    }
    return next;
}

Time AgentClient::ping_deadline() const {
    return ping_sent_at_ ? *ping_sent_at_ + kPongTimeout : last_input_ + kQuietBeforePing;
}

std::optional<Bytes> AgentClient::poll_control() {
    if (control_out_.empty()) return std::nullopt;
    Bytes b = std::move(control_out_.front());
    control_out_.pop_front();
    control_out_bytes_ -= b.size();
    return b;
}

std::optional<ServerDatagram> AgentClient::poll_udp() {
    if (udp_out_.empty()) return std::nullopt;
    ServerDatagram d = std::move(udp_out_.front());
    udp_out_.pop_front();
    udp_out_bytes_ -= d.bytes.size();
    return d;
}

std::optional<AgentEvent> AgentClient::poll_event() {
    if (events_.empty()) return std::nullopt;
    AgentEvent e = std::move(events_.front());
    events_.pop_front();
    return e;
}

// --- connection state ---------------------------------------------------------------------------

void AgentClient::send_control(const ControlMessage& m) {
    Bytes frame = encode_control(m);
    control_out_bytes_ += frame.size();
    control_out_.push_back(std::move(frame));
}

void AgentClient::reset_connection() {
    probe_.stop();
    other_probe_.stop();
    other_nat_.reset();
    stun_servers_.stop();
    registered_as_.reset();
    binding_.stop();
    reported_binding_ = UdpBindingStatus::kUnknown;
    nat_.reset();
    registered_ = false;
    // sessions_ stay: attach_sessions() asks for them back once authenticated again.
    udp_out_.clear();
    udp_out_bytes_ = 0;
    sodium_memzero(udp_token_.data(), udp_token_.size());
    server_ports_.reset();
    state_deadline_ = kNever;
    ping_sent_at_.reset();
}

void AgentClient::disconnect(std::string reason, Time now) {
    if (state_ == AgentClientState::kWaiting || state_ == AgentClientState::kFailed) return;
    reset_connection();
    state_ = AgentClientState::kWaiting;
    reconnect_at_ = now + backoff_.next_delay(rng_);
    stats_.disconnects++;
    emit(Disconnected{std::move(reason), reconnect_at_});
}

void AgentClient::protocol_error(std::string reason, Time now) {
    // Tell the server why we hang up, so its log shows it too.
    send_control(ControlErrorMessage{static_cast<uint16_t>(ControlErrorCode::kProtocol),
                                     printable(reason, kMaxControlTextLen)});
    disconnect(std::move(reason), now);
}

void AgentClient::fail(std::string reason) {
    reset_connection();
    state_ = AgentClientState::kFailed;
    emit(AuthFailed{std::move(reason)});
    std::deque<PendingConnect> pending = std::move(pending_connects_);
    pending_connects_.clear();
    for (PendingConnect& p : pending) {
        refuse_locally(std::move(p.peer), std::move(p.service),
                       "not authenticated with the signalling server");
    }
}

}  // namespace burrow
