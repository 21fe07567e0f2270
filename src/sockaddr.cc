#include "src/sockaddr.h"

#include <uv.h>

#include <algorithm>
#include <array>
#include <cstring>

namespace burrow {

namespace {

// RFC 4291 §2.5.5.2: ::ffff:0:0/96 carries an IPv4 address in its last 4 bytes.
constexpr std::array<uint8_t, 12> kV4MappedPrefix = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

}  // namespace

std::optional<SocketAddress> from_sockaddr(const sockaddr* sa) {
    if (sa == nullptr) return std::nullopt;
    if (sa->sa_family == AF_INET) {
        sockaddr_in in;
        std::memcpy(&in, sa, sizeof in);
        std::array<uint8_t, kIpv4Size> ip;
        std::memcpy(ip.data(), &in.sin_addr, kIpv4Size);
        return SocketAddress::ipv4(ip, ntohs(in.sin_port));
    }
    if (sa->sa_family == AF_INET6) {
        sockaddr_in6 in6;
        std::memcpy(&in6, sa, sizeof in6);
        std::array<uint8_t, kIpv6Size> ip;
        std::memcpy(ip.data(), &in6.sin6_addr, kIpv6Size);
        const uint16_t port = ntohs(in6.sin6_port);
        if (std::equal(kV4MappedPrefix.begin(), kV4MappedPrefix.end(), ip.begin())) {
            std::array<uint8_t, kIpv4Size> v4;
            std::copy(ip.begin() + kV4MappedPrefix.size(), ip.end(), v4.begin());
            return SocketAddress::ipv4(v4, port);
        }
        return SocketAddress::ipv6(ip, port);
    }
    return std::nullopt;
}

sockaddr_storage to_sockaddr(const SocketAddress& a, bool to_v6_socket) {
    sockaddr_storage out;
    std::memset(&out, 0, sizeof out);
    if (!a.v6 && !to_v6_socket) {
        sockaddr_in in;
        std::memset(&in, 0, sizeof in);
        in.sin_family = AF_INET;
        in.sin_port = htons(a.port);
        std::memcpy(&in.sin_addr, a.ip.data(), kIpv4Size);
        std::memcpy(&out, &in, sizeof in);
        return out;
    }
    sockaddr_in6 in6;
    std::memset(&in6, 0, sizeof in6);
    in6.sin6_family = AF_INET6;
    in6.sin6_port = htons(a.port);
    if (a.v6) {
        std::memcpy(&in6.sin6_addr, a.ip.data(), kIpv6Size);
    } else {
        std::array<uint8_t, kIpv6Size> mapped{};
        std::copy(kV4MappedPrefix.begin(), kV4MappedPrefix.end(), mapped.begin());
        std::copy(a.ip.begin(), a.ip.begin() + kIpv4Size, mapped.begin() + kV4MappedPrefix.size());
        std::memcpy(&in6.sin6_addr, mapped.data(), kIpv6Size);
    }
    std::memcpy(&out, &in6, sizeof in6);
    return out;
}

bool usable_v6_host(const SocketAddress& a) {
    if (!a.v6) return false;
    const auto& ip = a.ip;
    if (std::all_of(ip.begin(), ip.end() - 1, [](uint8_t b) { return b == 0; })) {
        return false;  // :: and ::1 (RFC 4291 §2.5.2, §2.5.3)
    }
    if (ip[0] == 0xff) return false;                          // multicast, ff00::/8
    if (ip[0] == 0xfe && (ip[1] & 0xc0) == 0x80) return false;  // link-local, fe80::/10
    if (ip[0] == 0xfe && (ip[1] & 0xc0) == 0xc0) return false;  // site-local, deprecated
    if (std::equal(kV4MappedPrefix.begin(), kV4MappedPrefix.end(), ip.begin())) return false;
    return true;
}

std::vector<SocketAddress> interface_addresses(uint16_t port, bool include_v6) {
    std::vector<SocketAddress> out;
    uv_interface_address_t* list = nullptr;
    int count = 0;
    if (uv_interface_addresses(&list, &count) != 0) return out;
    for (int i = 0; i < count; ++i) {
        if (list[i].is_internal) continue;
        auto a = from_sockaddr(reinterpret_cast<const sockaddr*>(&list[i].address));
        if (!a || (a->v6 && (!include_v6 || !usable_v6_host(*a)))) continue;
        a->port = port;
        // One address may show on several interfaces (an anycast or a moved address).
        if (std::find(out.begin(), out.end(), *a) == out.end()) out.push_back(*a);
    }
    uv_free_interface_addresses(list, count);
    return out;
}

}  // namespace burrow
