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

// Turns plaintext frames into a datagram and back, in place: the Connection writes a packet's
// frames into the caller's datagram buffer after header_size() bytes of room and leaves
// tag_size() bytes after them; sealing writes the header in front and encrypts where the
// frames lie. Opening decrypts where the ciphertext lies. The session layer implements it
// with the Noise transport keys, tests use NullProtection.
class PacketProtection {
public:
    virtual ~PacketProtection() = default;
    // Bytes in front of the plaintext (the header) and after it (the AEAD tag).
    virtual size_t header_size() const = 0;
    virtual size_t tag_size() const = 0;
    size_t overhead() const { return header_size() + tag_size(); }
    // datagram[header_size(), header_size() + plaintext_len) holds the plaintext and
    // datagram.size() >= overhead() + plaintext_len. Writes the header and protects the
    // payload in place; returns the datagram's length, or 0 when no packet may be sent now
    // (no keys; the Connection then waits).
    virtual size_t seal_in_place(uint64_t packet_number, MutableByteView datagram,
                                 size_t plaintext_len) = 0;
    // The packet number in the datagram's header if the header is well-formed and addressed
    // to us: a cheap check done before the replay window and before any decryption.
    virtual std::optional<uint64_t> packet_number(ByteView datagram) const = 0;
    // Authenticates and decrypts in place: the plaintext, viewing `datagram`. nullopt when it
    // fails; nothing but the datagram's own bytes changed then.
    virtual std::optional<ByteView> open_in_place(uint64_t packet_number,
                                                  MutableByteView datagram) = 0;

    // Copying forms over the in-place ones, for tests and fuzzers that hold their bytes
    // apart: seal appends the datagram to out, open returns a copy of the plaintext.
    bool seal(uint64_t packet_number, ByteView plaintext, Bytes& out);
    std::optional<Bytes> open(uint64_t packet_number, ByteView datagram);
};

// No encryption: the header followed by the plaintext. For tests and the simulator only.
class NullProtection final : public PacketProtection {
public:
    explicit NullProtection(uint32_t receiver_index = 0) : index_(receiver_index) {}
    size_t header_size() const override { return kPacketHeaderSize; }
    size_t tag_size() const override { return 0; }
    size_t seal_in_place(uint64_t packet_number, MutableByteView datagram,
                         size_t plaintext_len) override;
    std::optional<uint64_t> packet_number(ByteView datagram) const override;
    std::optional<ByteView> open_in_place(uint64_t packet_number,
                                          MutableByteView datagram) override;

private:
    uint32_t index_;
};

// Writes h into the first kPacketHeaderSize bytes of out (which must hold them).
void write_packet_header(const PacketHeader& h, MutableByteView out);

}  // namespace burrow
