#include "config/checks.h"

#include <string>
#include <string_view>
#include <vector>

namespace burrow::config_detail {

namespace {

std::string why_address(AddressUse use) {
    switch (use) {
        case AddressUse::kConnect:
            return "an IP address or a DNS name, then :port";
        case AddressUse::kListen:
            return "listen on an IP address, e.g. 127.0.0.1:8080 or [::1]:8080";
        case AddressUse::kLoopback:
            return "loopback only: 127.0.0.1:port or [::1]:port; admin_remote = true allows "
                   "other addresses";
    }
    return {};
}

// The address a listener really binds: an IPv4-mapped IPv6 address binds the IPv4 address it
// maps, so Linux makes [::ffff:127.0.0.1]:80 and 127.0.0.1:80 fight over the port. IPv6 hosts
// are in canonical form (canonical_ip), which writes mapped addresses as "::ffff:a.b.c.d".
HostPort bound_form(const HostPort& a) {
    constexpr std::string_view kMapped = "::ffff:";
    if (a.kind == HostKind::kIpv6 && a.host.rfind(kMapped, 0) == 0 &&
        a.host.find('.') != std::string::npos) {
        return HostPort{a.host.substr(kMapped.size()), a.port, HostKind::kIpv4};
    }
    return a;
}

}  // namespace

std::optional<HostPort> check_address(Issues& issues, const Located<std::string>& text,
                                      AddressUse use) {
    auto parsed = parse_host_port(text.value);
    if (auto* why = std::get_if<std::string>(&parsed)) {
        issues.add(text, quote(text.value) + " is not a valid address (" + *why + ")");
        return std::nullopt;
    }
    HostPort address = std::get<HostPort>(std::move(parsed));
    const bool fits = use == AddressUse::kConnect ||
                      (use == AddressUse::kListen && address.ip_literal()) ||
                      (use == AddressUse::kLoopback && is_loopback(address));
    if (!fits) {
        issues.add(text, quote(text.value) + " is not allowed here (" + why_address(use) + ")");
        return std::nullopt;
    }
    return address;
}

bool check_agent_name(Issues& issues, const Located<std::string>& name) {
    if (is_agent_name(name.value)) return true;
    issues.add(
        name, quote(name.value) + " is not a valid agent name (1-32 characters of a-z, 0-9 and -)");
    return false;
}

bool check_service_name(Issues& issues, const Located<std::string>& name) {
    if (is_service_name(name.value)) return true;
    issues.add(name, quote(name.value) +
                         " is not a valid service name (1-64 characters of a-z, 0-9, -, _ and .)");
    return false;
}

std::optional<LogLevel> check_log_level(Issues& issues, const Located<std::string>& text) {
    auto level = parse_log_level(text.value);
    if (!level) {
        issues.add(text,
                   quote(text.value) + " is not a log level (trace, debug, info, warn or error)");
    }
    return level;
}

bool addresses_overlap(const HostPort& bind_a, const HostPort& bind_b) {
    const HostPort a = bound_form(bind_a), b = bound_form(bind_b);
    if (a.port != b.port) return false;
    const auto covers = [](const HostPort& wild, const HostPort& other) {
        return is_wildcard(wild) && (wild.kind == other.kind || wild.kind == HostKind::kIpv6);
    };
    return a.host == b.host || covers(a, b) || covers(b, a);
}

void check_no_repeats(Issues& issues, const std::vector<Located<std::string>>& list,
                      std::string_view what) {
    for (size_t i = 0; i < list.size(); ++i) {
        for (size_t j = 0; j < i; ++j) {
            if (list[j].value == list[i].value) {
                issues.add(list[i], std::string(what) + " " + quote(list[i].value) +
                                        " is listed twice (also at " + list[j].path + ")");
                break;
            }
        }
    }
}

std::vector<std::string> values_of(const std::vector<Located<std::string>>& list) {
    std::vector<std::string> out;
    out.reserve(list.size());
    for (const auto& item : list) out.push_back(item.value);
    return out;
}

std::string resolve_path(std::string_view base_dir, std::string_view path) {
    std::string joined(path);
    if (!base_dir.empty() && !path.starts_with('/')) {
        joined = std::string(base_dir) + "/" + std::string(path);
    }
    const bool absolute = joined.starts_with('/');
    std::vector<std::string_view> parts;
    std::string_view rest(joined);
    while (!rest.empty()) {
        const size_t slash = rest.find('/');
        const std::string_view part = rest.substr(0, slash);
        rest = slash == std::string_view::npos ? std::string_view() : rest.substr(slash + 1);
        if (part.empty() || part == ".") continue;
        if (part == ".." && !parts.empty() && parts.back() != "..") {
            parts.pop_back();
        } else if (part != ".." || !absolute) {
            parts.push_back(part);  // a leading ".." stays in a relative path; "/.." is "/"
        }
    }
    std::string out = absolute ? "/" : "";
    for (size_t i = 0; i < parts.size(); ++i) {
        if (i > 0) out += '/';
        out += parts[i];
    }
    return out.empty() ? "." : out;
}

bool check_file_exists(Issues& issues, const FileProbe& files, const Located<std::string>& text,
                       const std::string& resolved, std::string_view fix) {
    switch (files(resolved)) {
        case FileKind::kFile:
            return true;
        case FileKind::kDirectory:
            issues.add(text, quote(text.value) + " is a directory (" + resolved + "), not a file");
            return false;
        case FileKind::kMissing:
            break;
    }
    const std::string where =
        resolved == text.value ? std::string() : " (looked for " + resolved + ")";
    issues.add(text, quote(text.value) + " does not exist" + where + "; " + std::string(fix));
    return false;
}

namespace {

std::string duration_text(Duration d) {
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
    return ms % 1000 == 0 ? std::to_string(ms / 1000) + "s" : std::to_string(ms) + "ms";
}

}  // namespace

std::optional<Duration> check_duration(Issues& issues, const Located<std::string>& text,
                                       Duration min, Duration max) {
    const std::string& v = text.value;
    const size_t digits = v.find_first_not_of("0123456789");
    std::optional<Duration> d;
    // At most 9 digits: no overflow, and far above any sane value (the range check follows).
    if (digits > 0 && digits != std::string::npos && digits <= 9) {
        const int64_t n = std::stoll(v.substr(0, digits));
        const std::string_view unit = std::string_view(v).substr(digits);
        if (unit == "s") d = std::chrono::seconds(n);
        if (unit == "ms") d = std::chrono::milliseconds(n);
    }
    if (!d) {
        issues.add(text, quote(v) + " is not a duration (expected e.g. \"5s\" or \"2500ms\")");
        return std::nullopt;
    }
    if (*d < min || *d > max) {
        issues.add(text, quote(v) + " is out of range (" + duration_text(min) + "-" +
                             duration_text(max) + ")");
        return std::nullopt;
    }
    return d;
}

}  // namespace burrow::config_detail
