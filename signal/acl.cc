#include "signal/acl.h"

#include <sodium.h>

#include <algorithm>
#include <set>

namespace burrow {

std::optional<Acl> Acl::create(AclConfig config, std::string* error) {
    auto fail = [&](std::string reason) -> std::optional<Acl> {
        if (error) *error = std::move(reason);
        return std::nullopt;
    };
    std::set<std::string> names;
    std::set<PublicKey> keys;
    for (const AclAgent& a : config.agents) {
        if (a.name.empty()) return fail("agent with an empty name");
        if (!names.insert(a.name).second) return fail("agent \"" + a.name + "\" listed twice");
        if (!keys.insert(a.key).second) {
            return fail("agent \"" + a.name + "\" has the same key as another agent");
        }
    }
    for (const AclRule& r : config.allow) {
        for (const std::string* n : {&r.from, &r.to}) {
            if (!names.count(*n)) return fail("allow rule names unknown agent \"" + *n + "\"");
        }
    }
    return Acl(std::move(config));
}

bool Acl::allowed(std::string_view from, std::string_view to, std::string_view service) const {
    if (!find_by_name(from) || !find_by_name(to)) return false;
    return std::any_of(config_.allow.begin(), config_.allow.end(), [&](const AclRule& r) {
        if (r.from != from || r.to != to) return false;
        return std::any_of(r.services.begin(), r.services.end(),
                           [&](const std::string& s) { return s == service || s == kAnyService; });
    });
}

bool Acl::pair_allowed(std::string_view a, std::string_view b) const {
    if (a == b || !find_by_name(a) || !find_by_name(b)) return false;
    return std::any_of(config_.allow.begin(), config_.allow.end(), [&](const AclRule& r) {
        return !r.services.empty() &&
               ((r.from == a && r.to == b) || (r.from == b && r.to == a));
    });
}

const AclAgent* Acl::find_by_name(std::string_view name) const {
    for (const AclAgent& a : config_.agents) {
        if (a.name == name) return &a;
    }
    return nullptr;
}

const AclAgent* Acl::find_by_key(const PublicKey& key) const {
    for (const AclAgent& a : config_.agents) {
        if (sodium_memcmp(a.key.data(), key.data(), key.size()) == 0) return &a;
    }
    return nullptr;
}

}  // namespace burrow
