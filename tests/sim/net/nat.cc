#include "tests/sim/net/nat.h"

namespace burrow::sim {

namespace {

constexpr uint16_t kLowestPort = 1024;  // NATs do not map below it

bool same_ip(const SocketAddress& a, const SocketAddress& b) {
    return a.ip == b.ip && a.v6 == b.v6;
}

}  // namespace

const char* to_string(NatKind kind) {
    switch (kind) {
        case NatKind::kNone:
            return "none";
        case NatKind::kFullCone:
            return "fullcone";
        case NatKind::kRestricted:
            return "restricted";
        case NatKind::kPortRestricted:
            return "portrestricted";
        case NatKind::kSymmetric:
            return "symmetric";
        case NatKind::kUdpBlocked:
            return "udpblocked";
    }
    return "?";
}

std::optional<NatConfig> nat_config(NatKind kind) {
    NatConfig c;
    switch (kind) {
        case NatKind::kNone:
            return std::nullopt;
        case NatKind::kFullCone:
            c.filtering = NatFiltering::kEndpointIndependent;
            return c;
        case NatKind::kRestricted:
            c.filtering = NatFiltering::kAddressDependent;
            return c;
        case NatKind::kPortRestricted:
            return c;
        case NatKind::kSymmetric:
            c.mapping = NatMappingRule::kAddressPortDependent;
            c.allocation = NatAllocation::kRandom;
            return c;
        case NatKind::kUdpBlocked:
            c.udp = false;
            return c;
    }
    return c;
}

SimNat::SimNat(NatConfig config, SocketAddress public_ip, uint64_t seed)
    : config_(config), public_ip_(public_ip), rng_(seed) {}

SimNat::Key SimNat::key_for(const SocketAddress& local, const SocketAddress& to) const {
    Key k{local, SocketAddress{}};
    if (config_.mapping == NatMappingRule::kAddressDependent) {
        k.dest = to;
        k.dest.port = 0;
    } else if (config_.mapping == NatMappingRule::kAddressPortDependent) {
        k.dest = to;
    }
    return k;
}

uint16_t SimNat::allocate(uint16_t wanted) {
    auto free = [&](uint16_t p) { return p >= kLowestPort && !by_port_.contains(p); };
    if (config_.allocation == NatAllocation::kPreserve && free(wanted)) return wanted;
    if (config_.allocation == NatAllocation::kSequential) {
        for (int tries = 0; tries < 65536; ++tries) {
            const uint16_t p = next_port_;
            next_port_ = static_cast<uint16_t>(next_port_ + config_.sequential_delta);
            if (next_port_ < kLowestPort) next_port_ = kLowestPort;
            if (free(p)) return p;
        }
    }
    while (true) {
        const auto p = static_cast<uint16_t>(kLowestPort + rng_.uniform(65536 - kLowestPort));
        if (free(p)) return p;
    }
}

void SimNat::expire(Time now) {
    for (auto it = mappings_.begin(); it != mappings_.end();) {
        if (now - it->second.last_used >= config_.timeout) {
            by_port_.erase(it->second.public_address.port);
            it = mappings_.erase(it);
        } else {
            ++it;
        }
    }
}

std::optional<SocketAddress> SimNat::outbound(const SocketAddress& local, const SocketAddress& to,
                                              Time now) {
    if (!config_.udp) {
        stats_.udp_blocked++;
        return std::nullopt;
    }
    expire(now);
    const Key key = key_for(local, to);
    auto it = mappings_.find(key);
    if (it == mappings_.end()) {
        Mapping m;
        m.local = local;
        m.public_address = public_ip_;
        m.public_address.port = allocate(local.port);
        by_port_[m.public_address.port] = key;
        it = mappings_.emplace(key, std::move(m)).first;
        stats_.mappings_created++;
    }
    it->second.sent_to.insert(to);
    it->second.last_used = now;
    return it->second.public_address;
}

std::optional<SocketAddress> SimNat::inbound(const SocketAddress& at, const SocketAddress& from,
                                             Time now) {
    if (!config_.udp) {
        stats_.udp_blocked++;
        return std::nullopt;
    }
    expire(now);
    auto port = by_port_.find(at.port);
    if (!same_ip(at, public_ip_) || port == by_port_.end()) {
        stats_.inbound_dropped++;
        return std::nullopt;
    }
    Mapping& m = mappings_.at(port->second);
    bool allowed = config_.filtering == NatFiltering::kEndpointIndependent;
    for (const SocketAddress& d : m.sent_to) {
        if (allowed) break;
        allowed =
            config_.filtering == NatFiltering::kAddressDependent ? same_ip(d, from) : d == from;
    }
    if (!allowed) {
        stats_.inbound_dropped++;
        return std::nullopt;
    }
    m.last_used = now;
    return m.local;
}

}  // namespace burrow::sim
