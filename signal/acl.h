// Who may open which service of whom: the server's access list, from server.toml.
//
//   [[agent]]  name = "laptop"  key = "..."
//   [[allow]]  from = "laptop"  to = "nas"  services = ["web"]     # or ["*"]
//
// Deny by default: a connection is allowed only when some rule names exactly that source
// agent, that target agent and that service (or "*"). Rules are one-directional. Unknown
// names are denied. config/ parses the TOML; this takes the parsed values.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tunnel/noise.h"

namespace burrow {

inline constexpr std::string_view kAnyService = "*";

struct AclAgent {
    std::string name;
    PublicKey key{};
};

struct AclRule {
    std::string from;
    std::string to;
    std::vector<std::string> services;  // service names, or "*" for every service
};

struct AclConfig {
    std::vector<AclAgent> agents;
    std::vector<AclRule> allow;
};

class Acl {
  public:
    // nullopt, with a one-line reason in *error, when two agents share a name or a key, a name
    // is empty, or a rule names an agent that is not listed.
    static std::optional<Acl> create(AclConfig config, std::string* error);

    bool allowed(std::string_view from, std::string_view to, std::string_view service) const;
    // Whether some rule joins the two agents, in either direction, for any service: what a
    // relay session between them (which carries all their services) needs to exist at all.
    bool pair_allowed(std::string_view a, std::string_view b) const;

    const std::vector<AclAgent>& agents() const { return config_.agents; }
    const AclAgent* find_by_name(std::string_view name) const;
    // Constant-time per comparison: whether a key is known leaks no prefix information.
    const AclAgent* find_by_key(const PublicKey& key) const;

  private:
    explicit Acl(AclConfig config) : config_(std::move(config)) {}
    AclConfig config_;
};

}  // namespace burrow
