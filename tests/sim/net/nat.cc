#include "tests/sim/net/nat.h"

#include <charconv>

namespace burrow::sim {

namespace {

constexpr uint16_t kLowestPort = 1024;  // NATs do not map below it
constexpr uint32_t kPortCount = 65536;

constexpr const char* kMappingNames[] = {"eim", "adm", "apdm"};
constexpr const char* kFilteringNames[] = {"eif", "adf", "apdf"};
constexpr const char* kAllocationNames[] = {"preserve", "random", "sequential", "block"};

template <typename Enum, size_t N>
std::optional<Enum> enum_named(const char* const (&names)[N], std::string_view value) {
    for (size_t i = 0; i < N; ++i) {
        if (value == names[i]) return static_cast<Enum>(i);
    }
    return std::nullopt;
}

std::optional<uint32_t> number(std::string_view text, uint32_t lowest, uint32_t highest) {
    uint32_t v = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (ec != std::errc() || end != text.data() + text.size() || v < lowest || v > highest) {
        return std::nullopt;
    }
    return v;
}

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
        case NatKind::kSeqSym:
            return "seqsym";
        case NatKind::kBlockSym:
            return "blocksym";
    }
    return "?";
}

std::optional<NatKind> nat_kind_from_string(std::string_view name) {
    for (auto k : {NatKind::kNone, NatKind::kFullCone, NatKind::kRestricted,
                   NatKind::kPortRestricted, NatKind::kSymmetric, NatKind::kUdpBlocked,
                   NatKind::kSeqSym, NatKind::kBlockSym}) {
        if (name == to_string(k)) return k;
    }
    return std::nullopt;
}

std::optional<std::string> apply_nat_setting(NatConfig& config, std::string_view setting) {
    const size_t eq = setting.find('=');
    const std::string_view key = setting.substr(0, eq);
    const std::string_view value = eq == std::string_view::npos ? "" : setting.substr(eq + 1);
    NatConfig c = config;
    std::optional<std::string> error;
    if (key == "mapping") {
        auto v = enum_named<NatMappingRule>(kMappingNames, value);
        if (v) c.mapping = *v;
        else error = "mapping must be eim, adm or apdm";
    } else if (key == "filtering") {
        auto v = enum_named<NatFiltering>(kFilteringNames, value);
        if (v) c.filtering = *v;
        else error = "filtering must be eif, adf or apdf";
    } else if (key == "allocation") {
        auto v = enum_named<NatAllocation>(kAllocationNames, value);
        if (v) c.allocation = *v;
        else error = "allocation must be preserve, random, sequential or block";
    } else if (key == "delta") {
        auto v = number(value, 1, 32767);
        if (v) c.sequential_delta = static_cast<uint16_t>(*v);
        else error = "delta must be a whole number from 1 to 32767";
    } else if (key == "block") {
        auto v = number(value, 64, 32768);
        if (v && (*v & (*v - 1)) == 0) c.block_size = static_cast<uint16_t>(*v);
        else error = "block must be a power of two from 64 to 32768";
    } else if (key == "hairpin") {
        if (value == "on" || value == "off") c.hairpinning = value == "on";
        else error = "hairpin must be on or off";
    } else if (key == "timeout") {
        auto v = number(value, 1, 86400);
        if (v) c.timeout = std::chrono::seconds(*v);
        else error = "timeout must be whole seconds from 1 to 86400";
    } else {
        error = "unknown NAT setting; one of mapping, allocation, delta, block, filtering, "
                "hairpin, timeout";
    }
    if (error) return "'" + std::string(setting) + "': " + *error;
    config = c;
    return std::nullopt;
}

