#include "src/agent_status_json.h"

#include <set>

#include "src/version.h"

namespace burrow {
namespace {

nlohmann::json traffic_json(const TrafficCounters& t) {
    return {{"packets_sent", t.packets_sent},
            {"bytes_sent", t.bytes_sent},
            {"packets_received", t.packets_received},
            {"bytes_received", t.bytes_received}};
}

// {"kind": "direct", "family": "ipv4", "address": "198.51.100.7:41641"}; family and address are
// null while the address is not known (a relay before the server's address is).
nlohmann::json path_json(const PeerStatus& p) {
    nlohmann::json path = {{"kind", to_string(p.path)}, {"family", nullptr}, {"address", nullptr}};
    if (p.path_address) {
        path["family"] = p.path_address->v6 ? "ipv6" : "ipv4";
        path["address"] = to_string(*p.path_address);
    }
    return path;
}

nlohmann::json peer_json(const PeerStatus& p) {
    const ConnectionStats& cs = p.connection;
    const SessionStats& ss = p.session;
    std::set<std::string> services(p.may_open.begin(), p.may_open.end());
    services.insert(p.may_accept.begin(), p.may_accept.end());
    nlohmann::json prediction = nullptr;
    if (p.prediction) {
        prediction = {{"mode", p.prediction->mode},
                      {"first_port", p.prediction->first},
                      {"last_port", p.prediction->last},
                      {"ports", p.prediction->ports},
                      {"round", p.prediction->round}};
    }
    return {
        {"peer", p.peer},
        {"session_id", p.session_id},
        {"role", p.role == Role::kInitiator ? "initiator" : "responder"},
        {"state", session_state_name(p.state)},
        {"path", path_json(p)},
        {"technique", p.technique},
        {"predicted_window", prediction},
        {"rtt_ms", p.rtt_ms},
        {"loss", p.loss},
        {"bytes_sent", cs.bytes_sent},
        {"bytes_received", cs.bytes_received},
        {"streams", p.streams},
        {"congestion_window", p.congestion_window},
        // Session datagrams by the way they travelled (what GET /metrics shows per path kind).
        {"traffic",
         {{"direct", traffic_json(p.traffic.direct)},
          {"relay-udp", traffic_json(p.traffic.relay_udp)},
          {"relay-tcp", traffic_json(p.traffic.relay_tcp)}}},
        // Handshakes this session completed: the first one plus every rekey.
        {"handshakes", {{"completed", ss.handshakes_completed}, {"sent", ss.handshakes_sent}}},
        {"probes",
         {{"challenges_sent", p.paths.challenges_sent},
          {"responses_sent", p.paths.responses_sent},
          {"paths_validated", p.paths.paths_validated},
          {"fallbacks", p.paths.fallbacks}}},
        {"services", services},
        {"may_open", p.may_open},
        {"may_accept", p.may_accept},
        {"streams_awaiting_approval", p.streams_awaiting_approval},
        {"handshake",
         {{"sent", ss.handshakes_sent},
          {"completed", ss.handshakes_completed},
          {"dh_operations", ss.handshake_noise_reads},
          {"cookie_replies_sent", ss.cookie_replies_sent},
          {"cookie_replies_received", ss.cookie_replies_received},
          {"tie_won", ss.initiations_tie_won},
          {"tie_yielded", ss.initiations_tie_yielded}}},
        {"drops",
         {{"malformed", ss.drop_malformed + cs.drop_malformed},
          {"bad_mac1", ss.drop_bad_mac1},
          {"unknown_peer", ss.drop_unknown_peer},
          {"replayed_initiation", ss.drop_replayed_initiation},
          {"decrypt_failed", ss.drop_decrypt_failed},
          {"unknown_index", ss.drop_unknown_index},
          {"key_expired", ss.drop_key_expired},
          {"duplicate", cs.drop_duplicate},
          {"too_old", cs.drop_too_old},
          {"bad_probe", ss.drop_bad_probe},
          {"bad_cookie_reply", ss.drop_bad_cookie_reply},
          {"initiations_under_load", ss.cookie_replies_sent}}},
    };
}

}  // namespace

nlohmann::json agent_status_json(const AgentStatus& s, const UdpStats& udp) {
    using nlohmann::json;
    json out;
    out["agent"] = {{"name", s.name},
                    {"public_key", s.public_key},
                    {"version", version_string()},
                    {"uptime_s", s.uptime_s}};
    json server = {{"address", s.server},
                   {"state", to_string(s.server_state)},
                   {"registered", s.registered},
                   {"udp", s.udp_bound ? "bound" : "unknown"},
                   {"reconnects", s.reconnects},
                   {"keepalive_s", s.keepalive_s},
                   {"keepalive", s.keepalive_learned ? "learned" : "configured"},
                   {"udp_moves", s.client.udp_moves},
                   {"relay_attaches", s.client.relay_attaches}};
    server["connected_to"] = s.server_address ? json(to_string(*s.server_address)) : json();
    if (s.nat) server["nat"] = to_string(*s.nat);
    if (s.reflexive) server["reflexive"] = to_string(*s.reflexive);
    server["port_allocation"] = describe(s.allocation);
    out["server"] = server;
    // [agent] port_mapping: what the gateway gave (signal/port_mapper.h).
    const PortMapperStatus& pm = s.port_mapping;
    json mapping = {{"state", to_string(pm.state)},
                    {"asks", pm.asks},
                    {"renewals", pm.renewals},
                    {"failures", pm.failures}};
    if (pm.mapping) {
        mapping["protocol"] = to_string(pm.mapping->protocol);
        mapping["gateway"] = pm.mapping->gateway;
        mapping["external"] = to_string(pm.mapping->external);
        mapping["lease_s"] =
            std::chrono::duration_cast<std::chrono::seconds>(pm.mapping->lease).count();
    }
    if (!pm.last_failure.empty()) mapping["last_failure"] = pm.last_failure;
    out["port_mapping"] = mapping;
    // [agent] stun_servers: what each one saw of the main socket, or that it did not answer.
    json stun = json::array();
    for (const StunServerStatus& st : s.stun_servers) {
        json one = {{"server", st.server},
                    {"state", to_string(st.state)},
                    {"requests", st.requests}};
        if (st.address) one["address"] = to_string(*st.address);
        if (st.mapped) {
            one["mapped"] = to_string(*st.mapped);
            one["rtt_ms"] = to_ms(st.rtt);
        }
        if (!st.error.empty()) one["error"] = st.error;
        stun.push_back(std::move(one));
    }
    out["stun_servers"] = stun;
    // How the main socket moves datagrams (src/udp_socket.h): its modes, the buffers the kernel
    // granted, and datagrams per call, which says whether batching happens.
    out["udp"] = {{"send_mode", to_string(udp.send_mode)},
                  {"receive_mode", receive_mode_name(udp.receive_mode)},
                  {"receive_buffer_bytes", udp.receive_buffer_bytes},
                  {"send_buffer_bytes", udp.send_buffer_bytes},
                  {"datagrams_sent", udp.datagrams_sent},
                  {"send_calls", udp.send_calls},
                  {"datagrams_received", udp.datagrams_received},
                  {"receive_calls", udp.receive_calls},
                  {"mode_fallbacks", udp.mode_fallbacks}};
    json peers = json::array();
    for (const auto& p : s.peers) peers.push_back(peer_json(p));
    out["peers"] = peers;
    json forwards = json::array();
    const auto udp_json = [](const UdpStatus& u) {
        const UdpCounters& c = u.counters;
        return json{{"active_flows", u.active_flows},
                    {"max_flows", u.max_flows},
                    {"idle_timeout_s", u.idle_timeout_s},
                    {"max_datagram", u.max_datagram},
                    {"flows", c.flows},
                    {"datagrams_in", c.datagrams_in},
                    {"bytes_in", c.bytes_in},
                    {"datagrams_out", c.datagrams_out},
                    {"bytes_out", c.bytes_out},
                    {"dropped", c.drops()},
                    {"drops",
                     {{"too_large", c.drop_too_large},
                      {"congested", c.drop_congested},
                      {"no_session", c.drop_no_session},
                      {"flow_cap", c.drop_flow_cap},
                      {"refused", c.drop_refused},
                      {"stray", c.drop_stray}}}};
    };
    for (const auto& f : s.forwards) {
        forwards.push_back({{"listen", f.listen},
                            {"peer", f.peer},
                            {"service", f.service},
                            {"connections", f.connections},
                            {"active", f.active},
                            {"waiting", f.waiting},
                            {"refused", f.refused.total()},
                            {"resets", f.resets},
                            {"refusals",
                             {{"stream_limit", f.refused.stream_limit},
                              {"queue_full", f.refused.queue_full},
                              {"acl", f.refused.acl},
                              {"no_session", f.refused.no_session},
                              {"peer", f.refused.peer}}}});
        forwards.back()["protocol"] = f.protocol;
        if (f.udp) forwards.back()["udp"] = udp_json(*f.udp);
    }
    out["forwards"] = forwards;
    json exposes = json::array();
    for (const auto& e : s.exposes) {
        exposes.push_back({{"service", e.service},
                           {"target", e.target},
                           {"allow", e.allow},
                           {"streams", e.streams},
                           {"active", e.active},
                           {"refused", e.refused}});
        exposes.back()["protocol"] = e.protocol;
        if (e.udp) exposes.back()["udp"] = udp_json(*e.udp);
    }
    out["exposes"] = exposes;
    json successes = json::array();
    for (const auto& [key, n] : s.punch.successes) {
        successes.push_back({{"nat_pair", key.first}, {"technique", key.second}, {"count", n}});
    }
    json fallbacks = json::array();
    for (const auto& [key, n] : s.punch.fallbacks) {
        fallbacks.push_back({{"nat_pair", key.first}, {"technique", key.second}, {"count", n}});
    }
    uint64_t directs = 0;
    for (uint64_t n : s.punch.time_to_direct_counts) directs += n;
    out["punch"] = {{"successes", successes},
                    {"fallbacks", fallbacks},
                    {"direct_paths", directs},
                    {"time_to_direct_sum_s", s.punch.time_to_direct_sum_s}};
    const AgentClientStats& c = s.client;
    out["drops"] = {
        {"relay_offline", c.drop_relay_offline},
        {"relay_unknown_session", c.drop_relay_unknown_session + s.drops.relay_unknown_session},
        {"relay_too_large", c.drop_relay_too_large},
        {"relay_queue_full", c.drop_relay_queue_full},
        {"relay_bad_token", c.drop_relay_bad_token},
        {"udp_malformed", c.drop_udp_malformed},
        {"udp_unexpected", c.drop_udp_unexpected},
        {"udp_from_unknown", s.drops.udp_from_unknown},
        {"udp_truncated", udp.truncated},
        {"udp_send_queue_full", udp.send_queue_full},
        {"stun_malformed", c.drop_stun_malformed},
        {"stun_unmatched", c.drop_stun_unmatched},
        {"stun_server_malformed", s.stun_server_stats.drop_malformed},
        {"stun_server_unmatched", s.stun_server_stats.drop_unmatched},
        {"control_unexpected", c.drop_control_unexpected},
        {"connects_refused_locally", c.connects_refused_locally},
        {"streams_refused", s.drops.streams_refused},
        {"waiting_full", s.drops.waiting_full},
        {"listen_paused", s.drops.listen_paused},
        {"tcp_unclaimed_frames", s.drops.tcp_unclaimed_frames},
        {"tcp_unclaimed_closed", s.drops.tcp_unclaimed_closed},
        {"tcp_bad_framing", s.drops.tcp_bad_framing},
        {"tcp_duplicates_closed", s.drops.tcp_duplicates_closed}};
    return out;
}

}  // namespace burrow
