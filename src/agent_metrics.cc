#include "src/agent_metrics.h"

#include <nlohmann/json.hpp>

#include "src/agent_status_json.h"
#include "src/prometheus_text.h"
#include "src/version.h"

namespace burrow {
namespace {

using Labels = MetricLabels;

// The labels that name a forward: its listen address, and the peer's service it reaches.
Labels forward_labels(const ForwardStatus& f) {
    return {{"forward", f.listen}, {"peer", f.peer}, {"service", f.service}};
}

Labels with(Labels labels, std::string name, std::string value) {
    labels.emplace_back(std::move(name), std::move(value));
    return labels;
}

// Every counter in a JSON object of counters (the status's "drops"), one sample per reason:
// the JSON and the metrics list the same reasons because they are the same object.
void drop_samples(PrometheusText& t, const Labels& labels, const nlohmann::json& drops) {
    for (const auto& [reason, count] : drops.items()) {
        t.sample(with(labels, "reason", reason), count.get<uint64_t>());
    }
}

void peer_traffic(PrometheusText& t, const AgentStatus& s, const char* name, const char* help,
                  uint64_t TrafficCounters::*field) {
    t.family(name, MetricType::kCounter, help);
    for (const auto& p : s.peers) {
        t.sample({{"peer", p.peer}, {"path", "direct"}}, p.traffic.direct.*field);
        t.sample({{"peer", p.peer}, {"path", "relay-udp"}}, p.traffic.relay_udp.*field);
        t.sample({{"peer", p.peer}, {"path", "relay-tcp"}}, p.traffic.relay_tcp.*field);
    }
}

void agent_section(PrometheusText& t, const AgentStatus& s, const UdpStats& udp,
                   const nlohmann::json& json) {
    t.family("burrow_agent_info", MetricType::kGauge, "Always 1; the agent's name and version.");
    t.sample({{"name", s.name}, {"version", version_string()}}, uint64_t{1});
    t.family("burrow_agent_uptime_seconds", MetricType::kGauge, "Seconds since the agent started.");
    t.sample(s.uptime_s);
    t.family("burrow_agent_server_registered", MetricType::kGauge,
             "1 while the agent is registered with the signalling server.");
    t.sample(uint64_t{s.registered ? 1u : 0u});
    t.family("burrow_agent_server_udp_bound", MetricType::kGauge,
             "1 while the server confirmed the agent's UDP address (relay over UDP).");
    t.sample(uint64_t{s.udp_bound ? 1u : 0u});
    t.family("burrow_agent_server_reconnects_total", MetricType::kCounter,
             "Registrations with the server after the first.");
    t.sample(s.reconnects);
    t.family("burrow_agent_udp_datagrams_sent_total", MetricType::kCounter,
             "Datagrams the kernel took from the main UDP socket.");
    t.sample(udp.datagrams_sent);
    t.family("burrow_agent_udp_datagrams_received_total", MetricType::kCounter,
             "Datagrams read from the main UDP socket.");
    t.sample(udp.datagrams_received);
    t.family("burrow_agent_udp_bytes_sent_total", MetricType::kCounter,
             "Bytes the kernel took from the main UDP socket.");
    t.sample(udp.bytes_sent);
    t.family("burrow_agent_udp_bytes_received_total", MetricType::kCounter,
             "Bytes read from the main UDP socket.");
    t.sample(udp.bytes_received);
    t.family("burrow_agent_drops_total", MetricType::kCounter,
             "Datagrams, connections and streams the agent dropped or refused, by reason "
             "(the drops of burrow status --json).");
    drop_samples(t, {}, json.at("drops"));
}

void peer_section(PrometheusText& t, const AgentStatus& s, const nlohmann::json& json) {
    t.family("burrow_peer_up", MetricType::kGauge,
             "1 while the session with the peer is established.");
    for (const auto& p : s.peers) {
        t.sample({{"peer", p.peer}}, uint64_t{p.state == SessionState::kEstablished ? 1u : 0u});
    }
    t.family("burrow_peer_direct", MetricType::kGauge,
             "1 while the session takes a direct path, 0 on the relay.");
    for (const auto& p : s.peers) t.sample({{"peer", p.peer}}, uint64_t{p.direct ? 1u : 0u});
    peer_traffic(t, s, "burrow_peer_bytes_sent_total",
                 "Session bytes sent to the peer (datagram size), by path kind.",
                 &TrafficCounters::bytes_sent);
    peer_traffic(t, s, "burrow_peer_bytes_received_total",
                 "Session bytes received from the peer and accepted (datagram size), by path kind.",
                 &TrafficCounters::bytes_received);
    peer_traffic(t, s, "burrow_peer_packets_sent_total",
                 "Session datagrams sent to the peer, by path kind.",
                 &TrafficCounters::packets_sent);
    peer_traffic(t, s, "burrow_peer_packets_received_total",
                 "Session datagrams received from the peer and accepted, by path kind.",
                 &TrafficCounters::packets_received);
    t.family("burrow_peer_rtt_seconds", MetricType::kGauge, "Smoothed round-trip time.");
    for (const auto& p : s.peers) t.sample({{"peer", p.peer}}, p.rtt_ms / 1000.0);
    t.family("burrow_peer_loss_ratio", MetricType::kGauge,
             "Packets declared lost over packets sent, over the session's life.");
    for (const auto& p : s.peers) t.sample({{"peer", p.peer}}, p.loss);
    t.family("burrow_peer_packets_lost_total", MetricType::kCounter,
             "Packets declared lost by loss recovery.");
    for (const auto& p : s.peers) t.sample({{"peer", p.peer}}, p.connection.packets_lost);
    t.family("burrow_peer_congestion_window_bytes", MetricType::kGauge,
             "The congestion controller's window.");
    for (const auto& p : s.peers) t.sample({{"peer", p.peer}}, p.congestion_window);
    t.family("burrow_peer_streams_open", MetricType::kGauge,
             "Forwarded connections open on the session.");
    for (const auto& p : s.peers) t.sample({{"peer", p.peer}}, p.streams);
    t.family("burrow_peer_handshakes_total", MetricType::kCounter,
             "Noise handshakes the session completed (the first one and every rekey).");
    for (const auto& p : s.peers) t.sample({{"peer", p.peer}}, p.session.handshakes_completed);
    t.family("burrow_peer_rekeys_total", MetricType::kCounter,
             "Handshakes after the first: new keys without interrupting streams.");
    for (const auto& p : s.peers) {
        const uint64_t n = p.session.handshakes_completed;
        t.sample({{"peer", p.peer}}, n > 0 ? n - 1 : 0);
    }
    t.family("burrow_peer_path_fallbacks_total", MetricType::kCounter,
             "Times the session left a silent direct path for the relay.");
    for (const auto& p : s.peers) t.sample({{"peer", p.peer}}, p.paths.fallbacks);
    t.family("burrow_peer_drops_total", MetricType::kCounter,
             "Datagrams the session dropped, by reason.");
    const auto& peers = json.at("peers");
    for (size_t i = 0; i < s.peers.size(); ++i) {
        drop_samples(t, {{"peer", s.peers[i].peer}}, peers.at(i).at("drops"));
    }
}

void forward_section(PrometheusText& t, const AgentStatus& s) {
    // UDP forwards and services have families of their own (udp_section): a UDP forward may
    // share its listen address with a TCP one, and would repeat its labels here.
    std::vector<ForwardStatus> tcp_forwards;
    for (const auto& f : s.forwards) {
        if (!f.udp) tcp_forwards.push_back(f);
    }
    std::vector<ExposeStatus> tcp_exposes;
    for (const auto& e : s.exposes) {
        if (!e.udp) tcp_exposes.push_back(e);
    }
    t.family("burrow_forward_connections_total", MetricType::kCounter,
             "Connections accepted on the forward's listen address.");
    for (const auto& f : tcp_forwards) t.sample(forward_labels(f), f.connections);
    t.family("burrow_forward_connections_active", MetricType::kGauge,
             "Connections of the forward carried by a stream now.");
    for (const auto& f : tcp_forwards) t.sample(forward_labels(f), f.active);
    t.family("burrow_forward_connections_waiting", MetricType::kGauge,
             "Accepted connections waiting for the session, the server's approval or stream "
             "credit.");
    for (const auto& f : tcp_forwards) t.sample(forward_labels(f), f.waiting);
    t.family("burrow_forward_refusals_total", MetricType::kCounter,
             "Connections closed without reaching the peer's service, by reason.");
    for (const auto& f : tcp_forwards) {
        const Labels l = forward_labels(f);
        t.sample(with(l, "reason", "stream_limit"), f.refused.stream_limit);
        t.sample(with(l, "reason", "queue_full"), f.refused.queue_full);
        t.sample(with(l, "reason", "acl"), f.refused.acl);
        t.sample(with(l, "reason", "no_session"), f.refused.no_session);
        t.sample(with(l, "reason", "peer"), f.refused.peer);
    }
    t.family("burrow_forward_resets_total", MetricType::kCounter,
             "Connections of the forward that ended with a TCP reset.");
    for (const auto& f : tcp_forwards) t.sample(forward_labels(f), f.resets);
    t.family("burrow_expose_streams_total", MetricType::kCounter,
             "Streams the peers opened to the exposed service.");
    for (const auto& e : tcp_exposes) t.sample({{"service", e.service}}, e.streams);
    t.family("burrow_expose_streams_active", MetricType::kGauge,
             "Connections to the exposed service's target open now.");
    for (const auto& e : tcp_exposes) t.sample({{"service", e.service}}, e.active);
    t.family("burrow_expose_refusals_total", MetricType::kCounter,
             "Streams to the exposed service refused (allow list, approval, target).");
    for (const auto& e : tcp_exposes) t.sample({{"service", e.service}}, e.refused);
}

// UDP forwards (labels as a forward's) and UDP services (service): flows, datagrams and bytes
// each way ("in": what the local socket received), drops by reason.
void udp_section(PrometheusText& t, const AgentStatus& s) {
    std::vector<std::pair<Labels, const UdpStatus*>> rows;
    for (const auto& f : s.forwards) {
        if (f.udp) rows.emplace_back(with(forward_labels(f), "side", "forward"), &*f.udp);
    }
    for (const auto& e : s.exposes) {
        if (e.udp) rows.emplace_back(Labels{{"service", e.service}, {"side", "expose"}}, &*e.udp);
    }
    t.family("burrow_udp_flows_total", MetricType::kCounter,
             "UDP flows opened (a client address on a forward, a peer's flow on a service).");
    for (const auto& [l, u] : rows) t.sample(l, u->counters.flows);
    t.family("burrow_udp_flows_active", MetricType::kGauge, "UDP flows open now.");
    for (const auto& [l, u] : rows) t.sample(l, u->active_flows);
    t.family("burrow_udp_datagrams_total", MetricType::kCounter,
             "Datagrams the local UDP socket received (in) and sent (out).");
    for (const auto& [l, u] : rows) {
        t.sample(with(l, "direction", "in"), u->counters.datagrams_in);
        t.sample(with(l, "direction", "out"), u->counters.datagrams_out);
    }
    t.family("burrow_udp_bytes_total", MetricType::kCounter,
             "Payload bytes the local UDP socket received (in) and sent (out).");
    for (const auto& [l, u] : rows) {
        t.sample(with(l, "direction", "in"), u->counters.bytes_in);
        t.sample(with(l, "direction", "out"), u->counters.bytes_out);
    }
    t.family("burrow_udp_drops_total", MetricType::kCounter, "Datagrams dropped, by reason.");
    for (const auto& [l, u] : rows) {
        const UdpCounters& c = u->counters;
        t.sample(with(l, "reason", "too_large"), c.drop_too_large);
        t.sample(with(l, "reason", "congested"), c.drop_congested);
        t.sample(with(l, "reason", "no_session"), c.drop_no_session);
        t.sample(with(l, "reason", "flow_cap"), c.drop_flow_cap);
        t.sample(with(l, "reason", "refused"), c.drop_refused);
        t.sample(with(l, "reason", "stray"), c.drop_stray);
    }
    t.family("burrow_udp_max_datagram_bytes", MetricType::kGauge,
             "The largest datagram the session carries (0: no session yet).");
    for (const auto& [l, u] : rows) t.sample(l, u->max_datagram);
}

void punch_section(PrometheusText& t, const AgentStatus& s) {
    t.family("burrow_punch_successes_total", MetricType::kCounter,
             "Links that found a direct path, by NAT pair (ours/theirs) and where the path led "
             "(host, srflx, prflx, birthday, mapped, predicted, tcp-host, tcp-srflx, tcp-prflx).");
    for (const auto& [key, n] : s.punch.successes) {
        t.sample({{"nat_pair", key.first}, {"technique", key.second}}, n);
    }
    t.family("burrow_punch_fallbacks_total", MetricType::kCounter,
             "Links with no direct path 20 s after punching started (they stay on the relay), "
             "by NAT pair and the technique tried (plain, spray, birthday).");
    for (const auto& [key, n] : s.punch.fallbacks) {
        t.sample({{"nat_pair", key.first}, {"technique", key.second}}, n);
    }
    t.family("burrow_punch_time_to_direct_seconds", MetricType::kHistogram,
             "Time from a link's start to its first direct path.");
    HistogramValues h(std::vector<double>(std::begin(kTimeToDirectBounds),
                                          std::end(kTimeToDirectBounds)));
    h.counts = s.punch.time_to_direct_counts;
    h.sum = s.punch.time_to_direct_sum_s;
    t.histogram({}, h);
}

}  // namespace

std::string agent_metrics_text(const AgentStatus& status, const UdpStats& udp) {
    const nlohmann::json json = agent_status_json(status, udp);
    PrometheusText t;
    agent_section(t, status, udp, json);
    peer_section(t, status, json);
    forward_section(t, status);
    udp_section(t, status);
    punch_section(t, status);
    return t.take();
}

}  // namespace burrow
