// AgentCore's direct TCP paths (issue 15, docs/architecture.md §4 "Direct TCP paths"): TCP hole
// punching by simultaneous open, and connects to a reachable peer.
//
// src/ listens on the port its control connection leaves from (SO_REUSEADDR + SO_REUSEPORT),
// so the server sees what our NAT maps that port to and hands it to the peer as a tcp-srflx
// candidate. At the rendezvous' start time both sides connect from that same port to each
// other's TCP candidates: the crossing SYNs open both NATs and the kernel completes one
// connection (a simultaneous open), or one side's listener accepts the other's connect.
//
//   a connect of ours    the peer is known: the connection goes to its link at once, which
//                        validates it with PATH_CHALLENGE/RESPONSE before it carries data
//   an accepted one      the peer is not known: its frames are offered to every link until
//                        one claims it (a probe or data packet with that session's receiver
//                        index); frames no link knows are dropped and counted, and a
//                        connection that is not claimed within kTcpClaimWait or
//                        kMaxUnclaimedTcpBytes is closed
//   duplicates           when both an accept and a connect succeed, both sides keep the
//                        connection the peer with the lower static key initiated: a side drops
//                        one only when it keeps another
#include <algorithm>

#include "signal/agent_core.h"

namespace burrow {

void AgentCore::enable_tcp_paths(uint16_t port) {
    tcp_port_ = port;
    std::vector<SocketAddress> tcp_hosts;
    if (port != 0) tcp_hosts = host_addresses_;
    for (SocketAddress& a : tcp_hosts) a.port = port;
    client_.set_tcp_host_candidates(std::move(tcp_hosts));
}

std::optional<RouteId> AgentCore::on_peer_tcp_accepted(const SocketAddress& from, Time now) {
    if (stopping_ || tcp_port_ == 0) return std::nullopt;
    const size_t unclaimed =
        static_cast<size_t>(std::count_if(peer_tcps_.begin(), peer_tcps_.end(), [](const auto& kv) {
            return kv.second.peer.empty() && !kv.second.closing;
        }));
    if (unclaimed >= kMaxUnclaimedTcp) {
        drops_.tcp_unclaimed_closed++;
        return std::nullopt;
    }
    const RouteId route = next_route_++;
    PeerTcp& c = peer_tcps_[route];
    c.remote = from;
    c.connected = true;
    c.claim_deadline = now + kTcpClaimWait;
    return route;
}

void AgentCore::on_peer_tcp_connected(RouteId route, Time now) {
    auto it = peer_tcps_.find(route);
    if (it == peer_tcps_.end() || it->second.closing) return;
    it->second.connected = true;
    log(Severity::kDebug, "tcp to " + it->second.peer + " at " + to_string(it->second.remote) +
                              ": connected");
    add_tcp_to_link(route, it->second, now);
}

void AgentCore::on_peer_tcp_data(RouteId route, ByteView data, Time now) {
    auto it = peer_tcps_.find(route);
    if (it == peer_tcps_.end() || it->second.closing) return;
    PeerTcp& c = it->second;
    if (c.peer.empty()) c.unclaimed_bytes += data.size();
    c.deframer.feed(data);
    while (!c.closing) {
        std::optional<MutableByteView> frame = c.deframer.next();
        if (!frame) break;
        if (c.peer.empty()) {
            for (auto& [name, peer] : peers_) {
                if (peer.dead || !peer.link->claims(c.remote, *frame)) continue;
                c.peer = name;
                break;
            }
            if (c.peer.empty()) {
                drops_.tcp_unclaimed_frames++;
                continue;
            }
            log(Severity::kDebug, "tcp from " + to_string(c.remote) + ": " + c.peer);
            add_tcp_to_link(route, c, now);
            if (c.closing) break;
        }
        deliver_tcp_frame(route, c, *frame, now);
    }
    if (c.closing) return;
    if (c.deframer.error()) {
        drops_.tcp_bad_framing++;
        log(Severity::kDebug, "tcp from " + to_string(c.remote) + ": " +
                                  to_string(*c.deframer.error()) + " frame; closing");
        return close_peer_tcp(route, now);
    }
    if (c.peer.empty() && c.unclaimed_bytes > kMaxUnclaimedTcpBytes) {
        drops_.tcp_unclaimed_closed++;
        close_peer_tcp(route, now);
    }
}

void AgentCore::deliver_tcp_frame(RouteId route, PeerTcp& c, MutableByteView frame, Time now) {
    auto p = peers_.find(c.peer);
    if (p == peers_.end() || p->second.dead) return close_peer_tcp(route, now);
    Peer& peer = p->second;
    const size_t size = frame.size();
    const LinkVerdict verdict = peer.link->on_datagram(route, c.remote, frame, now);
    if (std::holds_alternative<LinkAccepted>(verdict)) peer.traffic.direct.received(size);
    process(peer, now);
}

void AgentCore::add_tcp_to_link(RouteId route, PeerTcp& c, Time now) {
    auto p = peers_.find(c.peer);
    if (p == peers_.end() || p->second.dead) return close_peer_tcp(route, now);
    Peer& peer = p->second;
    // Both sides keep what the lower key initiated. A simultaneous open is "ours" on both
    // sides, so a side closes one only while it keeps another: the two never close each
    // other's last connection.
    const bool ours_lower = public_key(config_.key) < peer.link->session().peer_key();
    const auto kept = [&](const PeerTcp& x) { return x.initiated == ours_lower; };
    std::vector<RouteId> to_close;
    for (auto& [r, o] : peer_tcps_) {
        if (r == route || o.peer != c.peer || !o.on_link || o.closing) continue;
        if (o.remote == c.remote || (kept(c) && !kept(o))) {
            to_close.push_back(r);  // the link would replace it, or the rule drops it
        } else if (kept(o) && !kept(c)) {
            drops_.tcp_duplicates_closed++;
            return close_peer_tcp(route, now);
        }
    }
    for (RouteId r : to_close) {
        drops_.tcp_duplicates_closed++;
        close_peer_tcp(r, now);
    }
    c.on_link = true;
    c.claim_deadline = kNever;
    peer.link->add_tcp_path(route, c.remote, now);
    process(peer, now);
}

void AgentCore::on_peer_tcp_writable(RouteId route, bool writable) {
    auto it = peer_tcps_.find(route);
    if (it == peer_tcps_.end() || !it->second.on_link) return;
    auto p = peers_.find(it->second.peer);
    if (p != peers_.end() && !p->second.dead) p->second.link->set_tcp_writable(route, writable);
}

void AgentCore::close_peer_tcp(RouteId route, Time now) {
    auto it = peer_tcps_.find(route);
    if (it == peer_tcps_.end() || it->second.closing) return;
    PeerTcp& c = it->second;
    c.closing = true;
    act(ClosePeerTcp{route});
    if (!c.on_link) return;
    c.on_link = false;
    auto p = peers_.find(c.peer);
    if (p != peers_.end() && !p->second.dead) {
        p->second.link->remove_tcp_path(route, now);
        process(p->second, now);
    }
}

void AgentCore::on_peer_tcp_closed(RouteId route, std::string_view reason, Time now) {
    auto it = peer_tcps_.find(route);
    if (it == peer_tcps_.end()) return;
    PeerTcp c = std::move(it->second);
    peer_tcps_.erase(it);
    if (!c.on_link) {
        if (c.initiated && !c.connected) {
            log(Severity::kDebug, "tcp to " + c.peer + " at " + to_string(c.remote) + ": " +
                                      std::string(reason));
        }
        return;
    }
    auto p = peers_.find(c.peer);
    if (p == peers_.end() || p->second.dead) return;
    log(Severity::kInfo, "direct-tcp " + to_string(c.remote) + " to " + c.peer + " closed (" +
                             std::string(reason) + ")");
    p->second.link->remove_tcp_path(route, now);
    // Punch again on the slow schedule: the peer's side of the NAT may come back.
    p->second.tcp_punch.at = std::min(p->second.tcp_punch.at, now + kRediscoverInterval);
    process(p->second, now);
}

void AgentCore::close_link_tcps(const std::string& peer, Time now) {
    std::vector<RouteId> routes;
    for (const auto& [r, c] : peer_tcps_) {
        if (c.peer == peer && !c.closing) routes.push_back(r);
    }
    for (RouteId r : routes) {
        peer_tcps_[r].on_link = false;  // the link is going: nothing to remove from it
        close_peer_tcp(r, now);
    }
}

// --- punching ------------------------------------------------------------------------------------

void AgentCore::start_tcp_punch(Peer& peer, const std::vector<SocketAddress>& candidates,
                                Time now) {
    if (tcp_port_ == 0 || candidates.empty()) return;
    Peer::TcpPunch& punch = peer.tcp_punch;
    for (const SocketAddress& a : candidates) {
        if (std::find(punch.candidates.begin(), punch.candidates.end(), a) ==
            punch.candidates.end()) {
            punch.candidates.push_back(a);
        }
    }
    if (punch.started == kNever) {
        punch.started = now;
        punch.round = 0;
    }
    tcp_punch_round(peer, now);
}

void AgentCore::tcp_punch_round(Peer& peer, Time now) {
    if (peer.dead || peer.tcp_punch.candidates.empty()) {
        peer.tcp_punch.at = kNever;
        return;
    }
    const bool direct_udp = peer.link->direct() && peer.link->direct_kind() == DirectKind::kUdp;
    const bool has_tcp = std::any_of(peer_tcps_.begin(), peer_tcps_.end(), [&](const auto& kv) {
        return kv.second.peer == peer.name && kv.second.on_link && !kv.second.closing;
    });
    if (!direct_udp && !has_tcp) {
        for (const SocketAddress& to : peer.tcp_punch.candidates) {
            const bool trying =
                std::any_of(peer_tcps_.begin(), peer_tcps_.end(), [&](const auto& kv) {
                    return kv.second.peer == peer.name && kv.second.remote == to;
                });
            if (trying) continue;  // one socket per 4-tuple: the kernel refuses a second
            const RouteId route = next_route_++;
            PeerTcp& c = peer_tcps_[route];
            c.peer = peer.name;
            c.remote = to;
            c.initiated = true;
            act(ConnectPeerTcp{route, to, kTcpPunchConnectTimeout});
        }
    }
    ++peer.tcp_punch.round;
    peer.tcp_punch.at = punch_attempt_at(peer.tcp_punch.started, peer.tcp_punch.round, now);
}

void AgentCore::expire_unclaimed_tcp(Time now) {
    std::vector<RouteId> expired;
    for (const auto& [r, c] : peer_tcps_) {
        if (c.peer.empty() && !c.closing && now >= c.claim_deadline) expired.push_back(r);
    }
    for (RouteId r : expired) {
        drops_.tcp_unclaimed_closed++;
        close_peer_tcp(r, now);
    }
}

Time AgentCore::tcp_deadline() const {
    Time t = kNever;
    for (const auto& [r, c] : peer_tcps_) {
        if (c.peer.empty() && !c.closing) t = std::min(t, c.claim_deadline);
    }
    for (const auto& [name, peer] : peers_) {
        if (!peer.dead) t = std::min(t, peer.tcp_punch.at);
    }
    return t;
}

}  // namespace burrow
