// Packet protection with the session's Noise transport keys: the PacketProtection
// (tunnel/packet.h) the Connection runs on once a handshake has completed.
//
// Keypair slots, as in WireGuard (§6.1, and its noise.c):
//
//   current    sends, and receives
//   previous   receives only: packets the peer sent before it switched keys
//   next       responder only: the keys of a completed handshake that the initiator has not
//              yet used; the first packet that opens under them proves the initiator has
//              them, and they become current. Until then we keep sending under current, so
//              nothing is sent under keys the peer may not have.
//
// A data packet's receiver index picks the slot. Counters are the Connection's packet
// numbers: one sequence for the whole session, never restarted at a rekey, so no counter
// repeats under any key. The replay window is the Connection's; this layer only refuses
// keys that are too old or have protected too many packets.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>

#include "tunnel/handshake.h"
#include "tunnel/packet.h"
#include "tunnel/time.h"

namespace burrow {

inline constexpr Duration kRekeyAfterTime = std::chrono::seconds(120);   // WireGuard §6.1
inline constexpr Duration kRejectAfterTime = std::chrono::seconds(180);  // WireGuard §6.1
// WireGuard's Rekey-After-Messages (2^60) and Reject-After-Messages (2^64 - 2^13 - 1) guard
// ChaCha20's nonce space only. AES-256-GCM wears out sooner: RFC 9001 §6.6 puts its
// confidentiality limit at 2^23 packets per key (for packets far larger than ours, so this
// is conservative). We refuse a key at that limit and rekey at half of it, which leaves the
// handshake the other half (about 45 s at 1 Gbit/s) to complete. ChaCha20-Poly1305 gets the
// same limits: one rule for both suites, and at 1350-byte packets 2^22 is 5.6 GB, so at
// common rates the 120 s timer triggers first anyway.
inline constexpr uint64_t kRejectAfterMessages = uint64_t{1} << 23;
inline constexpr uint64_t kRekeyAfterMessages = kRejectAfterMessages / 2;

struct KeyLimits {
    uint64_t rekey_after_messages = kRekeyAfterMessages;
    uint64_t reject_after_messages = kRejectAfterMessages;
};

// Why a data packet is refused before it reaches the Connection.
enum class DataVerdict {
    kAccept,
    kMalformed,     // not a data packet or shorter than header + tag
    kUnknownIndex,  // no keypair of ours has this receiver index
    kKeyExpired,    // the keypair is older than kRejectAfterTime or used up
};

class SessionProtection final : public PacketProtection {
  public:
    explicit SessionProtection(const KeyLimits& limits = {}) : limits_(limits) {}

    // seal/open have no time parameter; the Session sets the time before every call into
    // the Connection.
    void set_now(Time now) { now_ = now; }

    size_t header_size() const override { return kPacketHeaderSize; }
    size_t tag_size() const override { return kAeadTagSize; }
    size_t seal_in_place(uint64_t packet_number, MutableByteView datagram,
                         size_t plaintext_len) override;
    std::optional<uint64_t> packet_number(ByteView datagram) const override;
    std::optional<ByteView> open_in_place(uint64_t packet_number,
                                          MutableByteView datagram) override;

    // The cheap checks of packet_number(), with the reason; no state changes.
    DataVerdict classify(ByteView datagram) const;

    // Initiator: a completed handshake's keypair is used at once (the response proves the
    // responder has it); current becomes previous.
    void install_confirmed(Keypair keypair);
    // Responder: the keypair waits in next (replacing an older unconfirmed one).
    void install_unconfirmed(Keypair keypair);
    // Drops keypairs older than kRejectAfterTime.
    void expire(Time now);

    // Whether seal() can protect a packet now.
    bool can_send() const;
    // Whether current has reached its rekey point (age or messages sent).
    bool needs_rekey() const;
    // The earliest time a keypair (any slot) reaches kRejectAfterTime; kNever without keys.
    Time next_expiry() const;
    // Whether the index belongs to a keypair we hold.
    bool uses_index(uint32_t index) const;

    const std::optional<Keypair>& current() const { return current_; }
    const std::optional<Keypair>& previous() const { return previous_; }
    const std::optional<Keypair>& next() const { return next_; }

    uint64_t decrypt_failed() const { return decrypt_failed_; }
    uint64_t keypairs_confirmed() const { return keypairs_confirmed_; }

  private:
    Keypair* find(uint32_t local_index);
    const Keypair* find(uint32_t local_index) const;
    bool fresh(const Keypair& k) const { return now_ < k.created_at + kRejectAfterTime; }
    bool can_seal(const Keypair& k) const;
    bool can_open(const Keypair& k) const;

    KeyLimits limits_;
    Time now_{};
    std::optional<Keypair> current_;
    std::optional<Keypair> previous_;
    std::optional<Keypair> next_;
    uint64_t decrypt_failed_ = 0;
    uint64_t keypairs_confirmed_ = 0;
};

}  // namespace burrow