std::string describe(const NatConfig& c) {
    std::string s = std::string("mapping=") + kMappingNames[static_cast<int>(c.mapping)] +
                    " allocation=" + kAllocationNames[static_cast<int>(c.allocation)];
    if (c.allocation == NatAllocation::kSequential) {
        s += " delta=" + std::to_string(c.sequential_delta);
    }
    if (c.allocation == NatAllocation::kBlock) s += " block=" + std::to_string(c.block_size);
    s += std::string(" filtering=") + kFilteringNames[static_cast<int>(c.filtering)] +
         " hairpin=" + (c.hairpinning ? "on" : "off") +
         " timeout=" +
         std::to_string(std::chrono::duration_cast<std::chrono::seconds>(c.timeout).count());
    if (!c.udp) s += " udp=blocked";
    return s;
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
        case NatKind::kSeqSym:
            c.mapping = NatMappingRule::kAddressPortDependent;
            c.allocation = NatAllocation::kSequential;
            c.sequential_delta = 1;
            return c;
        case NatKind::kBlockSym:
            c.mapping = NatMappingRule::kAddressPortDependent;
            c.allocation = NatAllocation::kBlock;
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

std::optional<uint16_t> SimNat::allocate(const SocketAddress& local) {
    auto free = [&](uint32_t p) { return p >= kLowestPort && !by_port_.contains(uint16_t(p)); };
    if (config_.allocation == NatAllocation::kPreserve && free(local.port)) return local.port;
    if (config_.allocation == NatAllocation::kSequential) {
        for (uint32_t tries = 0; tries < kPortCount; ++tries) {
            // The ports it maps form a ring: past 65535 the count goes on from 1024.
            const uint16_t p = next_port_;
            next_port_ = static_cast<uint16_t>(
                kLowestPort +
                (uint32_t{next_port_} - kLowestPort + config_.sequential_delta) %
                    (kPortCount - kLowestPort));
            if (free(p)) return p;
        }
        return std::nullopt;
    }
    if (config_.allocation == NatAllocation::kBlock) {
        // A subscriber is a private address; its block is the next one free, from port 1024.
        SocketAddress subscriber = local;
        subscriber.port = 0;
        auto block = blocks_.find(subscriber);
        if (block == blocks_.end()) {
            const uint32_t first = kLowestPort + uint32_t{next_block_} * config_.block_size;
            if (first + config_.block_size > kPortCount) return std::nullopt;
            ++next_block_;
            block = blocks_.emplace(subscriber, static_cast<uint16_t>(first)).first;
        }
        // Random within the block (RFC 6056's port randomisation, applied inside it); a full
        // block refuses the mapping: no spill-over into another subscriber's ports.
        uint32_t used = 0;
        for (uint32_t i = 0; i < config_.block_size; ++i) used += !free(block->second + i);
        if (used == config_.block_size) return std::nullopt;
        while (true) {
            const uint32_t p = block->second + rng_.uniform(config_.block_size);
            if (free(p)) return static_cast<uint16_t>(p);
        }
    }
    while (true) {
        const auto p = static_cast<uint16_t>(kLowestPort + rng_.uniform(kPortCount - kLowestPort));
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
    for (const auto& [port, mapped_local] : mapped_ports_) {
        if (mapped_local != local) continue;
        SocketAddress from = public_ip_;
        from.port = port;
        return from;
    }
    const Key key = key_for(local, to);
    auto it = mappings_.find(key);
    if (it == mappings_.end()) {
        const auto port = allocate(local);
        if (!port) {
            stats_.ports_exhausted++;
            return std::nullopt;
        }
        Mapping m;
        m.local = local;
        m.public_address = public_ip_;
        m.public_address.port = *port;
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
    if (auto mapped = mapped_ports_.find(at.port);
        mapped != mapped_ports_.end() && same_ip(at, public_ip_)) {
        return mapped->second;  // a granted mapping filters nothing
    }
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

void SimNat::map_port(const SocketAddress& local, uint16_t port) {
    mapped_ports_[port] = local;
}

void SimNat::unmap_port(uint16_t port) {
    mapped_ports_.erase(port);
}

std::optional<NatTranslation> SimNat::hairpin(const SocketAddress& local,
                                              const SocketAddress& to, Time now) {
    if (!config_.hairpinning) {
        stats_.inbound_dropped++;
        return std::nullopt;
    }
    const auto from = outbound(local, to, now);
    if (!from) return std::nullopt;
    const auto dest = inbound(to, *from, now);
    if (!dest) return std::nullopt;
    stats_.hairpinned++;
    return NatTranslation{*from, *dest};
}

}  // namespace burrow::sim
