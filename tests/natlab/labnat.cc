// burrow-labnat: the NAT lab's programmable NAT (issue 16). It runs the simulator's NAT
// (tests/sim/net/nat.h, SimNat) on real IPv4 UDP packets, so a kind behaves in the lab exactly as
// it does in virtual time, with behaviours Linux netfilter cannot show (sequential ports,
// per-subscriber port blocks).
//
//   burrow-labnat TUN PUBLIC_IP LAN_PREFIX KIND [SETTING=VALUE ...]
//   e.g. burrow-labnat unat 198.51.100.11 10.0.1.0/24 seqsym timeout=30
//
// It opens the TUN device TUN in the router's namespace and prints "ready" once it is open;
// lab.py then routes every UDP packet that arrives on the router's LAN or WAN interface into it
// (policy routing) and takes UDP out of netfilter's connection tracking; TCP and ICMP stay with
// netfilter's MASQUERADE. Each packet read is:
//
//   source in LAN_PREFIX, to PUBLIC_IP   hairpin (if the settings allow): out and back in
//   source in LAN_PREFIX, elsewhere      outbound: source becomes the mapping's public address
//   to PUBLIC_IP                         inbound: destination becomes the mapped private socket
//
// and written back to the TUN, where the kernel routes it on (its source may be the router's
// own address: accept_local). A packet the NAT refuses is dropped. Each new mapping is printed
// ("map 10.0.1.2:4000 -> 198.51.100.11:20000 for 198.51.100.1:3478"), so a lab run's log shows
// the allocation. IPv4 fragments and non-UDP packets are dropped (they are not routed here).
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <string_view>

#include "tests/sim/net/nat.h"

