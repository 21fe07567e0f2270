#include "signal/cluster_message.h"

#include <algorithm>
#include <cassert>

#include "tunnel/wire.h"

namespace burrow {
namespace {

enum class Type : uint8_t {
    kRendezvous = 1,
    kRendezvousReply = 2,
    kRelay = 3,
    kPunchReport = 4,
    kRefresh = 5,
};

// A control frame is at most kMaxControlFrame; its 4-byte length prefix comes first.
constexpr size_t kFrameLengthSize = 4;

void put_text(ByteWriter& w, std::string_view s, size_t cap) {
    assert(s.size() <= cap);
    (void)cap;
    w.varint(s.size());
    w.bytes(as_bytes(s));
}

void put_frame(ByteWriter& w, const ControlMessage& m) {
    const Bytes frame = encode_control(m);
    w.varint(frame.size());
    w.bytes(frame);
}

std::optional<std::string> get_text(ByteReader& r, size_t cap) {
    const uint64_t n = r.varint();
    if (!r.ok() || n > cap) return std::nullopt;
    ByteView b = r.bytes(n);
    if (!r.ok()) return std::nullopt;
    return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

// One whole control frame holding a T (PeerInfo, PunchReport), nothing else.
template <class T>
std::optional<T> get_frame(ByteReader& r) {
    const uint64_t n = r.varint();
    if (!r.ok() || n < kFrameLengthSize || n > kMaxControlFrame) return std::nullopt;
    ByteView frame = r.bytes(n);
    if (!r.ok()) return std::nullopt;
    ByteReader length(frame.first(kFrameLengthSize));
    if (length.u32() != n - kFrameLengthSize) return std::nullopt;
    auto decoded = decode_control_body(frame.subspan(kFrameLengthSize));
    auto* message = std::get_if<ControlMessage>(&decoded);
    if (!message) return std::nullopt;
    auto* inner = std::get_if<T>(message);
    if (!inner) return std::nullopt;
    return std::move(*inner);
}

}  // namespace

Bytes encode_cluster(const ClusterMessage& m) {
    Bytes out;
    ByteWriter w(out);
    w.u8(kClusterVersion);
    if (auto* r = std::get_if<ClusterRendezvous>(&m)) {
        w.u8(static_cast<uint8_t>(Type::kRendezvous));
        w.varint(r->request_id);
        put_text(w, r->from_server, kMaxServerNameLen);
        put_text(w, r->requester, kMaxAgentNameLen);
        put_text(w, r->peer, kMaxAgentNameLen);
        put_text(w, r->service, kMaxServiceNameLen);
        put_frame(w, r->to_peer);
    } else if (auto* relay = std::get_if<ClusterRelay>(&m)) {
        w.u8(static_cast<uint8_t>(Type::kRelay));
        w.u64(relay->session_id);
        w.bytes(relay->token);
        put_text(w, relay->sender, kMaxAgentNameLen);
        put_text(w, relay->from_server, kMaxServerNameLen);
        assert(relay->payload.size() <= kMaxRelayPayload);
        w.varint(relay->payload.size());
        w.bytes(relay->payload);
    } else if (auto* report = std::get_if<ClusterPunchReport>(&m)) {
        w.u8(static_cast<uint8_t>(Type::kPunchReport));
        put_text(w, report->from_server, kMaxServerNameLen);
        put_text(w, report->agent, kMaxAgentNameLen);
        put_frame(w, report->report);
    } else if (auto* refresh = std::get_if<ClusterRefresh>(&m)) {
        w.u8(static_cast<uint8_t>(Type::kRefresh));
        put_text(w, refresh->from_server, kMaxServerNameLen);
        put_text(w, refresh->agent, kMaxAgentNameLen);
        put_text(w, refresh->peer, kMaxAgentNameLen);
        w.u8(refresh->answer ? 1 : 0);
        put_frame(w, refresh->to_peer);
    } else {
        const auto& reply = std::get<ClusterRendezvousReply>(m);
        w.u8(static_cast<uint8_t>(Type::kRendezvousReply));
        w.varint(reply.request_id);
        w.u8(reply.ok ? 1 : 0);
        put_text(w, reply.reason, kMaxControlTextLen);
        if (reply.ok) put_frame(w, reply.to_requester);
    }
    return out;
}

std::optional<ClusterMessage> decode_cluster(ByteView payload) {
    ByteReader r(payload);
    if (r.u8() != kClusterVersion || !r.ok()) return std::nullopt;
    const uint8_t type = r.u8();
    if (!r.ok()) return std::nullopt;
    if (type == static_cast<uint8_t>(Type::kRendezvous)) {
        ClusterRendezvous m;
        m.request_id = r.varint();
        auto from = get_text(r, kMaxServerNameLen);
        auto requester = get_text(r, kMaxAgentNameLen);
        auto peer = get_text(r, kMaxAgentNameLen);
        auto service = get_text(r, kMaxServiceNameLen);
        auto info = get_frame<PeerInfo>(r);
        if (!from || !requester || !peer || !service || !info || !r.empty()) return std::nullopt;
        m.from_server = std::move(*from);
        m.requester = std::move(*requester);
        m.peer = std::move(*peer);
        m.service = std::move(*service);
        m.to_peer = std::move(*info);
        return m;
    }
    if (type == static_cast<uint8_t>(Type::kRendezvousReply)) {
        ClusterRendezvousReply m;
        m.request_id = r.varint();
        const uint8_t ok = r.u8();
        auto reason = get_text(r, kMaxControlTextLen);
        if (!r.ok() || ok > 1 || !reason) return std::nullopt;
        m.ok = ok == 1;
        m.reason = std::move(*reason);
        if (m.ok) {
            auto info = get_frame<PeerInfo>(r);
            if (!info) return std::nullopt;
            m.to_requester = std::move(*info);
        }
        if (!r.empty()) return std::nullopt;
        return m;
    }
    if (type == static_cast<uint8_t>(Type::kRelay)) {
        ClusterRelay m;
        m.session_id = r.u64();
        ByteView token = r.bytes(m.token.size());
        auto sender = get_text(r, kMaxAgentNameLen);
        auto from = get_text(r, kMaxServerNameLen);
        const uint64_t n = r.varint();
        if (!r.ok() || !sender || !from || from->empty() || n > kMaxRelayPayload ||
            n != r.remaining()) {
            return std::nullopt;
        }
        m.from_server = std::move(*from);
        std::copy(token.begin(), token.end(), m.token.begin());
        m.sender = std::move(*sender);
        ByteView payload = r.bytes(n);
        m.payload.assign(payload.begin(), payload.end());
        return m;
    }
    if (type == static_cast<uint8_t>(Type::kPunchReport)) {
        auto from = get_text(r, kMaxServerNameLen);
        auto agent = get_text(r, kMaxAgentNameLen);
        auto report = get_frame<PunchReport>(r);
        if (!from || from->empty() || !agent || !report || !r.empty()) return std::nullopt;
        return ClusterPunchReport{std::move(*from), std::move(*agent), std::move(*report)};
    }
    if (type == static_cast<uint8_t>(Type::kRefresh)) {
        auto from = get_text(r, kMaxServerNameLen);
        auto agent = get_text(r, kMaxAgentNameLen);
        auto peer = get_text(r, kMaxAgentNameLen);
        const uint8_t answer = r.u8();
        if (!r.ok() || answer > 1) return std::nullopt;
        auto info = get_frame<PeerInfo>(r);
        if (!from || from->empty() || !agent || !peer || !info || !r.empty()) {
            return std::nullopt;
        }
        return ClusterRefresh{std::move(*from), std::move(*agent), std::move(*peer), answer == 1,
                              std::move(*info)};
    }
    return std::nullopt;
}

}  // namespace burrow
