// A UDP/TCP endpoint as the data and control planes carry it: an IPv4 or IPv6 address and a port.
//
// A plain value type (no sockaddr, no OS headers) so that the sans-IO cores, the STUN codec and
// the signalling messages can share it; src/ converts to and from sockaddr at the socket.
//
// Text forms are "1.2.3.4:5" and "[2001:db8::1]:5". to_string() writes the canonical IPv6 form
// of RFC 5952 (lowercase, no leading zeros, the longest run of two or more zero groups as "::",
// IPv4-mapped addresses as "::ffff:1.2.3.4"), so the same address always prints the same way
// in logs and status output.
#pragma once

#include <array>
#include <compare>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "tunnel/bytes.h"

namespace burrow {

inline constexpr size_t kIpv4Size = 4;
inline constexpr size_t kIpv6Size = 16;

struct SocketAddress {
    // Network byte order. An IPv4 address uses ip[0..3] and keeps the rest zero, so that
    // defaulted equality compares what matters.
    std::array<uint8_t, kIpv6Size> ip{};
    bool v6 = false;
    uint16_t port = 0;

    static SocketAddress ipv4(const std::array<uint8_t, kIpv4Size>& a, uint16_t port);
    static SocketAddress ipv6(const std::array<uint8_t, kIpv6Size>& a, uint16_t port);
    // The address bytes in use: 4 for IPv4, 16 for IPv6.
    ByteView ip_bytes() const { return ByteView(ip).first(v6 ? kIpv6Size : kIpv4Size); }

    bool operator==(const SocketAddress&) const = default;
    auto operator<=>(const SocketAddress&) const = default;  // an order, for maps
};

std::string to_string(const SocketAddress& a);

// Parses "a.b.c.d:port" or "[ipv6]:port". Strict: decimal IPv4 octets without leading zeros
// (so "010" is never read as octal by one tool and decimal by another), no zone ids, no
// surrounding spaces, port 0-65535.
std::optional<SocketAddress> parse_socket_address(std::string_view text);

}  // namespace burrow
