#include "src/netcheck_report.h"

#include <algorithm>
#include <cstdio>

namespace burrow {
namespace {

using json = nlohmann::json;

// signal/agent_udp.h: tries at 0, 0.1, 0.3, 0.7 and 1.5 s, given up at 3.1 s.
constexpr double kProbeGiveUpS = 3.1;

const char* family_name(bool v6) {
    return v6 ? "ipv6" : "ipv4";
}

std::string line(const std::string& label, const std::string& text) {
    char head[32];
    std::snprintf(head, sizeof head, "%-15s", label.c_str());
    return head + text + "\n";
}

std::string describe(const std::optional<SocketAddress>& a, uint16_t port) {
    return (a ? to_string(*a) : std::string("no answer")) + " (port " + std::to_string(port) + ")";
}

std::vector<const StunServerStatus*> stun_of(const NetcheckReport& r, bool v6) {
    std::vector<const StunServerStatus*> out;
    for (const StunServerStatus& s : r.stun_servers) {
        if (s.address && s.address->v6 == v6) out.push_back(&s);
    }
    return out;
}

size_t answered(const NatProbeResult& p) {
    return static_cast<size_t>(std::count_if(p.mapped.begin(), p.mapped.end(),
                                             [](const auto& m) { return m.has_value(); }));
}

// Every reflexive address the family's answers gave, each once.
std::vector<SocketAddress> reflexive(const NetcheckReport& r, const NetcheckFamily& f) {
    std::vector<SocketAddress> out;
    auto add = [&](const std::optional<SocketAddress>& a) {
        if (a && std::find(out.begin(), out.end(), *a) == out.end()) out.push_back(*a);
    };
    if (f.server) {
        for (const auto& m : f.probe.mapped) add(m);
    }
    for (const StunServerStatus* s : stun_of(r, f.v6)) add(s->mapped);
    return out;
}

bool reachable(const NetcheckReport& r, const NetcheckFamily& f) {
    return !reflexive(r, f).empty();
}

bool asked(const NetcheckReport& r, const NetcheckFamily& f) {
    return f.server.has_value() || !stun_of(r, f.v6).empty();
}

std::string udp_text(const NetcheckReport& r, const NetcheckFamily& f) {
    if (!asked(r, f)) {
        return "not asked: " + (f.not_asked.empty() ? std::string("no server of this family")
                                                    : f.not_asked);
    }
    size_t stun_answers = 0;
    for (const StunServerStatus* s : stun_of(r, f.v6)) stun_answers += s->mapped ? 1 : 0;
    const std::string stun_part =
        stun_answers == 0 ? ""
                          : std::to_string(stun_answers) + " STUN server" +
                                (stun_answers == 1 ? "" : "s") + " answered";
    if (f.server) {
        const size_t n = answered(f.probe);
        if (n == 2) return "reachable: both STUN ports answered";
        if (n == 1) return "partly reachable: one STUN port answered";
        if (stun_answers > 0) return "reachable: " + stun_part + ", the server's ports did not";
        char text[160];
        std::snprintf(text, sizeof text,
                      "blocked: no STUN answer in %.1f s; burrow will relay inside the TLS "
                      "connection",
                      kProbeGiveUpS);
        return text;
    }
    if (stun_answers > 0) return "reachable: " + stun_part;
    return "blocked: no STUN server answered";
}

std::string mapping_text(NatMapping m) {
    switch (m) {
        case NatMapping::kEndpointIndependent:
            return "endpoint-independent: direct paths can be punched";
        case NatMapping::kPerDestination:
            return "per destination (symmetric NAT): direct paths only with a peer whose NAT is "
                   "not symmetric too; otherwise the relay";
        case NatMapping::kUnknown:
            break;
    }
    return "unknown: needs answers from both ports or two STUN servers";
}

std::string allocation_text(const PortAllocation& a) {
    const std::string what = describe(a);
    switch (a.kind) {
        case PortAllocationKind::kUnknown:
            return "unknown: needs mapped ports from " + std::to_string(kMinAllocationSamples) +
                   " or more STUN destinations (the server's two ports and --stun-server)";
        case PortAllocationKind::kSame:
            return "one port for every destination";
        case PortAllocationKind::kSequential:
            return what + ": the next mappings' ports can be predicted";
        case PortAllocationKind::kBlock:
            return what + " (random in a per-subscriber block): predictable within the block";
        case PortAllocationKind::kRandom:
            return "random: no prediction";
    }
    return what;
}

std::string tcp_mapping_text(const NetcheckTcp& t) {
    if (!t.asked) return "not tested: " + t.not_asked;
    switch (netcheck_tcp_mapping(t)) {
        case NatMapping::kEndpointIndependent:
            return "endpoint-independent (port kept across destinations): direct TCP punching "
                   "can work";
        case NatMapping::kPerDestination:
            return "per destination (port " + std::to_string(t.mapped[0]->port) + " then " +
                   std::to_string(t.mapped[1]->port) +
                   "): direct TCP punching will not work through this NAT";
        case NatMapping::kUnknown:
            break;
    }
    if (!t.mapped[0]) {
        return "unknown: the server does not answer STUN over TCP on port " +
               std::to_string(t.server_ports[0]) + " (an older server, or filtered): " + t.error;
    }
    return "unknown: port " + std::to_string(t.server_ports[1]) +
           " did not answer STUN over TCP: " + t.error;
}

json address_or_null(const std::optional<SocketAddress>& a) {
    return a ? json(to_string(*a)) : json(nullptr);
}

}  // namespace

NatMapping netcheck_tcp_mapping(const NetcheckTcp& tcp) {
    if (!tcp.asked || !tcp.mapped[0] || !tcp.mapped[1]) return NatMapping::kUnknown;
    return tcp.mapped[0]->port == tcp.mapped[1]->port ? NatMapping::kEndpointIndependent
                                                      : NatMapping::kPerDestination;
}

NatMapping netcheck_mapping(const NetcheckReport& report, const NetcheckFamily& family) {
    std::vector<SocketAddress> seen;
    for (const StunServerStatus* s : stun_of(report, family.v6)) {
        if (s->mapped) seen.push_back(*s->mapped);
    }
    const NatMapping verdict = family.server ? family.probe.mapping : NatMapping::kUnknown;
    const std::optional<SocketAddress> main =
        family.server ? family.probe.mapped[0] : std::nullopt;
    return refine_mapping(verdict, main, seen, report.host_addresses);
}

std::string netcheck_text(const NetcheckReport& r) {
    std::string out;
    for (const NetcheckFamily& f : r.families) {
        const std::string name = family_name(f.v6);
        out += line(name + " udp", udp_text(r, f));
        if (!asked(r, f)) continue;
        std::string refl;
        if (f.server) {
            refl = describe(f.probe.mapped[0], (*f.server)[0].port) + ", " +
                   describe(f.probe.mapped[1], (*f.server)[1].port);
        } else {
            const std::vector<SocketAddress> seen = reflexive(r, f);
            for (const SocketAddress& a : seen) refl += (refl.empty() ? "" : ", ") + to_string(a);
            if (refl.empty()) refl = "none";
        }
        out += line(name + " reflexive", refl);
        out += line(name + " mapping", mapping_text(netcheck_mapping(r, f)));
    }
    for (const StunServerStatus& st : r.stun_servers) {
        char text[256];
        if (st.mapped) {
            std::snprintf(text, sizeof text, "%s answered: %s (rtt %.1f ms)", st.server.c_str(),
                          to_string(*st.mapped).c_str(), to_ms(st.rtt));
        } else if (!st.error.empty()) {
            std::snprintf(text, sizeof text, "%s not asked: %s", st.server.c_str(),
                          st.error.c_str());
        } else {
            std::snprintf(text, sizeof text, "%s no answer to %d requests", st.server.c_str(),
                          st.requests);
        }
        out += line("stun server", text);
    }
    if (r.tcp.asked) {
        out += line("tcp reflexive", describe(r.tcp.mapped[0], r.tcp.server_ports[0]) + ", " +
                                         describe(r.tcp.mapped[1], r.tcp.server_ports[1]));
    }
    out += line("tcp mapping", tcp_mapping_text(r.tcp));
    out += line("allocation", allocation_text(r.allocation));
    if (r.upnp || r.pcp || r.natpmp) {
        out += line("upnp igd", r.upnp.value_or(""));
        out += line("pcp", r.pcp.value_or(""));
        out += line("nat-pmp", r.natpmp.value_or(""));
    } else {
        out += line("port mapping", "not asked (port_mapping = false or --no-port-mapping)");
    }
    return out;
}

json netcheck_json(const NetcheckReport& r) {
    json families = json::array();
    for (const NetcheckFamily& f : r.families) {
        json j = {{"family", family_name(f.v6)},
                  {"asked", asked(r, f)},
                  {"reachable", reachable(r, f)},
                  {"mapping", to_string(netcheck_mapping(r, f))},
                  {"not_asked", f.not_asked.empty() ? json(nullptr) : json(f.not_asked)}};
        if (f.server) {
            j["server"] = {{"ports", {(*f.server)[0].port, (*f.server)[1].port}},
                           {"answered", answered(f.probe)},
                           {"reflexive",
                            {address_or_null(f.probe.mapped[0]),
                             address_or_null(f.probe.mapped[1])}}};
        } else {
            j["server"] = nullptr;
        }
        json refl = json::array();
        for (const SocketAddress& a : reflexive(r, f)) refl.push_back(to_string(a));
        j["reflexive"] = refl;
        json who = json::array();
        for (const StunServerStatus* s : stun_of(r, f.v6)) {
            if (s->mapped) who.push_back(s->server);
        }
        j["stun_servers_answered"] = who;
        families.push_back(j);
    }
    json stun = json::array();
    for (const StunServerStatus& st : r.stun_servers) {
        stun.push_back({{"server", st.server},
                        {"address", address_or_null(st.address)},
                        {"family", st.address ? json(family_name(st.address->v6)) : json(nullptr)},
                        {"answered", st.mapped.has_value()},
                        {"mapped", address_or_null(st.mapped)},
                        {"rtt_ms", st.mapped ? json(to_ms(st.rtt)) : json(nullptr)},
                        {"requests", st.requests},
                        {"error", st.error.empty() ? json(nullptr) : json(st.error)}});
    }
    json port_mapping = nullptr;
    if (r.upnp || r.pcp || r.natpmp) {
        port_mapping = {{"upnp", r.upnp.value_or("")},
                        {"pcp", r.pcp.value_or("")},
                        {"natpmp", r.natpmp.value_or("")}};
    }
    const json allocation = {{"kind", to_string(r.allocation.kind)},
                             {"text", describe(r.allocation)}};
    const NetcheckTcp& t = r.tcp;
    json tcp = {{"asked", t.asked},
                {"not_asked", t.asked ? json(nullptr) : json(t.not_asked)},
                {"server_ports",
                 t.asked ? json({t.server_ports[0], t.server_ports[1]}) : json(nullptr)},
                {"local_port", t.asked ? json(t.local_port) : json(nullptr)},
                {"reflexive", {address_or_null(t.mapped[0]), address_or_null(t.mapped[1])}},
                {"mapping", to_string(netcheck_tcp_mapping(t))},
                {"error", t.error.empty() ? json(nullptr) : json(t.error)}};
    return {{"families", families},
            {"stun_servers", stun},
            {"tcp", tcp},
            {"allocation", allocation},
            {"port_mapping", port_mapping}};
}

}  // namespace burrow
