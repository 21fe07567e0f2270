#include "tunnel/socket_address.h"

#include <algorithm>

namespace burrow {
namespace {

constexpr size_t kIpv6Groups = 8;      // RFC 4291 §2.2: eight 16-bit pieces
constexpr size_t kMaxHexPerGroup = 4;  // RFC 4291 §2.2: one to four hex digits
constexpr size_t kMaxOctetDigits = 3;  // "255"
constexpr uint32_t kMaxOctet = 255;
constexpr size_t kMaxPortDigits = 5;  // "65535"
constexpr uint32_t kMaxPort = 65535;
constexpr size_t kMappedPrefixGroups = 5;  // ::ffff:a.b.c.d, RFC 4291 §2.5.5.2
constexpr uint16_t kMappedMarker = 0xffff;

bool is_digit(char c) {
    return c >= '0' && c <= '9';
}

int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

bool parse_ipv4(std::string_view s, uint8_t* out) {
    size_t pos = 0;
    for (size_t octet = 0; octet < kIpv4Size; ++octet) {
        if (octet > 0) {
            if (pos >= s.size() || s[pos] != '.') return false;
            ++pos;
        }
        const size_t start = pos;
        uint32_t value = 0;
        while (pos < s.size() && is_digit(s[pos]) && pos - start < kMaxOctetDigits) {
            value = value * 10 + static_cast<uint32_t>(s[pos] - '0');
            ++pos;
        }
        const size_t digits = pos - start;
        if (digits == 0 || value > kMaxOctet || (digits > 1 && s[start] == '0')) return false;
        out[octet] = static_cast<uint8_t>(value);
    }
    return pos == s.size();
}

// RFC 4291 §2.2 text forms: x:x:x:x:x:x:x:x, one "::" for one or more zero groups, and an
// optional dotted IPv4 tail in place of the last two groups.
bool parse_ipv6(std::string_view s, uint8_t* out) {
    std::array<uint16_t, kIpv6Groups> groups{};
    size_t count = 0;
    std::optional<size_t> gap;  // index in `groups` where "::" stands
    size_t pos = 0;
    if (s.substr(0, 2) == "::") {
        gap = 0;
        pos = 2;
    }
    while (pos < s.size()) {
        size_t end = pos;
        uint32_t value = 0;
        while (end < s.size() && hex_value(s[end]) >= 0 && end - pos <= kMaxHexPerGroup) {
            value = (value << 4) | static_cast<uint32_t>(hex_value(s[end]));
            ++end;
        }
        if (end < s.size() && s[end] == '.') {
            // The IPv4 tail ends the address and fills two groups.
            uint8_t v4[kIpv4Size];
            if (count + 2 > kIpv6Groups || !parse_ipv4(s.substr(pos), v4)) return false;
            groups[count++] = static_cast<uint16_t>(v4[0] << 8 | v4[1]);
            groups[count++] = static_cast<uint16_t>(v4[2] << 8 | v4[3]);
            pos = s.size();
            break;
        }
        const size_t digits = end - pos;
        if (digits == 0 || digits > kMaxHexPerGroup || count == kIpv6Groups) return false;
        groups[count++] = static_cast<uint16_t>(value);
        pos = end;
        if (pos == s.size()) break;
        if (s[pos] != ':') return false;
        ++pos;
        if (pos < s.size() && s[pos] == ':') {
            if (gap) return false;
            gap = count;
            ++pos;
        } else if (pos == s.size()) {
            return false;  // a single trailing colon
        }
    }
    if (!gap && count != kIpv6Groups) return false;
    if (gap) {
        if (count >= kIpv6Groups) return false;  // "::" must stand for at least one group
        const size_t zeros = kIpv6Groups - count;
        std::move_backward(groups.begin() + static_cast<std::ptrdiff_t>(*gap),
                           groups.begin() + static_cast<std::ptrdiff_t>(count), groups.end());
        std::fill_n(groups.begin() + static_cast<std::ptrdiff_t>(*gap), zeros, 0);
    }
    for (size_t i = 0; i < kIpv6Groups; ++i) {
        out[2 * i] = static_cast<uint8_t>(groups[i] >> 8);
        out[2 * i + 1] = static_cast<uint8_t>(groups[i]);
    }
    return true;
}

std::optional<uint16_t> parse_port(std::string_view s) {
    if (s.empty() || s.size() > kMaxPortDigits) return std::nullopt;
    uint32_t value = 0;
    for (char c : s) {
        if (!is_digit(c)) return std::nullopt;
        value = value * 10 + static_cast<uint32_t>(c - '0');
    }
    if (value > kMaxPort) return std::nullopt;
    return static_cast<uint16_t>(value);
}

std::string ipv4_to_string(const uint8_t* a) {
    std::string s;
    for (size_t i = 0; i < kIpv4Size; ++i) {
        if (i > 0) s += '.';
        s += std::to_string(a[i]);
    }
    return s;
}

// RFC 5952 §4: the canonical text form.
std::string ipv6_to_string(const std::array<uint8_t, kIpv6Size>& ip) {
    std::array<uint16_t, kIpv6Groups> groups{};
    for (size_t i = 0; i < kIpv6Groups; ++i) {
        groups[i] = static_cast<uint16_t>(ip[2 * i] << 8 | ip[2 * i + 1]);
    }
    const bool mapped = std::all_of(groups.begin(), groups.begin() + kMappedPrefixGroups,
                                    [](uint16_t g) { return g == 0; }) &&
                        groups[kMappedPrefixGroups] == kMappedMarker;
    if (mapped) return "::ffff:" + ipv4_to_string(ip.data() + kIpv6Size - kIpv4Size);

    // The longest run of zero groups, the first one on a tie (§4.2.3); never a single group
    // (§4.2.2).
    size_t best_start = kIpv6Groups;
    size_t best_len = 1;
    for (size_t i = 0; i < kIpv6Groups;) {
        if (groups[i] != 0) {
            ++i;
            continue;
        }
        size_t j = i;
        while (j < kIpv6Groups && groups[j] == 0) ++j;
        if (j - i > best_len) {
            best_start = i;
            best_len = j - i;
        }
        i = j;
    }
    static constexpr char kHex[] = "0123456789abcdef";
    std::string s;
    for (size_t i = 0; i < kIpv6Groups; ++i) {
        if (i == best_start) {
            s += "::";
            i += best_len - 1;
            continue;
        }
        if (!s.empty() && s.back() != ':') s += ':';
        bool started = false;
        for (int shift = 12; shift >= 0; shift -= 4) {
            const int nibble = (groups[i] >> shift) & 0xf;
            if (nibble != 0 || started || shift == 0) {
                s += kHex[nibble];
                started = true;
            }
        }
    }
    return s;
}

}  // namespace

SocketAddress SocketAddress::ipv4(const std::array<uint8_t, kIpv4Size>& a, uint16_t port) {
    SocketAddress s;
    std::copy(a.begin(), a.end(), s.ip.begin());
    s.port = port;
    return s;
}

SocketAddress SocketAddress::ipv6(const std::array<uint8_t, kIpv6Size>& a, uint16_t port) {
    SocketAddress s;
    s.ip = a;
    s.v6 = true;
    s.port = port;
    return s;
}

std::string to_string(const SocketAddress& a) {
    const std::string port = std::to_string(a.port);
    if (a.v6) return "[" + ipv6_to_string(a.ip) + "]:" + port;
    return ipv4_to_string(a.ip.data()) + ":" + port;
}

std::optional<SocketAddress> parse_socket_address(std::string_view text) {
    SocketAddress a;
    std::string_view host;
    std::string_view port;
    if (!text.empty() && text.front() == '[') {
        const size_t close = text.find(']');
        if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
            return std::nullopt;
        }
        host = text.substr(1, close - 1);
        port = text.substr(close + 2);
        a.v6 = true;
        if (!parse_ipv6(host, a.ip.data())) return std::nullopt;
    } else {
        const size_t colon = text.find(':');
        if (colon == std::string_view::npos) return std::nullopt;
        host = text.substr(0, colon);
        port = text.substr(colon + 1);
        if (!parse_ipv4(host, a.ip.data())) return std::nullopt;
    }
    const auto p = parse_port(port);
    if (!p) return std::nullopt;
    a.port = *p;
    return a;
}

}  // namespace burrow
