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

// Where values were written, for the checks that compare entries with each other.
struct Positions {
    std::vector<Located<std::string>> files;  // cert_file, key_file, identity_key (resolved)
    std::vector<Located<HostPort>> stun;
    std::vector<Located<std::string>> agent_names;
    std::vector<Located<PublicKey>> agent_keys;
    std::vector<Located<std::string>> rule_agents;  // allow[i].from and .to
    std::vector<Located<HostPort>> tcp;  // listen, then metrics: TCP ports that must differ
};

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
    if (auto listen = t.required_string("listen", "\"0.0.0.0:7000\"")) {
        if (auto address = check_address(issues, *listen, AddressUse::kListen)) {
            config.listen = *address;
            positions.tcp.push_back({*address, listen->at, listen->path});
        }
    }
    if (auto stun = t.required_strings("stun", "[\"0.0.0.0:3478\", \"0.0.0.0:3479\"]")) {
        if (stun->value.size() != kStunPorts) {
            issues.add(*stun, "holds " + std::to_string(stun->value.size()) +
                                  " address(es); give exactly two (the second lets agents tell "
                                  "whether their NAT maps per destination)");
        } else {
            for (size_t i = 0; i < kStunPorts; ++i) {
                if (auto address = check_address(issues, stun->value[i], AddressUse::kListen)) {
                    config.stun[i] = *address;
                    positions.stun.push_back({*address, stun->value[i].at, stun->value[i].path});
                }
            }
        }
    }
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
        if (config.metrics) positions.tcp.push_back({*config.metrics, metrics->at, metrics->path});
    }
    t.finish();
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

void cross_check(const Positions& positions, Issues& issues) {
    check_unique(issues, positions.files, [](const auto& dup, const auto& first) {
        return "is the same file as " + first.path + " (" + dup.value +
               "); each needs its own file";
    });
    if (positions.stun.size() == kStunPorts &&
        addresses_overlap(positions.stun[0].value, positions.stun[1].value)) {
        issues.add(positions.stun[1], quote(to_string(positions.stun[1].value)) +
                                          " takes the port of " + positions.stun[0].path +
                                          "; the two STUN addresses need different ports");
    }
    if (positions.tcp.size() == 2 &&
        addresses_overlap(positions.tcp[0].value, positions.tcp[1].value)) {
        issues.add(positions.tcp[1], quote(to_string(positions.tcp[1].value)) +
                                         " takes the port of " + positions.tcp[0].path +
                                         "; give the metrics listener a port of its own");
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
    for (auto& agent : root.table_array("agents")) read_agent(agent, config, positions);
    for (auto& rule : root.table_array("allow")) read_rule(rule, config, positions);
    root.finish();
    // As in the agent loader: compare entries only once each is valid on its own.
    if (issues.empty()) cross_check(positions, issues);
    if (!issues.empty()) return issues.first(source_name);
    return config;
}

}  // namespace burrow
