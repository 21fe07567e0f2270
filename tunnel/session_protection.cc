#include "tunnel/session_protection.h"

#include <algorithm>
#include <array>

#include "tunnel/noise.h"

namespace burrow {

Keypair* SessionProtection::find(uint32_t local_index) {
    for (auto* slot : {&current_, &previous_, &next_}) {
        if (*slot && (*slot)->local_index == local_index) return &**slot;
    }
    return nullptr;
}

const Keypair* SessionProtection::find(uint32_t local_index) const {
    return const_cast<SessionProtection*>(this)->find(local_index);
}

bool SessionProtection::can_seal(const Keypair& k) const {
    return fresh(k) && k.sent < limits_.reject_after_messages;
}

bool SessionProtection::can_open(const Keypair& k) const {
    return fresh(k) && k.received < limits_.reject_after_messages;
}

bool SessionProtection::can_send() const {
    return current_ && can_seal(*current_);
}

bool SessionProtection::needs_rekey() const {
    return current_ && (now_ >= current_->created_at + kRekeyAfterTime ||
                        current_->sent >= limits_.rekey_after_messages);
}

size_t SessionProtection::seal_in_place(uint64_t packet_number, MutableByteView datagram,
                                        size_t plaintext_len) {
    // Noise §5.1 reserves the all-ones nonce; the Connection never gets near it, but a
    // counter must not wrap under any circumstances.
    if (!can_send() || packet_number >= kNoiseMaxNonce) return 0;
    // The header is the associated data; the payload after it is sealed where it lies.
    write_packet_header({kPacketTypeData, current_->remote_index, packet_number}, datagram);
    const size_t size = kPacketHeaderSize + plaintext_len + kAeadTagSize;
    current_->send.seal_in_place(packet_number, datagram.first(kPacketHeaderSize),
                                 datagram.subspan(kPacketHeaderSize, plaintext_len + kAeadTagSize));
    ++current_->sent;
    return size;
}

DataVerdict SessionProtection::classify(ByteView datagram) const {
    if (datagram.size() < kPacketHeaderSize + kAeadTagSize) return DataVerdict::kMalformed;
    const auto h = read_packet_header(datagram);
    if (!h || h->counter >= kNoiseMaxNonce) return DataVerdict::kMalformed;
    const Keypair* k = find(h->receiver_index);
    if (!k) return DataVerdict::kUnknownIndex;
    if (!can_open(*k)) return DataVerdict::kKeyExpired;
    return DataVerdict::kAccept;
}

std::optional<uint64_t> SessionProtection::packet_number(ByteView datagram) const {
    if (classify(datagram) != DataVerdict::kAccept) return std::nullopt;
    return read_packet_header(datagram)->counter;
}

std::optional<ByteView> SessionProtection::open_in_place(uint64_t packet_number,
                                                         MutableByteView datagram) {
    if (classify(datagram) != DataVerdict::kAccept) return std::nullopt;
    const auto h = read_packet_header(datagram);
    if (h->counter != packet_number) return std::nullopt;
    Keypair* k = find(h->receiver_index);
    const MutableByteView sealed = datagram.subspan(kPacketHeaderSize);
    if (!k->recv.open_in_place(packet_number, datagram.first(kPacketHeaderSize), sealed)) {
        ++decrypt_failed_;
        return std::nullopt;
    }
    const ByteView plaintext = ByteView(sealed).first(sealed.size() - kAeadTagSize);
    ++k->received;
    if (next_ && k == &*next_) {
        // The initiator has used the new keys, so it holds them: switch to them for sending.
        previous_ = std::move(current_);
        current_ = std::move(next_);
        next_.reset();
        ++keypairs_confirmed_;
    }
    return plaintext;
}

void SessionProtection::install_confirmed(Keypair keypair) {
    previous_ = std::move(current_);
    current_ = std::move(keypair);
    ++keypairs_confirmed_;
}

void SessionProtection::install_unconfirmed(Keypair keypair) {
    next_ = std::move(keypair);
}

void SessionProtection::expire(Time now) {
    now_ = now;
    for (auto* slot : {&current_, &previous_, &next_}) {
        if (*slot && !fresh(**slot)) slot->reset();
    }
}

Time SessionProtection::next_expiry() const {
    Time t = kNever;
    for (const auto* slot : {&current_, &previous_, &next_}) {
        if (*slot) t = std::min(t, (*slot)->created_at + kRejectAfterTime);
    }
    return t;
}

bool SessionProtection::uses_index(uint32_t index) const {
    return find(index) != nullptr;
}

}  // namespace burrow
