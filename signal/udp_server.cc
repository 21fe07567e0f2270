#include "signal/udp_server.h"

#include "signal/stun_answer.h"
#include "signal/udp_messages.h"

namespace burrow {

std::optional<ServerAction> UdpServer::on_udp(UdpPort port, const SocketAddress& from,
                                              ByteView datagram, Time now) {
    if (datagram.size() > kMaxUdpDatagram) return drop(DropReason::kTooLarge);
    if (is_stun(datagram)) return on_stun(port, from, datagram);
    if (datagram.empty()) return drop(DropReason::kUnknownType);
    const uint8_t type = datagram[0];
    if (type != kUdpTypeBind && type != kUdpTypeRelay && type != kUdpTypeRelayFrom) {
        return drop(DropReason::kUnknownType);
    }
    if (port != UdpPort::kMain) return drop(DropReason::kWrongPort);
    if (type == kUdpTypeBind) return on_bind(from, datagram);
    if (type == kUdpTypeRelayFrom) return on_relay_from(from, datagram, now);
    return on_relay(from, datagram, now);
}

std::optional<ServerAction> UdpServer::on_stun(UdpPort port, const SocketAddress& from,
                                               ByteView datagram) {
    std::optional<StunMessage> request = decode_stun(datagram);
    if (!request) return drop(DropReason::kStunMalformed);
    if (request->type != kStunBindingRequest) return drop(DropReason::kStunNotRequest);
    std::optional<Bytes> answer = stun_binding_answer(*request, from, software_, datagram.size());
    if (!answer && stun_standard_clients_ && request->unknown_required.empty()) {
        answer = stun_minimal_binding_answer(*request, from);
    }
    if (!answer) return drop(DropReason::kStunAmplification);
    return SendDatagram{port, from, std::move(*answer)};
}

std::optional<ServerAction> UdpServer::on_bind(const SocketAddress& from, ByteView datagram) {
    std::optional<UdpToken> token = decode_bind(datagram);
    if (!token) return drop(DropReason::kBindMalformed);
    AgentRecord* agent = registry_.find_by_udp_token(*token);
    if (!agent) return drop(DropReason::kBindUnknownToken);
    registry_.bind_udp(*agent, from);
    const bool moved = agent->udp_moved;
    agent->udp_moved = false;
    // Echoing the token lets the agent match the answer to its Bind; it is the same size.
    return SendDatagram{UdpPort::kMain, from, encode_bind_ok(*token, moved)};
}

std::optional<ServerAction> UdpServer::on_relay(const SocketAddress& from, ByteView datagram,
                                                Time now) {
    std::optional<RelayDatagram> relay = decode_relay_datagram(datagram);
    if (!relay) return drop(DropReason::kRelayMalformed);
    AgentRecord* sender = registry_.find_by_udp_address(from);
    if (!sender) return drop(DropReason::kRelayUnboundSender);
    return forwarder_.forward(*sender, relay->session_id, &relay->token, relay->payload,
                              RelayVia::kUdp, now);
}

std::optional<ServerAction> UdpServer::on_relay_from(const SocketAddress& from,
                                                     ByteView datagram, Time now) {
    std::optional<RelayFromDatagram> relay = decode_relay_from_datagram(datagram);
    if (!relay) return drop(DropReason::kRelayMalformed);
    AgentRecord* sender = registry_.find_by_udp_token(relay->sender);
    if (!sender) return drop(DropReason::kRelayUnknownSender);
    // The token is the Bind's proof: the sender is this agent, wherever its NAT now maps it.
    registry_.bind_udp(*sender, from);
    return forwarder_.forward(*sender, relay->relay.session_id, &relay->relay.token,
                              relay->relay.payload, RelayVia::kUdp, now);
}

}  // namespace burrow
