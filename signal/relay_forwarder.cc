#include "signal/relay_forwarder.h"

#include <sodium.h>

#include "signal/udp_messages.h"

namespace burrow {

std::optional<ServerAction> RelayForwarder::forward(AgentRecord& sender, uint64_t session_id,
                                                    const RelayToken* token, ByteView payload,
                                                    RelayVia via, Time now) {
    if (payload.size() > kMaxRelayPayload) return drop(DropReason::kTooLarge);
    RelaySession* session = relays_.find(session_id);
    if (!session) return drop(DropReason::kRelayUnknownSession);
    if (token && sodium_memcmp(token->data(), session->token.data(), token->size()) != 0) {
        return drop(DropReason::kRelayBadToken);
    }
    if (!session->has_member(sender.name)) return drop(DropReason::kRelayNotMember);
    AgentRecord* peer = registry_.find(session->peer_of(sender.name));
    const bool local = peer && peer->online();
    const bool remote =
        !local && cluster_ && cluster_->redis_up() && !session->remote_server.empty();
    if (!local && !remote) return drop(DropReason::kRelayPeerOffline);

    // Quotas count what the server sends on, header included.
    const double bytes = static_cast<double>(kRelayHeaderSize + payload.size());
    if (!sender.packet_quota.can_take(1, now)) return drop(DropReason::kRateLimitPackets);
    if (!sender.byte_quota.can_take(bytes, now)) return drop(DropReason::kRateLimitBytes);
    sender.packet_quota.take(1, now);
    sender.byte_quota.take(bytes, now);

    sender.relay_via_tls = via == RelayVia::kTls;
    sender.last_seen = now;
    session->last_used = now;
    stats_.packets[static_cast<size_t>(via)]++;
    stats_.bytes[static_cast<size_t>(via)] += payload.size();

    if (remote) {
        return cluster_->relay(session->remote_server,
                               ClusterRelay{session_id, session->token, sender.name, {},
                                            Bytes(payload.begin(), payload.end())});
    }
    return deliver(*session, *peer, payload);
}

ServerAction RelayForwarder::deliver(const RelaySession& session, const AgentRecord& peer,
                                     ByteView payload) {
    if (!peer.relay_via_tls && peer.udp_address) {
        return SendDatagram{UdpPort::kMain, *peer.udp_address,
                            encode_relay_datagram(session.id, session.token, payload)};
    }
    return SendControl{*peer.conn, RelayData{session.id, Bytes(payload.begin(), payload.end())}};
}

std::optional<ServerAction> RelayForwarder::deliver_from_cluster(const ClusterRelay& packet,
                                                                 Time now) {
    RelaySession* session = relays_.find(packet.session_id);
    if (!session) return drop(DropReason::kRelayUnknownSession);
    if (sodium_memcmp(packet.token.data(), session->token.data(), packet.token.size()) != 0) {
        return drop(DropReason::kRelayBadToken);
    }
    if (!session->has_member(packet.sender)) return drop(DropReason::kRelayNotMember);
    AgentRecord* peer = registry_.find(session->peer_of(packet.sender));
    if (!peer || !peer->online()) return drop(DropReason::kRelayPeerOffline);
    session->last_used = now;
    // The sender may have moved servers since the rendezvous: answers go where it is now.
    session->remote_server = packet.from_server;
    return deliver(*session, *peer, packet.payload);
}

}  // namespace burrow
