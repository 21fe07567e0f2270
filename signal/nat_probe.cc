#include "signal/nat_probe.h"

#include <algorithm>
#include <cassert>
#include <vector>

namespace burrow {
namespace {

// SOFTWARE is "a textual description of the software" (RFC 8489 §14.14): trailing spaces pad it
// without changing what it says, and every STUN implementation accepts it. A PADDING attribute
// (RFC 5780 §7.6) would be comprehension-required and draw a 420 from servers without it.
constexpr char kSoftwarePad = ' ';

size_t port_index(UdpPort port) {
    return static_cast<size_t>(port);
}

}  // namespace

Bytes encode_probe_request(const StunTransactionId& txid, std::string_view software) {
    StunMessage m;
    m.type = kStunBindingRequest;
    m.transaction_id = txid;
    m.fingerprint = true;
    std::string text(software.substr(0, kStunMaxTextEncode));
    m.software = text;
    Bytes encoded = encode_stun(m);
    if (encoded.size() < kStunProbeRequestSize) {
        // Both sizes are multiples of 4 (values are padded to 4 bytes), so the shortfall in
        // characters reaches the target: the padding the text had merely becomes text.
        text.append(kStunProbeRequestSize - encoded.size(), kSoftwarePad);
        m.software = text;
        encoded = encode_stun(m);
    }
    assert(encoded.size() >= kStunProbeRequestSize);
    return encoded;
}

NatMapping classify_mapping(const std::optional<SocketAddress>& main,
                            const std::optional<SocketAddress>& secondary) {
    if (!main || !secondary) return NatMapping::kUnknown;
    return *main == *secondary ? NatMapping::kEndpointIndependent : NatMapping::kPerDestination;
}

NatMapping refine_mapping(NatMapping server_verdict,
                          const std::optional<SocketAddress>& server_main,
                          std::span<const SocketAddress> stun_servers,
                          std::span<const SocketAddress> host_addresses) {
    std::vector<SocketAddress> seen;
    const auto observe = [&](const SocketAddress& a) {
        if (std::find(host_addresses.begin(), host_addresses.end(), a) != host_addresses.end()) {
            return;
        }
        seen.push_back(a);
    };
    if (server_main) observe(*server_main);
    for (const SocketAddress& a : stun_servers) observe(a);
    if (seen.empty()) return server_verdict;
    const bool differ = std::any_of(seen.begin(), seen.end(),
                                    [&](const SocketAddress& a) { return a != seen.front(); });
    if (differ) return NatMapping::kPerDestination;
    if (server_verdict == NatMapping::kUnknown && seen.size() >= 2) {
        return NatMapping::kEndpointIndependent;
    }
    return server_verdict;
}

void NatProbe::start(Rng& rng, Time now, std::deque<ServerDatagram>& out) {
    started_ = true;
    for (Port& p : ports_) {
        p = Port{};
        rng.fill(p.txid);
        p.retry.start(now);
    }
    on_timer(now, out);
}

void NatProbe::stop() {
    started_ = false;
    for (Port& p : ports_) p = Port{};
}

void NatProbe::on_timer(Time now, std::deque<ServerDatagram>& out) {
    if (!started_) return;
    for (size_t i = 0; i < ports_.size(); ++i) {
        Port& p = ports_[i];
        if (p.done()) continue;
        if (p.retry.due(now)) {
            out.push_back(
                ServerDatagram{static_cast<UdpPort>(i), encode_probe_request(p.txid, software_)});
            p.retry.sent(now);
        } else if (p.retry.exhausted(now)) {
            p.gave_up = true;
            p.retry.stop();
        }
    }
}

StunAnswer NatProbe::on_stun(UdpPort port, ByteView datagram) {
    std::optional<StunMessage> m = decode_stun(datagram);
    // RFC 8489 §6.3.3: a response with an unknown comprehension-required attribute is dropped.
    if (!m || m->type != kStunBindingSuccess || !m->unknown_required.empty()) {
        return StunAnswer::kMalformed;
    }
    const size_t i = port_index(port);
    if (i >= ports_.size()) return StunAnswer::kUnmatched;
    Port& p = ports_[i];
    if (!started_ || p.done() || m->transaction_id != p.txid) return StunAnswer::kUnmatched;
    // XOR-MAPPED-ADDRESS first; MAPPED-ADDRESS only from servers that predate it (§14.1).
    std::optional<SocketAddress> mapped = m->xor_mapped_address;
    if (!mapped) mapped = m->mapped_address;
    if (!mapped) return StunAnswer::kMalformed;
    p.mapped = *mapped;
    p.retry.stop();
    return StunAnswer::kAccepted;
}

bool NatProbe::finished() const {
    return started_ &&
           std::all_of(ports_.begin(), ports_.end(), [](const Port& p) { return p.done(); });
}

Time NatProbe::next_deadline() const {
    Time next = kNever;
    if (!started_) return next;
    for (const Port& p : ports_) {
        if (!p.done()) next = std::min(next, p.retry.deadline());
    }
    return next;
}

NatProbeResult NatProbe::result() const {
    NatProbeResult r;
    for (size_t i = 0; i < ports_.size(); ++i) r.mapped[i] = ports_[i].mapped;
    r.mapping = classify_mapping(r.mapped[0], r.mapped[1]);
    return r;
}

}  // namespace burrow
