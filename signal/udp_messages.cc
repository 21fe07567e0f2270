#include "signal/udp_messages.h"

#include <algorithm>
#include <cassert>

#include "tunnel/wire.h"

namespace burrow {
namespace {

Bytes encode_token_message(uint8_t type, const UdpToken& token) {
    Bytes out;
    out.reserve(kBindSize);
    ByteWriter w(out);
    w.u8(type);
    w.bytes(token);
    return out;
}

std::optional<UdpToken> decode_token_message(uint8_t type, ByteView datagram) {
    if (datagram.size() != kBindSize || datagram[0] != type) return std::nullopt;
    UdpToken token{};
    std::copy(datagram.begin() + 1, datagram.end(), token.begin());
    return token;
}

}  // namespace

Bytes encode_bind(const UdpToken& token) {
    return encode_token_message(kUdpTypeBind, token);
}
Bytes encode_bind_ok(const UdpToken& token) {
    return encode_token_message(kUdpTypeBindOk, token);
}
Bytes encode_bind_ok(const UdpToken& token, bool moved) {
    return encode_token_message(moved ? kUdpTypeBindMoved : kUdpTypeBindOk, token);
}
std::optional<UdpToken> decode_bind(ByteView datagram) {
    return decode_token_message(kUdpTypeBind, datagram);
}
std::optional<UdpToken> decode_bind_ok(ByteView datagram) {
    return decode_token_message(kUdpTypeBindOk, datagram);
}
std::optional<BindAnswer> decode_bind_answer(ByteView datagram) {
    if (auto token = decode_token_message(kUdpTypeBindOk, datagram)) {
        return BindAnswer{*token, false};
    }
    if (auto token = decode_token_message(kUdpTypeBindMoved, datagram)) {
        return BindAnswer{*token, true};
    }
    return std::nullopt;
}

Bytes encode_relay_datagram(uint64_t session_id, const RelayToken& token, ByteView payload) {
    assert(payload.size() <= kMaxRelayPayload);
    Bytes out;
    out.reserve(kRelayHeaderSize + payload.size());
    ByteWriter w(out);
    w.u8(kUdpTypeRelay);
    w.u64(session_id);
    w.bytes(token);
    w.bytes(payload);
    return out;
}

std::optional<RelayDatagram> decode_relay_datagram(ByteView datagram) {
    ByteReader r(datagram);
    if (r.u8() != kUdpTypeRelay) return std::nullopt;
    RelayDatagram d;
    d.session_id = r.u64();
    ByteView token = r.bytes(kRelayTokenSize);
    if (!r.ok()) return std::nullopt;
    std::copy(token.begin(), token.end(), d.token.begin());
    d.payload = r.rest();
    return d;
}

Bytes encode_relay_from_datagram(uint64_t session_id, const RelayToken& token,
                                 const UdpToken& sender, ByteView payload) {
    assert(payload.size() <= kMaxRelayPayload);
    Bytes out;
    out.reserve(kRelayFromHeaderSize + payload.size());
    ByteWriter w(out);
    w.u8(kUdpTypeRelayFrom);
    w.u64(session_id);
    w.bytes(token);
    w.bytes(sender);
    w.bytes(payload);
    return out;
}

std::optional<RelayFromDatagram> decode_relay_from_datagram(ByteView datagram) {
    ByteReader r(datagram);
    if (r.u8() != kUdpTypeRelayFrom) return std::nullopt;
    RelayFromDatagram d;
    d.relay.session_id = r.u64();
    ByteView token = r.bytes(kRelayTokenSize);
    ByteView sender = r.bytes(kUdpTokenSize);
    if (!r.ok()) return std::nullopt;
    std::copy(token.begin(), token.end(), d.relay.token.begin());
    std::copy(sender.begin(), sender.end(), d.sender.begin());
    d.relay.payload = r.rest();
    return d;
}

}  // namespace burrow
