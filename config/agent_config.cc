#include "config/agent_config.h"

#include <limits>

#include "config/checks.h"
#include "config/toml_reader.h"
#include "signal/stun_servers.h"

namespace burrow {

namespace {

using namespace config_detail;

constexpr int64_t kMaxPort = 65535;  // udp_port is a 16-bit port; 0 lets the OS choose

// What the cross-checks need besides the values: where each one was written.
struct Positions {
    std::vector<Located<std::string>> services;  // expose[i].service
    std::vector<Located<HostPort>> binds;        // udp_port (if set), admin, forward[i].listen
    std::vector<ForwardProtocol> bind_protocols;  // of each bind (admin: TCP)
    std::vector<Located<std::string>> peers;     // forward[i].peer
};

void read_stun_servers(Issues& issues, const Located<std::vector<Located<std::string>>>& list,
                       AgentConfig& config) {
    if (list.value.size() > kMaxStunServers) {
        issues.add(list, "lists " + std::to_string(list.value.size()) +
                             " servers; at most " + std::to_string(kMaxStunServers) +
                             " (two already give a second opinion on the NAT)");
        return;
    }
    std::vector<Located<std::string>> seen;  // canonical "host:port", for the repeat check
    for (const auto& entry : list.value) {
        auto address = check_address(issues, entry, AddressUse::kConnect);
        if (!address) continue;
        if (is_wildcard(*address)) {
            issues.add(entry,
                       quote(entry.value) + " is a wildcard address; give the server's address");
            continue;
        }
        seen.push_back({to_string(*address), entry.at, entry.path});
        config.stun_servers.push_back(*address);
    }
    check_no_repeats(issues, seen, "stun server");
}

void read_agent(TableReader& t, std::string_view base_dir, const FileProbe& files,
                AgentConfig& config, Positions& positions) {
    Issues& issues = t.issues();
    if (auto name = t.required_string("name", "\"nas\"")) {
        if (check_agent_name(issues, *name)) config.name = name->value;
    }
    if (auto key_file = t.required_string("key_file", "\"nas.key\"")) {
        config.key_file = resolve_path(base_dir, key_file->value);
        check_file_exists(issues, files, *key_file, config.key_file,
                          "create it with: burrow keygen -o " + config.key_file);
    }
    if (auto servers = t.required_string_or_strings("server", "\"signal.example.net:7000\"")) {
        if (servers->value.empty() || servers->value.size() > kMaxServers) {
            issues.add(*servers, "holds " + std::to_string(servers->value.size()) +
                                     " address(es); give 1 to " + std::to_string(kMaxServers) +
                                     " servers of one cluster");
        }
        std::vector<Located<std::string>> seen;
        for (const auto& entry : servers->value) {
            if (auto address = check_address(issues, entry, AddressUse::kConnect)) {
                config.servers.push_back(*address);
                seen.push_back({to_string(*address), entry.at, entry.path});
            }
        }
        check_no_repeats(issues, seen, "server");
        if (!config.servers.empty()) config.server = config.servers.front();
    }
    if (auto order = t.optional_string("server_order")) {
        if (order->value == "random") {
            config.server_order = ServerOrder::kRandom;
        } else if (order->value == "listed") {
            config.server_order = ServerOrder::kListed;
        } else {
            issues.add(*order, quote(order->value) + " is not a server order; use \"random\" "
                                                     "(start at any server) or \"listed\" "
                                                     "(start at the first)");
        }
    }
    auto fingerprint = t.optional_string("server_fingerprint");
    auto ca = t.optional_string("server_ca");
    if (fingerprint && ca) {
        issues.add(*ca, "give server_fingerprint or server_ca, not both (" + fingerprint->path +
                            " is set)");
    } else if (!fingerprint && !ca) {
        t.report_missing("server_fingerprint",
                         "required key is missing (or server_ca); add: server_fingerprint = "
                         "\"sha256:...\" as printed by burrow server",
                         "server_ca");
    }
    if (fingerprint) {
        config.server_fingerprint = parse_fingerprint(fingerprint->value);
        if (!config.server_fingerprint) {
            issues.add(*fingerprint, quote(fingerprint->value) +
                                         " is not a certificate fingerprint (expected sha256: "
                                         "and 64 hex digits, as printed by burrow server)");
        }
    }
    if (ca) {
        config.server_ca = resolve_path(base_dir, ca->value);
        check_file_exists(issues, files, *ca, *config.server_ca,
                          "give the PEM file of the CA that signed the server's certificate");
    }
    if (auto port = t.optional_integer("udp_port", 0, kMaxPort)) {
        config.udp_port = static_cast<uint16_t>(port->value);
        if (config.udp_port != 0) {
            // The session socket binds every IPv4 address (src/agent_runtime.cc), so a UDP
            // forward on that port could not bind.
            positions.binds.push_back(
                {HostPort{"0.0.0.0", config.udp_port, HostKind::kIpv4}, port->at, port->path});
            positions.bind_protocols.push_back(ForwardProtocol::kUdp);
        }
    }
    const auto admin_remote = t.optional_bool("admin_remote");
    config.admin_remote = admin_remote && admin_remote->value;
    const auto admin = t.optional_string("admin");
    if (admin) {
        config.admin = check_address(
            issues, *admin, config.admin_remote ? AddressUse::kListen : AddressUse::kLoopback);
        if (config.admin) {
            positions.binds.push_back({*config.admin, admin->at, admin->path});
            positions.bind_protocols.push_back(ForwardProtocol::kTcp);
        }
    } else if (config.admin_remote) {
        issues.add(*admin_remote,
                   "admin_remote = true without admin: give the address to serve on, e.g. "
                   "admin = \"0.0.0.0:7070\"");
    }
    if (auto level = t.optional_string("log_level")) {
        if (auto parsed = check_log_level(issues, *level)) config.log_level = *parsed;
    }
    if (auto streams = t.optional_integer("max_streams", std::numeric_limits<int64_t>::min(),
                                          std::numeric_limits<int64_t>::max())) {
        if (streams->value < kMinMaxStreams || streams->value > kMaxMaxStreams) {
            issues.add(*streams, std::to_string(streams->value) + " is out of range (" +
                                     std::to_string(kMinMaxStreams) + "-" +
                                     std::to_string(kMaxMaxStreams) +
                                     "): a peer may always open " +
                                     std::to_string(kMinMaxStreams) +
                                     " streams before it hears our limit");
        } else {
            config.max_streams = static_cast<uint64_t>(streams->value);
        }
    }
    if (auto keepalive = t.optional_string("keepalive")) {
        config.keepalive = check_duration(issues, *keepalive, kMinKeepalive, kMaxKeepalive);
    }
    if (auto stun = t.optional_strings("stun_servers")) read_stun_servers(issues, *stun, config);
    if (auto idle = t.optional_string("udp_idle_timeout")) {
        if (auto d = check_duration(issues, *idle, kMinUdpIdleTimeout, kMaxUdpIdleTimeout)) {
            config.udp_idle_timeout = *d;
        }
    }
    if (auto mapping = t.optional_bool("port_mapping")) config.port_mapping = mapping->value;
    t.finish();
}

ForwardProtocol read_protocol(TableReader& t) {
    auto text = t.optional_string("protocol");
    if (!text || text->value == "tcp") return ForwardProtocol::kTcp;
    if (text->value == "udp") return ForwardProtocol::kUdp;
    t.issues().add(*text, quote(text->value) + " is not a protocol burrow forwards; use \"tcp\" "
                                               "or \"udp\"");
    return ForwardProtocol::kTcp;
}

void read_expose(TableReader& t, AgentConfig& config, Positions& positions) {
    Issues& issues = t.issues();
    ExposeConfig expose;
    if (auto service = t.required_string("service", "\"web\"")) {
        if (check_service_name(issues, *service)) expose.service = service->value;
        positions.services.push_back(*service);
    }
    auto target_text = t.required_string("target", "\"127.0.0.1:80\"");
    if (target_text) {
        if (auto address = check_address(issues, *target_text, AddressUse::kConnect)) {
            expose.target = *address;
        }
    }
    if (auto allow = t.required_strings("allow", "[\"laptop\"]")) {
        if (allow->value.empty()) {
            issues.add(*allow,
                       "is empty; name the peers that may use this service "
                       "(nothing is allowed by default)");
        }
        for (const auto& peer : allow->value) check_agent_name(issues, peer);
        check_no_repeats(issues, allow->value, "peer");
        expose.allow = values_of(allow->value);
    }
    expose.protocol = read_protocol(t);
    // A UDP flow's socket sends to the target from the core, which resolves no names.
    if (expose.protocol == ForwardProtocol::kUdp && target_text && !expose.target.host.empty() &&
        !literal_socket_address(expose.target)) {
        issues.add(*target_text, quote(target_text->value) +
                                     " is a name; a UDP service's target must be an IP address "
                                     "for now (e.g. \"127.0.0.1:53\")");
    }
    t.finish();
    config.expose.push_back(std::move(expose));
}

void read_forward(TableReader& t, AgentConfig& config, Positions& positions) {
    Issues& issues = t.issues();
    ForwardConfig forward;
    std::optional<Located<HostPort>> bind;
    if (auto listen = t.required_string("listen", "\"127.0.0.1:8080\"")) {
        if (auto address = check_address(issues, *listen, AddressUse::kListen)) {
            forward.listen = *address;
            bind = Located<HostPort>{*address, listen->at, listen->path};
        }
    }
    if (auto peer = t.required_string("peer", "\"nas\"")) {
        if (check_agent_name(issues, *peer)) forward.peer = peer->value;
        positions.peers.push_back(*peer);
    }
    if (auto service = t.required_string("service", "\"web\"")) {
        if (check_service_name(issues, *service)) forward.service = service->value;
    }
    forward.protocol = read_protocol(t);
    if (bind) {
        positions.binds.push_back(*bind);
        positions.bind_protocols.push_back(forward.protocol);
    }
    t.finish();
    config.forward.push_back(std::move(forward));
}

void cross_check(const AgentConfig& config, const Positions& positions, Issues& issues) {
    check_no_repeats(issues, positions.services, "service");
    const auto& binds = positions.binds;
    for (size_t i = 0; i < binds.size(); ++i) {
        for (size_t j = 0; j < i; ++j) {
            // A UDP port and a TCP port of one number are different sockets.
            if (positions.bind_protocols[i] != positions.bind_protocols[j]) continue;
            if (addresses_overlap(binds[j].value, binds[i].value)) {
                issues.add(binds[i], quote(to_string(binds[i].value)) + " takes the port of " +
                                         binds[j].path + " (" + to_string(binds[j].value) +
                                         "); use another port");
                break;
            }
        }
    }
    for (const auto& peer : positions.peers) {
        if (peer.value == config.name) {
            issues.add(
                peer, quote(peer.value) + " is this agent itself; a forward reaches another agent");
        }
    }
}

}  // namespace

bool needs_restart(const AgentConfig& running, const AgentConfig& next) {
    AgentConfig a = running, b = next;
    a.log_level = b.log_level;
    a.expose = b.expose;
    a.forward = b.forward;
    return !(a == b);
}

std::variant<AgentConfig, ConfigError> parse_agent_config(std::string_view text,
                                                          std::string_view source_name,
                                                          std::string_view base_dir,
                                                          const FileProbe& files) {
    auto parsed = parse_toml(text, source_name);
    if (auto* error = std::get_if<ConfigError>(&parsed)) return *error;
    const toml::table& doc = std::get<toml::table>(parsed);

    Issues issues;
    TableReader root(doc, "", position_of(doc.source()), issues);
    AgentConfig config;
    Positions positions;
    if (auto agent = root.required_table("agent")) read_agent(*agent, base_dir, files, config, positions);
    for (auto& expose : root.table_array("expose")) read_expose(expose, config, positions);
    for (auto& forward : root.table_array("forward")) read_forward(forward, config, positions);
    root.finish();
    // Cross-checks compare values that are each valid; before that they would only echo
    // the first problem in another form.
    if (issues.empty()) cross_check(config, positions, issues);
    if (!issues.empty()) return issues.first(source_name);
    return config;
}

}  // namespace burrow
