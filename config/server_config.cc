#include "config/server_config.h"

#include <algorithm>

#include "config/checks.h"
#include "config/toml_reader.h"

namespace burrow {

namespace {

using namespace config_detail;

// Upper bounds that no real deployment reaches; a bigger number is a typo (an extra digit),
// not a wish, and would size the server's tables or disable its quotas by accident.
constexpr int64_t kMaxMaxAgents = 1'000'000;
constexpr int64_t kMaxRelayRateMbit = 100'000;  // 100 Gbit/s
constexpr int64_t kMaxRelayPacketsPerSec = 10'000'000;
constexpr size_t kStunPorts = 2;  // docs/architecture.md §6: two ports, to tell per-destination mapping
constexpr size_t kMaxStunAddresses = kStunPorts * kMaxListenAddresses;

// Where values were written, for the checks that compare entries with each other.
struct Positions {
    std::vector<Located<std::string>> files;  // cert_file, key_file, identity_key (resolved)
    std::vector<Located<HostPort>> stun;
    std::vector<Located<HostPort>> listen;
    std::optional<Located<HostPort>> metrics;
    std::vector<Located<std::string>> agent_names;
    std::vector<Located<PublicKey>> agent_keys;
    std::vector<Located<std::string>> rule_agents;  // allow[i].from and .to
};

bool is_v6(const HostPort& a) {
    return a.kind == HostKind::kIpv6;
}

// Whether a and b, of one address list, would fight over a port. An IPv4 and an IPv6 address
// never do: when they share a port the IPv6 one is bound IPv6-only (server_config.h).
bool list_overlap(const HostPort& a, const HostPort& b) {
    if (is_v6(a) != is_v6(b)) return false;
    return addresses_overlap(a, b);
}

// Records an issue for each address of `list` that overlaps an earlier one.
void check_list_overlaps(Issues& issues, const std::vector<Located<HostPort>>& list,
                         std::string_view fix) {
    for (size_t i = 0; i < list.size(); ++i) {
        for (size_t j = 0; j < i; ++j) {
            if (list_overlap(list[j].value, list[i].value)) {
                issues.add(list[i], quote(to_string(list[i].value)) + " takes the port of " +
                                        list[j].path + "; " + std::string(fix));
                break;
            }
        }
    }
}

// The families a group of addresses on one port receives: an IPv6 address is dual-stack
// unless an IPv4 address shares its port, and only a wildcard "::" then takes IPv4 traffic.
struct Families {
    bool v4 = false;
    bool v6 = false;
    bool operator==(const Families&) const = default;
};
Families families_of(const std::vector<HostPort>& group) {
    Families f;
    for (const auto& a : group) {
        if (is_v6(a)) {
            f.v6 = true;
        } else {
            f.v4 = true;
        }
    }
    if (!f.v4) {
        f.v4 = std::any_of(group.begin(), group.end(),
                           [](const HostPort& a) { return is_wildcard(a); });
    }
    return f;
}
std::string describe(const Families& f) {
    if (f.v4 && f.v6) return "IPv4 and IPv6";
    return f.v6 ? "IPv6 only" : "IPv4 only";
}

// An IP literal to bind, refusing IPv4-mapped IPv6 ("[::ffff:1.2.3.4]:7000"): it binds the IPv4
// address, and beside an IPv4 address on its port it would be bound IPv6-only, which it cannot.
std::optional<HostPort> check_bind_address(Issues& issues, const Located<std::string>& entry) {
    auto address = check_address(issues, entry, AddressUse::kListen);
    if (address && is_v6(*address) && address->host.rfind("::ffff:", 0) == 0 &&
        address->host.find('.') != std::string::npos) {
        issues.add(entry, quote(entry.value) + " is an IPv4-mapped IPv6 address; write it as " +
                              address->host.substr(7) + ":" + std::to_string(address->port));
        return std::nullopt;
    }
    return address;
}

void read_listen(TableReader& t, ServerConfig& config, Positions& positions) {
    Issues& issues = t.issues();
    auto listen = t.required_string_or_strings("listen", "\"0.0.0.0:7000\"");
    if (!listen) return;
    if (listen->value.empty() || listen->value.size() > kMaxListenAddresses) {
        issues.add(*listen, "holds " + std::to_string(listen->value.size()) +
                                " address(es); give 1 to " + std::to_string(kMaxListenAddresses) +
                                ", e.g. \"[::]:7000\" (IPv4 and IPv6 on one socket)");
        return;
    }
    for (const auto& entry : listen->value) {
        if (auto address = check_bind_address(issues, entry)) {
            config.listen.push_back(*address);
            positions.listen.push_back({*address, entry.at, entry.path});
        }
    }
}

void read_stun(TableReader& t, ServerConfig& config, Positions& positions) {
    Issues& issues = t.issues();
    auto stun = t.required_strings("stun", "[\"0.0.0.0:3478\", \"0.0.0.0:3479\"]");
    if (!stun) return;
    if (stun->value.size() < kStunPorts || stun->value.size() > kMaxStunAddresses) {
        issues.add(*stun, "holds " + std::to_string(stun->value.size()) +
                              " address(es); give exactly two (the second lets agents tell "
                              "whether their NAT maps per destination), or up to " +
                              std::to_string(kMaxStunAddresses) +
                              " on those two ports (one per family or address)");
        return;
    }
    std::vector<uint16_t> ports;  // in order of first appearance: the main port first
    for (const auto& entry : stun->value) {
        auto address = check_bind_address(issues, entry);
        if (!address) continue;
        auto port = std::find(ports.begin(), ports.end(), address->port);
        if (port == ports.end()) {
            if (ports.size() == kStunPorts) {
                issues.add(entry, quote(entry.value) + " is on a third port; the STUN addresses "
                                                       "use exactly two ports (" +
                                      std::to_string(ports[0]) + " and " +
                                      std::to_string(ports[1]) + ")");
                continue;
            }
            ports.push_back(address->port);
            port = ports.end() - 1;
        }
        config.stun[static_cast<size_t>(port - ports.begin())].push_back(*address);
        positions.stun.push_back({*address, entry.at, entry.path});
    }
}

void read_file_path(TableReader& t, std::string_view key, std::string_view example,
                    std::string_view base_dir, std::string& out, Positions& positions) {
    if (auto path = t.required_string(key, example)) {
        if (path->value.empty()) {
            t.issues().add(*path, "is empty; give a file name");
            return;
        }
        out = resolve_path(base_dir, path->value);
        positions.files.push_back({out, path->at, path->path});
    }
}

uint32_t read_limit(TableReader& t, std::string_view key, int64_t max, uint32_t fallback) {
    auto value = t.optional_integer(key, 1, max);
    return value ? static_cast<uint32_t>(value->value) : fallback;
}

void read_server(TableReader& t, std::string_view base_dir, ServerConfig& config,
                 Positions& positions) {
    Issues& issues = t.issues();
    read_listen(t, config, positions);
    read_stun(t, config, positions);
    read_file_path(t, "cert_file", "\"server.crt\"", base_dir, config.cert_file, positions);
    read_file_path(t, "key_file", "\"server.key\"", base_dir, config.key_file, positions);
    read_file_path(t, "identity_key", "\"server-identity.key\"", base_dir, config.identity_key,
                   positions);
    config.max_agents = read_limit(t, "max_agents", kMaxMaxAgents, kDefaultMaxAgents);
    config.relay_rate_mbit =
        read_limit(t, "relay_rate_mbit", kMaxRelayRateMbit, kDefaultRelayRateMbit);
    config.relay_packets_per_sec =
        read_limit(t, "relay_packets_per_sec", kMaxRelayPacketsPerSec, kDefaultRelayPacketsPerSec);
    if (auto level = t.optional_string("log_level")) {
        if (auto parsed = check_log_level(issues, *level)) config.log_level = *parsed;
    }
    if (auto standard = t.optional_bool("stun_standard_clients")) {
        config.stun_standard_clients = standard->value;
    }
    if (auto metrics = t.optional_string("metrics")) {
        config.metrics = check_address(issues, *metrics, AddressUse::kListen);
        if (config.metrics) positions.metrics = {*config.metrics, metrics->at, metrics->path};
    }
    t.finish();
}

void read_cluster(TableReader& t, ServerConfig& config) {
    Issues& issues = t.issues();
    ClusterSection cluster;
    bool ok = true;
    if (auto redis = t.required_string("redis", "\"redis://127.0.0.1:6379\"")) {
        constexpr std::string_view kScheme = "redis://";
        std::string rest = redis->value;
        if (rest.rfind(kScheme, 0) != 0) {
            issues.add(*redis, quote(redis->value) +
                                   " is not a Redis URL; write \"redis://HOST:PORT\", e.g. "
                                   "\"redis://127.0.0.1:6379\"");
            ok = false;
        } else {
            rest = rest.substr(kScheme.size());
            const bool has_port = !rest.empty() && rest.back() != ']' &&
                                  rest.find(':') != std::string::npos &&
                                  (rest.front() == '[' || rest.find(':') == rest.rfind(':'));
            if (!has_port) rest += ":" + std::to_string(kDefaultRedisPort);
            auto address =
                check_address(issues, Located<std::string>{rest, redis->at, redis->path},
                              AddressUse::kConnect);
            if (!address) {
                ok = false;
            } else if (address->kind == HostKind::kName) {
                issues.add(*redis, quote(redis->value) +
                                       " names a host; give Redis's IP address (the server "
                                       "never blocks its loop on a name lookup)");
                ok = false;
            } else {
                cluster.redis = *address;
            }
        }
    } else {
        ok = false;
    }
    if (auto name = t.required_string("name", "\"s1\"")) {
        if (check_agent_name(issues, *name)) {
            cluster.name = name->value;
        } else {
            ok = false;
        }
    } else {
        ok = false;
    }
    t.finish();
    if (ok) config.cluster = std::move(cluster);
}

void read_agent(TableReader& t, ServerConfig& config, Positions& positions) {
    Issues& issues = t.issues();
    AgentEntry agent;
    if (auto name = t.required_string("name", "\"nas\"")) {
        if (check_agent_name(issues, *name)) {
            agent.name = name->value;
            positions.agent_names.push_back(*name);
        }
    }
    if (auto key = t.required_string("public_key", "\"...\" as printed by burrow keygen")) {
        if (auto parsed = parse_public_key(key->value)) {
            agent.public_key = *parsed;
            positions.agent_keys.push_back({*parsed, key->at, key->path});
        } else {
            issues.add(*key, quote(key->value) +
                                 " is not a public key (expected 44 characters of base64, "
                                 "as printed by burrow keygen)");
        }
    }
    t.finish();
    config.agents.push_back(std::move(agent));
}

void read_services(TableReader& t, AllowRule& rule) {
    Issues& issues = t.issues();
    auto services = t.required_strings("services", "[\"web\"] or [\"*\"]");
    if (!services) return;
    if (services->value.empty()) {
        issues.add(*services, "is empty; name the services to allow, or [\"*\"] for all");
        return;
    }
    const bool any = std::any_of(services->value.begin(), services->value.end(),
                                 [](const auto& s) { return s.value == kAnyService; });
    if (any && services->value.size() > 1) {
        issues.add(*services,
                   "mixes \"*\" with service names; \"*\" already allows every "
                   "service, so give it alone");
        return;
    }
    if (!any) {
        for (const auto& service : services->value) check_service_name(issues, service);
        check_no_repeats(issues, services->value, "service");
    }
    rule.services = values_of(services->value);
}

void read_rule(TableReader& t, ServerConfig& config, Positions& positions) {
    Issues& issues = t.issues();
    AllowRule rule;
    auto from = t.required_string("from", "\"laptop\"");
    if (from && check_agent_name(issues, *from)) {
        rule.from = from->value;
        positions.rule_agents.push_back(*from);
    }
    auto to = t.required_string("to", "\"nas\"");
    if (to && check_agent_name(issues, *to)) {
        rule.to = to->value;
        positions.rule_agents.push_back(*to);
    }
    if (from && to && from->value == to->value) {
        issues.add(*to, quote(to->value) +
                            " is the same agent as from; a rule lets one agent "
                            "reach another");
    }
    read_services(t, rule);
    t.finish();
    config.allow.push_back(std::move(rule));
}

template <class T, class Describe>
void check_unique(Issues& issues, const std::vector<Located<T>>& list, Describe describe) {
    for (size_t i = 0; i < list.size(); ++i) {
        for (size_t j = 0; j < i; ++j) {
            if (list[j].value == list[i].value) {
                issues.add(list[i], describe(list[i], list[j]));
                break;
            }
        }
    }
}

void cross_check(const ServerConfig& config, const Positions& positions, Issues& issues) {
    check_unique(issues, positions.files, [](const auto& dup, const auto& first) {
        return "is the same file as " + first.path + " (" + dup.value +
               "); each needs its own file";
    });
    if (config.stun[1].empty() && !positions.stun.empty()) {
        // Every address on one port: the old two-address form on one port lands here too.
        const auto& at = positions.stun.size() > 1 ? positions.stun[1] : positions.stun[0];
        issues.add(at, quote(to_string(at.value)) + " takes the port of " +
                           positions.stun[0].path +
                           "; the STUN addresses need different ports (two: the main one, then the second)");
    }
    check_list_overlaps(issues, positions.stun,
                        "two STUN sockets of one family cannot share a port");
    if (!config.stun[1].empty() &&
        families_of(config.stun[0]) != families_of(config.stun[1])) {
        const auto second = std::find_if(positions.stun.begin(), positions.stun.end(),
                                         [&](const auto& s) { return s.value == config.stun[1][0]; });
        issues.add(*second, "port " + std::to_string(config.stun[1][0].port) + " serves " +
                                describe(families_of(config.stun[1])) + " but port " +
                                std::to_string(config.stun[0][0].port) + " serves " +
                                describe(families_of(config.stun[0])) +
                                "; give both STUN ports the same families");
    }
    check_list_overlaps(issues, positions.listen,
                        "two listeners of one family cannot share a port");
    if (positions.metrics) {
        for (const auto& listen : positions.listen) {
            if (addresses_overlap(listen.value, positions.metrics->value)) {
                issues.add(*positions.metrics,
                           quote(to_string(positions.metrics->value)) + " takes the port of " +
                               listen.path + "; give the metrics listener a port of its own");
                break;
            }
        }
    }
    check_unique(issues, positions.agent_names, [](const auto& dup, const auto& first) {
        return "agent " + quote(dup.value) + " is listed twice (also at " + first.path + ")";
    });
    check_unique(issues, positions.agent_keys, [](const auto&, const auto& first) {
        return "is the same key as " + first.path + "; each agent needs its own key";
    });
    for (const auto& name : positions.rule_agents) {
        const bool known =
            std::any_of(positions.agent_names.begin(), positions.agent_names.end(),
                        [&](const auto& agent) { return agent.value == name.value; });
        if (!known) {
            issues.add(name, quote(name.value) +
                                 " is not an agent; list it in [[agents]] with its public key");
        }
    }
}

}  // namespace

std::variant<ServerConfig, ConfigError> parse_server_config(std::string_view text,
                                                            std::string_view source_name,
                                                            std::string_view base_dir) {
    auto parsed = parse_toml(text, source_name);
    if (auto* error = std::get_if<ConfigError>(&parsed)) return *error;
    const toml::table& doc = std::get<toml::table>(parsed);

    Issues issues;
    TableReader root(doc, "", position_of(doc.source()), issues);
    ServerConfig config;
    Positions positions;
    if (auto server = root.required_table("server"))
        read_server(*server, base_dir, config, positions);
    if (auto cluster = root.optional_table("cluster")) read_cluster(*cluster, config);
    for (auto& agent : root.table_array("agents")) read_agent(agent, config, positions);
    for (auto& rule : root.table_array("allow")) read_rule(rule, config, positions);
    root.finish();
    // As in the agent loader: compare entries only once each is valid on its own.
    if (issues.empty()) cross_check(config, positions, issues);
    if (!issues.empty()) return issues.first(source_name);
    return config;
}

}  // namespace burrow
