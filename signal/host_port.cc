#include "signal/host_port.h"

#include <algorithm>
#include <cctype>
#include <optional>

#include "tunnel/socket_address.h"

namespace burrow {

namespace {

constexpr size_t kMaxDnsNameLen = 253;     // RFC 1035 §2.3.4: 255 octets on the wire
constexpr size_t kMaxDnsLabelLen = 63;     // RFC 1035 §2.3.4
constexpr uint32_t kMaxPort = 65535;       // ports are 16 bits
constexpr size_t kMaxPortDigits = 5;       // "65535"
constexpr uint8_t kIpv4LoopbackNet = 127;  // RFC 1122 §3.2.1.3: 127.0.0.0/8

using Result = std::variant<HostPort, std::string>;

bool is_digit(char c) {
    return c >= '0' && c <= '9';
}

std::variant<uint16_t, std::string> parse_port(std::string_view text) {
    if (text.empty()) return std::string("missing port after ':'");
    if (text.size() > kMaxPortDigits || !std::all_of(text.begin(), text.end(), is_digit)) {
        return std::string("port 1-65535");
    }
    uint32_t port = 0;
    for (char c : text) port = port * 10 + static_cast<uint32_t>(c - '0');
    if (port == 0 || port > kMaxPort) return std::string("port 1-65535");
    return static_cast<uint16_t>(port);
}

// The canonical text of the IP literal in host:port (RFC 5952 for IPv6, without brackets), or
// nullopt if it is not one. tunnel/socket_address.h does the parsing, so that an address reads
// the same in a config file as on the wire.
std::optional<std::string> canonical_ip(std::string_view host_port) {
    const auto address = parse_socket_address(host_port);
    if (!address) return std::nullopt;
    std::string text = to_string(*address);
    text.erase(text.rfind(':'));
    if (address->v6) text = text.substr(1, text.size() - 2);  // the brackets
    return text;
}

// RFC 1123 §2.1 host name syntax: dot-separated labels of letters, digits and inner hyphens.
bool is_dns_name(std::string_view name) {
    if (!name.empty() && name.back() == '.') name.remove_suffix(1);  // fully qualified form
    if (name.empty() || name.size() > kMaxDnsNameLen) return false;
    std::string_view last_label;
    while (!name.empty()) {
        const size_t dot = name.find('.');
        const std::string_view label = name.substr(0, dot);
        if (label.empty() || label.size() > kMaxDnsLabelLen) return false;
        if (label.front() == '-' || label.back() == '-') return false;
        for (char c : label) {
            if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-') return false;
        }
        last_label = label;
        name = dot == std::string_view::npos ? std::string_view() : name.substr(dot + 1);
        if (dot != std::string_view::npos && name.empty()) return false;  // "a..b" or "a."
    }
    // RFC 3696 §2: a top-level domain is never all digits, so "10.0.0.256" is a bad address,
    // not a name.
    return !std::all_of(last_label.begin(), last_label.end(), is_digit);
}

Result parse_bracketed(std::string_view text) {
    const size_t close = text.find(']');
    if (close == std::string_view::npos) return std::string("missing ']' after the IPv6 address");
    const std::string_view rest = text.substr(close + 1);
    if (rest.empty() || rest.front() != ':') return std::string("missing :port after ']'");
    auto port = parse_port(rest.substr(1));
    if (auto* why = std::get_if<std::string>(&port)) return *why;
    auto ip = canonical_ip(text);
    if (!ip) return std::string("not an IPv6 address inside [ ]");
    return HostPort{std::move(*ip), std::get<uint16_t>(port), HostKind::kIpv6};
}

}  // namespace

std::string to_string(const HostPort& a) {
    const std::string port = std::to_string(a.port);
    if (a.kind == HostKind::kIpv6) return "[" + a.host + "]:" + port;
    return a.host + ":" + port;
}

Result parse_host_port(std::string_view text) {
    if (text.empty()) return std::string("empty; expected host:port");
    if (text.front() == '[') return parse_bracketed(text);
    const size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) return std::string("missing :port");
    const std::string_view host = text.substr(0, colon);
    if (host.find(':') != std::string_view::npos) {
        return std::string("IPv6 needs brackets, as in [::1]:80");
    }
    if (host.empty()) return std::string("missing host before ':'");
    auto port = parse_port(text.substr(colon + 1));
    if (auto* why = std::get_if<std::string>(&port)) return *why;
    const uint16_t p = std::get<uint16_t>(port);

    const bool looks_ipv4 =
        std::all_of(host.begin(), host.end(), [](char c) { return is_digit(c) || c == '.'; });
    if (looks_ipv4) {
        auto ip = canonical_ip(text);
        if (!ip) return std::string("not an IPv4 address");
        return HostPort{std::move(*ip), p, HostKind::kIpv4};
    }
    if (!is_dns_name(host)) return std::string("not an IP address or a DNS name");
    return HostPort{std::string(host), p, HostKind::kName};
}

bool is_wildcard(const HostPort& a) {
    return (a.kind == HostKind::kIpv4 && a.host == "0.0.0.0") ||
           (a.kind == HostKind::kIpv6 && a.host == "::");
}

bool is_loopback(const HostPort& a) {
    if (a.kind == HostKind::kIpv6) return a.host == "::1";  // canonical form, see canonical_ip
    if (a.kind != HostKind::kIpv4) return false;
    const size_t dot = a.host.find('.');
    return a.host.substr(0, dot) == std::to_string(kIpv4LoopbackNet);
}

std::optional<SocketAddress> literal_socket_address(const HostPort& a) {
    if (!a.ip_literal()) return std::nullopt;
    return parse_socket_address(to_string(a));
}

}  // namespace burrow
