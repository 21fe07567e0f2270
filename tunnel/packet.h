// Session packets on the wire, and the seam where encryption plugs in.
//
//    0                   1                   2                   3
//    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//   |  type = 0x04  |          receiver session index (32)          |
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//   |               |  counter (64): AEAD nonce and packet number   |
//   +-+-+-+-+-+-+-+-+                                               +
//   |                                               |               |
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+               +
//   |            ciphertext of frames (tunnel/frame.h) + tag        ...
//
// The counter is sent whole (no truncation): it is the AEAD nonce, so it must never repeat
// under a key, and it is the packet number ACK frames refer to, which stays monotonic across
// rekeys. The header (13 bytes) is the AEAD's associated data.
#pragma once

#include <cstdint>
#include <optional>

#include "tunnel/bytes.h"

namespace burrow {

inline constexpr uint8_t kPacketTypeData = 0x04;  // 0x01-0x03 are handshake messages
inline constexpr size_t kPacketHeaderSize = 1 + 4 + 8;

struct PacketHeader {
    uint8_t type = kPacketTypeData;
    uint32_t receiver_index = 0;
    uint64_t counter = 0;
};

void write_packet_header(const PacketHeader& h, Bytes& out);
// nullopt unless the datagram is at least a header long and of the data type.
std::optional<PacketHeader> read_packet_header(ByteView datagram);

// Turns plaintext frames into a datagram and back. The Connection calls it for every packet;
// the session layer implements it with the Noise transport keys, tests use NullProtection.
class PacketProtection {
public:
    virtual ~PacketProtection() = default;
    // Bytes a datagram carries beyond its plaintext (header + AEAD tag).
    virtual size_t overhead() const = 0;
    // Appends the whole datagram (header + protected payload) for packet number pn to out.
    // Returns false when no packet may be sent now (no keys); the Connection then waits.
    virtual bool seal(uint64_t packet_number, ByteView plaintext, Bytes& out) = 0;
    // The packet number in the datagram's header if the header is well-formed and addressed
    // to us: a cheap check done before the replay window and before any decryption.
    virtual std::optional<uint64_t> packet_number(ByteView datagram) const = 0;
    // Authenticates and decrypts; nullopt (and nothing changed) when it fails.
    virtual std::optional<Bytes> open(uint64_t packet_number, ByteView datagram) = 0;
};

// No encryption: the header followed by the plaintext. For tests and the simulator only.
class NullProtection final : public PacketProtection {
public:
    explicit NullProtection(uint32_t receiver_index = 0) : index_(receiver_index) {}
    size_t overhead() const override { return kPacketHeaderSize; }
    bool seal(uint64_t packet_number, ByteView plaintext, Bytes& out) override;
    std::optional<uint64_t> packet_number(ByteView datagram) const override;
    std::optional<Bytes> open(uint64_t packet_number, ByteView datagram) override;

private:
    uint32_t index_;
};

}  // namespace burrow
