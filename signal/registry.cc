#include "signal/registry.h"

#include <sodium.h>

#include <tuple>

namespace burrow {
namespace {

TokenBucket packet_bucket(const RelayLimits& l) {
    return TokenBucket(l.packets_per_second, l.packets_per_second * l.burst_seconds);
}
TokenBucket byte_bucket(const RelayLimits& l) {
    return TokenBucket(l.bytes_per_second, l.bytes_per_second * l.burst_seconds);
}

}  // namespace

AgentRecord::AgentRecord(const AclAgent& a, const RelayLimits& limits)
    : name(a.name),
      key(a.key),
      packet_quota(packet_bucket(limits)),
      byte_quota(byte_bucket(limits)) {}

bool AgentRegistry::AddressLess::operator()(const SocketAddress& x, const SocketAddress& y) const {
    return std::tie(x.v6, x.ip, x.port) < std::tie(y.v6, y.ip, y.port);
}

AgentRegistry::AgentRegistry(const Acl& acl, RelayLimits limits) : limits_(limits) {
    for (const AclAgent& a : acl.agents()) agents_.emplace(a.name, AgentRecord(a, limits_));
}

AgentRecord* AgentRegistry::find(std::string_view name) {
    auto it = agents_.find(name);
    return it == agents_.end() ? nullptr : &it->second;
}

const AgentRecord* AgentRegistry::find(std::string_view name) const {
    auto it = agents_.find(name);
    return it == agents_.end() ? nullptr : &it->second;
}

void AgentRegistry::set_lookup_key(const std::array<uint8_t, 16>& key) {
    // Re-index under the new key.
    std::vector<AgentRecord*> online;
    for (auto& [h, a] : by_token_hash_) online.push_back(a);
    by_token_hash_.clear();
    lookup_key_ = key;
    for (AgentRecord* a : online) by_token_hash_.emplace(token_hash(a->udp_token), a);
}

uint64_t AgentRegistry::token_hash(const UdpToken& token) const {
    static_assert(crypto_shorthash_BYTES == sizeof(uint64_t));
    static_assert(crypto_shorthash_KEYBYTES == 16);
    uint64_t h = 0;
    crypto_shorthash(reinterpret_cast<unsigned char*>(&h), token.data(), token.size(),
                     lookup_key_.data());
    return h;
}

void AgentRegistry::unindex_token(AgentRecord& a) {
    auto [first, last] = by_token_hash_.equal_range(token_hash(a.udp_token));
    for (auto it = first; it != last; ++it) {
        if (it->second == &a) {
            by_token_hash_.erase(it);
            return;
        }
    }
}

AgentRecord* AgentRegistry::find_by_udp_token(const UdpToken& token) {
    AgentRecord* found = nullptr;
    auto [first, last] = by_token_hash_.equal_range(token_hash(token));
    for (auto it = first; it != last; ++it) {
        AgentRecord& a = *it->second;
        if (a.online() && sodium_memcmp(a.udp_token.data(), token.data(), token.size()) == 0) {
            found = &a;
        }
    }
    return found;
}

AgentRecord* AgentRegistry::find_by_udp_address(const SocketAddress& address) {
    auto it = by_udp_address_.find(address);
    return it == by_udp_address_.end() ? nullptr : it->second;
}

void AgentRegistry::set_online(AgentRecord& a, ConnId conn, const UdpToken& token, Time now) {
    if (!a.online()) {
        ++online_;
    } else {
        unindex_token(a);
    }
    unbind_udp(a);
    a.conn = conn;
    a.udp_token = token;
    by_token_hash_.emplace(token_hash(token), &a);
    a.last_seen = now;
    a.candidates.clear();
    a.nat = NatMapping::kUnknown;
    a.allocation = {};
    a.packet_quota = packet_bucket(limits_);
    a.byte_quota = byte_bucket(limits_);
    a.relay_via_tls = false;
    a.udp_moved = false;
}

void AgentRegistry::set_offline(AgentRecord& a, Time now) {
    if (!a.online()) return;
    --online_;
    unindex_token(a);
    unbind_udp(a);
    a.conn.reset();
    a.last_seen = now;
    sodium_memzero(a.udp_token.data(), a.udp_token.size());
    a.candidates.clear();
    a.tcp_address.reset();
}

void AgentRegistry::bind_udp(AgentRecord& a, const SocketAddress& address) {
    if (a.udp_address == address) return;
    if (a.udp_address) {
        a.udp_moved = true;
        a.udp_rebinds++;
    }
    unbind_udp(a);
    auto it = by_udp_address_.find(address);
    if (it != by_udp_address_.end()) {
        it->second->udp_address.reset();
        by_udp_address_.erase(it);
    }
    a.udp_address = address;
    by_udp_address_.emplace(address, &a);
}

void AgentRegistry::unbind_udp(AgentRecord& a) {
    if (!a.udp_address) return;
    by_udp_address_.erase(*a.udp_address);
    a.udp_address.reset();
}

}  // namespace burrow
