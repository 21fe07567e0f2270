// AgentCore's UDP forwards and UDP services (signal/agent_core.h): flows of DATAGRAM frames
// instead of streams. The policy is the streams' (the allow list, the server's approval); the
// flow table (signal/udp_flows.h) plays the NAT.
#include <algorithm>

#include "signal/agent_core.h"

namespace burrow {
namespace {

std::string udp_forward_label(const ForwardConfig& f) {
    return "udp forward " + to_string(f.listen) + " -> " + f.peer + "/" + f.service;
}

// The wildcard of the target's family: a flow's socket sends from any local address.
SocketAddress any_address_like(const SocketAddress& target) {
    SocketAddress any = target;
    std::fill(any.ip.begin(), any.ip.end(), uint8_t{0});
    any.port = 0;
    return any;
}

}  // namespace

void AgentCore::start_udp_forward(const ForwardConfig& f, bool initial) {
    const std::string key = to_string(f.listen);
    UdpForward fw;
    fw.config = f;
    fw.initial = initial;
    fw.route = next_route_++;
    fw.flows = UdpFlowTable<SocketAddress, FlowId>(config_.udp_idle_timeout, config_.max_udp_flows);
    udp_forward_routes_[fw.route] = key;
    // config/ checked that listen addresses are IP literals.
    act(OpenUdpSocket{fw.route, kUdpForwardSocketBuffer,
                      literal_socket_address(f.listen).value_or(SocketAddress{}),
                      kMaxForwardedUdpDatagram});
    log(Severity::kInfo, udp_forward_label(f) + " listening");
    udp_forwards_.insert_or_assign(key, std::move(fw));
}

void AgentCore::stop_udp_forward(const std::string& key, Time now) {
    (void)now;
    auto it = udp_forwards_.find(key);
    if (it == udp_forwards_.end()) return;
    UdpForward& fw = it->second;
    auto p = peers_.find(fw.config.peer);
    for (auto& [client, flow] : fw.flows.take_all()) {
        if (p != peers_.end() && !p->second.dead) {
            p->second.flows.erase(flow);
            p->second.link->connection().close_flow(flow);
        }
    }
    udp_forward_routes_.erase(fw.route);
    act(CloseUdpSocket{fw.route});
    log(Severity::kInfo, udp_forward_label(fw.config) + " stopped");
    udp_forwards_.erase(it);
}

AgentCore::UdpService& AgentCore::udp_service(const std::string& service) {
    auto it = udp_services_.find(service);
    if (it == udp_services_.end()) {
        UdpService s{UdpFlowTable<std::pair<std::string, FlowId>, RouteId>(
                         config_.udp_idle_timeout, config_.max_udp_flows),
                     {}};
        it = udp_services_.emplace(service, std::move(s)).first;
    }
    return it->second;
}

uint64_t AgentCore::max_datagram_for(const std::string& peer) const {
    auto p = peers_.find(peer);
    if (p == peers_.end() || p->second.dead) return 0;
    return p->second.link->connection().max_datagram_payload();
}

void AgentCore::count_send(UdpCounters& c, DatagramVerdict verdict) {
    switch (verdict) {
        case DatagramVerdict::kQueued:
            break;
        case DatagramVerdict::kTooLarge:
            c.drop_too_large++;
            break;
        case DatagramVerdict::kCongested:
            c.drop_congested++;
            break;
        case DatagramVerdict::kUnknownFlow:
        case DatagramVerdict::kClosed:
            c.drop_no_session++;
            break;
    }
}

void AgentCore::queue_local_datagram(RouteId route, const SocketAddress& to, Bytes data,
                                     UdpCounters& counters) {
    if (local_datagrams_.size() >= kMaxLocalDatagrams) {
        counters.drop_congested++;
        return;
    }
    counters.datagrams_out++;
    counters.bytes_out += data.size();
    local_datagrams_.push_back(UdpTransmit{route, to, std::move(data)});
}

// --- the forwarding side -------------------------------------------------------------------------

void AgentCore::on_forward_datagram(UdpForward& fw, const SocketAddress& from, ByteView data,
                                    Time now) {
    fw.counters.datagrams_in++;
    fw.counters.bytes_in += data.size();
    const ForwardConfig& f = fw.config;
    auto p = peers_.find(f.peer);
    if (p != peers_.end() && !p->second.dead && p->second.may_open.contains(f.service)) {
        send_forward_datagram(p->second, fw, from, data, now);
        process(p->second, now);
        return;
    }
    // No session or no approval yet: hold a few, and ask the server once.
    if (fw.held.size() >= kMaxHeldDatagrams ||
        fw.held_bytes + data.size() > kMaxHeldDatagramBytes) {
        fw.counters.drop_no_session++;
        warn_repeated(udp_forward_label(f) + ": datagrams wait for the session with " + f.peer +
                          "; dropping new ones",
                      now);
        return;
    }
    fw.held.push_back(UdpForward::Held{from, Bytes(data.begin(), data.end())});
    fw.held_bytes += data.size();
    if (!fw.connect_asked) {
        fw.connect_asked = true;
        log(Severity::kDebug,
            udp_forward_label(f) + ": asking the server for " + f.peer + "/" + f.service);
        const uint64_t link = p != peers_.end() && !p->second.dead ? p->second.relay_id : 0;
        client_.connect(f.peer, f.service, link, now);
        after_client(now);
    }
}

void AgentCore::send_forward_datagram(Peer& peer, UdpForward& fw, const SocketAddress& from,
                                      ByteView data, Time now) {
    Connection& conn = peer.link->connection();
    // Too large for any packet: dropped before it costs a flow (no fragmentation).
    if (data.size() > conn.max_datagram_payload()) {
        fw.counters.drop_too_large++;
        warn_repeated(udp_forward_label(fw.config) + ": a datagram larger than the " +
                          std::to_string(conn.max_datagram_payload()) +
                          " bytes the session carries was dropped",
                      now);
        return;
    }
    std::optional<FlowId> flow = fw.flows.find(from, now);
    if (!flow) {
        if (fw.flows.full()) {
            fw.flows.refuse();
            fw.counters.drop_flow_cap++;
            warn_repeated(udp_forward_label(fw.config) + ": " +
                              std::to_string(fw.flows.max_flows()) +
                              " flows are open; dropping datagrams from new clients",
                          now);
            return;
        }
        flow = conn.open_flow(fw.config.service);
        if (!flow) {
            fw.counters.drop_no_session++;
            return;
        }
        fw.flows.add(from, *flow, now);
        fw.clients[*flow] = from;
        fw.counters.flows++;
        peer.flows[*flow] = Peer::FlowOwner{true, to_string(fw.config.listen)};
    }
    count_send(fw.counters, conn.send_datagram(*flow, data));
}

// The server approved services of this peer (or the link just came): held datagrams go out.
void AgentCore::release_held_datagrams(Peer& peer, Time now) {
    for (auto& [key, fw] : udp_forwards_) {
        if (fw.config.peer != peer.name || !peer.may_open.contains(fw.config.service)) continue;
        fw.connect_asked = false;
        std::deque<UdpForward::Held> held = std::move(fw.held);
        fw.held.clear();
        fw.held_bytes = 0;
        for (const auto& h : held) {
            if (peer.dead) {
                fw.counters.drop_no_session++;
                continue;
            }
            send_forward_datagram(peer, fw, h.from, h.data, now);
        }
    }
}

// The server refused the connect: what waited for it is dropped.
void AgentCore::refuse_held_datagrams(const std::string& peer, const std::string& service) {
    for (auto& [key, fw] : udp_forwards_) {
        if (fw.config.peer != peer || fw.config.service != service) continue;
        fw.counters.drop_refused += fw.held.size();
        fw.held.clear();
        fw.held_bytes = 0;
        fw.connect_asked = false;
    }
}

// --- the exposing side ---------------------------------------------------------------------------

void AgentCore::on_flow_opened(Peer& peer, FlowId flow, const std::string& service, Time now) {
    const ExposeConfig* expose = find_expose(service);
    if (!expose || expose->protocol != ForwardProtocol::kUdp) {
        return refuse_flow(peer, flow, service,
                           expose ? "it is a TCP service" : "no such service is exposed", now);
    }
    UdpService& s = udp_service(service);
    if (std::find(expose->allow.begin(), expose->allow.end(), peer.name) == expose->allow.end()) {
        s.counters.drop_refused++;
        return refuse_flow(peer, flow, service, peer.name + " is not in its allow list", now);
    }
    if (!peer.may_accept.contains(service)) {
        if (peer.unapproved_flows.size() >= kMaxAwaitingApproval) {
            s.counters.drop_refused++;
            return refuse_flow(peer, flow, service,
                               "too many flows wait for the server's approval", now);
        }
        // Its approval may be on its way from the server (see kApprovalWait).
        peer.unapproved_flows.push_back(Peer::Unapproved{flow, service, now + kApprovalWait});
        return;
    }
    if (s.flows.full()) {
        s.flows.refuse();
        s.counters.drop_flow_cap++;
        return refuse_flow(peer, flow, service,
                           std::to_string(s.flows.max_flows()) + " flows are open", now);
    }
    // config/ checked that a UDP service's target is an IP literal.
    const auto target = literal_socket_address(expose->target);
    if (!target) return refuse_flow(peer, flow, service, "its target is not an address", now);
    const RouteId route = next_route_++;
    s.flows.add({peer.name, flow}, route, now);
    s.counters.flows++;
    udp_flow_sockets_[route] = UdpFlowSocket{peer.name, flow, service, *target};
    peer.flows[flow] = Peer::FlowOwner{false, service};
    act(OpenUdpSocket{route, kUdpFlowSocketBuffer, any_address_like(*target), 0});
}

void AgentCore::refuse_flow(Peer& peer, FlowId flow, const std::string& service,
                            const std::string& why, Time now) {
    drops_.streams_refused++;
    warn_repeated("refused udp flow from " + peer.name + " to " + service + ": " + why, now);
    peer.link->connection().close_flow(flow);
}

void AgentCore::hand_on_held_flow_datagrams(Peer& peer, Peer::Unapproved& waited, Time now) {
    if (waited.datagrams.empty()) return;
    if (peer.flows.contains(waited.id)) {
        for (Bytes& d : waited.datagrams) on_flow_datagram(peer, waited.id, std::move(d), now);
        return;
    }
    for (auto& u : peer.unapproved_flows) {
        if (u.id == waited.id) {
            u.datagrams = std::move(waited.datagrams);
            return;
        }
    }
    udp_service(waited.service).counters.drop_refused += waited.datagrams.size();
}

void AgentCore::expire_unapproved_flows(Peer& peer, Time now) {
    while (!peer.unapproved_flows.empty() && now >= peer.unapproved_flows.front().deadline) {
        const Peer::Unapproved u = peer.unapproved_flows.front();
        peer.unapproved_flows.pop_front();
        udp_service(u.service).counters.drop_refused += 1 + u.datagrams.size();
        refuse_flow(peer, u.id, u.service, "the server did not approve it for this session",
                    now);
    }
}

void AgentCore::on_target_datagram(RouteId route, const SocketAddress& from, ByteView data,
                                   Time now) {
    auto it = udp_flow_sockets_.find(route);
    if (it == udp_flow_sockets_.end()) return;
    const UdpFlowSocket& fs = it->second;
    UdpService& s = udp_service(fs.service);
    if (from != fs.target) {
        s.counters.drop_stray++;
        return;
    }
    s.counters.datagrams_in++;
    s.counters.bytes_in += data.size();
    auto p = peers_.find(fs.peer);
    if (p == peers_.end() || p->second.dead) {
        s.counters.drop_no_session++;
        return;
    }
    s.flows.find({fs.peer, fs.flow}, now);  // traffic keeps the flow
    count_send(s.counters, p->second.link->connection().send_datagram(fs.flow, data));
    process(p->second, now);
}

// --- both sides ----------------------------------------------------------------------------------

void AgentCore::on_flow_datagram(Peer& peer, FlowId flow, Bytes data, Time now) {
    auto owner = peer.flows.find(flow);
    if (owner == peer.flows.end()) {
        // The flow may wait for the server's approval: the peer got its own approval first
        // and sent at once over a direct path, faster than ours came through the server.
        for (auto& u : peer.unapproved_flows) {
            if (u.id != flow) continue;
            if (u.datagrams.size() < kMaxHeldFlowDatagrams) {
                u.datagrams.push_back(std::move(data));
            } else {
                udp_service(u.service).counters.drop_refused++;
            }
            return;
        }
        return;
    }
    if (owner->second.forward) {
        auto fw = udp_forwards_.find(owner->second.key);
        if (fw == udp_forwards_.end()) return;
        auto client = fw->second.clients.find(flow);
        if (client == fw->second.clients.end()) return;
        // A reply keeps the flow as a request does (a NAT refreshes on both directions).
        fw->second.flows.find(client->second, now);
        queue_local_datagram(fw->second.route, client->second, std::move(data),
                             fw->second.counters);
        return;
    }
    UdpService& s = udp_service(owner->second.key);
    std::optional<RouteId> route = s.flows.find({peer.name, flow}, now);
    if (!route) return;
    auto fs = udp_flow_sockets_.find(*route);
    if (fs == udp_flow_sockets_.end()) return;
    queue_local_datagram(*route, fs->second.target, std::move(data), s.counters);
}

void AgentCore::on_flow_closed(Peer& peer, FlowId flow) {
    drop_flow(peer, flow);
}

void AgentCore::drop_flow(Peer& peer, FlowId flow) {
    auto owner = peer.flows.find(flow);
    if (owner == peer.flows.end()) return;
    if (owner->second.forward) {
        if (auto fw = udp_forwards_.find(owner->second.key); fw != udp_forwards_.end()) {
            if (auto c = fw->second.clients.find(flow); c != fw->second.clients.end()) {
                fw->second.flows.remove(c->second);
                fw->second.clients.erase(c);
            }
        }
    } else {
        UdpService& s = udp_service(owner->second.key);
        if (auto route = s.flows.remove({peer.name, flow})) {
            udp_flow_sockets_.erase(*route);
            act(CloseUdpSocket{*route});
        }
    }
    peer.flows.erase(owner);
}

void AgentCore::expire_udp_flows(Time now) {
    for (auto& [key, fw] : udp_forwards_) {
        for (auto& [client, flow] : fw.flows.expire(now)) {
            fw.clients.erase(flow);
            auto p = peers_.find(fw.config.peer);
            if (p == peers_.end() || p->second.dead) continue;
            p->second.flows.erase(flow);
            p->second.link->connection().close_flow(flow);
            process(p->second, now);
        }
    }
    for (auto& [service, s] : udp_services_) {
        for (auto& [peer_flow, route] : s.flows.expire(now)) {
            udp_flow_sockets_.erase(route);
            act(CloseUdpSocket{route});
            auto p = peers_.find(peer_flow.first);
            if (p == peers_.end() || p->second.dead) continue;
            p->second.flows.erase(peer_flow.second);
            p->second.link->connection().close_flow(peer_flow.second);
            process(p->second, now);
        }
    }
}

}  // namespace burrow
