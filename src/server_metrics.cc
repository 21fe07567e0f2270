#include "src/server_metrics.h"

#include <iterator>
#include <string_view>

#include "src/prometheus_text.h"
#include "src/version.h"

namespace burrow {
namespace {

// DropReason as a label value: its enumerator's name in snake case.
constexpr const char* kDropLabels[] = {
    "too_large",           "unknown_type",         "wrong_port",
    "stun_malformed",      "stun_not_request",     "stun_amplification",
    "bind_malformed",      "bind_unknown_token",   "relay_malformed",
    "relay_unbound_sender", "relay_unknown_sender", "relay_unknown_session",
    "relay_bad_token",     "relay_not_member",     "relay_peer_offline",
    "rate_limit_packets",  "rate_limit_bytes",
};
static_assert(std::size(kDropLabels) == static_cast<size_t>(DropReason::kCount));

// A cluster counter of messages passed to (out) and from (in) other servers.
void out_in(PrometheusText& t, std::string_view name, std::string_view help, uint64_t out,
            uint64_t in) {
    t.family(name, MetricType::kCounter, help);
    t.sample({{"direction", "out"}}, out);
    t.sample({{"direction", "in"}}, in);
}

}  // namespace

std::string server_metrics_text(const ServerCore& core, const TlsHandshakeStats& tls,
                                const StunTcpStats& stun_tcp, double uptime_s) {
    PrometheusText t;
    t.family("burrow_server_info", MetricType::kGauge, "Always 1; the server's version.");
    t.sample({{"version", version_string()}}, uint64_t{1});
    t.family("burrow_server_uptime_seconds", MetricType::kGauge,
             "Seconds since the server started.");
    t.sample(uptime_s);
    t.family("burrow_server_agents_online", MetricType::kGauge,
             "Agents authenticated and connected now.");
    t.sample(uint64_t{core.registry().online_count()});
    t.family("burrow_server_agents_configured", MetricType::kGauge,
             "Agents server.toml lists.");
    t.sample(uint64_t{core.registry().agents().size()});
    t.family("burrow_server_connections_pending", MetricType::kGauge,
             "Control connections waiting for their Auth.");
    t.sample(uint64_t{core.pending_count()});
    const ServerStats& s = core.stats();
    t.family("burrow_server_registrations_total", MetricType::kCounter,
             "Agents that authenticated (a reconnect counts again).");
    t.sample(s.registrations);
    t.family("burrow_server_rendezvous_total", MetricType::kCounter,
             "Connect requests answered with both agents' candidates.");
    t.sample(s.rendezvous);
    t.family("burrow_server_rendezvous_refreshed_total", MetricType::kCounter,
             "Live sessions whose agents were sent each other's candidates again, one side's "
             "having changed.");
    t.sample(s.rendezvous_refreshed);
    t.family("burrow_server_punch_reports_total", MetricType::kCounter,
             "Agents' reports of how punching settled (burrow doctor), by result.");
    t.sample({{"result", "kept"}}, s.punch_reports);
    t.sample({{"result", "dropped"}}, s.punch_reports_dropped);
    t.family("burrow_server_doctor_requests_total", MetricType::kCounter,
             "burrow doctor requests answered (any answer).");
    t.sample(s.doctor_requests);
    t.family("burrow_server_doctor_pairs", MetricType::kGauge,
             "Pairs of agents whose last rendezvous the server keeps for burrow doctor.");
    t.sample(uint64_t{core.doctor_book().size()});
    t.family("burrow_server_refusals_total", MetricType::kCounter,
             "Agents and requests the server turned away, by reason.");
    for (size_t i = 0; i < s.refusals.size(); ++i) {
        t.sample({{"reason", to_string(static_cast<Refusal>(i))}}, s.refusals[i]);
    }
    if (const ClusterCore* cluster = core.cluster()) {
        const ClusterStats& c = cluster->stats();
        t.family("burrow_server_cluster_redis_up", MetricType::kGauge,
                 "1 while Redis is reachable ([cluster] only).");
        t.sample(uint64_t{cluster->redis_up() ? 1u : 0u});
        t.family("burrow_server_cluster_connects_total", MetricType::kCounter,
                 "Connects to agents on other servers, by result.");
        t.sample({{"result", "forwarded"}}, c.connects_forwarded);
        t.sample({{"result", "answered"}}, c.connects_answered);
        t.sample({{"result", "failed"}}, c.connects_failed);
        t.family("burrow_server_cluster_rendezvous_in_total", MetricType::kCounter,
                 "Rendezvous requests from other servers for this server's agents.");
        t.sample(c.rendezvous_in);
        out_in(t, "burrow_server_cluster_relay_packets_total",
               "Relayed packets passed to (out) or from (in) other servers through Redis.",
               c.relayed_out, c.relayed_in);
        out_in(t, "burrow_server_cluster_punch_reports_total",
               "PunchReports of pairs split over two servers passed to (out) or from (in) the "
               "peer's server, for burrow doctor.",
               c.reports_out, c.reports_in);
        out_in(t, "burrow_server_cluster_refreshes_total",
               "New candidates of an agent passed to (out) or from (in) its peer's server.",
               c.refreshes_out, c.refreshes_in);
        t.family("burrow_server_cluster_malformed_total", MetricType::kCounter,
                 "Messages on this server's channel that did not decode.");
        t.sample(c.malformed);
    }
    t.family("burrow_server_tls_handshakes_total", MetricType::kCounter,
             "TLS handshakes on the control port, by result (ok, failed).");
    t.sample({{"result", "ok"}}, tls.completed);
    t.sample({{"result", "failed"}}, tls.failed);
    t.family("burrow_server_relay_sessions", MetricType::kGauge,
             "Relay sessions (one per pair of agents) the server holds now.");
    t.sample(uint64_t{core.relays().size()});
    const RelayStats& relay = core.relay_stats();
    t.family("burrow_server_relay_packets_total", MetricType::kCounter,
             "Session datagrams relayed, by how they came in (udp, tls).");
    t.sample({{"via", "udp"}}, relay.packets[static_cast<size_t>(RelayVia::kUdp)]);
    t.sample({{"via", "tls"}}, relay.packets[static_cast<size_t>(RelayVia::kTls)]);
    t.family("burrow_server_relay_bytes_total", MetricType::kCounter,
             "Payload bytes of the session datagrams relayed, by how they came in (udp, tls).");
    t.sample({{"via", "udp"}}, relay.bytes[static_cast<size_t>(RelayVia::kUdp)]);
    t.sample({{"via", "tls"}}, relay.bytes[static_cast<size_t>(RelayVia::kTls)]);
    t.family("burrow_server_udp_drops_total", MetricType::kCounter,
             "Datagrams and relay payloads the server dropped, by reason.");
    for (size_t i = 0; i < static_cast<size_t>(DropReason::kCount); ++i) {
        const auto r = static_cast<DropReason>(i);
        t.sample({{"reason", kDropLabels[i]}}, core.drops().get(r));
    }
    t.family("burrow_server_stun_tcp_connections_total", MetricType::kCounter,
             "STUN-over-TCP connections to the STUN ports accepted and served (netcheck's TCP "
             "mapping test).");
    t.sample(stun_tcp.accepted);
    t.family("burrow_server_stun_tcp_answers_total", MetricType::kCounter,
             "Binding answers written on STUN-over-TCP connections.");
    t.sample(stun_tcp.answered);
    t.family("burrow_server_stun_tcp_closed_total", MetricType::kCounter,
             "STUN-over-TCP connections ended, by reason (done, not_stun, too_long, truncated, "
             "malformed, not_request, timeout, full).");
    for (size_t i = 0; i < stun_tcp.closed.size(); ++i) {
        t.sample({{"reason", to_string(static_cast<StunTcpClose>(i))}}, stun_tcp.closed[i]);
    }
    return t.take();
}

}  // namespace burrow
