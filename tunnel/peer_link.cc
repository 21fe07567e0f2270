#include "tunnel/peer_link.h"

#include <algorithm>
#include <cassert>

#include "tunnel/path_probe.h"

namespace burrow {

const char* to_string(DirectSource s) {
    switch (s) {
        case DirectSource::kHost:
            return "host";
        case DirectSource::kServerReflexive:
            return "srflx";
        case DirectSource::kPeerReflexive:
            return "prflx";
        case DirectSource::kBirthday:
            return "birthday";
        case DirectSource::kMapped:
            return "mapped";
        case DirectSource::kPredicted:
            return "predicted";
        case DirectSource::kTcpHost:
            return "tcp-host";
        case DirectSource::kTcpServerReflexive:
            return "tcp-srflx";
        case DirectSource::kTcpPeerReflexive:
            return "tcp-prflx";
    }
    return "?";
}

PeerLink::PeerLink(const PeerLinkConfig& config, Rng& rng, Time now)
    : rng_(rng),
      created_at_(now),
      session_(config.role, config.local_key, config.peer_key, config.session, rng, now,
               config.wall_clock_at_zero_us),
      paths_(rng) {}

void PeerLink::start(Time now) {
    session_.start(now);
}

void PeerLink::set_punch_plan(PunchPlan plan, Time now) {
    const bool punching = technique_.has_value();
    plan_ = std::move(plan);
    if (punching) {
        paths_.add_candidates(plan_->candidates, now);
        paths_.on_timer(now);
    }
    after_input(now);
}

bool PeerLink::claims(const SocketAddress& from, ByteView datagram) const {
    if (auto index = Session::receiver_index(datagram)) return session_.owns_index(*index);
    // A handshake message (a rekey) names no index of ours: it is ours when it comes from an
    // address this link knows.
    return !datagram.empty() && paths_.knows(from);
}

LinkVerdict PeerLink::on_datagram(RouteId route, const SocketAddress& from, ByteView datagram,
                                  Time now) {
    receive_copy_.assign(datagram.begin(), datagram.end());
    return on_datagram(route, from, MutableByteView(receive_copy_), now);
}

LinkVerdict PeerLink::on_datagram(RouteId route, const SocketAddress& from,
                                  MutableByteView datagram, Time now) {
    LinkVerdict verdict = LinkDropped{LinkDrop::kRefused};
    const bool tcp = is_tcp_route(route);
    if (tcp && !datagram.empty() && datagram[0] == kPacketTypeProbe) {
        // On a TCP connection the route is the path: answers go back on it (write_transmit).
        if (auto probe = session_.open_probe(datagram, now)) {
            paths_.on_probe(tcp_routes_.at(route), *probe, now, DirectKind::kTcp);
            verdict = LinkAccepted{probe->kind == ProbeKind::kChallenge ? DatagramKind::kChallenge
                                                                        : DatagramKind::kResponse};
        }
    } else if (route != kRouteRelay && !datagram.empty() && datagram[0] == kPacketTypeProbe) {
        if (auto probe = session_.open_probe(datagram, now)) {
            // Authenticated. With birthday sockets, the peer's spray (or its answers to our
            // opening probes) may reach several of our mappings, the main socket's among them:
            // each is a path the peer sees as its own address of ours. Until the peer's data
            // shows which one it chose (follow_socket), our packets to `from` leave by the
            // first socket it reached: the peer most likely validated that one first.
            if (!sockets_.empty() && route != kRouteRelay) {
                routes_.try_emplace(from, route);
                if (route != kRouteMain) heard_.insert(route);
            }
            // A challenge is answered by the socket it came in on, whatever socket our data
            // uses: the peer is checking that mapping, and an answer from another one would
            // not validate it (issue 19: the answers all left by the first socket, so the peer
            // learned only that mapping while it kept probing the others). A challenge is never
            // the peer's choice: it probes every address of ours it knows, on its schedule.
            if (probe->kind == ProbeKind::kChallenge && route != kRouteRelay) {
                if (answer_routes_.size() >= kMaxQueuedProbes) answer_routes_.pop_front();
                answer_routes_.push_back(AnswerRoute{from, probe->data, route});
            }
            paths_.on_probe(from, *probe, now);
            verdict = LinkAccepted{probe->kind == ProbeKind::kChallenge ? DatagramKind::kChallenge
                                                                        : DatagramKind::kResponse};
        }
    } else {
        switch (session_.on_datagram(datagram, now, from)) {
            case Session::Input::kData:
                if (tcp) {
                    paths_.on_authenticated(tcp_routes_.at(route), now, DirectKind::kTcp);
                } else if (route != kRouteRelay) {
                    paths_.on_authenticated(from, now);
                    follow_socket(from, route);
                }
                verdict = LinkAccepted{DatagramKind::kData};
                break;
            case Session::Input::kHandshake:
                verdict = LinkAccepted{DatagramKind::kHandshake};
                break;
            case Session::Input::kDropped:
                verdict = LinkDropped{LinkDrop::kRefused};
                break;
            case Session::Input::kCookieReply:
                // Under load: the answer goes back where the initiation came from, whatever
                // path the session uses, since the cookie is bound to that address.
                if (auto reply = session_.take_cookie_reply();
                    reply && cookie_replies_.size() >= kMaxQueuedCookieReplies) {
                    ++stats_.cookie_replies_dropped;
                } else if (reply) {
                    cookie_replies_.push_back(
                        LinkTransmit{route, from, std::move(*reply), DatagramKind::kHandshake});
                }
                verdict = LinkDropped{LinkDrop::kRefused};
                break;
        }
    }
    after_input(now);
    return verdict;
}

void PeerLink::on_timer(Time now) {
    session_.on_timer(now);
    if (probing()) paths_.on_timer(now);
    if (now >= birthday_round_at_) birthday_round(now);
    if (now >= punch_verdict_at_) {
        punch_verdict_at_ = kNever;
        events_.push_back(LinkPunchFallback{*technique_});
    }
    after_input(now);
}

Time PeerLink::next_deadline() const {
    if (!cookie_replies_.empty()) return Time{};
    Time t = std::min({session_.next_deadline(), birthday_round_at_, punch_verdict_at_});
    if (probing()) t = std::min(t, paths_.next_deadline());
    return t;
}

std::optional<LinkTransmit> PeerLink::poll_transmit(Time now) {
    Bytes out(max_datagram_size());
    const auto w = write_transmit(now, out);
    if (!w) return std::nullopt;
    out.resize(w->size);
    return LinkTransmit{w->route, w->to, std::move(out), w->kind, w->path};
}

std::optional<LinkWrite> PeerLink::write_transmit(Time now, MutableByteView out) {
    assert(out.size() >= max_datagram_size());
    // Probes are small and rare: sealed apart, then copied into the caller's buffer.
    const auto place = [&](const Bytes& sealed) {
        assert(sealed.size() <= out.size());
        std::copy(sealed.begin(), sealed.end(), out.begin());
        return sealed.size();
    };
    if (!cookie_replies_.empty()) {
        LinkTransmit t = std::move(cookie_replies_.front());
        cookie_replies_.pop_front();
        return LinkWrite{t.route, t.to, place(t.data), t.kind};
    }
    while (auto probe = paths_.poll_probe()) {
        auto sealed = session_.seal_probe(probe->probe, now);
        if (!sealed) {
            ++stats_.probes_unsealed;
            continue;
        }
        const DatagramKind kind = probe->probe.kind == ProbeKind::kChallenge
                                      ? DatagramKind::kChallenge
                                      : DatagramKind::kResponse;
        if (probe->kind == DirectKind::kTcp) {
            const auto route = tcp_route_to(probe->to);
            if (!route) continue;  // the connection closed since the probe was queued
            return LinkWrite{*route, probe->to, place(*sealed), kind, DirectKind::kTcp};
        }
        return LinkWrite{probe->probe.kind == ProbeKind::kResponse ? answer_route(*probe)
                                                                   : route_to(probe->to),
                         probe->to, place(*sealed), kind};
    }
    while (!openings_.empty() && plan_ && plan_->reflexive) {
        const RouteId route = openings_.front();
        openings_.pop_front();
        const Probe opening{ProbeKind::kChallenge, random_path_data(rng_)};
        if (auto sealed = session_.seal_probe(opening, now)) {
            ++stats_.opening_probes;
            return LinkWrite{route, *plan_->reflexive, place(*sealed), DatagramKind::kOpening};
        }
        ++stats_.probes_unsealed;
    }
    const size_t size = session_.write_transmit(now, out);
    if (size == 0) return std::nullopt;
    const DatagramKind kind =
        out[0] == kPacketTypeData ? DatagramKind::kData : DatagramKind::kHandshake;
    if (const auto& direct = paths_.active()) {
        if (paths_.active_kind() == DirectKind::kTcp) {
            if (const auto route = tcp_route_to(*direct)) {
                return LinkWrite{*route, *direct, size, kind, DirectKind::kTcp};
            }
        } else {
            return LinkWrite{route_to(*direct), *direct, size, kind};
        }
    }
    return LinkWrite{kRouteRelay, SocketAddress{}, size, kind};
}

std::optional<LinkEvent> PeerLink::poll_event() {
    if (events_.empty()) return std::nullopt;
    LinkEvent e = std::move(events_.front());
    events_.pop_front();
    return e;
}

void PeerLink::add_sockets(const std::vector<RouteId>& routes, Time now) {
    sockets_.insert(sockets_.end(), routes.begin(), routes.end());
    stats_.birthday_sockets += routes.size();
    if (!sockets_.empty() && birthday_round_at_ == kNever && !paths_.active()) {
        birthday_round_at_ = now;
        birthday_round(now);
    }
}

void PeerLink::add_tcp_path(RouteId route, const SocketAddress& peer, Time now) {
    if (const auto old = tcp_route_to(peer)) tcp_routes_.erase(*old);  // replaced
    tcp_routes_[route] = peer;
    paths_.add_tcp_path(peer, now);
    if (probing()) paths_.on_timer(now);
    after_input(now);
}

void PeerLink::remove_tcp_path(RouteId route, Time now) {
    auto it = tcp_routes_.find(route);
    if (it == tcp_routes_.end()) return;
    const SocketAddress peer = it->second;
    tcp_routes_.erase(it);
    tcp_blocked_.erase(route);
    paths_.remove_tcp_path(peer, now);
    after_input(now);
}

void PeerLink::set_tcp_writable(RouteId route, bool writable) {
    if (!tcp_routes_.contains(route)) return;
    if (writable) {
        tcp_blocked_.erase(route);
    } else {
        tcp_blocked_.insert(route);
    }
    update_path_writable();
}

// The Connection builds packets while the path in use takes them: always on UDP and the relay,
// on TCP while its socket is writable.
void PeerLink::update_path_writable() {
    bool writable = true;
    if (paths_.active() && paths_.active_kind() == DirectKind::kTcp) {
        const auto route = tcp_route_to(*paths_.active());
        writable = !route || !tcp_blocked_.contains(*route);
    }
    session_.connection().set_path_writable(writable);
}

std::optional<RouteId> PeerLink::tcp_route_to(const SocketAddress& to) const {
    for (const auto& [route, peer] : tcp_routes_) {
        if (peer == to) return route;
    }
    return std::nullopt;
}

void PeerLink::remove_socket(RouteId route) {
    if (std::erase(sockets_, route) == 0) return;
    ++stats_.sockets_failed;
    std::erase(openings_, route);
    std::erase_if(routes_, [&](const auto& entry) { return entry.second == route; });
}

// --- private -----------------------------------------------------------------------------------

void PeerLink::after_input(Time now) {
    if (!announced_up_ && session_.established()) {
        announced_up_ = true;
        events_.push_back(LinkUp{});
    }
    // Relay first, then punch (docs/architecture.md §5): both sides probe every candidate once the
    // session has keys to seal probes with.
    if (!technique_ && plan_ && session_.established()) start_punching(now);
    while (auto change = paths_.poll_change()) {
        // A direct path: the sockets no probe of the peer's reached are of no more use. Those
        // it did reach stay until it shows which one it kept (follow_socket), at most
        // kBirthdayChoiceWait.
        LinkPathChanged event{change->direct, change->kind, change->reason, change->rtt,
                              std::nullopt, DirectSource::kHost};
        // TCP retransmits, orders and paces on its own: the session stops doing so on it.
        session_.connection().set_path_reliable(change->direct && change->kind == DirectKind::kTcp);
        update_path_writable();
        if (change->direct) {
            const bool udp = change->kind == DirectKind::kUdp;
            if (direct_since_ == kNever || (udp && !direct_udp_seen_)) {
                event.moved_up = direct_since_ != kNever;
                if (direct_since_ == kNever) direct_since_ = now;
                punch_verdict_at_ = kNever;
                event.time_to_direct = now - created_at_;
                event.source = direct_source(*change->direct, change->kind);
            }
            if (udp) direct_udp_seen_ = true;
            release_unheard();
            // Data on the new path at once, even when idle: a birthday peer keeps the mapping
            // our data arrives on (follow_socket) and closes the others.
            session_.connection().ping();
        }
        events_.push_back(std::move(event));
    }
}

void PeerLink::start_punching(Time now) {
    technique_ = choose_technique(plan_->ours, plan_->theirs, plan_->reflexive.has_value(),
                                  plan_->mapped.has_value(), plan_->our_allocation,
                                  plan_->their_allocation);
    LinkPunching punching{*technique_};
    if (direct_since_ == kNever) punch_verdict_at_ = now + kPunchVerdictAfter;
    paths_.add_candidates(plan_->candidates, now);
    if (*technique_ == PunchTechnique::kSpray) paths_.start_spray(*plan_->reflexive, now);
    if (*technique_ == PunchTechnique::kPredicted) punching.prediction = start_prediction(now);
    events_.push_back(std::move(punching));
    if (*technique_ == PunchTechnique::kBirthday) {
        events_.push_back(LinkWantsSockets{kBirthdaySockets});
    }
    paths_.on_timer(now);
}

// Port prediction (tunnel/punch_planner.h): which of the three shapes, by the NAT pair.
std::string PeerLink::start_prediction(Time now) {
    const PortAllocation& theirs = plan_->their_allocation;
    const std::string peer_text = "the peer's " + describe(theirs) + " after port " +
                                  std::to_string(theirs.last);
    if (plan_->ours == NatMapping::kEndpointIndependent) {
        auto window = predict_ports(theirs, kSprayPorts);
        std::string text = "probing " + std::to_string(window.size()) + " ports of " +
                           peer_text;
        if (!window.empty()) {
            text += " (" + std::to_string(window.front()) + ".." +
                    std::to_string(window.back()) + ")";
        }
        paths_.start_predicted_spray(*plan_->reflexive, std::move(window), now);
        return text;
    }
    if (plan_->theirs == NatMapping::kEndpointIndependent) {
        events_.push_back(LinkWantsSockets{kBirthdaySockets});
        return "our " + describe(plan_->our_allocation) + " mappings (the main socket's and " +
               std::to_string(kBirthdaySockets) + " sockets') wait for the peer's probes";
    }
    const uint32_t stride = session_.role() == Role::kInitiator ? kLockstepStrideInitiator
                                                                : kLockstepStrideResponder;
    paths_.start_lockstep(*plan_->reflexive, theirs, stride, now);
    return "lockstep with " + peer_text + ", every " +
           (stride == 1 ? std::string("port") : std::to_string(stride) + "nd port") + ", " +
           std::to_string(kLockstepProbes) + " probes a round";
}

// One round: an opening probe from every socket, until a path is found or the rounds run out.
void PeerLink::birthday_round(Time now) {
    const auto& active = paths_.active();
    if (active && now < direct_since_ + kBirthdayChoiceWait) {
        birthday_round_at_ = direct_since_ + kBirthdayChoiceWait;
        openings_.clear();
        return;
    }
    if (active || birthday_rounds_ >= kBirthdayOpeningRounds) {
        birthday_round_at_ = kNever;
        openings_.clear();
        auto route = active ? routes_.find(*active) : routes_.end();
        release_sockets(route != routes_.end() ? std::optional(route->second) : std::nullopt);
        return;
    }
    ++birthday_rounds_;
    openings_.assign(sockets_.begin(), sockets_.end());
    birthday_round_at_ = now + kBirthdayRoundInterval;
}

// The peer's data came in by this socket (a birthday one, or the main one whose mapping its
// spray found too): that is the mapping it chose. Our packets to it leave there, and the other
// birthday sockets go. Called for every data packet: cheap when there is nothing to change.
void PeerLink::follow_socket(const SocketAddress& from, RouteId route) {
    if (sockets_.empty() && routes_.empty()) return;
    if (route_to(from) == route && sockets_.size() <= 1) return;
    routes_[from] = route;
    if (!sockets_.empty()) release_sockets(route);
}

RouteId PeerLink::answer_route(const ProbeToSend& response) {
    for (auto it = answer_routes_.begin(); it != answer_routes_.end(); ++it) {
        if (it->to == response.to && it->data == response.probe.data) {
            const RouteId route = it->route;
            answer_routes_.erase(it);
            // The socket may have closed since the challenge came.
            if (route == kRouteMain ||
                std::find(sockets_.begin(), sockets_.end(), route) != sockets_.end()) {
                return route;
            }
            break;
        }
    }
    return route_to(response.to);
}

void PeerLink::release_unheard() {
    LinkReleasesSockets released;
    std::vector<RouteId> kept;
    for (RouteId r : sockets_) (heard_.contains(r) ? kept : released.routes).push_back(r);
    if (released.routes.empty()) return;
    sockets_ = std::move(kept);
    std::erase_if(openings_, [&](RouteId r) {
        return std::find(sockets_.begin(), sockets_.end(), r) == sockets_.end();
    });
    events_.push_back(std::move(released));
}

// Closes the birthday sockets but keep (the one the path was found through).
void PeerLink::release_sockets(std::optional<RouteId> keep) {
    LinkReleasesSockets released;
    for (RouteId r : sockets_) {
        if (r != keep) released.routes.push_back(r);
    }
    if (released.routes.empty()) return;
    std::erase_if(sockets_, [&](RouteId r) { return r != keep; });
    std::erase_if(routes_, [&](const auto& entry) { return entry.second != keep; });
    std::erase_if(heard_, [&](RouteId r) { return r != keep; });
    std::erase_if(openings_, [&](RouteId r) { return r != keep; });
    std::erase_if(answer_routes_, [&](const AnswerRoute& a) {
        return a.route != kRouteMain && a.route != keep;
    });
    events_.push_back(std::move(released));
}

DirectSource PeerLink::direct_source(const SocketAddress& direct, DirectKind kind) const {
    if (kind == DirectKind::kTcp) {
        // The connection's far end: the peer's TCP candidates, not its UDP ones. The reflexive
        // address first (a side without NAT offers the same address as host and srflx).
        if (plan_ && plan_->tcp_reflexive == direct) return DirectSource::kTcpServerReflexive;
        if (plan_ && std::find(plan_->tcp_candidates.begin(), plan_->tcp_candidates.end(),
                               direct) != plan_->tcp_candidates.end()) {
            return DirectSource::kTcpHost;
        }
        return DirectSource::kTcpPeerReflexive;
    }
    if (!plan_) return DirectSource::kPeerReflexive;
    if (plan_->mapped && *plan_->mapped == direct) return DirectSource::kMapped;
    const bool reflexive = plan_->reflexive && *plan_->reflexive == direct;
    const bool given = std::find(plan_->candidates.begin(), plan_->candidates.end(), direct) !=
                       plan_->candidates.end();
    if (given && !reflexive) return DirectSource::kHost;
    // Either side of a birthday pair: the spray found one of the symmetric side's mappings, or
    // the symmetric side's sockets opened the mapping the other side's reflexive address needed.
    if (technique_ == PunchTechnique::kSpray || technique_ == PunchTechnique::kBirthday) {
        return DirectSource::kBirthday;
    }
    // Either side of a prediction: our probes found the predicted mapping, or the peer's found
    // the one ours opened.
    if (technique_ == PunchTechnique::kPredicted) return DirectSource::kPredicted;
    return reflexive ? DirectSource::kServerReflexive : DirectSource::kPeerReflexive;
}

RouteId PeerLink::route_to(const SocketAddress& to) const {
    auto it = routes_.find(to);
    return it != routes_.end() ? it->second : kRouteMain;
}

}  // namespace burrow
