// "host:port" as config files write it: an IPv4 literal, a bracketed IPv6 literal or a DNS
// name, then a port.
//
//   127.0.0.1:80   [::1]:8080   signal.example.net:7000
//
// A literal is parsed by tunnel/socket_address.h and stored in its canonical text form (so
// "0:0::1" and "::1" compare equal); a name is checked for DNS syntax only, never resolved:
// nothing here does I/O.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "tunnel/socket_address.h"

namespace burrow {

enum class HostKind : uint8_t { kName, kIpv4, kIpv6 };

struct HostPort {
    std::string host;  // IPv6 without brackets
    uint16_t port = 0;
    HostKind kind = HostKind::kName;

    bool ip_literal() const { return kind != HostKind::kName; }
    bool operator==(const HostPort&) const = default;
};

// "host:port" with brackets around IPv6, the form parse_host_port reads back.
std::string to_string(const HostPort& a);

// The address, or why it is not one, as a few words that fit in "... is not a valid address
// (<why>)": "port 1-65535", "IPv6 needs brackets: [::1]:80" and so on. Port 0 is rejected:
// every address in a config is one to connect to or to listen on by number.
std::variant<HostPort, std::string> parse_host_port(std::string_view text);

// 0.0.0.0 or ::, which take the port on every interface.
bool is_wildcard(const HostPort& a);
// 127.0.0.0/8 or ::1. Names are never loopback here, not even "localhost": what a name
// resolves to is up to the resolver.
bool is_loopback(const HostPort& a);

// The socket address of an IP literal; nullopt for a DNS name (resolve it on the loop instead).
std::optional<SocketAddress> literal_socket_address(const HostPort& a);

}  // namespace burrow
