// Codec target: session packet headers (tunnel/packet.h) and the frames inside a packet
// (tunnel/frame.h).
//
// Input: one selector byte, then the bytes to decode. Even selector: a packet plaintext for
// decode_frames; odd: a datagram for read_packet_header and NullProtection.
//
// Invariants: whatever decodes re-encodes (encode_frame's preconditions hold for every decoded
// frame), encoded_size() is exact, and decoding the re-encoding gives the same values; the
// encoding may differ from the input (varints are written in their shortest form).
#include <numeric>

#include "tests/fuzz/fuzz_support.h"
#include "tunnel/frame.h"
#include "tunnel/packet.h"

using namespace burrow;
using namespace burrow::fuzz;

namespace {

void frames(ByteView plaintext) {
    auto decoded = decode_frames(plaintext);
    if (!decoded) return;
    Bytes encoded;
    for (const Frame& f : *decoded) {
        const size_t before = encoded.size();
        encode_frame(f, encoded);
        FUZZ_CHECK(encoded.size() - before == encoded_size(f));
        if (auto* s = std::get_if<StreamFrame>(&f)) {
            FUZZ_CHECK(stream_frame_overhead(s->id, s->offset, s->data.size()) + s->data.size() ==
                       encoded_size(f));
        }
        if (auto* d = std::get_if<DatagramFrame>(&f)) {
            FUZZ_CHECK(datagram_frame_overhead(d->flow, d->data.size()) + d->data.size() ==
                       encoded_size(f));
        }
    }
    // Canonical encodings are never longer than what was read.
    FUZZ_CHECK(encoded.size() <= plaintext.size());
    auto again = decode_frames(encoded);
    FUZZ_CHECK(again.has_value());
    FUZZ_CHECK(*again == *decoded);
}

void packet(ByteView datagram) {
    auto header = read_packet_header(datagram);
    FUZZ_CHECK(header.has_value() ==
               (datagram.size() >= kPacketHeaderSize && datagram[0] == kPacketTypeData));
    NullProtection protection(header ? header->receiver_index : 0);
    if (!header) {
        FUZZ_CHECK(!protection.packet_number(datagram));
        return;
    }
    Bytes encoded;
    write_packet_header(*header, encoded);
    FUZZ_CHECK(encoded.size() == kPacketHeaderSize);
    FUZZ_CHECK(std::equal(encoded.begin(), encoded.end(), datagram.begin()));
    auto again = read_packet_header(encoded);
    FUZZ_CHECK(again && again->receiver_index == header->receiver_index &&
               again->counter == header->counter && again->type == header->type);
    // NullProtection is the identity around the header: open(seal(x)) == x.
    auto pn = protection.packet_number(datagram);
    FUZZ_CHECK(pn == header->counter);
    auto plain = protection.open(*pn, datagram);
    FUZZ_CHECK(plain.has_value());
    Bytes resealed;
    FUZZ_CHECK(protection.seal(*pn, *plain, resealed));
    FUZZ_CHECK(std::equal(resealed.begin(), resealed.end(), datagram.begin(), datagram.end()));
    frames(*plain);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    FuzzReader in(data, size);
    const uint8_t selector = in.u8();
    if (selector & 1) {
        packet(in.rest());
    } else {
        frames(in.rest());
    }
    return 0;
}