namespace {

using burrow::SocketAddress;
using burrow::Time;
using namespace burrow::sim;

constexpr size_t kIpv4MinHeader = 20;  // RFC 791
constexpr size_t kUdpHeader = 8;       // RFC 768
constexpr uint8_t kProtoUdp = 17;
constexpr size_t kMaxPacket = 65535;

struct Prefix {
    std::array<uint8_t, 4> net{};
    int bits = 0;
    bool contains(const uint8_t* ip) const {
        for (int i = 0; i < 4; ++i) {
            const int keep = std::min(8, std::max(0, bits - 8 * i));
            const auto mask = static_cast<uint8_t>(0xff00 >> keep);
            if ((ip[i] & mask) != (net[static_cast<size_t>(i)] & mask)) return false;
        }
        return true;
    }
};

std::optional<Prefix> parse_prefix(std::string_view text) {
    const size_t slash = text.find('/');
    if (slash == std::string_view::npos) return std::nullopt;
    const auto addr = burrow::parse_socket_address(std::string(text.substr(0, slash)) + ":0");
    const std::string bits(text.substr(slash + 1));
    if (!addr || addr->v6 || bits.empty() || bits.size() > 2 ||
        bits.find_first_not_of("0123456789") != std::string::npos || std::stoi(bits) > 32) {
        return std::nullopt;
    }
    Prefix p;
    std::copy_n(addr->ip.begin(), 4, p.net.begin());
    p.bits = std::stoi(bits);
    return p;
}

uint16_t get16(const uint8_t* p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }
void put16(uint8_t* p, uint16_t v) {
    p[0] = static_cast<uint8_t>(v >> 8);
    p[1] = static_cast<uint8_t>(v);
}

uint32_t sum16(const uint8_t* p, size_t n, uint32_t sum = 0) {
    for (size_t i = 0; i + 1 < n; i += 2) sum += get16(p + i);
    if (n % 2) sum += static_cast<uint32_t>(p[n - 1] << 8);
    return sum;
}
uint16_t fold(uint32_t sum) {
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    return static_cast<uint16_t>(~sum);
}

SocketAddress endpoint(const uint8_t* ip, const uint8_t* port) {
    return SocketAddress::ipv4({ip[0], ip[1], ip[2], ip[3]}, get16(port));
}

// Rewrites the packet's addresses and ports and both checksums (RFC 768: a computed zero is
// sent as all ones).
void rewrite(uint8_t* pkt, size_t ihl, size_t udp_len, const SocketAddress& from,
             const SocketAddress& to) {
    uint8_t* udp = pkt + ihl;
    std::copy_n(from.ip.begin(), 4, pkt + 12);
    std::copy_n(to.ip.begin(), 4, pkt + 16);
    put16(udp, from.port);
    put16(udp + 2, to.port);
    put16(pkt + 10, 0);
    put16(pkt + 10, fold(sum16(pkt, ihl)));
    put16(udp + 6, 0);
    uint32_t pseudo = sum16(pkt + 12, 8) + kProtoUdp + static_cast<uint32_t>(udp_len);
    uint16_t c = fold(sum16(udp, udp_len, pseudo));
    put16(udp + 6, c == 0 ? 0xffff : c);
}

int open_tun(const std::string& name) {
    const int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
    if (fd < 0) return -1;
    ifreq ifr{};
    ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
    std::snprintf(ifr.ifr_name, IFNAMSIZ, "%s", name.c_str());
    if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

int usage(const char* why) {
    std::fprintf(stderr,
                 "burrow-labnat: %s\nusage: burrow-labnat TUN PUBLIC_IP LAN_PREFIX KIND "
                 "[SETTING=VALUE ...]\n",
                 why);
    return 2;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 5) return usage("missing arguments");
    const std::string tun_name = argv[1];
    const auto public_ip = burrow::parse_socket_address(std::string(argv[2]) + ":0");
    const auto lan = parse_prefix(argv[3]);
    const auto kind = nat_kind_from_string(argv[4]);
    if (tun_name.empty() || tun_name.size() >= IFNAMSIZ) return usage("bad TUN name");
    if (!public_ip || public_ip->v6) return usage("PUBLIC_IP must be an IPv4 address");
    if (!lan) return usage("LAN_PREFIX must be an IPv4 prefix like 10.0.1.0/24");
    if (!kind) return usage("unknown KIND (e.g. seqsym, blocksym, symmetric, portrestricted)");
    auto config = nat_config(*kind);
    if (!config) return usage("KIND none has no NAT");
    for (int i = 5; i < argc; ++i) {
        if (auto error = apply_nat_setting(*config, argv[i])) return usage(error->c_str());
    }
    const int fd = open_tun(tun_name);
    if (fd < 0) {
        std::fprintf(stderr, "burrow-labnat: cannot open TUN %s: %s (root? /dev/net/tun?)\n",
                     tun_name.c_str(), std::strerror(errno));
        return 1;
    }
    const uint64_t seed = std::random_device{}();
    SimNat nat(*config, *public_ip, seed);
    std::printf("ready %s: %s %s seed=%llu\n", tun_name.c_str(), argv[4],
                describe(*config).c_str(), static_cast<unsigned long long>(seed));
    std::fflush(stdout);

    const auto start = std::chrono::steady_clock::now();
    std::array<uint8_t, kMaxPacket> buf{};
    while (true) {
        const ssize_t n = read(fd, buf.data(), buf.size());
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            std::fprintf(stderr, "burrow-labnat: read: %s\n", std::strerror(errno));
            return 1;
        }
        const auto len = static_cast<size_t>(n);
        uint8_t* pkt = buf.data();
        if (len < kIpv4MinHeader || (pkt[0] >> 4) != 4) continue;
        const size_t ihl = (pkt[0] & 0x0f) * 4u;
        const size_t total = get16(pkt + 2);
        const bool fragment = (get16(pkt + 6) & 0x3fff) != 0;  // MF or an offset
        if (ihl < kIpv4MinHeader || total > len || total < ihl + kUdpHeader ||
            pkt[9] != kProtoUdp || fragment) {
            continue;
        }
        const size_t udp_len = total - ihl;
        if (get16(pkt + ihl + 4) != udp_len) continue;
        const Time now{std::chrono::duration_cast<burrow::Duration>(
            std::chrono::steady_clock::now() - start)};
        const SocketAddress src = endpoint(pkt + 12, pkt + ihl);
        const SocketAddress dst = endpoint(pkt + 16, pkt + ihl + 2);
        const bool to_nat = std::equal(public_ip->ip.begin(), public_ip->ip.begin() + 4, pkt + 16);
        const uint64_t created = nat.stats().mappings_created;
        std::optional<NatTranslation> out;
        if (lan->contains(pkt + 12) && to_nat) {
            out = nat.hairpin(src, dst, now);
        } else if (lan->contains(pkt + 12)) {
            if (auto from = nat.outbound(src, dst, now)) out = NatTranslation{*from, dst};
        } else if (to_nat) {
            if (auto to = nat.inbound(dst, src, now)) out = NatTranslation{src, *to};
        }
        if (nat.stats().mappings_created != created && out) {
            std::printf("map %s -> %s for %s\n", burrow::to_string(src).c_str(),
                        burrow::to_string(lan->contains(pkt + 12) ? out->from : dst).c_str(),
                        burrow::to_string(dst).c_str());
            std::fflush(stdout);
        }
        if (!out) continue;
        rewrite(pkt, ihl, udp_len, out->from, out->to);
        if (write(fd, pkt, total) < 0 && errno != EINTR) {
            std::fprintf(stderr, "burrow-labnat: write: %s\n", std::strerror(errno));
        }
    }
}
