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

namespace {

// Both relay datagrams: the type, the session and its token, then the sender's udp_token
// (kUdpTypeRelayFrom only), then the payload.
Bytes encode_relay(uint8_t type, uint64_t session_id, const RelayToken& token,
                   const UdpToken* sender, ByteView payload) {
    assert(payload.size() <= kMaxRelayPayload);
    Bytes out;
    out.reserve((sender != nullptr ? kRelayFromHeaderSize : kRelayHeaderSize) + payload.size());
    ByteWriter w(out);
    w.u8(type);
    w.u64(session_id);
    w.bytes(token);
    if (sender != nullptr) w.bytes(*sender);
    w.bytes(payload);
    return out;
}

// Reads the type and the session header; the reader then stands at what follows the token.
std::optional<RelayDatagram> decode_relay_header(uint8_t type, ByteReader& r) {
    if (r.u8() != type) return std::nullopt;
    RelayDatagram d;
    d.session_id = r.u64();
    ByteView token = r.bytes(kRelayTokenSize);
    if (!r.ok()) return std::nullopt;
    std::copy(token.begin(), token.end(), d.token.begin());
    return d;
}

}  // namespace

Bytes encode_relay_datagram(uint64_t session_id, const RelayToken& token, ByteView payload) {
    return encode_relay(kUdpTypeRelay, session_id, token, nullptr, payload);
}

std::optional<RelayDatagram> decode_relay_datagram(ByteView datagram) {
    ByteReader r(datagram);
    auto d = decode_relay_header(kUdpTypeRelay, r);
    if (d) d->payload = r.rest();
    return d;
}

Bytes encode_relay_from_datagram(uint64_t session_id, const RelayToken& token,
                                 const UdpToken& sender, ByteView payload) {
    return encode_relay(kUdpTypeRelayFrom, session_id, token, &sender, payload);
}

std::optional<RelayFromDatagram> decode_relay_from_datagram(ByteView datagram) {
    ByteReader r(datagram);
    auto relay = decode_relay_header(kUdpTypeRelayFrom, r);
    if (!relay) return std::nullopt;
    ByteView sender = r.bytes(kUdpTokenSize);
    if (!r.ok()) return std::nullopt;
    RelayFromDatagram d{*relay, {}};
    std::copy(sender.begin(), sender.end(), d.sender.begin());
    d.relay.payload = r.rest();
    return d;
}

}  // namespace burrow
