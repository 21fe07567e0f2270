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
    std::vector<Located<HostPort>> binds;        // admin, then forward[i].listen
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
        if (address->kind == HostKind::kIpv6) {
            issues.add(entry, quote(entry.value) +
                                  " is an IPv6 address; the agent's UDP socket is IPv4 only "
                                  "(give an IPv4 address or a name)");
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
    if (auto server = t.required_string("server", "\"signal.example.net:7000\"")) {
        if (auto address = check_address(issues, *server, AddressUse::kConnect)) {
            config.server = *address;
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
    }
    const auto admin_remote = t.optional_bool("admin_remote");
    config.admin_remote = admin_remote && admin_remote->value;
    const auto admin = t.optional_string("admin");
    if (admin) {
        config.admin = check_address(
            issues, *admin, config.admin_remote ? AddressUse::kListen : AddressUse::kLoopback);
        if (config.admin) positions.binds.push_back({*config.admin, admin->at, admin->path});
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
    t.finish();
}

void read_expose(TableReader& t, AgentConfig& config, Positions& positions) {
    Issues& issues = t.issues();
    ExposeConfig expose;
    if (auto service = t.required_string("service", "\"web\"")) {
        if (check_service_name(issues, *service)) expose.service = service->value;
        positions.services.push_back(*service);
    }
    if (auto target = t.required_string("target", "\"127.0.0.1:80\"")) {
        if (auto address = check_address(issues, *target, AddressUse::kConnect)) {
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
    t.finish();
    config.expose.push_back(std::move(expose));
}

void read_forward(TableReader& t, AgentConfig& config, Positions& positions) {
    Issues& issues = t.issues();
    ForwardConfig forward;
    if (auto listen = t.required_string("listen", "\"127.0.0.1:8080\"")) {
        if (auto address = check_address(issues, *listen, AddressUse::kListen)) {
            forward.listen = *address;
            positions.binds.push_back({*address, listen->at, listen->path});
        }
    }
    if (auto peer = t.required_string("peer", "\"nas\"")) {
        if (check_agent_name(issues, *peer)) forward.peer = peer->value;
        positions.peers.push_back(*peer);
    }
    if (auto service = t.required_string("service", "\"web\"")) {
        if (check_service_name(issues, *service)) forward.service = service->value;
    }
    t.finish();
    config.forward.push_back(std::move(forward));
}

void cross_check(const AgentConfig& config, const Positions& positions, Issues& issues) {
    check_no_repeats(issues, positions.services, "service");
    const auto& binds = positions.binds;
    for (size_t i = 0; i < binds.size(); ++i) {
        for (size_t j = 0; j < i; ++j) {
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
