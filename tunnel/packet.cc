#include "tunnel/packet.h"

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

bool NullProtection::seal(uint64_t packet_number, ByteView plaintext, Bytes& out) {
    write_packet_header({kPacketTypeData, index_, packet_number}, out);
    out.insert(out.end(), plaintext.begin(), plaintext.end());
    return true;
}

std::optional<uint64_t> NullProtection::packet_number(ByteView datagram) const {
    auto h = read_packet_header(datagram);
    if (!h || h->receiver_index != index_) return std::nullopt;
    return h->counter;
}

std::optional<Bytes> NullProtection::open(uint64_t packet_number, ByteView datagram) {
    auto h = read_packet_header(datagram);
    if (!h || h->receiver_index != index_ || h->counter != packet_number) return std::nullopt;
    return Bytes(datagram.begin() + kPacketHeaderSize, datagram.end());
}

}  // namespace burrow
