#include "tunnel/packet.h"

#include <algorithm>
#include <cassert>

#include "tunnel/wire.h"

namespace burrow {

void write_packet_header(const PacketHeader& h, Bytes& out) {
    ByteWriter w(out);
    w.u8(h.type);
    w.u32(h.receiver_index);
    w.u64(h.counter);
}

std::optional<PacketHeader> read_packet_header(ByteView datagram) {
    if (datagram.size() < kPacketHeaderSize) return std::nullopt;
    ByteReader r(datagram);
    PacketHeader h;
    h.type = r.u8();
    h.receiver_index = r.u32();
    h.counter = r.u64();
    if (!r.ok() || h.type != kPacketTypeData) return std::nullopt;
    return h;
}

void write_packet_header(const PacketHeader& h, MutableByteView out) {
    assert(out.size() >= kPacketHeaderSize);
    size_t at = 0;
    out[at++] = h.type;
    for (int shift = 24; shift >= 0; shift -= 8) {
        out[at++] = static_cast<uint8_t>(h.receiver_index >> shift);
    }
    for (int shift = 56; shift >= 0; shift -= 8) out[at++] = static_cast<uint8_t>(h.counter >> shift);
}

bool PacketProtection::seal(uint64_t packet_number, ByteView plaintext, Bytes& out) {
    const size_t start = out.size();
    out.resize(start + overhead() + plaintext.size());
    const MutableByteView datagram = MutableByteView(out).subspan(start);
    std::copy(plaintext.begin(), plaintext.end(), datagram.begin() + header_size());
    const size_t n = seal_in_place(packet_number, datagram, plaintext.size());
    out.resize(start + n);
    return n > 0;
}

std::optional<Bytes> PacketProtection::open(uint64_t packet_number, ByteView datagram) {
    Bytes copy(datagram.begin(), datagram.end());
    const auto plaintext = open_in_place(packet_number, copy);
    if (!plaintext) return std::nullopt;
    return Bytes(plaintext->begin(), plaintext->end());
}

size_t NullProtection::seal_in_place(uint64_t packet_number, MutableByteView datagram,
                                     size_t plaintext_len) {
    write_packet_header({kPacketTypeData, index_, packet_number}, datagram);
    return kPacketHeaderSize + plaintext_len;
}

std::optional<uint64_t> NullProtection::packet_number(ByteView datagram) const {
    auto h = read_packet_header(datagram);
    if (!h || h->receiver_index != index_) return std::nullopt;
    return h->counter;
}

std::optional<ByteView> NullProtection::open_in_place(uint64_t packet_number,
                                                      MutableByteView datagram) {
    auto h = read_packet_header(datagram);
    if (!h || h->receiver_index != index_ || h->counter != packet_number) return std::nullopt;
    return ByteView(datagram).subspan(kPacketHeaderSize);
}

}  // namespace burrow
